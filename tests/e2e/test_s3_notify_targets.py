"""S3 notifications to the other services' real targets: an SQS queue (with the
s3:TestEvent first), an SNS topic (through a subscribed queue), and EventBridge's
default bus (through a rule targeting a queue). Needs the SQS, SNS and EventBridge
services (issues 13 and 14) in the binary."""

import json
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError


def client(server, service):
    return boto3.client(service, endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))


def drain(sqs, url, want, timeout=60):
    """Receive until `want` messages arrived (or fail), deleting them."""
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in r.get("Messages", []):
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert len(got) >= want, got
    return got


def queue(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def test_notifications_reach_sqs_sns_and_eventbridge(server):
    s3, sqs, sns, events = (client(server, s) for s in ("s3", "sqs", "sns", "events"))
    for probe in (sqs.list_queues, sns.list_topics, events.list_event_buses):
        try:
            probe()
        except ClientError as e:
            if e.response["Error"]["Code"] == "NotImplemented":
                pytest.skip(f"{probe.__self__.meta.service_model.service_name} is not built into this "
                            "binary yet (it arrives with the SQS, SNS and EventBridge branches)")
            raise
    direct_url, direct_arn = queue(sqs, "s3-direct")
    via_topic_url, via_topic_arn = queue(sqs, "s3-via-topic")
    via_bus_url, via_bus_arn = queue(sqs, "s3-via-bus")
    topic = sns.create_topic(Name="s3-topic")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=via_topic_arn)
    events.put_rule(Name="s3-objects", EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule="s3-objects", Targets=[{"Id": "q", "Arn": via_bus_arn}])

    s3.create_bucket(Bucket="fanout")
    s3.put_bucket_notification_configuration(Bucket="fanout", NotificationConfiguration={
        "QueueConfigurations": [{"Id": "to-queue", "QueueArn": direct_arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "q/"}]}}}],
        "TopicConfigurations": [{"Id": "to-topic", "TopicArn": topic, "Events": ["s3:ObjectCreated:Put"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "t/"}]}}}],
        "EventBridgeConfiguration": {},
    })
    # The test event comes first on the queue and the topic.
    test_event = drain(sqs, direct_url, 1)[0]
    assert test_event["Event"] == "s3:TestEvent" and test_event["Bucket"] == "fanout", test_event
    envelope = drain(sqs, via_topic_url, 1)[0]
    assert json.loads(envelope["Message"])["Event"] == "s3:TestEvent", envelope

    s3.put_object(Bucket="fanout", Key="q/one two.txt", Body=b"12345")
    s3.put_object(Bucket="fanout", Key="t/three.txt", Body=b"xyz")
    rec = drain(sqs, direct_url, 1)[0]["Records"][0]
    assert rec["eventName"] == "ObjectCreated:Put" and rec["s3"]["configurationId"] == "to-queue"
    assert rec["s3"]["object"]["key"] == "q/one+two.txt" and rec["s3"]["object"]["size"] == 5
    envelope = drain(sqs, via_topic_url, 1)[0]
    assert envelope["TopicArn"] == topic
    rec = json.loads(envelope["Message"])["Records"][0]
    assert rec["s3"]["object"]["key"] == "t/three.txt" and rec["s3"]["configurationId"] == "to-topic"
    bus = drain(sqs, via_bus_url, 2)
    by_key = {e["detail"]["object"]["key"]: e for e in bus}
    assert set(by_key) == {"q/one two.txt", "t/three.txt"}, bus
    e = by_key["q/one two.txt"]
    assert e["source"] == "aws.s3" and e["detail-type"] == "Object Created"
    assert e["detail"]["bucket"]["name"] == "fanout" and e["detail"]["object"]["size"] == 5
    assert e["detail"]["reason"] == "PutObject"
    assert e["resources"] == ["arn:aws:s3:::fanout"]
    s3.delete_object(Bucket="fanout", Key="q/one two.txt")
    deleted = drain(sqs, via_bus_url, 1)[0]
    assert deleted["detail-type"] == "Object Deleted"
    assert deleted["detail"]["deletion-type"] == "Permanently Deleted"
