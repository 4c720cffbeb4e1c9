"""Lambda async destinations and dead-letter queues into SQS on the real binary
with boto3: OnSuccess/OnFailure records with Lambda's shape, DeadLetterConfig with
the original payload and Lambda's message attributes, and targets that do not
exist refused."""

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import wait_for

ACCOUNT = "123456789012"

CODE = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event}
"""


def clients(server):
    kw = dict(
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="AKIDDESTTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    return boto3.client("lambda", **kw), boto3.client("sqs", **kw)


@pytest.fixture(scope="module")
def env(server):
    lam, sqs = clients(server)
    server.deploy("dest", "python3.12", "app.handler", {"app.py": CODE})
    return server, lam, sqs


def queue(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


def receive_one(sqs, url):
    got = []

    def poll():
        got.extend(
            sqs.receive_message(
                QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"]
            ).get("Messages", [])
        )
        return got

    wait_for(poll, timeout=30, what=f"a message in {url}")
    return got[0]


def test_on_success_and_on_failure_records_land_in_queues(env):
    _, lam, sqs = env
    ok_url, ok_arn = queue(sqs, "dest-success")
    bad_url, bad_arn = queue(sqs, "dest-failure")
    cfg = lam.put_function_event_invoke_config(
        FunctionName="dest",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": ok_arn}, "OnFailure": {"Destination": bad_arn}},
    )
    assert cfg["DestinationConfig"]["OnSuccess"]["Destination"] == ok_arn

    r = lam.invoke(FunctionName="dest", InvocationType="Event", Payload=json.dumps({"n": 1}))
    assert r["StatusCode"] == 202
    rid = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    rec = json.loads(receive_one(sqs, ok_url)["Body"])
    assert rec["version"] == "1.0"
    assert rec["requestContext"] == {
        "requestId": rid,
        "functionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:dest:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert rec["requestPayload"] == {"n": 1}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert rec["responsePayload"] == {"echo": {"n": 1}}
    assert rec["timestamp"].endswith("Z")

    r = lam.invoke(FunctionName="dest", InvocationType="Event", Payload=json.dumps({"fail": True}))
    rec = json.loads(receive_one(sqs, bad_url)["Body"])
    assert rec["requestContext"]["condition"] == "RetriesExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 1
    assert rec["requestPayload"] == {"fail": True}
    assert rec["responseContext"]["functionError"] == "Unhandled"
    assert rec["responsePayload"]["errorMessage"] == "asked to fail"
    assert rec["responsePayload"]["errorType"] == "ValueError"
    lam.delete_function_event_invoke_config(FunctionName="dest")


def test_destinations_that_do_not_exist_are_refused(env):
    _, lam, _ = env
    for arn in (
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:no-such-queue",
        f"arn:aws:sns:us-east-1:{ACCOUNT}:no-such-topic",
        f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/no-such-bus",
    ):
        with pytest.raises(ClientError) as e:
            lam.put_function_event_invoke_config(
                FunctionName="dest", DestinationConfig={"OnFailure": {"Destination": arn}}
            )
        assert e.value.response["Error"]["Code"] == "InvalidParameterValueException", arn
        assert arn in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        lam.put_function_event_invoke_config(
            FunctionName="dest",
            DestinationConfig={"OnFailure": {"Destination": f"arn:aws:s3:::bucket"}},
        )
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_dead_letter_queue_gets_the_payload_and_lambdas_attributes(env):
    server, lam, sqs = env
    url, arn = queue(sqs, "dest-dlq")
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(
            FunctionName="dest",
            DeadLetterConfig={"TargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:no-such-dlq"},
        )
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    c = lam.update_function_configuration(FunctionName="dest", DeadLetterConfig={"TargetArn": arn})
    assert c["DeadLetterConfig"] == {"TargetArn": arn}
    lam.put_function_event_invoke_config(FunctionName="dest", MaximumRetryAttempts=0)
    r = lam.invoke(FunctionName="dest", InvocationType="Event", Payload=json.dumps({"fail": True, "k": "v"}))
    rid = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    msg = receive_one(sqs, url)
    assert json.loads(msg["Body"]) == {"fail": True, "k": "v"}
    attrs = msg["MessageAttributes"]
    assert attrs["RequestID"] == {"StringValue": rid, "DataType": "String"}
    assert attrs["ErrorCode"] == {"StringValue": "200", "DataType": "Number"}
    assert attrs["ErrorMessage"] == {"StringValue": "asked to fail", "DataType": "String"}
    lam.delete_function_event_invoke_config(FunctionName="dest")


def test_on_success_to_a_topic_and_on_failure_to_a_bus(env):
    """Issue 14: SNS and EventBridge as destinations — the topic's queue subscriber
    gets the record as the SNS message, the bus's rule hands Lambda's event
    (`source: lambda`, the record as `detail`) to its queue."""
    server, lam, sqs = env
    kw = dict(endpoint_url=server.api, region_name="us-east-1",
              aws_access_key_id="AKIDDESTTEST", aws_secret_access_key="secret")
    sns, events = boto3.client("sns", **kw), boto3.client("events", **kw)
    topic = sns.create_topic(Name="dest-topic")["TopicArn"]
    t_url, t_arn = queue(sqs, "dest-topic-sub")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=t_arn)
    bus = events.create_event_bus(Name="dest-bus")["EventBusArn"]
    b_url, b_arn = queue(sqs, "dest-bus-target")
    events.put_rule(Name="dest-failures", EventBusName="dest-bus",
                    EventPattern=json.dumps({"source": ["lambda"],
                                             "detail-type": ["Lambda Function Invocation Result - Failure"]}))
    events.put_targets(Rule="dest-failures", EventBusName="dest-bus", Targets=[{"Id": "q", "Arn": b_arn}])
    lam.put_function_event_invoke_config(
        FunctionName="dest",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": topic}, "OnFailure": {"Destination": bus}},
    )
    try:
        lam.invoke(FunctionName="dest", InvocationType="Event", Payload=json.dumps({"n": 2}))
        envelope = json.loads(receive_one(sqs, t_url)["Body"])
        assert envelope["Type"] == "Notification" and envelope["TopicArn"] == topic
        rec = json.loads(envelope["Message"])
        assert rec["requestContext"]["condition"] == "Success"
        assert rec["requestPayload"] == {"n": 2} and rec["responsePayload"] == {"echo": {"n": 2}}

        lam.invoke(FunctionName="dest", InvocationType="Event", Payload=json.dumps({"fail": True, "n": 3}))
        ev = json.loads(receive_one(sqs, b_url)["Body"])
        assert ev["source"] == "lambda"
        assert ev["detail-type"] == "Lambda Function Invocation Result - Failure"
        assert ev["resources"] == [bus, f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:dest:$LATEST"], ev
        assert ev["detail"]["requestContext"]["condition"] == "RetriesExhausted"
        assert ev["detail"]["requestPayload"] == {"fail": True, "n": 3}
        assert ev["detail"]["responsePayload"]["errorType"] == "ValueError"
    finally:
        lam.delete_function_event_invoke_config(FunctionName="dest")


def gauge(server, name, function):
    """One sample of a gauge from /metrics (None when absent)."""
    text = server.session.get(server.api + "/metrics", timeout=10).text
    prefix = f'{name}{{function="{function}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


def test_a_record_owed_when_the_server_dies_is_delivered_after_restart(server_factory):
    """The destination's service is not running (so every delivery is transient)
    when the invocation finishes; the server is then killed -9. The record was
    written to the durable outbox with the end of the event, so the next server,
    which runs SQS again, delivers it."""
    first = server_factory()
    first.deploy("durable", "python3.12", "app.handler", {"app.py": CODE})
    lam, sqs = clients(first)
    url, arn = queue(sqs, "dest-durable")
    lam.put_function_event_invoke_config(
        FunctionName="durable", DestinationConfig={"OnSuccess": {"Destination": arn}}
    )
    first.stop()

    # No SQS: the record cannot be delivered, only kept.
    second = server_factory("--disable-services", "sqs")
    lam, _ = clients(second)
    r = lam.invoke(FunctionName="durable", InvocationType="Event", Payload=json.dumps({"n": 7}))
    rid = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    wait_for(
        lambda: gauge(second, "nimbus_async_queue_depth", "durable") == 0,
        timeout=60,
        what="the async event to finish",
    )
    assert gauge(second, "nimbus_async_outbox_pending", "durable") == 1
    second.kill()

    third = server_factory()
    _, sqs = clients(third)
    url = sqs.get_queue_url(QueueName="dest-durable")["QueueUrl"]
    rec = json.loads(receive_one(sqs, url)["Body"])
    assert rec["requestContext"]["requestId"] == rid
    assert rec["requestContext"]["condition"] == "Success"
    assert rec["requestPayload"] == {"n": 7}
    assert rec["responsePayload"] == {"echo": {"n": 7}}
    wait_for(
        lambda: gauge(third, "nimbus_async_outbox_pending", "durable") in (None, 0),
        timeout=30,
        what="the outbox to be empty",
    )
    # Delivered once: nothing else arrives.
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
