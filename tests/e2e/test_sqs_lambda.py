"""SQS → Lambda on the real binary: boto3's create_event_source_mapping on a queue,
a real Python function as the handler. Lambda's SQS event field by field, partial
batch failure (ReportBatchItemFailures: only the listed messages return), a batch
that keeps failing dead-lettered by the queue's redrive policy, filter criteria
(non-matching messages are deleted, never delivered), and FIFO group order.

Needs the mapping registry (crates/esm, branch wt-esm) merged: the Lambda API's
event-source-mapping operations are its."""

import json

import boto3
import pytest
from botocore.config import Config

from conftest import wait_for

ACCOUNT = "123456789012"

HANDLER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    failures = []
    for r in event["Records"]:
        if r["body"].startswith("fail-all"):
            raise RuntimeError("asked to fail")
        if r["body"].startswith("fail"):
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
"""


@pytest.fixture(scope="module")
def env(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("sqs-lambda") / "events.jsonl"
    server.deploy("sqsfn", "python3.12", "app.handler", {"app.py": HANDLER}, environment={"OUT": str(out)})
    kw = dict(endpoint_url=server.api, region_name="us-east-1", aws_access_key_id="AKIDSQSTEST",
              aws_secret_access_key="secret", config=Config(retries={"total_max_attempts": 1}))
    return server, boto3.client("lambda", **kw), boto3.client("sqs", **kw), out


def records(out):
    try:
        lines = out.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [r for line in lines if line.strip() for r in json.loads(line)["Records"]]


def queue(sqs, name, **attrs):
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


def depth(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def mapping(lam, arn, **kw):
    m = lam.create_event_source_mapping(FunctionName="sqsfn", EventSourceArn=arn, **kw)
    wait_for(lambda: lam.get_event_source_mapping(UUID=m["UUID"])["State"] == "Enabled",
             timeout=20, what="the mapping enabled")
    return m["UUID"]


def test_the_event_is_lambdas_and_handled_messages_are_deleted(env):
    _, lam, sqs, out = env
    url, arn = queue(sqs, "to-lambda")
    uuid = mapping(lam, arn, BatchSize=10)
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello lambda", MessageAttributes={
        "color": {"DataType": "String", "StringValue": "blue"}})
    wait_for(lambda: any(r["body"] == "hello lambda" for r in records(out)), timeout=30, what="the event")
    r = next(r for r in records(out) if r["body"] == "hello lambda")
    assert r["messageId"] == sent["MessageId"]
    assert r["md5OfBody"] == sent["MD5OfMessageBody"]
    assert r["eventSource"] == "aws:sqs"
    assert r["eventSourceARN"] == arn
    assert r["awsRegion"] == "us-east-1"
    assert r["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(r["attributes"])
    assert r["messageAttributes"]["color"] == {
        "stringValue": "blue", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    assert r["receiptHandle"]
    wait_for(lambda: depth(sqs, url) == 0, timeout=20, what="the delete")
    lam.delete_event_source_mapping(UUID=uuid)


def test_only_reported_failures_return_to_the_queue(env):
    _, lam, sqs, out = env
    url, arn = queue(sqs, "partial", VisibilityTimeout="600")
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "ok-1"}, {"Id": "b", "MessageBody": "fail-1"},
        {"Id": "c", "MessageBody": "ok-2"}])
    uuid = mapping(lam, arn, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    wait_for(lambda: {"ok-1", "fail-1", "ok-2"} <= {r["body"] for r in records(out)}, timeout=30,
             what="the batch")
    wait_for(lambda: depth(sqs, url) == 1, timeout=20, what="the two deletes")
    lam.delete_event_source_mapping(UUID=uuid)
    # The failed one is still in flight, waiting for its visibility timeout.
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_a_failing_message_is_dead_lettered_after_max_receive_count(env):
    _, lam, sqs, out = env
    dlq, dlq_arn = queue(sqs, "handler-dlq")
    url, arn = queue(sqs, "handler-src", VisibilityTimeout="1", RedrivePolicy=json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}))
    uuid = mapping(lam, arn, BatchSize=1)
    sqs.send_message(QueueUrl=url, MessageBody="fail-all please")
    wait_for(lambda: depth(sqs, dlq) == 1, timeout=60, what="the dead letter")
    lam.delete_event_source_mapping(UUID=uuid)
    tries = [r for r in records(out) if r["body"] == "fail-all please"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in tries] == ["1", "2"]
    dead = sqs.receive_message(QueueUrl=dlq)["Messages"][0]
    assert dead["Body"] == "fail-all please"


def test_filter_criteria_drop_what_does_not_match(env):
    _, lam, sqs, out = env
    url, arn = queue(sqs, "filtered")
    uuid = mapping(lam, arn, FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": ["order"]}})}]})
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "noise", "n": 1}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "order", "n": 2}))
    wait_for(lambda: any('"n": 2' in r["body"] for r in records(out)), timeout=30, what="the order")
    wait_for(lambda: depth(sqs, url) == 0, timeout=20, what="both gone")
    assert not any('"noise"' in r["body"] for r in records(out))
    lam.delete_event_source_mapping(UUID=uuid)


def test_fifo_groups_arrive_in_order(env):
    _, lam, sqs, out = env
    url, arn = queue(sqs, "ordered.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for i in range(8):
        sqs.send_message(QueueUrl=url, MessageBody=f"seq-{i}", MessageGroupId="g")
    uuid = mapping(lam, arn, BatchSize=3)
    want = [f"seq-{i}" for i in range(8)]
    wait_for(lambda: [r["body"] for r in records(out) if r["body"].startswith("seq-")] == want,
             timeout=30, what="all eight in order")
    wait_for(lambda: depth(sqs, url) == 0, timeout=20, what="the deletes")
    lam.delete_event_source_mapping(UUID=uuid)
