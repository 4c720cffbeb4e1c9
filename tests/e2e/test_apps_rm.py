"""`nimbus rm FUNCTION` with the real CLI and binary (issue 18): a function that
an SNS subscription, an EventBridge rule target, an S3 bucket notification or a
gateway Lambda authorizer still invokes is not deleted — the CLI lists them — and
`--cascade` removes exactly those through the services' own APIs, leaving the
other subscriptions, targets and notification configurations alone."""

import json

import boto3
from botocore.config import Config

HANDLER = """
def handler(event, context):
    return {"statusCode": 200, "body": "ok"}
"""

ARN = "arn:aws:lambda:us-east-1:000000000000:function:{}"


def clients(server):
    kw = dict(
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="AKIDRM",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    return (boto3.client("sns", **kw), boto3.client("events", **kw),
            boto3.client("s3", **kw), boto3.client("sqs", **kw))


def test_rm_refuses_then_cascades_subscriptions_targets_notifications_authorizers(server):
    sns, events, s3, sqs = clients(server)
    server.deploy("rm-target", "python3.12", "handler.handler", {"handler.py": HANDLER})
    server.deploy("rm-keep", "python3.12", "handler.handler", {"handler.py": HANDLER})
    target, keep = ARN.format("rm-target"), ARN.format("rm-keep")

    topic = sns.create_topic(Name="rm-topic")["TopicArn"]
    gone_sub = sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=target)["SubscriptionArn"]
    kept_sub = sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=keep)["SubscriptionArn"]

    q = sqs.create_queue(QueueName="rm-q")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="rm-rule", EventPattern=json.dumps({"source": ["rm.test"]}))
    events.put_targets(Rule="rm-rule", Targets=[
        {"Id": "fn", "Arn": target}, {"Id": "fn-alias", "Arn": target + ":live"},
        {"Id": "queue", "Arn": q_arn}])

    s3.create_bucket(Bucket="rm-bucket")
    s3.put_bucket_notification_configuration(Bucket="rm-bucket", NotificationConfiguration={
        "LambdaFunctionConfigurations": [
            {"Id": "thumb", "LambdaFunctionArn": target, "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "img/"}]}}},
            {"Id": "other", "LambdaFunctionArn": keep, "Events": ["s3:ObjectRemoved:*"]}],
        "QueueConfigurations": [{"Id": "q", "QueueArn": q_arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "q/"}]}}}],
    })
    lam = boto3.client("lambda", endpoint_url=server.api, region_name="us-east-1",
                       aws_access_key_id="AKIDRM", aws_secret_access_key="secret")
    lam.put_function_event_invoke_config(FunctionName="rm-keep", MaximumRetryAttempts=1, DestinationConfig={
        "OnSuccess": {"Destination": target}, "OnFailure": {"Destination": q_arn}})
    r = server.session.put(f"{server.api}/_nimbus/authorizers/rm-gate",
                           json={"type": "lambda", "lambda": {"function": "rm-target"}}, timeout=10)
    assert r.status_code in (200, 201), r.text

    p = server.cli("rm", "rm-target")
    assert p.returncode == 1, p.stdout + p.stderr
    for what in (f"SNS subscription {gone_sub}", "EventBridge rule rm-rule (bus default) targets fn, fn-alias",
                 "S3 bucket rm-bucket: 1 notification configuration", "gateway authorizer rm-gate",
                 "the OnSuccess destination of rm-keep ($LATEST)"):
        assert what in p.stderr, p.stderr
    assert "nothing was deleted" in p.stderr
    assert server.session.get(f"{server.api}/_nimbus/functions/rm-target", timeout=10).status_code == 200
    assert len(sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]) == 2

    p = server.cli("rm", "rm-target", "--cascade")
    assert p.returncode == 0, p.stdout + p.stderr
    assert server.session.get(f"{server.api}/_nimbus/functions/rm-target", timeout=10).status_code == 404
    subs = [s["SubscriptionArn"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]]
    assert subs == [kept_sub]
    ids = sorted(t["Id"] for t in events.list_targets_by_rule(Rule="rm-rule")["Targets"])
    assert ids == ["queue"]
    n = s3.get_bucket_notification_configuration(Bucket="rm-bucket")
    assert [c["Id"] for c in n.get("LambdaFunctionConfigurations", [])] == ["other"]
    assert [c["Id"] for c in n.get("QueueConfigurations", [])] == ["q"]
    rules = n["QueueConfigurations"][0]["Filter"]["Key"]["FilterRules"]
    assert [(r["Name"], r["Value"]) for r in rules] == [("Prefix", "q/")]
    names = [a["name"] for a in server.session.get(f"{server.api}/_nimbus/authorizers", timeout=10)
             .json()["authorizers"]]
    assert "rm-gate" not in names
    cfg = lam.get_function_event_invoke_config(FunctionName="rm-keep")
    assert cfg["MaximumRetryAttempts"] == 1
    assert cfg["DestinationConfig"]["OnFailure"]["Destination"] == q_arn
    assert not cfg["DestinationConfig"].get("OnSuccess", {}).get("Destination")

    # The bucket still notifies its queue: the configuration written back works.
    s3.put_object(Bucket="rm-bucket", Key="q/a.txt", Body=b"x")
    # (S3 sends an `s3:TestEvent` when a configuration is written: skip those.)
    keys = []
    for _ in range(5):
        for m in sqs.receive_message(QueueUrl=q, WaitTimeSeconds=5, MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(m["Body"])
            keys += [r["s3"]["object"]["key"] for r in body.get("Records", [])]
            sqs.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
        if keys:
            break
    assert keys == ["q/a.txt"]


def test_rm_refuses_an_authorizer_function_other_routes_use(server):
    server.deploy("rm-auth", "python3.12", "handler.handler", {"handler.py": HANDLER})
    server.deploy("rm-api", "python3.12", "handler.handler", {"handler.py": HANDLER})
    r = server.session.put(f"{server.api}/_nimbus/authorizers/rm-guard",
                           json={"type": "lambda", "lambda": {"function": "rm-auth"}}, timeout=10)
    assert r.status_code in (200, 201), r.text
    r = server.session.put(f"{server.api}/_nimbus/routes", json={
        "route_key": "GET /rm-guarded", "function": "rm-api", "authorizer": "rm-guard"}, timeout=10)
    assert r.status_code in (200, 201), r.text
    p = server.cli("rm", "rm-auth", "--cascade")
    assert p.returncode == 1
    assert "route GET /rm-guarded (runs rm-api) uses authorizer rm-guard" in p.stderr, p.stderr
    assert server.session.get(f"{server.api}/_nimbus/functions/rm-auth", timeout=10).status_code == 200
    assert server.session.get(f"{server.api}/_nimbus/authorizers/rm-guard", timeout=10).status_code == 200
