"""Shared by the side-by-side service benchmarks (sqs.py, dynamodb.py, kinesis_put_records.py,
sns_fanout.py, s3_bench.py): targets given as NAME=URL, segments run interleaved
(A, B, A, B … with the order rotating each round) so that load on a shared machine hits
every server alike, and a markdown table with the median of the segments, their spread
and the Nimbus/peer ratio."""

import os
import statistics
import subprocess

import boto3
from botocore.config import Config


def targets(nimbus, peers):
    return [("nimbus", nimbus)] + [tuple(p.split("=", 1)) for p in peers]


def client(service, url, pool=128):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=pool))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def interleaved(names, rounds, segment):
    """Runs segment(name) for every name, `rounds` times, rotating the order each round;
    returns {name: [result of each round]}."""
    out = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            out[n].append(segment(n))
    return out


def summarize(segments, rate_key="rate"):
    """segments: dicts with `rate` and `lat` (list of ms). Median rate of the segments,
    their min-max, and p50/p99 over all latencies pooled."""
    rates = [s[rate_key] for s in segments]
    lat = [x for s in segments for x in s.get("lat", [])]
    return {"rate": statistics.median(rates), "lo": min(rates), "hi": max(rates),
            "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "n": len(lat),
            "errors": sum(s.get("errors", 0) for s in segments)}


def table(rows, unit="ops/s"):
    """rows: (label, clients, {name: summary}). One line per label/clients/server, with the
    Nimbus/peer ratio of the rate (> 1 = Nimbus faster) and of p50 (< 1 = Nimbus faster)."""
    print(f"| operation | clients | server | {unit} (median) | spread | p50 ms | p99 ms | errors | Nimbus/peer {unit} | Nimbus/peer p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, clients, by in rows:
        nim = by.get("nimbus")
        for name, s in by.items():
            ratio = p50r = ""
            if name != "nimbus" and nim and s["rate"]:
                ratio = f"**{nim['rate'] / s['rate']:.2f}×**"
                p50r = f"{nim['p50'] / s['p50']:.2g}×" if s["p50"] else ""
            print(f"| {label} | {clients} | {name} | {s['rate']:.0f} | {s['lo']:.0f}–{s['hi']:.0f} | "
                  f"{s['p50']:.2f} | {s['p99']:.2f} | {s['errors']} | {ratio} | {p50r} |", flush=True)


def run_wrk(script, url, clients, duration, env):
    """One wrk run of bench/SCRIPT (which prints a `WRK requests µs errors p50 p99 max` line
    and writes `status N: …` to stderr for every non-2xx answer): rate, p50/p99 in ms,
    errors, and the requests acknowledged (completed without error)."""
    out = subprocess.run(["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{int(duration)}s", "-s",
                          os.path.join(os.path.dirname(__file__), script), url],
                         env={**os.environ, **env}, capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK "))
    req, us, err, p50, p99, _ = line.split()[1:]
    errors = int(err) + out.stderr.count("status ")
    return {"rate": int(req) / (int(us) / 1e6), "p50": float(p50) / 1000, "p99": float(p99) / 1000,
            "errors": errors, "acked": int(req) - errors}


def summarize_wrk(segs):
    """Median rate of wrk segments, their spread, the median of their p50s, the worst p99."""
    rates = [s["rate"] for s in segs]
    return {"rate": statistics.median(rates), "lo": min(rates), "hi": max(rates),
            "p50": statistics.median(s["p50"] for s in segs), "p99": max(s["p99"] for s in segs),
            "errors": sum(s["errors"] for s in segs), "acked": sum(s.get("acked", 0) for s in segs)}
