"""Tracing: one X-Ray trace id from a gateway request through a function, its async
Invoke of a second function (made the way botocore makes it: `X-Amzn-Trace-Id` from
`_X_AMZN_TRACE_ID`) and that function's on-failure destination; W3C `traceparent`
in, the same trace id out; `nimbus trace` and `GET /_nimbus/traces/{root}`."""

import json
import re

import requests

from conftest import wait_for

# The functions run on the host python without boto3, so A does what botocore does
# inside Lambda: send `_X_AMZN_TRACE_ID` as `X-Amzn-Trace-Id` on its Invoke.
CALLER = """
import json, os, urllib.request
def handler(event, context):
    trace = os.environ.get("_X_AMZN_TRACE_ID", "")
    req = urllib.request.Request(
        os.environ["API"] + "/2015-03-31/functions/b/invocations",
        data=json.dumps({"from": "a"}).encode(),
        headers={"X-Amz-Invocation-Type": "Event", "X-Amzn-Trace-Id": trace},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        status, async_trace = r.status, r.headers.get("x-amzn-trace-id")
    return {"statusCode": 200, "body": json.dumps({"trace": trace, "invoke_status": status, "async_trace": async_trace})}
"""

FAILS = """
import os
def handler(event, context):
    print("b sees", os.environ.get("_X_AMZN_TRACE_ID"))
    raise RuntimeError("b fails on purpose")
"""

RECORDER = """
import os
def handler(event, context):
    print("c sees", os.environ.get("_X_AMZN_TRACE_ID"))
    return {}
"""

ECHO_TRACE = """
import json, os
def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"trace": os.environ.get("_X_AMZN_TRACE_ID")})}
"""

ROOT = re.compile(r"Root=(1-[0-9a-f]{8}-[0-9a-f]{24})")


def root(header):
    m = ROOT.search(header or "")
    assert m, f"no X-Ray Root in {header!r}"
    return m.group(1)


def arn(name):
    return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"


def put_route(s, key, function):
    r = s.session.put(f"{s.api}/_nimbus/routes", json={"route_key": key, "function": function}, timeout=10)
    assert r.status_code in (200, 201), r.text


def test_one_trace_from_gateway_through_async_call_and_destination(server):
    s = server
    s.deploy("a", "python3.12", "app.handler", {"app.py": CALLER}, environment={"API": s.api})
    s.deploy("b", "python3.12", "app.handler", {"app.py": FAILS})
    s.deploy("c", "python3.12", "app.handler", {"app.py": RECORDER})
    cfg = {"MaximumRetryAttempts": 0, "DestinationConfig": {"OnFailure": {"Destination": arn("c")}}}
    r = s.session.put(f"{s.api}/2019-09-25/functions/b/event-invoke-config", json=cfg, timeout=10)
    assert r.status_code == 200, r.text
    put_route(s, "GET /trace/start", "a")

    r = requests.get(f"{s.gateway}/trace/start", timeout=30)
    assert r.status_code == 200, r.text
    t = root(r.headers.get("x-amzn-trace-id"))
    body = r.json()
    assert root(body["trace"]) == t, "the function's _X_AMZN_TRACE_ID is the gateway's trace"
    assert body["invoke_status"] == 202
    assert root(body["async_trace"]) == t, "the async Invoke answers with the caller's trace"

    def traced():
        recs = [x for x in s.records() if x.get("trace_id") and root(x["trace_id"]) == t]
        return recs if {x["function"] for x in recs} >= {"a", "b", "c"} else None

    recs = wait_for(traced, timeout=30, what="records of a, b and c in one trace")
    by_fn = {x["function"]: x for x in recs}
    assert by_fn["a"]["trigger"] == "http"
    assert by_fn["b"]["trigger"] == "event" and by_fn["b"]["outcome"] == "function_error"
    assert by_fn["c"]["trigger"] == "event" and by_fn["c"]["outcome"] == "success"
    # The functions saw the trace in their environment.
    assert any(t in l for l in s.log_lines("b") if "b sees" in l)
    assert any(t in l for l in s.log_lines("c") if "c sees" in l)

    # The control API: the trace's records, oldest first, with their logs.
    r = s.session.get(f"{s.api}/_nimbus/traces/{t}", timeout=10)
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["root"] == t
    fns = [x["function"] for x in v["invocations"]]
    assert fns == ["a", "b", "c"], fns
    starts = [x["start_ms"] for x in v["invocations"]]
    assert starts == sorted(starts)
    assert any("b fails on purpose" in l["line"] for l in v["logs"])
    assert {l["function"] for l in v["logs"]} == {"a", "b", "c"}
    # A W3C trace id names the same trace.
    w3c = t[2:].replace("-", "")
    r = s.session.get(f"{s.api}/_nimbus/traces/{w3c}", timeout=10)
    assert [x["function"] for x in r.json()["invocations"]] == ["a", "b", "c"]
    assert s.session.get(f"{s.api}/_nimbus/traces/nope", timeout=10).status_code == 400

    # The CLI lists all three with their request ids, and their log lines.
    out = s.cli("trace", t)
    assert out.returncode == 0, out.stderr
    for fn in ("a", "b", "c"):
        assert by_fn[fn]["request_id"] in out.stdout, out.stdout
    assert "function_error" in out.stdout and "b fails on purpose" in out.stdout
    out = s.cli("trace", "--json", f"Root={t};Parent=53995c3f42cd8ad8;Sampled=0")
    assert out.returncode == 0, out.stderr
    assert [x["function"] for x in json.loads(out.stdout)["invocations"]] == ["a", "b", "c"]


def test_traceparent_in_same_trace_out(server):
    s = server
    s.deploy("echo-trace", "python3.12", "app.handler", {"app.py": ECHO_TRACE})
    put_route(s, "GET /trace/echo", "echo-trace")
    tid, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    r = requests.get(
        f"{s.gateway}/trace/echo", headers={"traceparent": f"00-{tid}-{parent}-01"}, timeout=30
    )
    assert r.status_code == 200, r.text
    want = "1-0af76519-16cd43dd8448eb211c80319c"
    assert root(r.headers["x-amzn-trace-id"]) == want
    assert root(r.json()["trace"]) == want
    assert r.headers["traceparent"].split("-")[1] == tid
    assert "Sampled=1" in r.headers["x-amzn-trace-id"]

    # An X-Ray header is kept as given.
    x = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    r = requests.get(f"{s.gateway}/trace/echo", headers={"X-Amzn-Trace-Id": x}, timeout=30)
    assert r.headers["x-amzn-trace-id"] == x
    assert r.json()["trace"] == x
    assert "traceparent" not in r.headers

    # No header: a trace is started, returned and recorded.
    r = requests.get(f"{s.gateway}/trace/echo", timeout=30)
    t = root(r.headers["x-amzn-trace-id"])
    assert root(r.json()["trace"]) == t

    # The Lambda Invoke API takes traceparent too and answers with the trace.
    r = s.invoke("echo-trace", {}, headers={"traceparent": f"00-{tid}-{parent}-00"})
    assert r.status_code == 200, r.text
    assert root(r.headers["x-amzn-trace-id"]) == want
    assert root(json.loads(r.json()["body"])["trace"]) == want
    recs = s.session.get(f"{s.api}/_nimbus/traces/{want}", timeout=10).json()["invocations"]
    assert [x["trigger"] for x in recs] == ["http", "api"]
