#!/usr/bin/env python3
"""What instance isolation costs (issue 19: "≤ 2 ms added at p50"): cold starts and warm
invokes of a Python and a Node.js no-op on `nimbus up --isolation off` next to
`--isolation auto`, each with interpreter spares on (`--spares 1`, the default) and off
(`--spares 0`).

    .venv/bin/python bench/isolation_coldstart.py --bin target/release/nimbus \\
        [--samples 30] [--warm-seconds 3] [--rounds 3] [--spares 0,1] [--modes off,auto]

One server per (isolation, spares) configuration, all running at once on random
loopback ports, each with its own data dir and (for `auto`) its own instance uid range
(`NIMBUS_ISOLATION_UIDS`), so that the configurations are measured interleaved: sample
i visits every configuration and runtime in a rotating order, and load on a shared
machine hits them alike. `GET /_nimbus/health` of each server is printed first (what
isolation is in force: `active`, `missing`).

A cold sample is what cold.rs in nimbus-bench does: redeploy the function with a new
environment variable (a new revision retires the idle instance at once), wait until the
old instance's process is gone, then time one Invoke on an already-open keep-alive
connection (client-side, ms). The server's invocation record must say `cold: true`; its
`init_ms` (spawn or spare claim → first `/next`) is reported too. After each sample the
script waits 300 ms, so the replacement spare is up before the next one.

Warm: after the cold samples, --rounds × --warm-seconds of sequential Invokes of the
warm instance per configuration and runtime (one client, one keep-alive connection),
interleaved; p50/p99 pooled. Prints markdown tables and the added p50 (auto − off).
"""

import argparse
import http.client
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

PY_NOOP = "def handler(event, context):\n    return None\n"
NODE_NOOP = "exports.handler = async () => null;\n"


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def zip_of(name, text):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo(name)
        info.external_attr = 0o644 << 16
        z.writestr(info, text)
    return buf.getvalue()


class Server:
    def __init__(self, binary, isolation, spares, root, uid_base):
        self.label = f"isolation {isolation}, spares {spares}"
        self.isolation, self.spares = isolation, spares
        self.data = tempfile.mkdtemp(prefix=f"iso-{isolation}-s{spares}-", dir=root)
        env = {**os.environ, "NIMBUS_ISOLATION_UIDS": f"{uid_base}-{uid_base + 9999}"}
        self.log = open(os.path.join(self.data, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "up", "--data-dir", os.path.join(self.data, "d"), "--listen", "127.0.0.1:0",
             "--gateway-listen", "127.0.0.1:0", "--isolation", isolation, "--spares", str(spares)],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, env=env)
        ready = threading.Event()
        self.api = None

        def drain():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                self.log.write(raw)
                m = re.search(r"nimbus ready: api http://(\S+)", line)
                if m and not ready.is_set():
                    self.api = m.group(1)
                    ready.set()
        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60):
            raise SystemExit(f"{self.label}: not ready in 60 s, see {self.data}/server.log")
        host, port = self.api.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def call(self, method, path, body=None, conn=None):
        c = conn or http.client.HTTPConnection(self.host, self.port, timeout=60)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out = r.read()
        if conn is None:
            c.close()
        if r.status >= 300:
            raise RuntimeError(f"{self.label}: {method} {path} -> {r.status} {out[:300]!r}")
        return r, out

    def json(self, method, path, body=None):
        return json.loads(self.call(method, path, body)[1] or b"null")

    def upload(self, zipped):
        return self.json("POST", "/_nimbus/code", zipped)["sha256"]

    def deploy(self, name, runtime, handler, sha, env):
        return self.json("PUT", f"/_nimbus/functions/{name}",
                         {"runtime": runtime, "handler": handler, "code_sha256": sha, "memory_mb": 128,
                          "timeout_s": 30, "environment": env})

    def pids(self, name):
        f = self.json("GET", f"/_nimbus/functions/{name}")
        return [i["pid"] for i in f.get("instances") or [] if i.get("pid")]

    def records(self, name, since):
        return self.json("GET", f"/_nimbus/invocations?function={name}&since={since}&limit=10000000")["invocations"]

    def stop(self, keep):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if not keep:
            shutil.rmtree(self.data, ignore_errors=True)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


INVOKE = "/2015-03-31/functions/{}/invocations"


def cold_sample(srv, fn, i):
    old = srv.pids(fn["name"])
    srv.deploy(fn["name"], fn["runtime"], fn["handler"], fn["sha"][srv.label],
               {"NIMBUS_BENCH_SAMPLE": str(i)})
    deadline = time.monotonic() + 10
    while srv.pids(fn["name"]) or any(alive(p) for p in old):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{srv.label}: instances of {fn['name']} did not stop")
        time.sleep(0.005)
    time.sleep(0.02)  # the old instance's cleanup (cgroup, scratch dir, uid release)
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    conn.connect()
    t0 = time.perf_counter()
    r, body = srv.call("POST", INVOKE.format(fn["name"]), b"{}", conn=conn)
    ms = (time.perf_counter() - t0) * 1000
    conn.close()
    if r.getheader("x-amz-function-error"):
        raise RuntimeError(f"{srv.label}: {fn['name']} failed: {body[:300]!r}")
    time.sleep(0.3)  # the replacement spare (--spares 1) starts after the first request
    return ms, r.getheader("x-amzn-requestid")


