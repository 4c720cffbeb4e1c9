#!/usr/bin/env python3
"""S3 throughput (issue 15) against Nimbus and, side by side, any S3 endpoint
(SeaweedFS's S3 gateway, moto_server, …) given by --peer NAME=URL.

    .venv/bin/python bench/s3_bench.py --nimbus http://127.0.0.1:4566 \\
        --peer seaweedfs=http://127.0.0.1:8333 --peer moto=http://127.0.0.1:5000 \\
        [--clients 1,16,64] [--duration 3] [--rounds 3] [--sizes-mib 1,64] \\
        [--large-mib 1024] [--dd-dir DIR] [--pid NAME=PID ...]

* 4 KiB PUT, then GET, closed loop at each client count (threads, one boto3 client
  each), segments of --duration seconds interleaved (A, B, A, B, order rotating),
  --rounds per server: median ops/s, spread, p50/p99 pooled, Nimbus/peer.
* Single-request PUT and GET of each --sizes-mib object, --rounds times interleaved:
  median MB/s.
* One --large-mib object through boto3's multipart transfer (64 MiB parts, 4 threads)
  PUT and ranged-parallel GET, interleaved: MB/s, next to `dd if=/dev/zero bs=1M
  conv=fsync` in --dd-dir (the disk's floor, put it on the servers' disk); with --pid
  NAME=PID the server's RSS growth during it (VmRSS sampled every 50 ms, peak - before).
* With --curl-mib N: one N MiB object PUT and GET (to /dev/null) with curl (`--aws-sigv4`,
  unsigned payload), --rounds times interleaved: the servers' own large-object rate,
  without boto3's Python checksumming (--only-curl: nothing else).
* With --wrk: the 4 KiB PUT (a new key per request) and GET at each client count from
  wrk (bench/s3_wrk.lua) instead of boto3 — the servers' own rate; only for servers that do
  not verify signatures (Nimbus without --credentials, moto). Every acknowledged PUT is
  counted back with ListObjectsV2.
Every server needs credentials test/test (SeaweedFS enforces them).
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from sidebyside import interleaved, run_wrk, summarize, summarize_wrk, table, targets


def client(endpoint, pool=8):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"},
                                      max_pool_connections=pool))


def small(url, bucket, op, clients, duration):
    body = os.urandom(4096)
    lat, errors, lock = [], [0], threading.Lock()
    cs = [client(url) for _ in range(clients)]
    stop = time.monotonic() + duration

    def run(i):
        c, mine, n, err = cs[i], [], 0, 0
        while time.monotonic() < stop:
            key = f"small/{i}/{n % 100}"
            t = time.perf_counter()
            try:
                if op == "PUT":
                    c.put_object(Bucket=bucket, Key=key, Body=body)
                else:
                    c.get_object(Bucket=bucket, Key=f"get/{(i * 7 + n) % 100}")["Body"].read()
            except Exception:  # noqa: BLE001 — counted, shown in the table
                err += 1
                continue
            mine.append((time.perf_counter() - t) * 1000)
            n += 1
        with lock:
            lat.extend(mine)
            errors[0] += err

    t0 = time.monotonic()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"rate": len(lat) / (time.monotonic() - t0), "lat": lat, "errors": errors[0]}


class Rss:
    """Samples a process's VmRSS every 50 ms while in the `with` block."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def rss(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def loop(self):
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.rss())

    def __enter__(self):
        self.before = self.rss() if self.pid else 0
        if self.pid:
            self.t = threading.Thread(target=self.loop, daemon=True)
            self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        if self.pid:
            self.t.join()

    def growth_mib(self):
        return (self.peak - self.before) / (1 << 20) if self.pid else None


