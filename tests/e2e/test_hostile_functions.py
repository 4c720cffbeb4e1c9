"""Hostile functions (issue 19): what an instance may not do to the platform or
to its neighbours. Each test asserts containment when the server reports the
mechanism active in /_nimbus/health, and otherwise asserts that its absence is
reported (loud degradation), never a silent skip."""
import json
import os
import shutil
import tempfile
import urllib.request

import pytest
from conftest import Server

HOSTILE = r'''
import json, os, socket, urllib.request
def handler(event, context):
    out = {"uid": os.getuid(), "cwd": os.getcwd(), "tmpdir": os.environ.get("TMPDIR")}
    try:
        open(event["db"], "rb").read(16)
        out["db"] = "read"
    except OSError as e:
        out["db"] = type(e).__name__
    out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    try:
        open(f"/proc/{event['other_pid']}/environ", "rb").read()
        out["other_environ"] = "read"
    except OSError as e:
        out["other_environ"] = type(e).__name__
    try:
        with open(os.path.join(event["outside"], "pwned"), "w") as f:
            f.write("x")
        out["outside"] = "written"
    except OSError as e:
        out["outside"] = type(e).__name__
    # Poll the neighbour's Runtime API.
    try:
        r = urllib.request.urlopen("http://" + event["other_api"] + "/2018-06-01/runtime/invocation/next", timeout=5)
        out["other_api"] = r.status
    except urllib.error.HTTPError as e:
        out["other_api"] = e.code
    except Exception as e:
        out["other_api"] = type(e).__name__
    return out
'''

NEIGHBOUR = r'''
import os
def handler(event, context):
    return {"pid": os.getpid(), "api": os.environ["AWS_LAMBDA_RUNTIME_API"], "ok": True}
'''


def health(server):
    with urllib.request.urlopen(server.api + "/_nimbus/health") as r:
        return json.loads(r.read())


def test_a_hostile_function_is_contained_and_its_neighbour_keeps_serving(server):
    iso = health(server)["isolation"]
    assert iso is not None, "the server reports its isolation"
    server.deploy("neighbour", "python3.12", "app.handler", {"app.py": NEIGHBOUR},
                  environment={"NEIGHBOUR_SECRET": "s3cr3t"})
    server.deploy("hostile", "python3.12", "app.handler", {"app.py": HOSTILE})
    n, _ = server.invoke_ok("neighbour", {})
    outside = os.path.realpath(server.data_dir)
    got, _ = server.invoke_ok("hostile", {
        "db": os.path.join(outside, "nimbus.db"),
        "other_pid": n["pid"],
        "outside": outside,
        "other_api": n["api"],
    })
    active = set(iso["active"])
    missing = {m["feature"] for m in iso["missing"]}
    if "mount_namespace" in active:
        assert got["db"] != "read", got
        assert got["outside"] != "written", got
        assert got["cwd"] == "/var/task" and got["tmpdir"] == "/tmp", got
        assert not os.path.exists(os.path.join(outside, "pwned"))
    else:
        assert "mount_namespace" in missing, iso
    if "private_proc" in active:
        assert n["pid"] not in got["pids"], got
        assert len(got["pids"]) < 5, got
    else:
        assert "private_proc" in missing, iso
    if "uid" in active:
        assert got["uid"] != 0 and got["uid"] != os.getuid(), got
        assert got["other_environ"] != "read", got
        assert iso["peer_check"] is True
        # Another process's poll of a Runtime API is refused, and learns nothing.
        assert got["other_api"] == 403, got
    else:
        assert "uid" in missing, iso
    # The neighbour was not robbed of an invocation and keeps serving.
    again, _ = server.invoke_ok("neighbour", {})
    assert again["ok"] is True


def test_the_host_cannot_poll_an_instance_runtime_api_either(server):
    """The test process (root, another uid than the instance) gets 403."""
    iso = health(server)["isolation"]
    server.deploy("victim", "python3.12", "app.handler", {"app.py": NEIGHBOUR})
    n, _ = server.invoke_ok("victim", {})
    if not iso["peer_check"]:
        assert "uid" in {m["feature"] for m in iso["missing"]}
        return
    try:
        urllib.request.urlopen("http://" + n["api"] + "/2018-06-01/runtime/invocation/next", timeout=5)
        raise AssertionError("the Runtime API served another process")
    except urllib.error.HTTPError as e:
        assert e.code == 403
        assert b"aws-request-id" not in e.read().lower()
    again, _ = server.invoke_ok("victim", {})
    assert again["ok"] is True


@pytest.fixture(scope="module")
def server():
    """This module's server, isolated as a default `nimbus up` is."""
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, env={"NIMBUS_ISOLATION": "auto"}).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)
