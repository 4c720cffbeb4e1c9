"""SNS publish -> 10 SQS subscribers, end to end (issue 14's benchmark); unmeasured
so far (numbers taken on the shared build box would mean nothing).

    python bench/sns_fanout.py --endpoint http://127.0.0.1:PORT [--messages 500] [--subscribers 10]

Against any SNS+SQS endpoint (Nimbus, moto_server, another emulator): creates a
topic and N raw-delivery queue subscriptions, then (1) publishes one message at a
time and waits until every queue has it (publish -> all delivered latency, p50/p99)
and (2) publishes --messages as fast as one client can (publishes/s) and waits for
the fan-out to drain (deliveries/s). Prints one JSON object.
"""

import argparse
import json
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--subscribers", type=int, default=10)
    ap.add_argument("--latency-samples", type=int, default=100)
    args = ap.parse_args()
    kw = dict(endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id="bench",
              aws_secret_access_key="bench", config=Config(retries={"total_max_attempts": 1}))
    sns, sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
    run = uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=f"bench-{run}")["TopicArn"]
    urls = []
    for i in range(args.subscribers):
        url = sqs.create_queue(QueueName=f"bench-{run}-{i}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                      Attributes={"RawMessageDelivery": "true"})
        urls.append(url)
    clients = [boto3.client("sqs", **kw) for _ in urls]

    def drain(i, want):
        got = 0
        while got < want:
            r = clients[i].receive_message(QueueUrl=urls[i], MaxNumberOfMessages=10, WaitTimeSeconds=1)
            msgs = r.get("Messages", [])
            got += len(msgs)
            if msgs:
                clients[i].delete_message_batch(QueueUrl=urls[i], Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(msgs)])
        return got

    pool = ThreadPoolExecutor(len(urls))
    latencies = []
    for _ in range(args.latency_samples):
        t0 = time.perf_counter()
        sns.publish(TopicArn=topic, Message="x")
        list(pool.map(lambda i: drain(i, 1), range(len(urls))))
        latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    for _ in range(args.messages):
        sns.publish(TopicArn=topic, Message="y")
    publish_s = time.perf_counter() - t0
    list(pool.map(lambda i: drain(i, args.messages), range(len(urls))))
    total_s = time.perf_counter() - t0
    print(json.dumps({
        "subscribers": len(urls),
        "delivered_to_all_ms": {"p50": pct(latencies, 50), "p99": pct(latencies, 99),
                                "mean": statistics.mean(latencies)},
        "publishes_per_s": args.messages / publish_s,
        "deliveries_per_s": args.messages * len(urls) / total_s,
    }))


if __name__ == "__main__":
    main()
