"""Service-to-function invokes against the function's policy (issue 19):
under `--iam enforce` an S3 notification, an SNS delivery or an EventBridge rule
target reaches a function
only when its policy (AddPermission) lets that service invoke it for that
source (`aws:SourceArn`, `aws:SourceAccount`); a bucket or topic the
permission does not name is refused (counted in `nimbus_iam_denied_total`) and
never runs the function. Under `--iam audit` the same invocation runs and is
reported."""

import json
import os
import shutil
import tempfile

import pytest

from conftest import make_zip, wait_for
from test_iam_enforce import client, signed_get, start

ACCOUNT = "123456789012"

RECORDER = """
import json, os
def handler(event, context):
    if "Records" in event:
        rec = event["Records"][0]
        src = rec.get("s3", {}).get("bucket", {}).get("name") or rec.get("Sns", {}).get("TopicArn")
    else:
        src = event["detail"]["tag"]
    with open(os.environ["OUT"], "a") as f:
        f.write(src + "\\n")
        f.flush()
        os.fsync(f.fileno())
    return {}
"""


def seen(path):
    try:
        with open(path) as f:
            return [l.strip() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def denied_count(server):
    m = signed_get(server, "/metrics").text
    for line in m.splitlines():
        if line.startswith("nimbus_iam_denied_total "):
            return int(float(line.split()[1]))
    return 0


def setup(server, out):
    lam = client(server, "lambda")
    lam.create_function(
        FunctionName="recv", Runtime="python3.12", Handler="app.handler",
        Role=f"arn:aws:iam::{ACCOUNT}:role/recv-role",
        Code={"ZipFile": make_zip({"app.py": RECORDER})}, Timeout=30,
        Environment={"Variables": {"OUT": out}})
    return lam.get_function_configuration(FunctionName="recv")["FunctionArn"]


@pytest.fixture(scope="module")
def enforced():
    s, d = start("enforce")
    out = os.path.join(tempfile.mkdtemp(prefix="nimbus-src-"), "seen.txt")
    fn = setup(s, out)
    yield s, out, fn
    s.stop()
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)


def notify(s3, bucket, fn):
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": fn, "Events": ["s3:ObjectCreated:*"]}]})


def test_s3_notifications_need_the_functions_permission_for_that_bucket(enforced):
    server, out, fn = enforced
    lam, s3 = client(server, "lambda"), client(server, "s3")
    lam.add_permission(FunctionName="recv", StatementId="s3-allowed", Action="lambda:InvokeFunction",
                       Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::allowed-bkt",
                       SourceAccount=ACCOUNT)
    notify(s3, "allowed-bkt", fn)
    notify(s3, "other-bkt", fn)
    before = denied_count(server)
    s3.put_object(Bucket="other-bkt", Key="x", Body=b"1")
    wait_for(lambda: denied_count(server) == before + 1, what="the refused notification")
    s3.put_object(Bucket="allowed-bkt", Key="y", Body=b"2")
    wait_for(lambda: "allowed-bkt" in seen(out), what="the allowed notification")
    assert "other-bkt" not in seen(out)
    assert denied_count(server) == before + 1


def test_sns_deliveries_need_the_functions_permission_for_that_topic(enforced):
    server, out, fn = enforced
    lam, sns = client(server, "lambda"), client(server, "sns")
    good = sns.create_topic(Name="good-topic")["TopicArn"]
    bad = sns.create_topic(Name="bad-topic")["TopicArn"]
    lam.add_permission(FunctionName="recv", StatementId="sns-good", Action="lambda:InvokeFunction",
                       Principal="sns.amazonaws.com", SourceArn=good)
    for t in (good, bad):
        sns.subscribe(TopicArn=t, Protocol="lambda", Endpoint=fn)
    before = denied_count(server)
    sns.publish(TopicArn=bad, Message="no")
    wait_for(lambda: denied_count(server) == before + 1, what="the refused delivery")
    sns.publish(TopicArn=good, Message="yes")
    wait_for(lambda: good in seen(out), what="the permitted delivery")
    assert bad not in seen(out)


def test_eventbridge_targets_need_the_functions_permission_for_that_rule(enforced):
    server, out, fn = enforced
    lam, ev = client(server, "lambda"), client(server, "events")
    rules = {}
    for name in ("permitted-rule", "other-rule"):
        rules[name] = ev.put_rule(Name=name, EventPattern=json.dumps({"source": ["app.test"]}))["RuleArn"]
        ev.put_targets(Rule=name, Targets=[{"Id": "t", "Arn": fn}])
    lam.add_permission(FunctionName="recv", StatementId="events-permitted", Action="lambda:InvokeFunction",
                       Principal="events.amazonaws.com", SourceArn=rules["permitted-rule"])
    before = denied_count(server)
    ev.put_events(Entries=[{"Source": "app.test", "DetailType": "t", "Detail": json.dumps({"tag": "ev-1"})}])
    # One event, two rules: the permitted rule's target runs, the other is refused.
    wait_for(lambda: denied_count(server) == before + 1, what="the refused rule target")
    wait_for(lambda: "ev-1" in seen(out), what="the permitted rule's invocation")
    assert seen(out).count("ev-1") == 1


def test_audit_mode_runs_and_reports_an_unpermitted_invocation():
    s, d = start("audit")
    out = os.path.join(d, "seen-audit.txt")
    try:
        fn = setup(s, out)
        s3 = client(s, "s3")
        notify(s3, "audited-bkt", fn)
        s3.put_object(Bucket="audited-bkt", Key="z", Body=b"3")
        wait_for(lambda: "audited-bkt" in seen(out), what="the audited notification")
        line = next(l for l in s.log_text().splitlines() if "would refuse this invocation" in l)
        assert "arn:aws:s3:::audited-bkt" in line and "s3.amazonaws.com" in line, line
        assert 'nimbus_iam_audit_would_deny_by_action_total{action="lambda:InvokeFunction"} 1' \
            in signed_get(s, "/metrics").text
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)
