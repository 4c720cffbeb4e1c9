"""EventBridge through boto3, the aws CLI and the AWS SDK for JavaScript v3 against
the real binary: buses, rules, targets, PutEvents into Lambda targets (with input
transformers), cross-bus delivery, archives and replay, API destinations over
HTTP, TestEventPattern's validation errors, and kill -9 between PutEvents and
delivery with nothing lost."""

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
ACCOUNT = "123456789012"

RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {}
"""


def client(server):
    return boto3.client(
        "events",
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


def fn_arn(name):
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"


def bus_arn(name):
    return f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/{name}"


def records(path):
    try:
        return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def recorder(server, tmp_path, name):
    out = tmp_path / f"{name}.jsonl"
    server.deploy(name, "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(out)})
    return out


def code_of(e):
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def eb(server):
    return client(server)


def test_buses_rules_targets_and_tags(eb):
    arn = eb.create_event_bus(Name="orders", Tags=[{"Key": "team", "Value": "shop"}])["EventBusArn"]
    assert arn == bus_arn("orders")
    with pytest.raises(ClientError) as e:
        eb.create_event_bus(Name="orders")
    assert code_of(e)[0] == "ResourceAlreadyExistsException"
    d = eb.describe_event_bus(Name="orders")
    assert d["Name"] == "orders" and d["Arn"] == arn
    assert eb.describe_event_bus()["Name"] == "default"
    names = [b["Name"] for b in eb.list_event_buses()["EventBuses"]]
    assert "default" in names and "orders" in names
    assert eb.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "team", "Value": "shop"}]

    rule_arn = eb.put_rule(
        Name="big-orders", EventBusName="orders",
        EventPattern=json.dumps({"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}}),
        Description="orders over 100",
    )["RuleArn"]
    assert rule_arn == f"arn:aws:events:us-east-1:{ACCOUNT}:rule/orders/big-orders"
    r = eb.describe_rule(Name="big-orders", EventBusName="orders")
    assert r["State"] == "ENABLED" and r["EventBusName"] == "orders" and r["Description"] == "orders over 100"
    eb.disable_rule(Name="big-orders", EventBusName="orders")
    assert eb.describe_rule(Name="big-orders", EventBusName="orders")["State"] == "DISABLED"
    eb.enable_rule(Name="big-orders", EventBusName=arn)  # a bus by ARN
    assert [x["Name"] for x in eb.list_rules(EventBusName="orders", NamePrefix="big")["Rules"]] == ["big-orders"]
    with pytest.raises(ClientError) as e:
        eb.describe_rule(Name="nope", EventBusName="orders")
    assert code_of(e) == ("ResourceNotFoundException", "Rule nope does not exist on EventBus orders.")

    res = eb.put_targets(Rule="big-orders", EventBusName="orders", Targets=[
        {"Id": "fn", "Arn": fn_arn("whatever")},
        {"Id": "bad", "Arn": "arn:aws:ec2:us-east-1:123456789012:instance/i-1"},
    ])
    assert res["FailedEntryCount"] == 1 and res["FailedEntries"][0]["TargetId"] == "bad"
    assert [t["Id"] for t in eb.list_targets_by_rule(Rule="big-orders", EventBusName="orders")["Targets"]] == ["fn"]
    assert eb.list_rule_names_by_target(TargetArn=fn_arn("whatever"), EventBusName="orders")["RuleNames"] == ["big-orders"]
    with pytest.raises(ClientError) as e:
        eb.delete_rule(Name="big-orders", EventBusName="orders")
    assert code_of(e) == ("ValidationException", "Rule can't be deleted since it has targets.")
    eb.tag_resource(ResourceARN=rule_arn, Tags=[{"Key": "k", "Value": "v"}])
    assert eb.list_tags_for_resource(ResourceARN=rule_arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    eb.untag_resource(ResourceARN=rule_arn, TagKeys=["k"])
    assert eb.list_tags_for_resource(ResourceARN=rule_arn)["Tags"] == []
    eb.remove_targets(Rule="big-orders", EventBusName="orders", Ids=["fn"])
    eb.delete_rule(Name="big-orders", EventBusName="orders")
    assert eb.list_rules(EventBusName="orders")["Rules"] == []

    # Rules need a pattern or a schedule; patterns are validated; schedules only on default.
    with pytest.raises(ClientError) as e:
        eb.put_rule(Name="empty")
    assert code_of(e)[0] == "ValidationException"
    with pytest.raises(ClientError) as e:
        eb.put_rule(Name="sched", EventBusName="orders", ScheduleExpression="rate(5 minutes)")
    assert code_of(e)[0] == "ValidationException"
    assert eb.put_rule(Name="sched", ScheduleExpression="rate(5 minutes)", State="DISABLED")["RuleArn"]
    with pytest.raises(ClientError) as e:
        eb.put_rule(Name="badpat", EventPattern='{"source": "x"}')
    assert code_of(e) == ("InvalidEventPatternException",
                          'Event pattern is not valid. Reason: "source" must be an object or an array')

    # Bus policies.
    eb.put_permission(EventBusName="orders", Action="events:PutEvents", Principal="111122223333", StatementId="s1")
    policy = json.loads(eb.describe_event_bus(Name="orders")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["s1"]
    eb.remove_permission(EventBusName="orders", StatementId="s1")
    assert json.loads(eb.describe_event_bus(Name="orders")["Policy"])["Statement"] == []

    eb.delete_event_bus(Name="orders")
    with pytest.raises(ClientError) as e:
        eb.describe_event_bus(Name="orders")
    assert code_of(e) == ("ResourceNotFoundException", "Event bus orders does not exist.")
    with pytest.raises(ClientError) as e:
        eb.delete_event_bus(Name="default")
    assert code_of(e)[0] == "ValidationException"


def test_test_event_pattern_and_its_validation_errors(eb):
    event = json.dumps({
        "id": "1", "account": ACCOUNT, "source": "com.shop", "time": "2024-01-01T00:00:00Z",
        "region": "us-east-1", "detail-type": "Order", "resources": [],
        "detail": {"state": "PAID", "ip": "10.0.0.7", "file": "a.png"},
    })
    yes = {"detail": {"state": [{"equals-ignore-case": "paid"}], "ip": [{"cidr": "10.0.0.0/24"}],
                      "file": [{"wildcard": "*.png"}]}}
    assert eb.test_event_pattern(EventPattern=json.dumps(yes), Event=event)["Result"] is True
    no = {"$or": [{"source": [{"prefix": "aws."}]}, {"detail": {"state": [{"anything-but": ["PAID"]}]}}]}
    assert eb.test_event_pattern(EventPattern=json.dumps(no), Event=event)["Result"] is False
    for pattern, reason in [
        ('{"detail": {"n": [{"numeric": [">", "x"]}]}}', "Value of > must be numeric"),
        ('{"source": []}', "Empty arrays are not allowed"),
        ('{"source": [{"wildcard": "a**"}]}', "Consecutive wildcard characters at pos 2"),
        ('{"source": [{"bogus": 1}]}', "Unrecognized match type bogus"),
    ]:
        with pytest.raises(ClientError) as e:
            eb.test_event_pattern(EventPattern=pattern, Event=event)
        assert code_of(e) == ("InvalidEventPatternException", f"Event pattern is not valid. Reason: {reason}")
    with pytest.raises(ClientError) as e:
        eb.test_event_pattern(EventPattern='{"source": ["x"]}', Event='{"source": "x"}')
    assert code_of(e)[0] == "ValidationException"


def test_put_events_per_entry_errors_and_limits(eb):
    res = eb.put_events(Entries=[
        {"Source": "com.shop", "DetailType": "Order", "Detail": "{}"},
        {"Source": "com.shop", "DetailType": "Order"},
        {"Source": "com.shop", "DetailType": "Order", "Detail": "[1]"},
        {"Source": "aws.ec2", "DetailType": "Order", "Detail": "{}"},
        {"Source": "com.shop", "DetailType": "Order", "Detail": "{}", "EventBusName": "missing"},
    ])
    assert res["FailedEntryCount"] == 4
    e = res["Entries"]
    assert "EventId" in e[0] and "ErrorCode" not in e[0]
    assert e[1]["ErrorCode"] == "InvalidArgument"
    assert e[2] == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    assert e[3]["ErrorCode"] == "NotAuthorizedForSourceException"
    assert e[4]["ErrorCode"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as ex:
        eb.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}] * 11)
    assert code_of(ex)[0] == "ValidationException"
    big = json.dumps({"x": "a" * (200 * 1024)})
    with pytest.raises(ClientError) as ex:
        eb.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": big}] * 2)
    assert code_of(ex) == ("ValidationException", "Total size of the entries in the request is over the limit.")


def test_rule_to_lambda_with_envelope_and_input_transformer(server, eb, tmp_path):
    raw = recorder(server, tmp_path, "eb-raw")
    shaped = recorder(server, tmp_path, "eb-shaped")
    path = recorder(server, tmp_path, "eb-path")
    eb.put_rule(Name="paid", EventPattern=json.dumps({"source": ["com.shop"], "detail-type": ["OrderPaid"]}))
    eb.put_targets(Rule="paid", Targets=[
        {"Id": "raw", "Arn": fn_arn("eb-raw")},
        {"Id": "shaped", "Arn": fn_arn("eb-shaped"), "InputTransformer": {
            "InputPathsMap": {"order": "$.detail.order", "total": "$.detail.total", "missing": "$.detail.none"},
            "InputTemplate": '{"text": "order <order> paid <total>", "total": <total>, "order": <order>, '
                             '"missing": <missing>, "rule": "<aws.events.rule-name>"}',
        }},
        {"Id": "path", "Arn": fn_arn("eb-path"), "InputPath": "$.detail"},
    ])
    when = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    res = eb.put_events(Entries=[
        {"Source": "com.shop", "DetailType": "OrderPaid", "Detail": json.dumps({"order": "o-1", "total": 42.5}),
         "Resources": ["arn:aws:shop:::order/o-1"], "Time": when},
        {"Source": "com.shop", "DetailType": "OrderRefunded", "Detail": json.dumps({"order": "o-2"})},
    ])
    assert res["FailedEntryCount"] == 0
    event_id = res["Entries"][0]["EventId"]
    got = wait_for(lambda: records(raw), timeout=60, what="the raw event")
    ev = got[0]
    assert ev == {
        "version": "0", "id": event_id, "detail-type": "OrderPaid", "source": "com.shop",
        "account": ACCOUNT, "time": "2024-05-01T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:shop:::order/o-1"], "detail": {"order": "o-1", "total": 42.5},
    }
    assert wait_for(lambda: records(shaped), timeout=60, what="the transformed input") == [{
        "text": "order o-1 paid 42.5", "total": 42.5, "order": "o-1", "missing": None, "rule": "paid",
    }]
    assert wait_for(lambda: records(path), timeout=60, what="the input path") == [{"order": "o-1", "total": 42.5}]
    # The refund matched no rule; the admin surface saw the three deliveries.
    time.sleep(0.5)
    assert len(records(raw)) == 1
    d = server.session.get(server.api + "/_nimbus/services/events/deliveries").json()["deliveries"]
    assert sorted(x["targetId"] for x in d if x["eventId"] == event_id) == ["path", "raw", "shaped"]
    assert all(x["outcome"] == "delivered" for x in d if x["eventId"] == event_id)
    m = server.session.get(server.api + "/metrics").text
    assert "nimbus_events_deliveries_total" in m


def test_cross_bus_delivery(server, eb, tmp_path):
    out = recorder(server, tmp_path, "eb-cross")
    eb.create_event_bus(Name="inbox")
    eb.put_rule(Name="forward", EventPattern=json.dumps({"source": ["com.fwd"]}))
    eb.put_targets(Rule="forward", Targets=[{"Id": "bus", "Arn": bus_arn("inbox")}])
    eb.put_rule(Name="catch", EventBusName="inbox", EventPattern=json.dumps({"detail": {"n": [{"exists": True}]}}))
    eb.put_targets(Rule="catch", EventBusName="inbox", Targets=[{"Id": "fn", "Arn": fn_arn("eb-cross")}])
    eb.put_events(Entries=[{"Source": "com.fwd", "DetailType": "Hop", "Detail": '{"n": 1}', "Resources": ["r1"]}])
    ev = wait_for(lambda: records(out), timeout=60, what="the event on the second bus")[0]
    assert ev["source"] == "com.fwd" and ev["detail-type"] == "Hop"
    assert ev["detail"] == {"n": 1} and ev["resources"] == ["r1"]


def test_archive_and_replay(server, eb, tmp_path):
    eb.create_event_bus(Name="audit")
    archive = eb.create_archive(ArchiveName="audit-all", EventSourceArn=bus_arn("audit"),
                                EventPattern=json.dumps({"source": ["com.audit"]}), RetentionDays=1)
    assert archive["State"] == "ENABLED"
    start = datetime.now(timezone.utc) - timedelta(seconds=5)
    eb.put_events(Entries=[
        {"Source": "com.audit", "DetailType": "Step", "Detail": json.dumps({"i": i}), "EventBusName": "audit"}
        for i in range(3)
    ] + [{"Source": "com.other", "DetailType": "Step", "Detail": '{"i": 99}', "EventBusName": "audit"}])
    assert eb.describe_archive(ArchiveName="audit-all")["EventCount"] == 3
    # A rule made after the events: only the replay reaches it.
    out = recorder(server, tmp_path, "eb-replay")
    eb.put_rule(Name="steps", EventBusName="audit", EventPattern=json.dumps({"detail-type": ["Step"]}))
    eb.put_targets(Rule="steps", EventBusName="audit", Targets=[{"Id": "fn", "Arn": fn_arn("eb-replay")}])
    time.sleep(1.1)
    end = datetime.now(timezone.utc)
    eb.start_replay(ReplayName="again", EventSourceArn=archive["ArchiveArn"], EventStartTime=start,
                    EventEndTime=end, Destination={"Arn": bus_arn("audit")})
    wait_for(lambda: eb.describe_replay(ReplayName="again")["State"] == "COMPLETED", timeout=30, what="replay")
    got = wait_for(lambda: len(records(out)) >= 3 and records(out), timeout=60, what="replayed events")
    assert sorted(e["detail"]["i"] for e in got) == [0, 1, 2]
    assert all(e["replay-name"] == "again" for e in got)
    assert [r["ReplayName"] for r in eb.list_replays()["Replays"]] == ["again"]
    with pytest.raises(ClientError) as e:
        eb.start_replay(ReplayName="again", EventSourceArn=archive["ArchiveArn"], EventStartTime=start,
                        EventEndTime=end, Destination={"Arn": bus_arn("audit")})
    assert code_of(e)[0] == "ResourceAlreadyExistsException"


class Receiver:
    """A local HTTP endpoint for API destinations: answers `status`, records requests."""

    def __init__(self):
        self.status = 200
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode()})
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_api_destination_with_basic_auth_and_http_parameters(eb, receiver):
    conn = eb.create_connection(Name="hook-auth", AuthorizationType="BASIC",
                                AuthParameters={"BasicAuthParameters": {"Username": "u", "Password": "p"}})
    assert conn["ConnectionState"] == "AUTHORIZED"
    desc = eb.describe_connection(Name="hook-auth")
    assert desc["AuthParameters"] == {"BasicAuthParameters": {"Username": "u"}}  # no password answered
    dest = eb.create_api_destination(Name="hook", ConnectionArn=conn["ConnectionArn"],
                                     InvocationEndpoint=receiver.url + "/hooks/*", HttpMethod="POST")
    eb.put_rule(Name="to-hook", EventPattern=json.dumps({"source": ["com.hook"]}))
    eb.put_targets(Rule="to-hook", Targets=[{
        "Id": "hook", "Arn": dest["ApiDestinationArn"], "InputPath": "$.detail",
        "HttpParameters": {"PathParameterValues": ["orders"], "HeaderParameters": {"X-Shop": "1"},
                           "QueryStringParameters": {"q": "v"}},
    }])
    eb.put_events(Entries=[{"Source": "com.hook", "DetailType": "Ping", "Detail": '{"hello": "world"}'}])
    req = wait_for(lambda: receiver.requests, timeout=30, what="the HTTP call")[0]
    assert req["path"] == "/hooks/orders?q=v"
    assert req["headers"]["authorization"] == "Basic dTpw"
    assert req["headers"]["x-shop"] == "1"
    assert json.loads(req["body"]) == {"hello": "world"}
    assert eb.deauthorize_connection(Name="hook-auth")["ConnectionState"] == "DEAUTHORIZED"
    assert eb.describe_connection(Name="hook-auth")["ConnectionState"] == "DEAUTHORIZED"
    eb.update_connection(Name="hook-auth", AuthParameters={"BasicAuthParameters": {"Username": "u2", "Password": "p2"}})
    desc = eb.describe_connection(Name="hook-auth")
    assert desc["ConnectionState"] == "AUTHORIZED" and desc["AuthParameters"]["BasicAuthParameters"] == {"Username": "u2"}
    eb.update_api_destination(Name="hook", InvocationEndpoint=receiver.url + "/v2/*")
    assert eb.describe_api_destination(Name="hook")["InvocationEndpoint"] == receiver.url + "/v2/*"
    eb.put_events(Entries=[{"Source": "com.hook", "DetailType": "Ping", "Detail": '{"again": 1}'}])
    req = wait_for(lambda: len(receiver.requests) > 1 and receiver.requests[1], timeout=30, what="the second call")
    assert req["path"] == "/v2/orders?q=v"
    assert req["headers"]["authorization"] == "Basic dTI6cDI="


def test_outbox_survives_kill_9_between_put_events_and_delivery(server_factory, receiver):
    """The target refuses (503) while events are put, so every delivery is still in the
    outbox when the server is killed; after a restart each arrives."""
    s = server_factory()
    eb = client(s)
    receiver.status = 503
    conn = eb.create_connection(Name="c", AuthorizationType="API_KEY",
                                AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "x-key", "ApiKeyValue": "k"}})
    dest = eb.create_api_destination(Name="d", ConnectionArn=conn["ConnectionArn"],
                                     InvocationEndpoint=receiver.url + "/in", HttpMethod="POST")
    eb.put_rule(Name="all", EventPattern=json.dumps({"source": ["com.kill"]}))
    eb.put_targets(Rule="all", Targets=[{"Id": "d", "Arn": dest["ApiDestinationArn"]}])
    ids = []
    for batch in range(4):
        res = eb.put_events(Entries=[
            {"Source": "com.kill", "DetailType": "T", "Detail": json.dumps({"n": batch * 5 + i})} for i in range(5)
        ])
        assert res["FailedEntryCount"] == 0
        ids += [e["EventId"] for e in res["Entries"]]
    wait_for(lambda: receiver.requests, timeout=30, what="a first (refused) attempt")
    backlog = s.session.get(s.api + "/_nimbus/services/events/outbox").json()["backlog"]
    assert backlog == 20
    s.stop(sig=signal.SIGKILL)
    receiver.requests.clear()
    receiver.status = 200
    s2 = server_factory(data=s.data_dir)

    def delivered():
        return {json.loads(r["body"])["id"] for r in receiver.requests if r.get("body")}

    wait_for(lambda: delivered() >= set(ids), timeout=60, what="every event after the restart")
    assert all(r["headers"]["x-key"] == "k" for r in receiver.requests)
    wait_for(lambda: s2.session.get(s2.api + "/_nimbus/services/events/outbox").json()["backlog"] == 0,
             timeout=30, what="an empty outbox")


def test_aws_cli(server):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")

    def aws(*args):
        out = subprocess.run(["aws", "--endpoint-url", server.api, "events", *args, "--output", "json"],
                             capture_output=True, text=True, env=env, timeout=60)
        return out

    out = aws("put-rule", "--name", "cli-rule", "--event-pattern", '{"source":["com.cli"]}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["RuleArn"].endswith(":rule/cli-rule")
    out = aws("put-events", "--entries", json.dumps([{"Source": "com.cli", "DetailType": "x", "Detail": "{}"}]))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["FailedEntryCount"] == 0
    out = aws("test-event-pattern", "--event-pattern", '{"source": [{"numeric": 1}]}', "--event",
              json.dumps({"id": "1", "account": ACCOUNT, "source": "s", "time": "2024-01-01T00:00:00Z",
                          "region": "us-east-1", "detail-type": "d", "detail": {}}))
    assert out.returncode != 0
    assert "InvalidEventPatternException" in out.stderr and "Value of numeric must be an array." in out.stderr


JS = r"""
const { EventBridgeClient, PutRuleCommand, PutEventsCommand, ListRulesCommand, TestEventPatternCommand } =
  require("@aws-sdk/client-eventbridge");
