"""examples/event-sourcing-python (issue 18, seed pattern 4): table stream with
filter criteria → projector → bus → content rule → notifier that reads a secret
and sends mail, checked in the SES outbox with `nimbus mail ls`. The
serverless.yml deployed unchanged with the real CLI, driven with boto3."""

import json
import shutil
import subprocess

import boto3

from conftest import NIMBUS_BIN, ROOT, wait_for

TABLE = "ledger-dev-payments"


def deploy(server, app):
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy"], cwd=app,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    return p


def client(server, service):
    return boto3.client(service, endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


def test_event_sourcing(server, tmp_path):
    app = tmp_path / "event-sourcing-python"
    shutil.copytree(ROOT / "examples" / "event-sourcing-python", app)
    deploy(server, app)
    drive(server)


def mails(server):
    r = server.session.get(f"{server.api}/_nimbus/services/mail/messages", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["Messages"]


def drive(server):
    ddb = client(server, "dynamodb")

    def pay(pid, amount, email):
        ddb.put_item(TableName=TABLE, Item={"id": {"S": pid}, "amount": {"N": str(amount)},
                                            "email": {"S": email}})

    pay("p1", 150, "ann@example.org")
    pay("p2", 20, "bob@example.org")       # below the rule's threshold: no mail
    ddb.update_item(TableName=TABLE, Key={"id": {"S": "p1"}},  # MODIFY: filtered out of the stream
                    UpdateExpression="SET amount = :a", ExpressionAttributeValues={":a": {"N": "999"}})
    pay("p3", 500, "cy@example.org")

    # The projector saw the three inserts, and only them.
    def projected():
        lines = [json.loads(l["line"]) for l in server.logs("ledger-dev-project") if l["line"].startswith("{")]
        return lines if len(lines) >= 3 else None

    lines = wait_for(projected, timeout=60, what="three projected payments")
    assert sorted(l["projected"] for l in lines) == ["p1", "p2", "p3"]
    assert {l["eventName"] for l in lines} == {"INSERT"}

    # The rule matched the two payments of 100 or more; each got a receipt.
    got = wait_for(lambda: (m := mails(server)) and len(m) >= 2 and m, timeout=60, what="two receipts")
    assert sorted(m["Subject"] for m in got) == ["Payment p1 received", "Payment p3 received"], got
    p3 = next(m for m in got if m["Subject"] == "Payment p3 received")
    full = server.session.get(f"{server.api}/_nimbus/services/mail/messages/{p3['MessageId']}", timeout=10).json()
    assert full["Destinations"] == ["cy@example.org"]
    assert "payment of 500" in full["Text"]
    headers = {h["Name"].lower(): h["Value"] for h in full["Headers"]}
    assert "billing@ledger.test" in headers["from"] and "help@ledger.test" in headers["reply-to"]
    # The CLI reads the same outbox.
    ls = server.cli("mail", "ls")
    assert ls.returncode == 0, ls.stderr
    assert "Payment p1 received" in ls.stdout and "Payment p3 received" in ls.stdout
    assert "Payment p2" not in ls.stdout
