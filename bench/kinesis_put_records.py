"""Kinesis PutRecords throughput and GetRecords drain, through boto3 (UNMEASURED:
written for issue 16's benchmark, not yet run on a quiet machine).

    python bench/kinesis_put_records.py --endpoint http://127.0.0.1:4566 \
        [--clients 1,16] [--batch 500] [--size 1024] [--seconds 5]

For each client count, that many threads each hold one boto3 client and send
`PutRecords` batches of `--batch` records of `--size` bytes (random partition keys)
to a fresh stream with 4 shards for `--seconds`; then one reader drains every shard
with `GetRecords` and checks it read back exactly what was acknowledged. Prints one
JSON object per client count: records/s and MB/s acknowledged, p50/p99 batch latency
in ms, and the drain's records/s. Run the same script against kinesalite
(`--endpoint http://127.0.0.1:4567`) for a side-by-side number.
"""

import argparse
import json
import os
import threading
import time
import uuid

import boto3
from botocore.config import Config


def client(endpoint):
    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench",
                        config=Config(retries={"total_max_attempts": 1},
                                      max_pool_connections=4))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else None


def run(endpoint, clients, batch, size, seconds):
    k = client(endpoint)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    k.create_stream(StreamName=stream, ShardCount=4)
    k.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    payload = os.urandom(size)
    lat, acked, lock = [], [0], threading.Lock()
    stop = time.monotonic() + seconds

    def worker():
        c = client(endpoint)
        mine, n = [], 0
        while time.monotonic() < stop:
            recs = [{"Data": payload, "PartitionKey": uuid.uuid4().hex} for _ in range(batch)]
            t0 = time.perf_counter()
            r = c.put_records(StreamName=stream, Records=recs)
            mine.append((time.perf_counter() - t0) * 1000)
            n += batch - r["FailedRecordCount"]
        with lock:
            lat.extend(mine)
            acked[0] += n

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    # Drain every shard and check the count.
    d0 = time.monotonic()
    read = 0
    for sh in k.list_shards(StreamName=stream)["Shards"]:
        it = k.get_shard_iterator(StreamName=stream, ShardId=sh["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            read += len(r["Records"])
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    drain = time.monotonic() - d0
    k.delete_stream(StreamName=stream)
    return {
        "clients": clients, "batch": batch, "size": size,
        "records_per_s": round(acked[0] / elapsed), "mb_per_s": round(acked[0] * size / elapsed / 1e6, 2),
        "batch_p50_ms": round(pct(lat, 0.5), 2), "batch_p99_ms": round(pct(lat, 0.99), 2),
        "acknowledged": acked[0], "read_back": read, "drain_records_per_s": round(read / drain),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    for n in (int(x) for x in a.clients.split(",")):
        out = run(a.endpoint, n, a.batch, a.size, a.seconds)
        print(json.dumps(out))
        if out["read_back"] != out["acknowledged"]:
            raise SystemExit(f"read back {out['read_back']} of {out['acknowledged']} acknowledged records")


if __name__ == "__main__":
    main()
