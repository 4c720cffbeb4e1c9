#!/usr/bin/env python3
"""SQS throughput and latency: one send + receive + delete round per operation at
1/16/64 clients, against Nimbus and, side by side, any SQS-compatible peer
(moto_server, fakecloud, …) given by --peer NAME=URL.

Unmeasured so far: numbers belong in docs/BENCHMARKS.md once taken on a quiet host
(issue 13's targets: >= 10x moto, >= fakecloud while durable).

    .venv/bin/python bench/sqs.py --nimbus http://127.0.0.1:4566 \\
        --peer moto=http://127.0.0.1:5000 --duration 5

Each endpoint gets its own queue; every client has its own boto3 client. Prints
rounds/s and p50/p99 of one round in milliseconds. boto3 is the load generator the
issue names ("boto3-level requests"); at 64 clients on a small host the Python
clients may be the bottleneck — compare peers in the same run only.
"""

import argparse
import statistics
import threading
import time
import uuid

import boto3
from botocore.config import Config


def client(url):
    return boto3.client("sqs", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="k", aws_secret_access_key="s",
                        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=128))


def run(url, clients, duration):
    q = client(url).create_queue(QueueName="bench" + uuid.uuid4().hex[:8])["QueueUrl"]
    lat, stop = [], time.monotonic() + duration
    lock = threading.Lock()

    def worker():
        c = client(url)
        mine = []
        while time.monotonic() < stop:
            t = time.perf_counter()
            c.send_message(QueueUrl=q, MessageBody="x" * 256)
            got = c.receive_message(QueueUrl=q, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
            for m in got:
                c.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    p = lambda f: lat[min(len(lat) - 1, int(len(lat) * f))] if lat else float("nan")  # noqa: E731
    return len(lat) / duration, statistics.median(lat) if lat else float("nan"), p(0.99)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", required=True)
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--clients", default="1,16,64")
    a = ap.parse_args()
    targets = [("nimbus", a.nimbus)] + [tuple(p.split("=", 1)) for p in a.peer]
    print(f"{'server':<12} {'clients':>7} {'rounds/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for n in map(int, a.clients.split(",")):
        for name, url in targets:
            rate, p50, p99 = run(url, n, a.duration)
            print(f"{name:<12} {n:>7} {rate:>10.0f} {p50:>8.2f} {p99:>8.2f}")


if __name__ == "__main__":
    main()
