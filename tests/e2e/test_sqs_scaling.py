"""SQS → Lambda pollers scale with the backlog, as Lambda's do: a deep queue gets
more than the initial 5 concurrent batches, and never more than the mapping's
`ScalingConfig.MaximumConcurrency`. Concurrency is measured from the invocation
records (how many overlap), never from timings."""

import boto3
import pytest
from botocore.config import Config

from conftest import Server, wait_for

SLOW = """
import time
def handler(event, context):
    time.sleep(2)
    return None
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Eager: every concurrent batch gets its own instance, as on Lambda.
    s = Server(tmp_path_factory.mktemp("scaling"), ["--scale-up", "eager"]).start()
    yield s
    s.stop()


def clients(server):
    kw = dict(
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="AKIDSCALE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    return boto3.client("lambda", **kw), boto3.client("sqs", **kw)


def max_overlap(records):
    edges = []
    for r in records:
        edges.append((r["start_ms"], 1))
        edges.append((r["start_ms"] + r["duration_ms"], -1))
    now = peak = 0
    for _, d in sorted(edges, key=lambda e: (e[0], e[1])):
        now += d
        peak = max(peak, now)
    return peak


def drain(server, lam, sqs, name, n, **scaling):
    server.deploy(name, "python3.12", "app.handler", {"app.py": SLOW})
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "120"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for chunk in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(chunk, min(n, chunk + 10))],
        )
    lam.create_event_source_mapping(FunctionName=name, EventSourceArn=arn, BatchSize=1, **scaling)
    wait_for(lambda: len(server.records(name, limit=1000)) >= n, timeout=240, interval=0.5,
             what=f"{n} invocations of {name}")
    recs = server.records(name, limit=1000)
    assert len(recs) == n
    return max_overlap(recs)


def test_a_deep_backlog_gets_more_than_five_concurrent_batches(server):
    lam, sqs = clients(server)
    peak = drain(server, lam, sqs, "deep", 40)
    assert peak > 5, peak


def test_maximum_concurrency_caps_the_pollers(server):
    lam, sqs = clients(server)
    peak = drain(server, lam, sqs, "capped", 12, ScalingConfig={"MaximumConcurrency": 3})
    assert 1 <= peak <= 3, peak
