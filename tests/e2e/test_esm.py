"""Event-source mappings on the real binary with boto3: Lambda's
Create/Get/List/Update/DeleteEventSourceMapping (shapes, states, validation
errors, list filters and paging, durability across a kill -9), SQS queues and
Kinesis streams feeding a function through them, and a stream batch that keeps
failing landing in its on-failure SQS queue with AWS's record."""

import base64
import json
import signal

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import wait_for

ACCOUNT = "123456789012"

RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    if os.environ.get("FAIL"):
        raise RuntimeError("asked to fail")
    return {}
"""


def clients(server):
    kw = dict(
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="AKIDESMTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    return boto3.client("lambda", **kw), boto3.client("sqs", **kw), boto3.client("kinesis", **kw)


def events(path):
    try:
        return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def error_of(excinfo):
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def settle(lam, uuid, state):
    wait_for(lambda: lam.get_event_source_mapping(UUID=uuid)["State"] == state, timeout=20, what=state)
    return lam.get_event_source_mapping(UUID=uuid)


@pytest.fixture(scope="module")
def env(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("esm") / "events.jsonl"
    server.deploy("rec", "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(out)})
    lam, sqs, kin = clients(server)
    return server, lam, sqs, kin, out


def queue(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


def test_refusals_use_lambdas_errors(env):
    _, lam, sqs, _, _ = env
    _, arn = queue(sqs, "refusals")
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(FunctionName="rec", EventSourceArn=f"arn:aws:s3:::bucket")
    assert error_of(e) == (
        "InvalidParameterValueException",
        "Unrecognized event source, must be kinesis, dynamodb stream or sqs.",
    )
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(FunctionName="missing", EventSourceArn=arn)
    assert error_of(e)[0] == "ResourceNotFoundException"
    assert "function:missing" in error_of(e)[1]
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(FunctionName="rec", EventSourceArn=arn, BatchSize=20000)
    assert error_of(e) == (
        "InvalidParameterValueException",
        "1 validation error detected: Value '20000' at 'batchSize' failed to satisfy constraint: Member must have value less than or equal to 10000",
    )
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(
            FunctionName="rec",
            EventSourceArn=arn,
            FilterCriteria={"Filters": [{"Pattern": "{not json"}]},
        )
    assert error_of(e)[0] == "InvalidParameterValueException"
    assert error_of(e)[1].startswith("Invalid filter pattern definition")
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(
            FunctionName="rec", EventSourceArn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:no-such-queue"
        )
    assert error_of(e)[0] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        lam.get_event_source_mapping(UUID="2f0e5c83-6c5c-4b6c-9d0b-000000000000")
    assert error_of(e)[0] == "ResourceNotFoundException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as e:
        lam.delete_event_source_mapping(UUID="2f0e5c83-6c5c-4b6c-9d0b-000000000000")
    assert error_of(e)[0] == "ResourceNotFoundException"
    assert lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"] == []


def test_sqs_mapping_lifecycle(env):
    server, lam, sqs, _, out = env
    url, arn = queue(sqs, "lifecycle")
    m = lam.create_event_source_mapping(FunctionName="rec", EventSourceArn=arn, BatchSize=5)
    assert m["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert m["State"] == "Creating"
    assert m["StateTransitionReason"] == "USER_INITIATED"
    assert m["BatchSize"] == 5
    assert m["EventSourceArn"] == arn
    assert m["FunctionArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:rec"
    assert m["EventSourceMappingArn"].endswith(f":event-source-mapping:{m['UUID']}")
    uuid = m["UUID"]
    got = settle(lam, uuid, "Enabled")
    assert got["LastModified"].year >= 2024

    sqs.send_message(QueueUrl=url, MessageBody="hello esm")
    wait_for(
        lambda: any(r["body"] == "hello esm" for ev in events(out) for r in ev.get("Records", [])),
        timeout=30,
        what="the message reaching the function",
    )

    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(FunctionName="rec", EventSourceArn=arn)
    assert error_of(e) == (
        "ResourceConflictException",
        f'The event source arn (" {arn} ") and function (" rec ") provided mapping already exists. '
        f"Please update or delete the existing mapping with UUID {uuid}",
    )

    # List filters and pages.
    _, arn2 = queue(sqs, "lifecycle-2")
    other = lam.create_event_source_mapping(FunctionName="rec", EventSourceArn=arn2, Enabled=False)
    assert lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"][0]["UUID"] == uuid
    mine = lam.list_event_source_mappings(FunctionName="rec")["EventSourceMappings"]
    assert {uuid, other["UUID"]} <= {x["UUID"] for x in mine}
    first = lam.list_event_source_mappings(FunctionName="rec", MaxItems=1)
    assert len(first["EventSourceMappings"]) == 1
    rest = lam.list_event_source_mappings(FunctionName="rec", Marker=first["NextMarker"])
    paged = [x["UUID"] for x in first["EventSourceMappings"] + rest["EventSourceMappings"]]
    assert sorted(paged) == sorted(x["UUID"] for x in mine)
    pages = lam.get_paginator("list_event_source_mappings").paginate(
        FunctionName="rec", PaginationConfig={"PageSize": 1}
    )
    assert sorted(x["UUID"] for p in pages for x in p["EventSourceMappings"]) == sorted(paged)
    assert settle(lam, other["UUID"], "Disabled")["State"] == "Disabled"

    # Disable, update, enable.
    up = lam.update_event_source_mapping(UUID=uuid, Enabled=False, BatchSize=2)
    assert up["State"] == "Disabling" and up["BatchSize"] == 2
    settle(lam, uuid, "Disabled")
    up = lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    assert up["State"] == "Enabling"
    assert settle(lam, uuid, "Enabled")["BatchSize"] == 2

    d = lam.delete_event_source_mapping(UUID=uuid)
    assert d["State"] == "Deleting"
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 202

    def gone():
        try:
            lam.get_event_source_mapping(UUID=uuid)
            return False
        except ClientError as e:
            return e.response["Error"]["Code"] == "ResourceNotFoundException"

    wait_for(gone, timeout=20, what="the mapping to go")
    lam.delete_event_source_mapping(UUID=other["UUID"])


def test_kinesis_stream_mapping_and_on_failure_destination(env, tmp_path):
    server, lam, sqs, kin, out = env
    kin.create_stream(StreamName="esm-s", ShardCount=1)
    stream_arn = kin.describe_stream(StreamName="esm-s")["StreamDescription"]["StreamARN"]
    for i in range(3):
        kin.put_record(StreamName="esm-s", Data=json.dumps({"n": i}).encode(), PartitionKey="k")
    m = lam.create_event_source_mapping(
        FunctionName="rec", EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON", BatchSize=10
    )
    assert m["StartingPosition"] == "TRIM_HORIZON"
    assert m["MaximumRetryAttempts"] == -1
    assert m["LastProcessingResult"] == "No records processed"
    settle(lam, m["UUID"], "Enabled")

    def seen():
        return [
            json.loads(base64.b64decode(r["kinesis"]["data"]))["n"]
            for ev in events(out)
            for r in ev.get("Records", [])
            if r.get("eventSource") == "aws:kinesis"
        ]

    wait_for(lambda: len(seen()) >= 3, timeout=30, what="stream records")
    kin.put_record(StreamName="esm-s", Data=json.dumps({"n": 3}).encode(), PartitionKey="k")
    wait_for(lambda: len(seen()) >= 4, timeout=30, what="a new stream record")
    assert seen() == [0, 1, 2, 3]
    rec = next(r for ev in events(out) for r in ev.get("Records", []) if r.get("eventSource") == "aws:kinesis")
    assert rec["eventSourceARN"] == stream_arn
    assert rec["kinesis"]["partitionKey"] == "k"
    wait_for(lambda: lam.get_event_source_mapping(UUID=m["UUID"])["LastProcessingResult"] == "OK", timeout=20)

    # A function that always fails, no retries, an on-failure queue.
    fail_out = tmp_path / "fail.jsonl"
    server.deploy(
        "failing", "python3.12", "app.handler", {"app.py": RECORDER},
        environment={"OUT": str(fail_out), "FAIL": "1"},
    )
    furl, farn = queue(sqs, "stream-failures")
    kin.create_stream(StreamName="esm-f", ShardCount=1)
    f_arn = kin.describe_stream(StreamName="esm-f")["StreamDescription"]["StreamARN"]
    bad = kin.put_record(StreamName="esm-f", Data=b'{"bad": true}', PartitionKey="p")
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(
            FunctionName="failing", EventSourceArn=f_arn, StartingPosition="TRIM_HORIZON",
            DestinationConfig={"OnFailure": {"Destination": f"arn:aws:sqs:us-east-1:{ACCOUNT}:nope"}},
        )
    assert error_of(e)[0] == "InvalidParameterValueException"
    fm = lam.create_event_source_mapping(
        FunctionName="failing", EventSourceArn=f_arn, StartingPosition="TRIM_HORIZON",
        MaximumRetryAttempts=0, DestinationConfig={"OnFailure": {"Destination": farn}},
    )
    assert fm["DestinationConfig"] == {"OnFailure": {"Destination": farn}}
    msgs = []
    wait_for(
        lambda: msgs.extend(sqs.receive_message(QueueUrl=furl, WaitTimeSeconds=1).get("Messages", [])) or msgs,
        timeout=30, what="the failure record",
    )
    record = json.loads(msgs[0]["Body"])
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["functionArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:failing"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["version"] == "1.0"
    info = record["KinesisBatchInfo"]
    assert info["startSequenceNumber"] == bad["SequenceNumber"] == info["endSequenceNumber"]
    assert info["shardId"] == bad["ShardId"]
    assert info["batchSize"] == 1
    assert info["streamArn"] == f_arn
    assert len(events(fail_out)) == 1


def test_mappings_and_checkpoints_survive_kill_9(server_factory, tmp_path, data_dir):
    out = tmp_path / "events.jsonl"
    s = server_factory()
    s.deploy("rec", "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(out)})
    lam, sqs, kin = clients(s)
    url, qarn = queue(sqs, "durable")
    qm = lam.create_event_source_mapping(FunctionName="rec", EventSourceArn=qarn)
    kin.create_stream(StreamName="durable", ShardCount=1)
    sarn = kin.describe_stream(StreamName="durable")["StreamDescription"]["StreamARN"]
    sm = lam.create_event_source_mapping(
        FunctionName="rec", EventSourceArn=sarn, StartingPosition="LATEST", BatchSize=1
    )
    settle(lam, sm["UUID"], "Enabled")
    off = lam.update_event_source_mapping(UUID=qm["UUID"], Enabled=False)
    settle(lam, off["UUID"], "Disabled")
    for i in range(5):
        kin.put_record(StreamName="durable", Data=str(i).encode(), PartitionKey="k")

    def seen():
        return [
            base64.b64decode(r["kinesis"]["data"]).decode()
            for ev in events(out)
            for r in ev.get("Records", [])
            if r.get("eventSource") == "aws:kinesis"
        ]

    wait_for(lambda: len(seen()) >= 5, timeout=30, what="records before the kill")
    s.stop(sig=signal.SIGKILL)
    s2 = server_factory(data=data_dir)
    lam, sqs, kin = clients(s2)
    got = lam.get_event_source_mapping(UUID=sm["UUID"])
    assert got["State"] == "Enabled"
    assert got["BatchSize"] == 1
    assert lam.get_event_source_mapping(UUID=qm["UUID"])["State"] == "Disabled"
    for i in range(5, 8):
        kin.put_record(StreamName="durable", Data=str(i).encode(), PartitionKey="k")
    wait_for(lambda: "7" in seen(), timeout=30, what="records after the restart")
    got = seen()
    # Nothing skipped, in order; a batch in flight at the kill may come twice.
    assert sorted(set(got), key=int) == [str(i) for i in range(8)]
    dedup = [x for i, x in enumerate(got) if i == 0 or got[i - 1] != x]
    assert [int(x) for x in dedup] == sorted(int(x) for x in dedup)
