#!/usr/bin/env python3
"""SQS throughput and latency (issue 13): one round = SendMessage + ReceiveMessage +
DeleteMessage, closed loop at 1/16/64 clients, against Nimbus and, side by side, any
SQS-compatible peer (moto_server, fakecloud, …) given by --peer NAME=URL.

    .venv/bin/python bench/sqs.py --nimbus http://127.0.0.1:4566 \\
        --peer moto=http://127.0.0.1:5000 --duration 3 --rounds 3

Each server gets its own queue; every client thread its own boto3 client. For each
client count the servers run --rounds segments of --duration seconds each, interleaved
(A, B, A, B, order rotating) so load on a shared machine hits both alike. Prints a
markdown table: median rounds/s of the segments, their spread, p50/p99 of one round
pooled over the segments, and Nimbus/peer. boto3 is the load generator the issue names;
on a 2-core host its CPU cost is shared with the servers, so at 16/64 clients the
numbers are a floor for both (compare within the run only).

With --wrk, SendMessage alone from `wrk` (C; bench/sqs_send.lua, unsigned-but-shaped
Authorization header) instead: sends/s, p50 of the segments' p50s, worst p99 — closer
to what the server itself can take. Needs `wrk` (Debian package).

With --gen, the issue's measure (send + receive + delete rounds) from `sqs-round`
(bench/src/bin/sqs-round.rs, Rust, one keep-alive connection per client, awsJson 1.0
requests shaped as boto3 sends them, every received body checked): rounds/s, round
p50/p99, the generator's own CPU share (it must stay well under one core), and a
read-back after every segment (the queue's depth changed by exactly sends − deletes)
and at the end (every queue drained: what is left is received, deleted and counted,
and the queue is then empty). Build it with
`cargo build --release -p nimbus-bench --bin sqs-round`.
"""

import json

import argparse
import os
import statistics
import subprocess
import threading
import time
import uuid

from sidebyside import client, interleaved, summarize, table, targets


def segment(url, queue, clients, duration):
    lat, errors, lock = [], [0], threading.Lock()
    cs = [client("sqs", url) for _ in range(clients)]
    stop = time.monotonic() + duration

    empty = [0]

    def worker(c):
        mine, err, none = [], 0, 0
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                c.send_message(QueueUrl=queue, MessageBody="x" * 256)
                got = c.receive_message(QueueUrl=queue, MaxNumberOfMessages=1,
                                        WaitTimeSeconds=1).get("Messages", [])
                none += not got
                for m in got:
                    c.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            except Exception:  # noqa: BLE001 — counted, shown in the table
                err += 1
                continue
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            lat.extend(mine)
            errors[0] += err
            empty[0] += none

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(c,)) for c in cs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # A round whose receive came back empty (1 s long poll) did not see a message it had
    # just had acknowledged: counted, and the queue must be empty at the end of a segment
    # (every acknowledged message received and deleted exactly once by some round).
    left = depth(url, queue)
    return {"rate": len(lat) / (time.monotonic() - t0), "lat": lat, "errors": errors[0],
            "empty": empty[0], "left": left}


def depth(url, queue):
    a = client("sqs", url).get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in a["Attributes"].values())


def wrk_segment(url, queue, clients, duration):
    """SendMessage alone, from wrk (C, one keep-alive connection per client, 2 threads).
    Afterwards the queue's depth must have grown by the acknowledged sends (wrk counts
    only completed requests, so up to `clients` more may have been accepted)."""
    threads = min(2, clients)
    before = depth(url, queue)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration}s", "-s",
                          os.path.join(os.path.dirname(__file__), "sqs_send.lua"), url],
                         env={**os.environ, "QUEUE_URL": queue}, capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK "))
    req, us, err, p50, p99, _ = line.split()[1:]
    errs = int(err) + out.stderr.count("status ")
    acked = int(req) - errs
    grown = depth(url, queue) - before
    return {"rate": int(req) / (int(us) / 1e6), "p50": float(p50) / 1000, "p99": float(p99) / 1000,
            "errors": errs, "acked": acked, "grown": grown}


GEN = os.path.join(os.path.dirname(__file__), "..", "target", "release", "sqs-round")


