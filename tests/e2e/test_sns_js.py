"""SNS with the AWS SDK for JavaScript v3 and the aws CLI against the real binary."""

import json
import os
import subprocess

import pytest

from conftest import ROOT, wait_for
from test_sns import Receiver, admin

SCRIPT = ROOT / "tests" / "e2e" / "sns_js_sdk.js"


def test_js_sdk_v3(server):
    modules = ROOT / "sdk" / "node_modules"
    assert (modules / "@aws-sdk" / "client-sns").is_dir(), "run scripts/install-sdks"
    rcv = Receiver()
    try:
        env = dict(os.environ, NODE_PATH=str(modules))
        p = subprocess.run(["node", str(SCRIPT), server.api, rcv.url], capture_output=True,
                           text=True, timeout=120, env=env)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout.strip().splitlines()[-1])
        topic = out["topic"]
        assert topic == "arn:aws:sns:us-east-1:123456789012:js-topic"
        assert out["displayName"] == "From JS"
        assert out["tags"] == [{"Key": "sdk", "Value": "js"}]
        assert out["subscription"].startswith(topic + ":")
        assert out["fifoSequence"].isdigit() and len(out["fifoSequence"]) == 20
        assert out["batch"] == ["one", "two"]
        assert topic in out["topics"] and topic + ".fifo" in out["topics"]
        assert out["missing"] == "NotFoundException: Topic does not exist"
        # The HTTP endpoint got its confirmation request.
        conf = json.loads(rcv.next()["body"])
        assert conf["Type"] == "SubscriptionConfirmation"
        [sub] = admin(server, "subscriptions", TopicArn=topic)["Subscriptions"]
        assert sub["PendingConfirmation"] is True and sub["Token"] == conf["Token"]
    finally:
        rcv.close()


def test_aws_cli(server):
    aws = ROOT / ".venv" / "bin" / "aws"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDCLI", AWS_SECRET_ACCESS_KEY="secret",
               AWS_DEFAULT_REGION="us-east-1")

    def cli(*args):
        p = subprocess.run([str(aws), "--endpoint-url", server.api, "--output", "json", "sns", *args],
                           capture_output=True, text=True, timeout=120, env=env)
        return p

    p = cli("create-topic", "--name", "cli-topic")
    assert p.returncode == 0, p.stderr
    topic = json.loads(p.stdout)["TopicArn"]
    p = cli("subscribe", "--topic-arn", topic, "--protocol", "sms", "--notification-endpoint", "+15555550123")
    assert p.returncode == 0, p.stderr
    p = cli("publish", "--topic-arn", topic, "--message", "from the cli",
            "--message-attributes", '{"k": {"DataType": "String", "StringValue": "v"}}')
    assert p.returncode == 0, p.stderr
    mid = json.loads(p.stdout)["MessageId"]
    wait_for(lambda: any(d["MessageId"] == mid for d in admin(server, "deliveries", protocol="sms")["Deliveries"]),
             timeout=30, what="the sms record")
    p = cli("list-subscriptions-by-topic", "--topic-arn", topic)
    assert p.returncode == 0, p.stderr
    [s] = json.loads(p.stdout)["Subscriptions"]
    assert s["Protocol"] == "sms" and s["Endpoint"] == "+15555550123"
    p = cli("get-topic-attributes", "--topic-arn", topic + "-nope")
    assert p.returncode != 0 and "NotFound" in p.stderr and "Topic does not exist" in p.stderr
