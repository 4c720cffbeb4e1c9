"""examples/sns-fanout-sam (issue 18, seed pattern 3): SNS fan-out from an AWS SAM
template deployed unchanged with the real CLI — a filtered function subscriber and
a raw-delivery queue subscriber — driven with boto3."""

import json
import shutil
import subprocess

import boto3

from conftest import NIMBUS_BIN, ROOT, wait_for

STACK = "sns-fanout-sam"


def deploy(server, app):
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy"], cwd=app,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    return p


def client(server, service):
    return boto3.client(service, endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


def test_sns_fan_out_to_a_filtered_function_and_a_raw_queue(server, tmp_path):
    app = tmp_path / STACK
    shutil.copytree(ROOT / "examples" / STACK, app)
    deploy(server, app)
    drive(server)


def drive(server):
    sns, sqs = client(server, "sns"), client(server, "sqs")
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"]
                 if t["TopicArn"].endswith(f":{STACK}-orders"))
    queue = sqs.get_queue_url(QueueName=f"{STACK}-audit")["QueueUrl"]
    orders = [(1, "big"), (2, "small"), (3, "big"), (4, "medium")]
    for oid, size in orders:
        sns.publish(TopicArn=topic, Message=json.dumps({"id": oid}),
                    MessageAttributes={"size": {"DataType": "String", "StringValue": size}})

    # The queue subscriber gets every order, raw: the body is the message itself.
    bodies = []

    def drained():
        r = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in r.get("Messages", []):
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return len(bodies) >= len(orders)

    wait_for(drained, timeout=60, what="4 raw messages in the audit queue")
    assert sorted(b["id"] for b in bodies) == [1, 2, 3, 4], bodies
    assert all(set(b) == {"id"} for b in bodies), "raw delivery carries no SNS envelope"

    # The filtered function subscriber sees only the big ones.
    fn = f"{STACK}-BigOrdersFunction"

    def big_seen():
        lines = [json.loads(l["line"]) for l in server.logs(fn) if l["line"].startswith("{")]
        return lines if len(lines) >= 2 else None

    lines = wait_for(big_seen, timeout=60, what="the filtered subscriber's two invocations")
    assert sorted(l["big_order"] for l in lines) == [1, 3], lines
    assert {l["size"] for l in lines} == {"big"}
    assert {l["topic"] for l in lines} == {f"{STACK}-orders"}
    # Every order reached the queue, so every delivery to the function had been
    # attempted too: still only the two big ones.
    assert len(server.records(fn)) == 2