def curl(url, bucket, key, src=None):
    """One PUT (from src) or GET (to /dev/null) with curl, signed with --aws-sigv4
    (payload unsigned); returns seconds."""
    cmd = ["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "test:test",
           "-w", "%{time_total}", "-o", "/dev/null", f"{url}/{bucket}/{key}"]
    if src:
        cmd[1:1] = ["-T", src]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def count_prefix(url, bucket, prefix):
    """Objects under `prefix` (ListObjectsV2, every page)."""
    c, n = client(url), 0
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        n += page.get("KeyCount", 0)
    return n


def wrk_main(a, ts, bucket):
    """4 KiB PUT (a new key each request) and GET from wrk (bench/s3_wrk.lua): the servers'
    own rate, without boto3. Only for servers that do not verify signatures. PUTs are read
    back: the objects under the run's prefix must number at least those acknowledged."""
    import uuid
    rows, short = [], {}
    for op in ("PUT", "GET"):
        for n in (int(x) for x in a.clients.split(",") if x):
            def seg(name):
                run = uuid.uuid4().hex[:12]
                r = run_wrk("s3_wrk.lua", ts[name], n, a.duration,
                            {"MODE": op, "BUCKET": bucket, "RUN": run, "KEY": "get/0"})
                if op == "PUT":
                    got = count_prefix(ts[name], bucket, f"w/{run}-")
                    short[name] = short.get(name, 0) + max(0, r["acked"] - got)
                return r
            res = interleaved(list(ts), a.rounds, seg)
            rows.append((f"{op} 4 KiB (wrk)", n, {k: summarize_wrk(v) for k, v in res.items()}))
    table(rows)
    print("\nread-back, PUTs acknowledged but not listed: " +
          ", ".join(f"{k} {v}" for k, v in short.items()))


