#!/usr/bin/env python3
"""Kinesis PutRecords throughput (issue 16), through boto3, against Nimbus and, side by
side, any Kinesis-compatible peer (kinesalite, kinesis-mock, moto_server …) given by
--peer NAME=URL.

    .venv/bin/python bench/kinesis_put_records.py --nimbus http://127.0.0.1:4566 \\
        --peer kinesalite=http://127.0.0.1:4567 [--clients 1,16] [--batch 500] \\
        [--size 1024] [--duration 3] [--rounds 3]

Each server gets one stream with 4 shards. For each client count, segments of
--duration seconds run interleaved (A, B, A, B, order rotating), --rounds per server:
that many threads, each with its own boto3 client, send `PutRecords` batches of
--batch records of --size bytes (random partition keys). Then one reader drains every
shard with `GetRecords` and checks it read back exactly what was acknowledged. Prints
a markdown table: median records/s acknowledged over the segments, spread, p50/p99
batch latency pooled, Nimbus/peer, and the read-back check with the drain's records/s.
"""

import argparse
import os
import threading
import time
import uuid

from sidebyside import client as _client, interleaved, summarize, table, targets


def client(url):
    return _client("kinesis", url, pool=4)


def segment(url, stream, clients, batch, size, duration):
    payload = os.urandom(size)
    lat, acked, errors, lock = [], [0], [0], threading.Lock()
    cs = [client(url) for _ in range(clients)]
    stop = time.monotonic() + duration

    def worker(c):
        mine, n, err = [], 0, 0
        while time.monotonic() < stop:
            recs = [{"Data": payload, "PartitionKey": uuid.uuid4().hex} for _ in range(batch)]
            t0 = time.perf_counter()
            try:
                r = c.put_records(StreamName=stream, Records=recs)
            except Exception:  # noqa: BLE001 — counted, shown in the table
                err += 1
                continue
            mine.append((time.perf_counter() - t0) * 1000)
            n += batch - r["FailedRecordCount"]
            err += r["FailedRecordCount"]
        with lock:
            lat.extend(mine)
            acked[0] += n
            errors[0] += err

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(c,)) for c in cs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"rate": acked[0] / (time.monotonic() - t0), "lat": lat, "errors": errors[0],
            "acked": acked[0]}


def drain(url, stream):
    k = client(url)
    d0, read = time.monotonic(), 0
    for sh in k.list_shards(StreamName=stream)["Shards"]:
        it = k.get_shard_iterator(StreamName=stream, ShardId=sh["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            read += len(r["Records"])
            if not r["Records"] and not r.get("MillisBehindLatest"):
                break
            it = r.get("NextShardIterator")
    return read, read / (time.monotonic() - d0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", required=True)
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL")
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--duration", type=float, default=3, help="seconds per segment")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    ts = dict(targets(a.nimbus, a.peer))
    streams = {}
    for name, url in ts.items():
        k = client(url)
        streams[name] = f"bench-{uuid.uuid4().hex[:8]}"
        k.create_stream(StreamName=streams[name], ShardCount=4)
        k.get_waiter("stream_exists").wait(StreamName=streams[name], WaiterConfig={"Delay": 1})
    rows, acked = [], {n: 0 for n in ts}
    for n in (int(x) for x in a.clients.split(",")):
        res = interleaved(list(ts), a.rounds,
                          lambda name: segment(ts[name], streams[name], n, a.batch, a.size, a.duration))
        for name, segs in res.items():
            acked[name] += sum(s["acked"] for s in segs)
        rows.append((f"PutRecords ×{a.batch} of {a.size} B", n, {k: summarize(v) for k, v in res.items()}))
    table(rows, unit="records/s")
    print()
    print("| server | records acknowledged | read back (GetRecords, TRIM_HORIZON) | drain records/s |")
    print("|---|---|---|---|")
    bad = []
    for name, url in ts.items():
        read, rate = drain(url, streams[name])
        print(f"| {name} | {acked[name]} | {read} | {rate:.0f} |")
        if read != acked[name]:
            bad.append(name)
        client(url).delete_stream(StreamName=streams[name])
    if bad:
        raise SystemExit(f"read back differs from acknowledged on {bad}")


if __name__ == "__main__":
    main()
