"""The `nimbus` CLI as a user drives it: deploy, invoke, ls, get, rm, logs (and
--follow), with one-line errors."""

import json
import queue
import socket
import subprocess
import threading
import uuid

import pytest

from conftest import NIMBUS_BIN, run_cli, wait_for

APP = """
import json

def handler(event, context):
    print("handling", json.dumps(event, sort_keys=True))
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"got": event, "fn": context.function_name}
"""


@pytest.fixture
def code_dir(tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "app.py").write_text(APP)
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    return d


def one_line_error(p):
    """A failed command says why in one line on stderr, without a Rust backtrace."""
    assert p.returncode != 0, (p.stdout, p.stderr)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert "panicked" not in p.stderr and "backtrace" not in p.stderr.lower()
    assert "stack backtrace" not in p.stderr
    return lines[0]


def test_deploy_invoke_ls_get_rm(server, code_dir, tmp_path):
    p = server.cli("deploy", "cli-fn", "--runtime", "python3.12", "--handler", "app.handler",
                   "--code", code_dir, "--memory", "256", "--timeout", "5", "--env", "MODE=prod")
    assert p.returncode == 0, p.stderr
    assert "cli-fn" in p.stdout and "revision 1" in p.stdout, p.stdout
    cfg = server.function("cli-fn")["function"]
    assert cfg["memory_mb"] == 256 and cfg["timeout_s"] == 5 and cfg["environment"] == {"MODE": "prod"}

    p = server.cli("invoke", "cli-fn", "--payload", '{"a":1}')
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"got": {"a": 1}, "fn": "cli-fn"}

    payload = tmp_path / "event.json"
    payload.write_text(json.dumps({"from": "file", "n": [1, 2]}))
    p = server.cli("invoke", "cli-fn", "--payload", f"@{payload}")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["got"] == {"from": "file", "n": [1, 2]}

    # A function error prints the error and exits non-zero.
    p = server.cli("invoke", "cli-fn", "--payload", '{"fail": true}')
    assert p.returncode != 0
    err = json.loads(p.stdout)
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "asked to fail"

    p = server.cli("ls")
    assert p.returncode == 0, p.stderr
    row = [l for l in p.stdout.splitlines() if l.startswith("cli-fn ")]
    assert row and "python3.12" in row[0] and "app.handler" in row[0] and "256MB" in row[0], p.stdout

    p = server.cli("get", "cli-fn")
    assert p.returncode == 0, p.stderr
    assert "Function              cli-fn" in p.stdout, p.stdout
    assert "Runtime               python3.12 app.handler" in p.stdout, p.stdout
    assert "Instances             1" in p.stdout, p.stdout
    p = server.cli("get", "cli-fn", "--output", "json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["function"]["name"] == "cli-fn" and got["function"]["handler"] == "app.handler"
    assert len(got["instances"]) == 1

    p = server.cli("rm", "cli-fn")
    assert p.returncode == 0, p.stderr
    assert server.session.get(f"{server.api}/_nimbus/functions/cli-fn").status_code == 404
    assert not any(l.startswith("cli-fn ") for l in server.cli("ls").stdout.splitlines())


def test_invoke_bad_payload_is_a_clear_error(server, code_dir):
    assert server.cli("deploy", "cli-bad", "--runtime", "python3.12", "--handler", "app.handler",
                      "--code", code_dir).returncode == 0
    line = one_line_error(server.cli("invoke", "cli-bad", "--payload", "{not json"))
    assert "payload" in line.lower()
    line = one_line_error(server.cli("invoke", "cli-bad", "--payload", "@/nonexistent/event.json"))
    assert "/nonexistent/event.json" in line


def test_errors_are_one_clear_line(server, code_dir):
    line = one_line_error(server.cli("invoke", "no-such-fn"))
    assert "ResourceNotFoundException" in line and "no-such-fn" in line
    one_line_error(server.cli("get", "no-such-fn"))
    one_line_error(server.cli("rm", "no-such-fn"))
    one_line_error(server.cli("logs", "no-such-fn"))
    line = one_line_error(server.cli("deploy", "bad name!", "--runtime", "python3.12",
                                     "--handler", "app.handler", "--code", code_dir))
    assert "functionName" in line
    line = one_line_error(server.cli("deploy", "cli-x", "--runtime", "cobol9",
                                     "--handler", "app.handler", "--code", code_dir))
    assert "cobol9" in line
    line = one_line_error(server.cli("deploy", "cli-x", "--runtime", "python3.12",
                                     "--handler", "app.handler", "--code", "/nonexistent/dir"))
    assert "/nonexistent/dir" in line


def test_server_not_running(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on `port` now.
    endpoint = f"http://127.0.0.1:{port}"
    for args in (["ls"], ["invoke", "f"], ["logs", "f"], ["get", "f"]):
        p = run_cli(*args, endpoint=endpoint)
        line = one_line_error(p)
        assert "cannot reach" in line and endpoint in line, line


def test_logs_and_follow(server, code_dir):
    assert server.cli("deploy", "cli-logs", "--runtime", "python3.12", "--handler", "app.handler",
                      "--code", code_dir).returncode == 0
    first = uuid.uuid4().hex
    assert server.cli("invoke", "cli-logs", "--payload", json.dumps({"m": first})).returncode == 0
    p = server.cli("logs", "cli-logs")
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0].startswith("START RequestId: ")
    assert f'handling {{"m": "{first}"}}' in out
    assert out[-1].startswith("REPORT RequestId: ")

    follow = subprocess.Popen(
        [NIMBUS_BIN, "--endpoint", server.api, "logs", "cli-logs", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = queue.Queue()

    def pump():
        for l in follow.stdout:
            lines.put(l.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    seen = []

    def saw(text):
        def check():
            while True:
                try:
                    seen.append(lines.get_nowait())
                except queue.Empty:
                    break
            return any(text in l for l in seen)
        return check

    try:
        # The existing lines come first, then the stream stays open for new ones.
        wait_for(saw(first), timeout=15, what="existing log lines")
        assert follow.poll() is None, "--follow exited"
        second = uuid.uuid4().hex
        _, r = server.invoke_ok("cli-logs", {"m": second})
        rid = r.headers["x-amzn-requestid"]
        wait_for(saw(second), timeout=15, what="new log line to arrive")
        wait_for(saw(f"REPORT RequestId: {rid}"), timeout=15, what="REPORT line to arrive")
        mine = [l for l in seen if rid in l or second in l]
        assert mine[0] == f"START RequestId: {rid} Version: $LATEST", seen
        assert mine[-2] == f"END RequestId: {rid}" and mine[-1].startswith(f"REPORT RequestId: {rid}")
        assert follow.poll() is None, "--follow exited"
    finally:
        follow.terminate()
        follow.wait(10)
    assert follow.returncode is not None


def test_rm_refuses_while_routes_schedules_or_mappings_invoke_it_and_cascades(server, code_dir):
    """Issue 18: `nimbus rm` of a function something still invokes is refused with
    the list; `--cascade` removes them, and no dangling route answers 500."""
    import boto3

    assert server.cli("deploy", "rm-target", "--runtime", "python3.12", "--handler", "app.handler",
                      "--code", code_dir).returncode == 0
    assert server.cli("deploy", "rm-bystander", "--runtime", "python3.12", "--handler", "app.handler",
                      "--code", code_dir).returncode == 0
    assert server.cli("route", "add", "GET", "/rm-target", "rm-target").returncode == 0
    assert server.cli("route", "add", "GET", "/rm-bystander", "rm-bystander").returncode == 0
    assert server.cli("schedule", "add", "rm-warm", "rate(1 day)", "rm-target").returncode == 0
    kw = dict(endpoint_url=server.api, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    sqs, lam = boto3.client("sqs", **kw), boto3.client("lambda", **kw)
    url = sqs.create_queue(QueueName="rm-target-q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    uuid_ = lam.create_event_source_mapping(FunctionName="rm-target", EventSourceArn=arn)["UUID"]

    p = server.cli("rm", "rm-target")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "route GET /rm-target" in p.stderr and "schedule rm-warm" in p.stderr, p.stderr
    assert f"event-source mapping {uuid_}" in p.stderr and "nothing was deleted" in p.stderr, p.stderr
    assert "rm-bystander" not in p.stderr
    assert server.session.get(f"{server.api}/_nimbus/functions/rm-target").status_code == 200

    p = server.cli("rm", "rm-target", "--cascade")
    assert p.returncode == 0, p.stderr
    assert server.session.get(f"{server.api}/_nimbus/functions/rm-target").status_code == 404
    keys = {r["route_key"] for r in server.session.get(f"{server.api}/_nimbus/routes").json()["routes"]}
    assert "GET /rm-target" not in keys and "GET /rm-bystander" in keys
    names = {s["name"] for s in server.session.get(f"{server.api}/_nimbus/schedules").json()["schedules"]}
    assert "rm-warm" not in names
    left = lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]
    assert all(m["UUID"] != uuid_ or m["State"] == "Deleting" for m in left), left
    # Nothing of the bystander went.
    assert server.session.get(f"{server.api}/_nimbus/functions/rm-bystander").status_code == 200

    # A missing function is still a one-line 404.
    p = server.cli("rm", "rm-nobody")
    one_line_error(p)