def warm_segment(srv, fn, seconds):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    path = INVOKE.format(fn["name"])
    lat, stop = [], time.monotonic() + seconds
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        srv.call("POST", path, b"{}", conn=conn)
        lat.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/nimbus")
    ap.add_argument("--samples", type=int, default=30, help="cold samples per configuration and runtime")
    ap.add_argument("--warm-seconds", type=float, default=3, help="seconds per warm segment")
    ap.add_argument("--rounds", type=int, default=3, help="warm segments per configuration and runtime")
    ap.add_argument("--modes", default="off,auto")
    ap.add_argument("--spares", default="0,1")
    ap.add_argument("--runtimes", default="python3.11,nodejs20.x")
    ap.add_argument("--data-root", default=tempfile.gettempdir())
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--json", help="write every sample here")
    a = ap.parse_args()

    fns = []
    for rt in a.runtimes.split(","):
        if rt.startswith("python"):
            fns.append({"name": "isopy", "runtime": rt, "handler": "handler.handler",
                        "zip": zip_of("handler.py", PY_NOOP)})
        else:
            fns.append({"name": "isonode", "runtime": rt, "handler": "index.handler",
                        "zip": zip_of("index.js", NODE_NOOP)})
    servers = []
    try:
        uid = 1_800_000_000
        for sp in a.spares.split(","):
            for mode in a.modes.split(","):
                servers.append(Server(a.bin, mode, int(sp), a.data_root, uid))
                uid += 10_000
        for s in servers:
            iso = s.json("GET", "/_nimbus/health").get("isolation")
            print(f"<!-- {s.label}: health.isolation = {json.dumps(iso)} -->", flush=True)
        for fn in fns:
            fn["sha"] = {}
            for s in servers:
                fn["sha"][s.label] = s.upload(fn["zip"])
                s.deploy(fn["name"], fn["runtime"], fn["handler"], fn["sha"][s.label], {})
                s.call("POST", INVOKE.format(fn["name"]), b"{}")  # unpack, probe, warm page cache
        since = int(time.time() * 1000)
        cold = {(s.label, f["name"]): [] for s in servers for f in fns}
        ids = {k: [] for k in cold}
        pairs = [(s, f) for f in fns for s in servers]
        for i in range(a.samples):
            k = i % len(pairs)
            for s, f in pairs[k:] + pairs[:k]:
                ms, rid = cold_sample(s, f, i)
                cold[(s.label, f["name"])].append(ms)
                ids[(s.label, f["name"])].append(rid)
            print(f"\r<!-- cold samples {i + 1}/{a.samples} -->", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        init, not_cold = {}, {}
        for s in servers:
            for f in fns:
                recs = {r["request_id"]: r for r in s.records(f["name"], since)}
                got = [recs.get(x) for x in ids[(s.label, f["name"])]]
                not_cold[(s.label, f["name"])] = sum(1 for r in got if not r or r.get("cold") is not True)
                init[(s.label, f["name"])] = [r["init_ms"] for r in got if r and r.get("init_ms") is not None]
        warm = {k: [] for k in cold}
        for r in range(a.rounds):
            k = r % len(pairs)
            for s, f in pairs[k:] + pairs[:k]:
                warm[(s.label, f["name"])] += warm_segment(s, f, a.warm_seconds)
    finally:
        for s in servers:
            s.stop(a.keep_data)

    rts = {f["name"]: f["runtime"] for f in fns}
    print()
    print("| runtime | server | cold samples | not cold | client p50 ms | p90 ms | p99 ms | init_ms p50 | init_ms p99 "
          "| warm invokes | warm p50 ms | warm p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in fns:
        for s in servers:
            k = (s.label, f["name"])
            c, i, w = cold[k], init[k], warm[k]
            print(f"| {rts[f['name']]} | {s.label} | {len(c)} | {not_cold[k]} | {pct(c, .5):.2f} | {pct(c, .9):.2f} "
                  f"| {pct(c, .99):.2f} | {pct(i, .5):.2f} | {pct(i, .99):.2f} | {len(w)} | {pct(w, .5):.3f} "
                  f"| {pct(w, .99):.3f} |", flush=True)
    modes = a.modes.split(",")
    if "off" in modes and len(modes) > 1:
        print()
        print("| runtime | spares | isolation | cold client p50 added ms | cold init_ms p50 added ms "
              "| cold p99 added ms | warm p50 added ms | paired cold Δ median ms |")
        print("|---|---|---|---|---|---|---|---|")
        for f in fns:
            for sp in a.spares.split(","):
                base = (f"isolation off, spares {sp}", f["name"])
                for m in modes:
                    if m == "off":
                        continue
                    k = (f"isolation {m}, spares {sp}", f["name"])
                    # Paired: sample i of both configurations ran in the same round.
                    paired = statistics.median(x - y for x, y in zip(cold[k], cold[base]))
                    print(f"| {rts[f['name']]} | {sp} | {m} | {pct(cold[k], .5) - pct(cold[base], .5):+.2f} "
                          f"| {pct(init[k], .5) - pct(init[base], .5):+.2f} "
                          f"| {pct(cold[k], .99) - pct(cold[base], .99):+.2f} "
                          f"| {pct(warm[k], .5) - pct(warm[base], .5):+.3f} | {paired:+.2f} |", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"cold": {f"{k[0]} / {k[1]}": v for k, v in cold.items()},
                       "init": {f"{k[0]} / {k[1]}": v for k, v in init.items()},
                       "warm_p50": {f"{k[0]} / {k[1]}": pct(v, .5) for k, v in warm.items()}}, fh, indent=1)


if __name__ == "__main__":
    main()
