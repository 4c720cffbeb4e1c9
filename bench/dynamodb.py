#!/usr/bin/env python3
"""DynamoDB throughput and latency: PutItem, GetItem, Query (100 items) and a
conditional UpdateItem at 1/16/64 clients, against Nimbus and, side by side, any
DynamoDB-compatible peer (dynalite, moto_server, …) given by --peer NAME=URL.

    .venv/bin/python bench/dynamodb.py --nimbus http://127.0.0.1:4566 \\
        --peer dynalite=http://127.0.0.1:4567 --peer moto=http://127.0.0.1:5000 --duration 3 --rounds 3

Segments of --duration seconds run interleaved (A, B, A, B, order rotating), --rounds
per server per operation and client count; the table has the median ops/s of the
segments, their spread, p50/p99 pooled, and Nimbus/peer. Each endpoint gets its own
table; every client has its own boto3 client (they are not thread-safe to share under
load). boto3 on the same 2 cores is the load generator: at 1 client its own cost is a
large part of every millisecond, for both servers alike. With --wrk, the requests (all
four operations) come from `wrk` (C, bench/aws_json.lua) instead: the server's own
capacity; the table has the median of the segments' p50s and their worst p99, and the
PutItem and UpdateItem acknowledgements are read back afterwards.
"""

import argparse
import json
import threading
import time
import uuid

from sidebyside import client as _client, interleaved, run_wrk, summarize, summarize_wrk, table, targets


def client(url):
    return _client("dynamodb", url)


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


def segment(url, table, kind, clients, duration):
    lat = [[] for _ in range(clients)]
    errors = [0] * clients
    cs = [client(url) for _ in range(clients)]
    stop = time.monotonic() + duration

    def worker(i):
        f = op_fn(kind, cs[i], table, i)
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                f()
            except Exception:  # noqa: BLE001 — counted, shown in the table
                errors[i] += 1
                continue
            lat[i].append((time.perf_counter() - t0) * 1000)

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    all_ = [x for l in lat for x in l]
    return {"rate": len(all_) / (time.monotonic() - t0), "lat": all_, "errors": sum(errors)}


def wrk_segment(url, table, kind, clients, duration):
    """One operation from wrk (bench/aws_json.lua): PutItem (a new item each request:
    an identical rewrite is skipped by Nimbus, no fsync), GetItem of one item, Query of
    the 100 items under "q", or UpdateItem `SET n = n + :one` with
    `attribute_exists(pk)` on the one counter item (every request an effective write)."""
    if kind == "PutItem":
        body = {"TableName": table, "Item": {"pk": {"S": "wrk__N__"}, "sk": {"N": "1"}, "v": {"S": "x" * 100}}}
    elif kind == "GetItem":
        body = {"TableName": table, "Key": {"pk": {"S": "q"}, "sk": {"N": "7"}}}
    elif kind == "Query":
        body = {"TableName": table, "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "q"}}}
    elif kind == "UpdateItem":
        body = {"TableName": table, "Key": {"pk": {"S": "ctr"}, "sk": {"N": "0"}},
                "UpdateExpression": "SET n = n + :one", "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":one": {"N": "1"}}}
    else:
        raise SystemExit(f"--wrk does not know {kind}")
    return run_wrk("aws_json.lua", url, clients, duration,
                   {"TARGET": f"DynamoDB_20120810.{kind}", "BODY": json.dumps(body), "SERVICE": "dynamodb",
                    "RUN": uuid.uuid4().hex[:12]})


def count_items(url, table):
    """Items in the table (Scan, Select=COUNT, every page)."""
    c, n, start = client(url), 0, None
    while True:
        kw = {"ExclusiveStartKey": start} if start else {}
        r = c.scan(TableName=table, Select="COUNT", **kw)
        n += r["Count"]
        start = r.get("LastEvaluatedKey")
        if not start:
            return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", default="http://127.0.0.1:4566")
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL")
    ap.add_argument("--duration", type=float, default=3, help="seconds per segment")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--ops", default="PutItem,GetItem,Query,UpdateItem")
    ap.add_argument("--wrk", action="store_true",
                    help="requests from wrk instead of boto3 (server-bound)")
    args = ap.parse_args()
    ts = dict(targets(args.nimbus, args.peer))
    tables = {name: setup(url) for name, url in ts.items()}
    rows = []
    for kind in args.ops.split(","):
        for n in map(int, args.clients.split(",")):
            if args.wrk:
                res = interleaved(list(ts), args.rounds,
                                  lambda name: wrk_segment(ts[name], tables[name], kind, n, args.duration))
                rows.append((f"{kind} (wrk)", n, {k: summarize_wrk(v) for k, v in res.items()}))
                continue
            res = interleaved(list(ts), args.rounds,
                              lambda name: segment(ts[name], tables[name], kind, n, args.duration))
            rows.append((kind, n, {k: summarize(v) for k, v in res.items()}))
    table(rows)
    if args.wrk and "PutItem" in args.ops.split(","):
        # Read-back: every acknowledged PutItem wrote a new item (wrk counts completed
        # requests only, so up to `clients` more may have been written per segment).
        print()
        print("| server | PutItems acknowledged (wrk) | new items in the table (Scan COUNT) | short |")
        print("|---|---|---|---|")
        for name, url in ts.items():
            acked = sum(by[name]["acked"] for label, _, by in rows if label.startswith("PutItem"))
            items = count_items(url, tables[name]) - 101
            print(f"| {name} | {acked} | {items} | {max(0, acked - items)} |", flush=True)
    if args.wrk and "UpdateItem" in args.ops.split(","):
        # Read-back: every acknowledged UpdateItem added one to the counter.
        print()
        print("| server | UpdateItems acknowledged (wrk) | counter value (GetItem) | short |")
        print("|---|---|---|---|")
        for name, url in ts.items():
            acked = sum(by[name]["acked"] for label, _, by in rows if label.startswith("UpdateItem"))
            got = client(url).get_item(TableName=tables[name], Key={"pk": {"S": "ctr"}, "sk": {"N": "0"}},
                                       ConsistentRead=True)
            n = int(got["Item"]["n"]["N"])
            print(f"| {name} | {acked} | {n} | {max(0, acked - n)} |", flush=True)


if __name__ == "__main__":
    main()
