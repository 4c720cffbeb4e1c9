#!/usr/bin/env python3
"""Event source -> handler start latency through Nimbus's event-source mappings (issues
13 and 16): SQS send -> handler, DynamoDB item write -> stream handler, Kinesis
PutRecord -> handler; and the service notifications of issues 14 and 15: EventBridge
PutEvents -> rule -> Lambda target, S3 PutObject -> bucket notification -> handler. Nimbus only: the in-memory peers (moto) run no handlers
without Docker, so there is no side-by-side number here; the issues give absolute
targets (SQS p50 <= 5 ms, DynamoDB stream p50 <= 10 ms).

    .venv/bin/python bench/esm_latency.py --nimbus http://127.0.0.1:4566 \\
        [--sources sqs,dynamodb,kinesis,events,s3] [--samples 50]

Deploys a python3.11 function whose handler, first thing, takes `time.time()` and
POSTs it with the send times carried in its records to a loopback HTTP listener in
this process. Each sample: take `time.time()`, send one message / write one item /
put one record carrying it, wait for the handler's POST; latency = handler start -
send start (same host, same clock), so it includes the client's own send call. One
warm-up sample first (the instance's cold start is not counted). Prints a markdown
table with p50/p90/p99.
"""

import argparse
import io
import json
import queue
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer

from sidebyside import client, pct

HANDLER = r'''
import base64, json, time, urllib.request
def handler(event, context):
    now = time.time()
    sent = []
    if "detail" in event:
        sent.append(float(event["detail"]["t"]))
    for r in event.get("Records", []):
        if "body" in r:
            sent.append(float(r["body"]))
        elif "dynamodb" in r:
            sent.append(float(r["dynamodb"]["NewImage"]["t"]["S"]))
        elif "s3" in r:
            sent.append(float(r["s3"]["object"]["key"]))
        elif "kinesis" in r:
            sent.append(float(base64.b64decode(r["kinesis"]["data"])))
    req = urllib.request.Request(CALLBACK, data=json.dumps({"now": now, "sent": sent}).encode(),
                                 method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    return {}
'''


def serve():
    got = queue.Queue()

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/", got


def function(url, callback):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("h.py", f"CALLBACK = {callback!r}\n" + HANDLER)
    name = "esmbench" + uuid.uuid4().hex[:8]
    lam = client("lambda", url)
    arn = lam.create_function(FunctionName=name, Runtime="python3.11", Handler="h.handler",
                              Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()},
                              Timeout=10)["FunctionArn"]
    return lam, arn


def wait_enabled(lam, uuid_):
    for _ in range(100):
        if lam.get_event_source_mapping(UUID=uuid_)["State"] == "Enabled":
            return
        time.sleep(0.1)


def setup(kind, url, lam, fn):
    if kind == "sqs":
        sqs = client("sqs", url)
        q = sqs.create_queue(QueueName="esmbench" + uuid.uuid4().hex[:8])["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=1)
        wait_enabled(lam, m["UUID"])
        return lambda t: sqs.send_message(QueueUrl=q, MessageBody=repr(t))
    if kind == "dynamodb":
        ddb = client("dynamodb", url)
        name = "esmbench" + uuid.uuid4().hex[:8]
        arn = ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                               KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                               StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
                               )["TableDescription"]["LatestStreamArn"]
        m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=1,
                                            StartingPosition="LATEST")
        wait_enabled(lam, m["UUID"])
        return lambda t: ddb.put_item(TableName=name, Item={"pk": {"S": uuid.uuid4().hex}, "t": {"S": repr(t)}})
    if kind == "events":
        ev = client("events", url)
        rule = "esmbench" + uuid.uuid4().hex[:8]
        ev.put_rule(Name=rule, EventPattern=json.dumps({"source": [rule]}))
        ev.put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": fn}])
        return lambda t: ev.put_events(Entries=[{"Source": rule, "DetailType": "bench",
                                                 "Detail": json.dumps({"t": repr(t)})}])
    if kind == "s3":
        s3 = client("s3", url)
        bucket = "esmbench" + uuid.uuid4().hex[:8]
        s3.create_bucket(Bucket=bucket)
        lam.add_permission(FunctionName=fn, StatementId="s3", Action="lambda:InvokeFunction",
                           Principal="s3.amazonaws.com", SourceArn=f"arn:aws:s3:::{bucket}")
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": fn, "Events": ["s3:ObjectCreated:*"]}]})
        return lambda t: s3.put_object(Bucket=bucket, Key=repr(t), Body=b"x" * 1024)
    k = client("kinesis", url)
    name = "esmbench" + uuid.uuid4().hex[:8]
    k.create_stream(StreamName=name, ShardCount=1)
    k.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    arn = k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=1,
                                        StartingPosition="LATEST")
    wait_enabled(lam, m["UUID"])
    return lambda t: k.put_record(StreamName=name, Data=repr(t).encode(), PartitionKey="p")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nimbus", required=True)
    ap.add_argument("--sources", default="sqs,dynamodb,kinesis,events,s3")
    ap.add_argument("--samples", type=int, default=50)
    a = ap.parse_args()
    callback, got = serve()
    print("| source → handler start | samples | p50 ms | p90 ms | p99 ms | lost |")
    print("|---|---|---|---|---|---|")
    for kind in a.sources.split(","):
        lam, fn = function(a.nimbus, callback)
        send = setup(kind, a.nimbus, lam, fn)
        lat, lost = [], 0
        for i in range(a.samples + 1):
            t0 = time.time()
            send(t0)
            try:
                r = got.get(timeout=30)
            except queue.Empty:
                lost += 1
                continue
            while t0 not in r["sent"]:  # a late duplicate of an earlier sample
                r = got.get(timeout=30)
            if i:  # sample 0 warms the instance up
                lat.append((r["now"] - t0) * 1000)
        label = {"sqs": "SQS SendMessage", "dynamodb": "DynamoDB PutItem → stream",
                 "kinesis": "Kinesis PutRecord", "events": "EventBridge PutEvents → rule → Lambda",
                 "s3": "S3 PutObject (1 KiB) → notification"}[kind]
        print(f"| {label} | {len(lat)} | {pct(lat, 0.5):.2f} | {pct(lat, 0.9):.2f} | {pct(lat, 0.99):.2f} | {lost} |",
              flush=True)


if __name__ == "__main__":
    main()
