#!/usr/bin/env python3
"""DynamoDB throughput and latency: PutItem, GetItem, Query (100 items) and a
conditional UpdateItem at 1/16/64 clients, against Nimbus and, side by side, any
DynamoDB-compatible peer (dynalite, moto_server, …) given by --peer NAME=URL.

Unmeasured so far: numbers belong in docs/BENCHMARKS.md once taken on a quiet host.

    .venv/bin/python bench/dynamodb.py --nimbus http://127.0.0.1:4566 \\
        --peer dynalite=http://127.0.0.1:4567 --duration 5

Each endpoint gets its own table; every client has its own boto3 client (they are not
thread-safe to share under load). Prints ops/s and p50/p99 in milliseconds.
"""

import argparse
import statistics
import threading
import time
import uuid

import boto3
from botocore.config import Config


def client(url):
    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="k", aws_secret_access_key="s",
                        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=128))


def setup(url):
    c = client(url)
    name = "bench" + uuid.uuid4().hex[:8]
    c.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                         {"AttributeName": "sk", "AttributeType": "N"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                              {"AttributeName": "sk", "KeyType": "RANGE"}])
    c.get_waiter("table_exists").wait(TableName=name)
    for i in range(100):
        c.put_item(TableName=name, Item={"pk": {"S": "q"}, "sk": {"N": str(i)}, "v": {"S": "x" * 100}})
    c.put_item(TableName=name, Item={"pk": {"S": "ctr"}, "sk": {"N": "0"}, "n": {"N": "0"}})
    return name


def op_fn(kind, c, table, worker):
    n = [0]

    def put():
        n[0] += 1
        c.put_item(TableName=table, Item={"pk": {"S": f"w{worker}"}, "sk": {"N": str(n[0])},
                                          "v": {"S": "x" * 100}})

    def get():
        c.get_item(TableName=table, Key={"pk": {"S": "q"}, "sk": {"N": str(n[0] % 100)}})
        n[0] += 1

    def query():
        c.query(TableName=table, KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "q"}})

    def update():
        c.update_item(TableName=table, Key={"pk": {"S": "ctr"}, "sk": {"N": "0"}},
                      UpdateExpression="SET n = n + :one", ConditionExpression="attribute_exists(pk)",
                      ExpressionAttributeValues={":one": {"N": "1"}})

    return {"PutItem": put, "GetItem": get, "Query": query, "UpdateItem": update}[kind]


def run(url, table, kind, clients, duration):
    lat = [[] for _ in range(clients)]
    stop = time.monotonic() + duration

    def worker(i):
        c = client(url)
        f = op_fn(kind, c, table, i)
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            f()
            lat[i].append(time.perf_counter() - t0)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    all_ = sorted(x for l in lat for x in l)
    if not all_:
        return 0.0, 0.0, 0.0
    p = lambda q: all_[min(len(all_) - 1, int(q * len(all_)))] * 1000
    return len(all_) / duration, statistics.median(all_) * 1000, p(0.99)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", default="http://127.0.0.1:4566")
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--clients", default="1,16,64")
    args = ap.parse_args()
    targets = [("nimbus", args.nimbus)] + [tuple(p.split("=", 1)) for p in args.peer]
    tables = {name: setup(url) for name, url in targets}
    print("| operation | clients | target | ops/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for kind in ("PutItem", "GetItem", "Query", "UpdateItem"):
        for n in map(int, args.clients.split(",")):
            for name, url in targets:
                ops, p50, p99 = run(url, tables[name], kind, n, args.duration)
                print(f"| {kind} | {n} | {name} | {ops:.0f} | {p50:.2f} | {p99:.2f} |", flush=True)


if __name__ == "__main__":
    main()