def dd_floor(directory, mib):
    path = os.path.join(directory, "dd-floor")
    t = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fsync"],
                   check=True, capture_output=True)
    s = time.perf_counter() - t
    os.unlink(path)
    return mib / s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", required=True)
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL")
    ap.add_argument("--pid", action="append", default=[], help="NAME=PID of a server, for RSS")
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes-mib", default="1,64")
    ap.add_argument("--large-mib", type=int, default=1024)
    ap.add_argument("--dd-dir")
    ap.add_argument("--curl-mib", type=int, default=0,
                    help="also PUT/GET one object of this size with curl (a C client: server-bound)")
    ap.add_argument("--only-curl", action="store_true", help="skip the boto3 parts")
    ap.add_argument("--wrk", action="store_true",
                    help="4 KiB PUT/GET from wrk instead of boto3 (servers that do not verify signatures)")
    a = ap.parse_args()
    ts = dict(targets(a.nimbus, a.peer))
    pids = {k: int(v) for k, v in (p.split("=", 1) for p in a.pid)}
    bucket = f"bench-{int(time.time())}"
    for url in ts.values():
        c = client(url)
        c.create_bucket(Bucket=bucket)
        for i in range(0 if a.only_curl else 100):  # what the GETs read
            c.put_object(Bucket=bucket, Key=f"get/{i}", Body=os.urandom(4096))
    if a.curl_mib:
        with tempfile.TemporaryDirectory(dir=a.dd_dir) as d:
            src = os.path.join(d, "src")
            with open(src, "wb") as f:
                for _ in range(a.curl_mib):
                    f.write(os.urandom(1 << 20))
            res = interleaved(list(ts), a.rounds, lambda name: {
                "put": a.curl_mib / curl(ts[name], bucket, "curl", src),
                "get": a.curl_mib / curl(ts[name], bucket, "curl")})
        print(f"| {a.curl_mib} MiB, one request, curl | server | PUT MB/s (median) | spread | GET MB/s (median) | spread | Nimbus/peer PUT | Nimbus/peer GET |")
        print("|---|---|---|---|---|---|---|---|")
        med = {k: (statistics.median(x["put"] for x in v), statistics.median(x["get"] for x in v)) for k, v in res.items()}
        for name, v in res.items():
            rp = rg = ""
            if name != "nimbus":
                rp, rg = f"**{med['nimbus'][0] / med[name][0]:.2f}×**", f"**{med['nimbus'][1] / med[name][1]:.2f}×**"
            puts, gets = [x["put"] for x in v], [x["get"] for x in v]
            print(f"| | {name} | {med[name][0]:.0f} | {min(puts):.0f}–{max(puts):.0f} | {med[name][1]:.0f} | "
                  f"{min(gets):.0f}–{max(gets):.0f} | {rp} | {rg} |", flush=True)
        if a.dd_dir:
            print(f"\n`dd if=/dev/zero bs=1M count={a.curl_mib} conv=fsync` in {a.dd_dir}: "
                  f"{dd_floor(a.dd_dir, a.curl_mib):.0f} MB/s (the disk's floor)\n")
    if a.only_curl:
        return
    if a.wrk:
        wrk_main(a, ts, bucket)
        return
    rows = []
    for op in ("PUT", "GET"):
        for n in (int(x) for x in a.clients.split(",") if x):
            res = interleaved(list(ts), a.rounds, lambda name: small(ts[name], bucket, op, n, a.duration))
            rows.append((f"{op} 4 KiB", n, {k: summarize(v) for k, v in res.items()}))
    if rows:
        table(rows)
        print()
    names = list(ts)
    print("| object | server | PUT MB/s (median) | GET MB/s (median) | RSS growth MiB | Nimbus/peer PUT | Nimbus/peer GET |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=a.dd_dir) as d:
        sizes = [(f"{m} MiB, one request", m, False) for m in (int(x) for x in a.sizes_mib.split(",") if x)]
        if a.large_mib:
            sizes.append((f"{a.large_mib} MiB, multipart (64 MiB parts ×4)", a.large_mib, True))
        for label, mib, multi in sizes:
            src = os.path.join(d, "src")
            with open(src, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))
            cfg = TransferConfig(multipart_threshold=(64 << 20) if multi else (1 << 40),
                                 multipart_chunksize=64 << 20, max_concurrency=4 if multi else 1)
            rss = {}

            def seg(name, mib=mib, src=src, cfg=cfg, multi=multi):
                c, key = client(ts[name]), f"large-{mib}"
                with Rss(pids.get(name) if multi else None) as r:
                    t = time.perf_counter()
                    c.upload_file(src, bucket, key, Config=cfg)
                    put = mib / (time.perf_counter() - t)
                    t = time.perf_counter()
                    c.download_file(bucket, key, os.path.join(d, "dst"), Config=cfg)
                    get = mib / (time.perf_counter() - t)
                if os.path.getsize(os.path.join(d, "dst")) != mib << 20:
                    raise SystemExit(f"{name}: downloaded size differs")
                os.unlink(os.path.join(d, "dst"))
                if r.growth_mib() is not None:
                    rss.setdefault(name, []).append(r.growth_mib())
                return {"put": put, "get": get}

            res = interleaved(names, 1 if mib >= 256 else a.rounds, seg)
            med = {k: (statistics.median(s["put"] for s in v), statistics.median(s["get"] for s in v))
                   for k, v in res.items()}
            for name, (put, get) in med.items():
                rp = rg = ""
                if name != "nimbus":
                    rp = f"**{med['nimbus'][0] / put:.2f}×**"
                    rg = f"**{med['nimbus'][1] / get:.2f}×**"
                growth = f"{max(rss[name]):.0f}" if name in rss else ""
                print(f"| {label} | {name} | {put:.0f} | {get:.0f} | {growth} | {rp} | {rg} |", flush=True)
            os.unlink(src)
    if a.dd_dir and a.large_mib:
        print(f"\n`dd if=/dev/zero bs=1M count={a.large_mib} conv=fsync` in {a.dd_dir}: "
              f"{dd_floor(a.dd_dir, a.large_mib):.0f} MB/s (the disk's floor)")


if __name__ == "__main__":
    main()
