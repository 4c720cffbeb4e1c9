"""Lambda Invoke wire details: log tails, DryRun, payload validation and limits,
qualifiers."""

import json
import re

import pytest

from conftest import log_tail

PY = """
import json
def handler(event, context):
    print("tail me", json.dumps(event))
    return {"echo": event}
"""


@pytest.fixture(scope="module")
def fn(server):
    server.deploy("wire", "python3.12", "app.handler", {"app.py": PY})
    return "wire"


def test_log_type_tail(server, fn):
    r = server.invoke(fn, {"k": "v"}, headers={"X-Amz-Log-Type": "Tail"})
    assert r.status_code == 200 and r.json() == {"echo": {"k": "v"}}
    rid = r.headers["x-amzn-requestid"]
    tail = log_tail(r).splitlines()
    assert tail[0] == f"START RequestId: {rid} Version: $LATEST"
    assert 'tail me {"k": "v"}' in tail
    assert tail[-2] == f"END RequestId: {rid}"
    assert re.match(rf"REPORT RequestId: {rid}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                    r"Memory Size: 128 MB\tMax Memory Used: \d+ MB", tail[-1]), tail[-1]
    # Without the header there is no log result.
    r = server.invoke(fn, {})
    assert "x-amz-log-result" not in r.headers


def test_log_tail_is_the_last_4kb(server):
    server.deploy("wire-chatty", "python3.12", "app.handler", {"app.py": (
        "def handler(event, context):\n"
        "    for i in range(2000):\n"
        "        print('line', i)\n"
        "    return 'done'\n")})
    r = server.invoke("wire-chatty", {}, headers={"X-Amz-Log-Type": "Tail"})
    assert r.status_code == 200
    raw = log_tail(r)
    assert len(raw.encode()) <= 4096
    assert raw.splitlines()[-1].startswith("REPORT RequestId: ")
    assert "line 1999" in raw and "line 0\n" not in raw


def test_dry_run(server, fn):
    r = server.invoke(fn, {}, headers={"X-Amz-Invocation-Type": "DryRun"})
    assert r.status_code == 204 and r.content == b""
    r = server.invoke("wire-missing", {}, headers={"X-Amz-Invocation-Type": "DryRun"})
    assert r.status_code == 404
    assert r.headers["x-amzn-errortype"] == "ResourceNotFoundException"


def test_dry_run_runs_nothing(server):
    server.deploy("wire-dry", "python3.12", "app.handler", {"app.py": PY})
    for _ in range(3):
        assert server.invoke("wire-dry", {}, headers={"X-Amz-Invocation-Type": "DryRun"}).status_code == 204
    assert server.instances("wire-dry") == []
    assert server.records("wire-dry") == []


@pytest.mark.parametrize("body", ["{not json", "[1, 2", "nul", '{"a": }'])
def test_bad_json_payload(server, fn, body):
    r = server.invoke(fn, body)
    assert r.status_code == 400, r.text
    assert r.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert "json" in r.json()["message"].lower()


def test_non_object_json_payloads_are_fine(server, fn):
    for payload in ['"a string"', "42", "[1, 2, 3]", "null", ""]:
        r = server.invoke(fn, payload)
        assert r.status_code == 200, (payload, r.text)
    assert server.invoke(fn, "[1, 2, 3]").json() == {"echo": [1, 2, 3]}
    # An empty body is an empty event.
    assert server.invoke(fn, "").json() == {"echo": {}}


def test_payload_over_6mb(server, fn):
    big = json.dumps({"blob": "x" * (6 * 1024 * 1024)})
    r = server.invoke(fn, big)
    assert r.status_code == 413, r.text[:200]
    assert r.headers["x-amzn-errortype"] == "RequestTooLargeException"
    # Just under the limit is accepted.
    ok = json.dumps({"blob": "x" * (6 * 1024 * 1024 - 64)})
    r = server.invoke(fn, ok, timeout=120)
    assert r.status_code == 200 or r.json().get("errorType") == "Function.ResponseSizeTooLarge", r.text[:200]


def test_unknown_qualifier(server, fn):
    for q in ("7", "prod"):
        r = server.invoke(fn, {}, qualifier=q)
        assert r.status_code == 404, r.text
        assert r.headers["x-amzn-errortype"] == "ResourceNotFoundException"
        assert f"function:{fn}:{q}" in r.json()["message"]
    r = server.invoke(f"{fn}:nope", {})
    assert r.status_code == 404
    # $LATEST is always there.
    body, r = server.invoke_json(fn, {"q": 1}, qualifier="$LATEST")
    assert body == {"echo": {"q": 1}} and r.headers["x-amz-executed-version"] == "$LATEST"


def test_function_arn_as_name(server, fn):
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{fn}"
    r = server.invoke(arn, {"via": "arn"})
    assert r.status_code == 200 and r.json() == {"echo": {"via": "arn"}}, r.text