def gen_segment(url, queue, clients, duration, max_messages):
    """One sqs-round run; checks the queue's depth moved by exactly sends − deletes
    (every round finishes before the generator exits, so nothing is in flight)."""
    before = depth(url, queue)
    out = subprocess.run([GEN, "--endpoint", url, "--queue-url", queue, "--clients", str(clients),
                          "--duration", str(duration), "--max-messages", str(max_messages)],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    after = depth(url, queue)
    r["readback_off"] = (after - before) - (r["sends"] - r["deleted"])
    return r


def fsync_probe(directory, n=300):
    """fdatasync latency of a 4 KiB overwrite in `directory` (the disk the durable
    servers write to), sequential: the floor of one acknowledged write at 1 client."""
    path = os.path.join(directory, f".fsync-probe-{os.getpid()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, b"\0" * 4096 * 16, 0)
        os.fsync(fd)
        lat = []
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]


def summarize_gen(segs):
    for s in segs:  # no completed round: JSON null latencies
        for k in ("round_p50_ms", "round_p99_ms"):
            s[k] = float("nan") if s[k] is None else s[k]
    rates = [s["rounds_per_s"] for s in segs]
    return {"rate": statistics.median(rates), "lo": min(rates), "hi": max(rates),
            "p50": statistics.median(s["round_p50_ms"] for s in segs),
            "p99": max(s["round_p99_ms"] for s in segs),
            "errors": sum(s["errors"] + s["mismatched_bodies"] + s["duplicate_ids"] for s in segs),
            "rounds": sum(s["rounds"] for s in segs), "sends": sum(s["sends"] for s in segs),
            "deleted": sum(s["deleted"] for s in segs), "empty": sum(s["empty_receives"] for s in segs),
            "readback_off": sum(abs(s["readback_off"]) for s in segs),
            "cpu": max(s["cpu_share"] for s in segs),
            "first_error": next((s["first_error"] for s in segs if s["first_error"]), None)}


def summarize_wrk(segs):
    rates = [s["rate"] for s in segs]
    return {"rate": statistics.median(rates), "lo": min(rates), "hi": max(rates),
            "p50": statistics.median(s["p50"] for s in segs), "p99": max(s["p99"] for s in segs),
            "errors": sum(s["errors"] for s in segs),
            "acked": sum(s["acked"] for s in segs), "grown": sum(s["grown"] for s in segs),
            "short": sum(max(0, s["acked"] - s["grown"]) for s in segs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", required=True)
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL")
    ap.add_argument("--duration", type=float, default=3, help="seconds per segment")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--wrk", action="store_true",
                    help="SendMessage alone from wrk instead of boto3 rounds (server-bound)")
    ap.add_argument("--gen", action="store_true",
                    help="send+receive+delete rounds from sqs-round (Rust) instead of boto3")
    ap.add_argument("--max-messages", type=int, default=1, help="--gen: ReceiveMessage's MaxNumberOfMessages")
    ap.add_argument("--fsync-probe", metavar="DIR",
                    help="also measure fdatasync latency in DIR before each client count (same run)")
    ap.add_argument("--drain", action="store_true",
                    help="--wrk: afterwards receive and delete every message, count them")
    a = ap.parse_args()
    ts = dict(targets(a.nimbus, a.peer))
    queues = {n: client("sqs", u).create_queue(QueueName="bench" + uuid.uuid4().hex[:8])["QueueUrl"]
              for n, u in ts.items()}
    rows, probes = [], []
    for n in map(int, a.clients.split(",")):
        if a.fsync_probe:
            probes.append((n, *fsync_probe(a.fsync_probe)))
        if a.gen:
            res = interleaved(list(ts), a.rounds,
                              lambda name: gen_segment(ts[name], queues[name], n, a.duration, a.max_messages))
            rows.append((f"send+receive+delete (sqs-round, max {a.max_messages})", n,
                         {k: summarize_gen(v) for k, v in res.items()}))
        elif a.wrk:
            res = interleaved(list(ts), a.rounds,
                              lambda name: wrk_segment(ts[name], queues[name], n, int(a.duration)))
            rows.append(("SendMessage (wrk)", n, {k: summarize_wrk(v) for k, v in res.items()}))
        else:
            res = interleaved(list(ts), a.rounds, lambda name: segment(ts[name], queues[name], n, a.duration))
            rows.append(("send+receive+delete", n, {k: {**summarize(v), "empty": sum(x["empty"] for x in v),
                                                         "left": v[-1]["left"]} for k, v in res.items()}))
    table(rows, unit="rounds/s" if not a.wrk else "sends/s")
    print()
    if probes:
        print("| before the segments at | fdatasync p50 ms | p99 ms |")
        print("|---|---|---|")
        for n, p50, p99 in probes:
            print(f"| {n} clients | {p50:.3f} | {p99:.3f} |")
        print()
    if a.gen:
        print("| clients | server | rounds | sends | deleted | empty receives | read-back off by | generator CPU (max) | first error |")
        print("|---|---|---|---|---|---|---|---|---|")
        for _, n, by in rows:
            for name, s in by.items():
                print(f"| {n} | {name} | {s['rounds']} | {s['sends']} | {s['deleted']} | {s['empty']} | "
                      f"{s['readback_off']} | {s['cpu']:.0%} | {s['first_error'] or ''} |")
        print()
        print("| server | left in the queue after the run | drained (received and deleted, distinct) | depth after the drain |")
        print("|---|---|---|---|")
        for name, url in ts.items():
            before = depth(url, queues[name])
            got = drain(url, queues[name])
            print(f"| {name} | {before} | {got} | {depth(url, queues[name])} |", flush=True)
    elif a.wrk:
        # Read-back: what each server acknowledged is in its queue.
        print("| clients | server | sends acknowledged | queue depth grew by | short |")
        print("|---|---|---|---|---|")
        for _, n, by in rows:
            for name, s in by.items():
                print(f"| {n} | {name} | {s['acked']} | {s['grown']} | {s['short']} |")
        if a.drain:
            print()
            print("| server | messages received and deleted after the run (drain) | queue depth before the drain |")
            print("|---|---|---|")
            for name, url in ts.items():
                before = depth(url, queues[name])
                print(f"| {name} | {drain(url, queues[name])} | {before} |", flush=True)
    else:
        print("| clients | server | rounds whose receive came back empty | messages left in the queue after the segments |")
        print("|---|---|---|---|")
        for _, n, by in rows:
            for name, s in by.items():
                print(f"| {n} | {name} | {s['empty']} | {s['left']} |")


def drain(url, queue):
    """Receive and delete everything in the queue (10 per call, 8 threads); returns how many
    distinct messages came out."""
    seen, lock = set(), threading.Lock()

    def worker():
        c = client("sqs", url)
        idle = 0
        while idle < 2:
            msgs = c.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     VisibilityTimeout=600).get("Messages", [])
            if not msgs:
                idle += 1
                continue
            idle = 0
            with lock:
                seen.update(m["MessageId"] for m in msgs)
            c.delete_message_batch(QueueUrl=queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(seen)


if __name__ == "__main__":
    main()