(async () => {
  const c = new EventBridgeClient({ endpoint: process.argv[1], region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" } });
  const rule = await c.send(new PutRuleCommand({ Name: "js-rule", EventPattern: '{"source":["com.js"]}' }));
  const put = await c.send(new PutEventsCommand({ Entries: [
    { Source: "com.js", DetailType: "x", Detail: "{}" }, { Source: "com.js", DetailType: "x" } ] }));
  const rules = await c.send(new ListRulesCommand({ NamePrefix: "js-" }));
  let err = null;
  try {
    await c.send(new TestEventPatternCommand({ EventPattern: '{"a": [{"cidr": "bad"}]}', Event: "{}" }));
  } catch (e) { err = { name: e.name, message: e.message, status: e.$metadata.httpStatusCode }; }
  console.log(JSON.stringify({ ruleArn: rule.RuleArn, failed: put.FailedEntryCount, entries: put.Entries,
    rules: rules.Rules.map(r => r.Name), err }));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_js_sdk_v3(server):
    node_modules = ROOT / "sdk" / "node_modules"
    if not (node_modules / "@aws-sdk" / "client-eventbridge").is_dir():
        pytest.skip("the JS SDK is not installed (scripts/install-sdks)")
    out = subprocess.run(["node", "-e", JS, server.api], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, NODE_PATH=str(node_modules)))
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["ruleArn"].endswith(":rule/js-rule")
    assert res["failed"] == 1 and "EventId" in res["entries"][0] and res["entries"][1]["ErrorCode"] == "InvalidArgument"
    assert res["rules"] == ["js-rule"]
    assert res["err"] == {"name": "InvalidEventPatternException", "status": 400,
                          "message": "Event pattern is not valid. Reason: Nonstandard IP address: bad"}


def sqs_client(server):
    return boto3.client(
        "sqs",
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


def receive_all(sqs, url, n, **kw):
    got = []

    def more():
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **kw)
        for m in r.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(got) >= n

    wait_for(more, timeout=60, interval=0, what=f"{n} messages on {url}")
    return got


def test_sqs_fifo_target_and_dead_letter_queue(server, eb):
    sqs = sqs_client(server)
    fifo = sqs.create_queue(QueueName="eb-orders.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq = sqs.create_queue(QueueName="eb-dlq")["QueueUrl"]
    q_arn = lambda url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    eb.put_rule(Name="to-fifo", EventPattern=json.dumps({"source": ["com.fifo"]}))
    eb.put_targets(Rule="to-fifo", Targets=[
        {"Id": "q", "Arn": q_arn(fifo), "SqsParameters": {"MessageGroupId": "g1"}, "InputPath": "$.detail"},
        # A function that does not exist: not retriable, so straight to the dead-letter queue.
        {"Id": "gone", "Arn": fn_arn("never-deployed"), "DeadLetterConfig": {"Arn": q_arn(dlq)},
         "RetryPolicy": {"MaximumRetryAttempts": 0}},
    ])
    ids = []
    for i in range(3):
        res = eb.put_events(Entries=[{"Source": "com.fifo", "DetailType": "T", "Detail": json.dumps({"n": i})}])
        ids.append(res["Entries"][0]["EventId"])
    msgs = receive_all(sqs, fifo, 3, AttributeNames=["MessageGroupId"])
    assert [json.loads(m["Body"]) for m in msgs] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {m["Attributes"]["MessageGroupId"] for m in msgs} == {"g1"}
    dead = receive_all(sqs, dlq, 3, MessageAttributeNames=["All"])
    assert sorted(json.loads(m["Body"])["id"] for m in dead) == sorted(ids)
    attrs = dead[0]["MessageAttributes"]
    assert attrs["RULE_ARN"]["StringValue"].endswith(":rule/to-fifo")
    assert attrs["TARGET_ARN"]["StringValue"] == fn_arn("never-deployed")
    assert attrs["ERROR_CODE"]["StringValue"] == "ResourceNotFoundException"


def aws(server, service):
    return boto3.client(
        service,
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_sns_and_kinesis_targets(server, eb):
    sqs, sns, kin = aws(server, "sqs"), aws(server, "sns"), aws(server, "kinesis")
    url = sqs.create_queue(QueueName="eb-via-sns")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="eb-topic")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn, Attributes={"RawMessageDelivery": "true"})
    kin.create_stream(StreamName="eb-stream", ShardCount=1)
    kin.get_waiter("stream_exists").wait(StreamName="eb-stream", WaiterConfig={"Delay": 1})
    stream_arn = kin.describe_stream_summary(StreamName="eb-stream")["StreamDescriptionSummary"]["StreamARN"]
    eb.put_rule(Name="fanout", EventPattern=json.dumps({"source": ["com.fan"]}))
    eb.put_targets(Rule="fanout", Targets=[
        {"Id": "topic", "Arn": topic, "InputPath": "$.detail"},
        {"Id": "stream", "Arn": stream_arn, "KinesisParameters": {"PartitionKeyPath": "$.detail.customer"}},
    ])
    res = eb.put_events(Entries=[{"Source": "com.fan", "DetailType": "T", "Detail": '{"customer": "c-7", "n": 1}'}])
    event_id = res["Entries"][0]["EventId"]
    msgs = receive_all(sqs, url, 1)
    assert json.loads(msgs[0]["Body"]) == {"customer": "c-7", "n": 1}
    shard = kin.describe_stream(StreamName="eb-stream")["StreamDescription"]["Shards"][0]["ShardId"]
    it = kin.get_shard_iterator(StreamName="eb-stream", ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    def records():
        return kin.get_records(ShardIterator=it)["Records"]

    recs = wait_for(records, timeout=30, what="the Kinesis record")
    assert recs[0]["PartitionKey"] == "c-7"
    assert json.loads(recs[0]["Data"])["id"] == event_id
