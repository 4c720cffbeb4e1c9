"""Asynchronous invocations (InvocationType=Event): durable before the 202, retries
with backoff, destinations with Lambda's record, survival across kill -9."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import wait_for

APPEND = """
import os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(context.aws_request_id + "\\n")
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"ok": True}
"""

FLAKY = """
import os
def handler(event, context):
    path = os.environ["STATE"]
    n = int(open(path).read()) if os.path.exists(path) else 0
    n += 1
    open(path, "w").write(str(n))
    if n <= 2:
        raise ValueError(f"attempt {n} fails")
    return {"attempt": n}
"""

RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {}
"""


def lines(path):
    try:
        return [l for l in path.read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


def arn(name):
    return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"


def test_event_returns_202_and_runs(server_factory, tmp_path):
    s = server_factory("--async-retry-base", "200ms")
    out = tmp_path / "out.txt"
    s.deploy("append", "python3.12", "app.handler", {"app.py": APPEND}, environment={"OUT": str(out)})
    r = s.invoke("append", {"x": 1}, headers={"X-Amz-Invocation-Type": "Event"})
    assert r.status_code == 202, r.text
    assert r.content == b""
    rid = r.headers["x-amzn-requestid"]
    wait_for(lambda: rid in lines(out), what="event to run")
    rec = [x for x in s.records("append") if x["request_id"] == rid]
    assert rec and rec[0]["trigger"] == "event"


def test_async_payload_limit_and_unknown_function(server):
    r = server.invoke("nope", {}, headers={"X-Amz-Invocation-Type": "Event"})
    assert r.status_code == 404
    assert r.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    server.deploy("big-async", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return 1\n"})
    payload = json.dumps({"blob": "x" * (1024 * 1024 + 10)})
    r = server.invoke("big-async", payload, headers={"X-Amz-Invocation-Type": "Event"})
    assert r.status_code == 413
    assert r.headers["x-amzn-errortype"] == "RequestTooLargeException"


def test_retries_until_success(server_factory, tmp_path):
    s = server_factory("--async-retry-base", "200ms")
    state = tmp_path / "state"
    s.deploy("flaky", "python3.12", "app.handler", {"app.py": FLAKY}, environment={"STATE": str(state)})
    r = s.invoke("flaky", {}, headers={"X-Amz-Invocation-Type": "Event"})
    assert r.status_code == 202
    wait_for(lambda: state.exists() and state.read_text() == "3", timeout=20, what="third attempt")
    time.sleep(1.0)
    assert state.read_text() == "3", "no attempt after the success"
    outcomes = sorted(x["outcome"] for x in s.records("flaky"))
    assert outcomes == ["function_error", "function_error", "success"]
    # Every attempt keeps the request id the caller was given.
    assert {x["request_id"] for x in s.records("flaky")} == {r.headers["x-amzn-requestid"]}


def test_on_failure_destination_after_all_attempts(server_factory, tmp_path):
    s = server_factory("--async-retry-base", "200ms")
    out, dlq = tmp_path / "attempts", tmp_path / "dlq"
    s.deploy("always-fails", "python3.12", "app.handler", {"app.py": APPEND}, environment={"OUT": str(out)})
    s.deploy("on-failure", "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(dlq)})
    s.deploy("on-success", "python3.12", "app.handler", {"app.py": RECORDER}, environment={"OUT": str(tmp_path / "ok")})
    cfg = {
        "DestinationConfig": {
            "OnFailure": {"Destination": arn("on-failure")},
            "OnSuccess": {"Destination": arn("on-success")},
        }
    }
    r = s.session.put(f"{s.api}/2019-09-25/functions/always-fails/event-invoke-config", json=cfg)
    assert r.status_code == 200, r.text
    assert r.json()["DestinationConfig"]["OnFailure"]["Destination"] == arn("on-failure")

    r = s.invoke("always-fails", {"fail": True, "order": 7}, headers={"X-Amz-Invocation-Type": "Event"})
    rid = r.headers["x-amzn-requestid"]
    wait_for(lambda: lines(dlq), timeout=20, what="on-failure record")
    time.sleep(0.5)
    assert lines(out) == [rid] * 3, "1 + MaximumRetryAttempts(2) attempts"
    rec = json.loads(lines(dlq)[0])
    assert rec["version"] == "1.0"
    assert rec["requestContext"]["requestId"] == rid
    assert rec["requestContext"]["condition"] == "RetriesExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 3
    assert rec["requestContext"]["functionArn"] == arn("always-fails") + ":$LATEST"
    assert rec["requestPayload"] == {"fail": True, "order": 7}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert rec["responsePayload"]["errorType"] == "RuntimeError"
    assert rec["responsePayload"]["errorMessage"] == "asked to fail"

    # Success goes to OnSuccess with the response.
    r = s.invoke("always-fails", {"order": 8}, headers={"X-Amz-Invocation-Type": "Event"})
    wait_for(lambda: lines(tmp_path / "ok"), timeout=20, what="on-success record")
    rec = json.loads(lines(tmp_path / "ok")[0])
    assert rec["requestContext"]["condition"] == "Success"
    assert rec["responsePayload"] == {"ok": True}
    assert "functionError" not in rec["responseContext"]


def test_zero_retries_and_config_validation(server_factory, tmp_path):
    s = server_factory("--async-retry-base", "200ms")
    out = tmp_path / "attempts"
    s.deploy("no-retry", "python3.12", "app.handler", {"app.py": APPEND}, environment={"OUT": str(out)})
    url = f"{s.api}/2019-09-25/functions/no-retry/event-invoke-config"
    r = s.session.put(url, json={"MaximumRetryAttempts": 3})
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "InvalidParameterValueException"
    r = s.session.put(url, json={"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:q"}}})
    assert r.status_code == 400
    assert s.session.put(url, json={"MaximumRetryAttempts": 0}).status_code == 200
    assert s.session.get(url).json()["MaximumRetryAttempts"] == 0
    rid = s.invoke("no-retry", {"fail": True}, headers={"X-Amz-Invocation-Type": "Event"}).headers["x-amzn-requestid"]
    wait_for(lambda: lines(out), what="first attempt")
    time.sleep(1.0)
    assert lines(out) == [rid]
    assert s.session.delete(url).status_code == 204
    assert s.session.get(url).status_code == 404


def test_throttled_events_wait_and_all_run(server_factory, tmp_path):
    s = server_factory("--async-retry-base", "200ms")
    out = tmp_path / "out"
    slow = APPEND.replace('return {"ok": True}', 'import time; time.sleep(0.2); return {"ok": True}')
    s.deploy("narrow", "python3.12", "app.handler", {"app.py": slow}, environment={"OUT": str(out)}, reserved_concurrency=1)
    ids = [s.invoke("narrow", {}, headers={"X-Amz-Invocation-Type": "Event"}).headers["x-amzn-requestid"] for _ in range(10)]
    q = s.function("narrow")["queue"]
    assert q["depth"] >= 1
    wait_for(lambda: sorted(lines(out)) == sorted(ids), timeout=30, what="every throttled event to run")
    wait_for(lambda: s.function("narrow")["queue"]["depth"] == 0, what="the backlog to drain")


def test_kill_9_loses_no_accepted_event(server_factory, data_dir, tmp_path):
    """1,000 events in a burst; the server is killed (-9) midway and restarted. Every
    event that got a 202 must run at least once."""
    s = server_factory("--async-retry-base", "200ms")
    out = tmp_path / "out"
    s.deploy("sink", "python3.12", "app.handler", {"app.py": APPEND}, environment={"OUT": str(out)})
    accepted, lock = [], threading.Lock()
    stop = threading.Event()

    def send(i):
        if stop.is_set():
            return
        try:
            r = requests.post(
                f"{s.api}/2015-03-31/functions/sink/invocations",
                data=json.dumps({"i": i}),
                headers={"X-Amz-Invocation-Type": "Event"},
                timeout=10,
            )
        except requests.RequestException:
            return
        if r.status_code == 202:
            with lock:
                accepted.append(r.headers["x-amzn-requestid"])

    def killer():
        wait_for(lambda: len(accepted) >= 300, timeout=60, what="300 accepted events")
        s.kill()
        stop.set()

    t = threading.Thread(target=killer)
    t.start()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(1000)))
    t.join()
    assert len(accepted) >= 300
    s2 = server_factory("--async-retry-base", "200ms")
    wait_for(lambda: set(accepted) <= set(lines(out)), timeout=120, what="every accepted event to run")
    ran = lines(out)
    missing = set(accepted) - set(ran)
    duplicates = len(ran) - len(set(ran))
    print(f"accepted={len(accepted)} ran={len(ran)} unique={len(set(ran))} duplicates={duplicates}")
    assert not missing
    # Events stored but killed before their 202 was sent also run: wait for the backlog.
    wait_for(lambda: s2.function("sink")["queue"]["depth"] == 0, timeout=60, what="the backlog to drain")
