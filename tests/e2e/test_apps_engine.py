"""The app engine on the real binary: a Template JSON applied through the control
API (`PUT /_nimbus/apps/NAME`) creates real resources (checked with boto3), a
queue feeds a function through an `AWS::Lambda::EventSourceMapping`, intrinsics
resolve against live state, outputs and exports work across apps, redeploys
diff, data-bearing resources are not replaced silently, a failing step rolls the
whole change back, and a change interrupted by `kill -9` of the server is rolled
back on restart."""

import json
import signal
import threading

import boto3
import pytest
import requests
from botocore.config import Config

from conftest import wait_for

RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {}
"""


def clients(server):
    kw = dict(
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="AKIDAPPS",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    return boto3.client("sqs", **kw), boto3.client("sns", **kw), boto3.client("lambda", **kw)


def put_app(server, name, template, **flags):
    return server.session.put(
        f"{server.api}/_nimbus/apps/{name}", json={"template": template, **flags}, timeout=120
    )


def show(server, name):
    r = server.session.get(f"{server.api}/_nimbus/apps/{name}", timeout=10)
    return r


def queue_names(sqs):
    return sorted(u.rsplit("/", 1)[1] for u in sqs.list_queues().get("QueueUrls", []))


def events(path):
    try:
        return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def worker_template(extra=None):
    t = {
        "Resources": {
            "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 60}},
            "JobsMapping": {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {
                    "EventSourceArn": {"Fn::GetAtt": ["Jobs", "Arn"]},
                    "FunctionName": {"Ref": "WorkerLambdaFunction"},
                    "BatchSize": 5,
                },
            },
        },
        "Outputs": {
            "JobsUrl": {"Value": {"Ref": "Jobs"}},
            "JobsName": {"Value": {"Fn::GetAtt": ["Jobs", "QueueName"]}},
            "Where": {"Value": {"Fn::Sub": "${AWS::StackName}/${AWS::Region}/${Jobs.QueueName}"}},
        },
        "Functions": {"WorkerLambdaFunction": "worker"},
    }
    if extra:
        t["Resources"].update(extra)
    return t


@pytest.fixture(scope="module")
def env(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("apps") / "events.jsonl"
    server.deploy("worker", "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(out)})
    sqs, sns, lam = clients(server)
    return server, sqs, sns, lam, out


def test_queue_and_mapping_feed_the_function(env):
    server, sqs, _, lam, out = env
    r = put_app(server, "shop-dev", worker_template())
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(p["logical_id"], p["action"]) for p in body["plan"]] == [
        ("Jobs", "create"),
        ("JobsMapping", "create"),
    ]
    url = body["outputs"]["JobsUrl"]
    name = body["outputs"]["JobsName"]
    # CloudFormation's physical name: <stack>-<logicalId>-<12 random>.
    assert name.startswith("shop-dev-Jobs-") and len(name) == len("shop-dev-Jobs-") + 12
    assert body["outputs"]["Where"] == f"shop-dev/us-east-1/{name}"
    assert url.endswith("/" + name)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "60"
    maps = lam.list_event_source_mappings(FunctionName="worker")["EventSourceMappings"]
    assert len(maps) == 1 and maps[0]["EventSourceArn"].endswith(":" + name)
    assert maps[0]["BatchSize"] == 5
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    wait_for(lambda: any(
        rec["body"] == "hello" for e in events(out) for rec in e.get("Records", [])
    ), timeout=30, what="the mapped function ran")

    # The app is listed and shown with its physical ids.
    apps = server.session.get(f"{server.api}/_nimbus/apps", timeout=10).json()["Apps"]
    assert [a["Name"] for a in apps if a["Name"] == "shop-dev"] == ["shop-dev"]
    s = show(server, "shop-dev").json()
    phys = {x["LogicalResourceId"]: x["PhysicalResourceId"] for x in s["Resources"]}
    assert phys["Jobs"] == url
    assert phys["JobsMapping"] == maps[0]["UUID"]
    assert s["Status"] == "UPDATE_COMPLETE"

    # A redeploy of the same template changes nothing and keeps the generated name.
    r = put_app(server, "shop-dev", worker_template())
    assert r.status_code == 200, r.text
    assert {p["action"] for p in r.json()["plan"]} == {"keep"}
    assert r.json()["outputs"]["JobsName"] == name

    # An update in place: the queue keeps its URL, the mapping its UUID.
    t = worker_template()
    t["Resources"]["Jobs"]["Properties"]["VisibilityTimeout"] = 90
    t["Resources"]["JobsMapping"]["Properties"]["BatchSize"] = 7
    r = put_app(server, "shop-dev", t, dry_run=True)
    assert r.status_code == 200, r.text
    assert [(p["logical_id"], p["action"]) for p in r.json()["plan"]] == [
        ("Jobs", "update"), ("JobsMapping", "update")]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "60", "a dry run changes nothing"
    r = put_app(server, "shop-dev", t)
    assert r.status_code == 200, r.text
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "90"
    m = lam.get_event_source_mapping(UUID=maps[0]["UUID"])
    assert m["BatchSize"] == 7

    # Removing the app deletes both, mapping first.
    r = server.session.delete(f"{server.api}/_nimbus/apps/shop-dev", timeout=60)
    assert r.status_code == 200, r.text
    assert [p["logical_id"] for p in r.json()["plan"]] == ["JobsMapping", "Jobs"]
    assert name not in queue_names(sqs)
    assert lam.list_event_source_mappings(FunctionName="worker")["EventSourceMappings"] == []
    assert show(server, "shop-dev").status_code == 404


def test_a_queue_with_messages_is_not_replaced_silently(env):
    server, sqs, _, _, _ = env
    t = {"Resources": {"Orders": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "orders-a"}}}}
    assert put_app(server, "keep", t).status_code == 200
    url = sqs.get_queue_url(QueueName="orders-a")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="precious")
    # Renaming replaces the queue: refused while it holds a message.
    t2 = {"Resources": {"Orders": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "orders-b"}}}}
    r = put_app(server, "keep", t2)
    assert r.status_code == 409, r.text
    assert "holds data" in r.json()["message"] and "--allow-replace" in r.json()["message"]
    assert "orders-b" not in queue_names(sqs)
    # Removing it from the template: refused too.
    r = put_app(server, "keep", {"Resources": {}})
    assert r.status_code == 409, r.text
    # Allowed explicitly: replaced, the old queue deleted after the commit.
    r = put_app(server, "keep", t2, allow_replace=True)
    assert r.status_code == 200, r.text
    assert [(p["logical_id"], p["action"]) for p in r.json()["plan"]] == [("Orders", "replace")]
    names = queue_names(sqs)
    assert "orders-b" in names and "orders-a" not in names
    # DeletionPolicy: Retain keeps the queue when the app goes.
    t3 = {"Resources": {"Orders": {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Retain",
                                   "Properties": {"QueueName": "orders-b"}}}}
    assert put_app(server, "keep", t3).status_code == 200
    assert server.session.delete(f"{server.api}/_nimbus/apps/keep", timeout=60).status_code == 200
    assert "orders-b" in queue_names(sqs)


def test_a_failing_step_rolls_the_whole_change_back(env):
    server, sqs, _, lam, _ = env
    before = queue_names(sqs)
    t = worker_template()
    # The mapping names a function that does not exist: its step fails after the
    # queue was created, and the queue is deleted again.
    t["Functions"] = {"WorkerLambdaFunction": "no-such-function"}
    r = put_app(server, "broken", t)
    assert r.status_code == 500, r.text
    assert r.json()["message"].endswith("the change was rolled back"), r.text
    assert "JobsMapping" in r.json()["message"]
    assert queue_names(sqs) == before
    s = show(server, "broken").json()
    assert s["Status"] == "ROLLBACK_COMPLETE"
    assert s["Resources"] == []


def test_template_errors_change_nothing(env):
    server, sqs, _, _, _ = env
    before = queue_names(sqs)
    cases = [
        ({"Resources": {"A": {"Type": "AWS::SQS::Queue", "DependsOn": ["B"]},
                        "B": {"Type": "AWS::SQS::Queue", "Properties": {"DelaySeconds": {"Fn::GetAtt": ["A", "Arn"]}}}}},
         "circular dependency between resources: A -> B -> A"),
        ({"Resources": {"A": {"Type": "AWS::Nope::Thing"}}}, "type AWS::Nope::Thing is not supported"),
        ({"Resources": {"A": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "Missing"}}}}},
         "Ref Missing"),
        ({"Resources": {"A": {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": {"Fn::ImportValue": "nobody-exports-this"}}}}}, "no app exports nobody-exports-this"),
    ]
    for template, message in cases:
        r = put_app(server, "bad", template)
        assert r.status_code == 400, r.text
        assert message in r.json()["message"], r.text
    assert queue_names(sqs) == before


def test_conditions_and_exports_across_apps(env):
    server, sqs, sns, _, _ = env
    producer = {
        "Parameters": {"Stage": "prod"},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
                       "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]}},
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "events-x"}},
            "DevOnly": {"Type": "AWS::SQS::Queue", "Condition": "IsDev"},
        },
        "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}, "Export": {"Name": "shared-topic-arn"}}},
    }
    r = put_app(server, "producer", producer)
    assert r.status_code == 200, r.text
    assert [p["logical_id"] for p in r.json()["plan"]] == ["Topic"]
    topic_arn = r.json()["outputs"]["TopicArn"]
    assert topic_arn.endswith(":events-x")
    consumer = {
        "Resources": {
            "Inbox": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "inbox-x"}},
            "Sub": {"Type": "AWS::SNS::Subscription", "Properties": {
                "TopicArn": {"Fn::ImportValue": "shared-topic-arn"},
                "Protocol": "sqs",
                "Endpoint": {"Fn::GetAtt": ["Inbox", "Arn"]},
                "RawMessageDelivery": True,
                "FilterPolicy": {"kind": ["order"]}}},
        },
    }
    r = put_app(server, "consumer", consumer)
    assert r.status_code == 200, r.text
    subs = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert len(subs) == 1 and subs[0]["Endpoint"].endswith(":inbox-x")
    a = sns.get_subscription_attributes(SubscriptionArn=subs[0]["SubscriptionArn"])["Attributes"]
    assert a["RawMessageDelivery"] == "true"
    assert json.loads(a["FilterPolicy"]) == {"kind": ["order"]}
    # The export is in use: the producer can neither drop it nor go away.
    no_export = dict(producer, Outputs={})
    r = put_app(server, "producer", no_export)
    assert r.status_code == 409 and "imported by app(s) consumer" in r.json()["message"], r.text
    r = server.session.delete(f"{server.api}/_nimbus/apps/producer", timeout=60)
    assert r.status_code == 409, r.text
    assert server.session.delete(f"{server.api}/_nimbus/apps/consumer", timeout=60).status_code == 200
    assert sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"] == []
    assert server.session.delete(f"{server.api}/_nimbus/apps/producer", timeout=60).status_code == 200
    assert not any(t["TopicArn"] == topic_arn for t in sns.list_topics()["Topics"])


def test_kill_9_mid_change_is_rolled_back_on_restart(server_factory, tmp_path):
    # The engine stops forever after 2 applied steps; the server is then killed.
    server = server_factory(env={"NIMBUS_APPS_PAUSE_AFTER_STEP": "2"})
    sqs, _, _ = clients(server)
    template = {"Resources": {
        f"Q{i}": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"crash-q{i}"}}
        for i in range(4)
    }}
    def deploy_until_killed():
        # Its own connection: the server dies before it answers.
        try:
            requests.put(f"{server.api}/_nimbus/apps/crashy", json={"template": template}, timeout=120)
        except requests.ConnectionError:
            pass

    threading.Thread(target=deploy_until_killed, daemon=True).start()

    def steps_done():
        r = show(server, "crashy")
        if r.status_code != 200 or not r.json()["Changes"]:
            return 0
        return sum(1 for s in r.json()["Changes"][0]["Steps"] if s["State"] == "done")

    wait_for(lambda: steps_done() == 2, timeout=30, what="two applied steps")
    assert queue_names(sqs) == ["crash-q0", "crash-q1"]
    server.stop(sig=signal.SIGKILL)
    restarted = server_factory(data=server.data_dir)
    sqs, _, _ = clients(restarted)
    wait_for(lambda: show(restarted, "crashy").json()["Status"] == "ROLLBACK_COMPLETE",
             timeout=30, what="the interrupted change rolled back")
    assert queue_names(sqs) == []
    assert show(restarted, "crashy").json()["Resources"] == []
    # And the app deploys whole afterwards.
    r = put_app(restarted, "crashy", template)
    assert r.status_code == 200, r.text
    assert queue_names(sqs) == ["crash-q0", "crash-q1", "crash-q2", "crash-q3"]
