"""Hostile functions (issue 19): what an instance may not do to the platform or
to its neighbours. Each test asserts containment when the server reports the
mechanism active in /_nimbus/health, and otherwise asserts that its absence is
reported (loud degradation), never a silent skip."""
import json
import os
import shutil
import tempfile
import urllib.request

import boto3
import botocore.config
import pytest
from conftest import Server, wait_for

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


# A function probing the platform's own port (the edge: control API, Lambda API,
# services) with and without its own credentials.
PORTS = r'''
import json, os, socket, urllib.request, urllib.error
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

API = os.environ["AWS_ENDPOINT_URL"]
CFG = Config(retries={"max_attempts": 0}, read_timeout=60)

def raw(method, path, body=None, headers=None):
    req = urllib.request.Request(API + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return [r.status, r.read().decode(errors="replace")[:400]]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode(errors="replace")[:400]]

def refused(call):
    try:
        call()
        return "accepted"
    except ClientError as e:
        return [e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]]

def handler(event, context):
    victim = event["victim"]
    out = {"health": raw("GET", "/_nimbus/health")[0]}
    # The control API, unsigned (auth is off on this server).
    out["control_list"] = raw("GET", "/_nimbus/functions")
    out["control_update"] = raw(
        "PUT", "/_nimbus/functions/" + victim,
        json.dumps({"runtime": "python3.12", "handler": "app.handler",
                    "code_sha256": event["evil_sha"]}).encode(),
        {"content-type": "application/json"})
    # The same update sent whole and the socket closed at once, so that the
    # server may find no owner for it when it accepts (refused either way).
    host, port = API.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"runtime": "python3.12", "handler": "app.handler",
                       "code_sha256": event["evil_sha"]}).encode()
    req = ("PUT /_nimbus/functions/%s HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
           "Content-Length: %d\r\nConnection: close\r\n\r\n" % (victim, len(body))).encode() + body
    for _ in range(20):
        s = socket.create_connection((host, int(port)))
        s.sendall(req)
        s.close()
    # The Lambda API and a service, unsigned.
    out["lambda_unsigned"] = raw("GET", "/2015-03-31/functions/")
    out["sqs_unsigned"] = raw("POST", "/", b"Action=ListQueues&Version=2012-11-05",
                              {"content-type": "application/x-www-form-urlencoded"})
    # A made-up key, and another function's real one.
    out["foreign_key"] = refused(lambda: boto3.client(
        "lambda", aws_access_key_id="AKIAFOREIGNKEY000000", aws_secret_access_key="x" * 40,
        config=CFG).list_functions())
    s = event["stolen"]
    out["stolen_key"] = refused(lambda: boto3.client(
        "sqs", aws_access_key_id=s["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=s["AWS_SESSION_TOKEN"], config=CFG).list_queues())
    # A presigned URL made with another function's key is a capability: honoured.
    out["presigned"] = raw("GET", event["presigned"].removeprefix(API))
    # Its own credentials (what boto3 finds in the environment): a service call and
    # the Lambda Invoke API of another function work.
    sqs = boto3.client("sqs", config=CFG)
    q = sqs.create_queue(QueueName="hostile-own-credentials")["QueueUrl"]
    sqs.send_message(QueueUrl=q, MessageBody="mine")
    msgs = sqs.receive_message(QueueUrl=q, WaitTimeSeconds=5).get("Messages", [])
    out["sqs_own"] = [m["Body"] for m in msgs]
    r = boto3.client("lambda", config=CFG).invoke(FunctionName=victim, Payload=b"{}")
    out["invoke_own"] = json.loads(r["Payload"].read())
    return out
'''

VICTIM = r'''
import os
def handler(event, context):
    if event.get("env"):
        return {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    return {"victim": "original", "ok": True}
'''


def test_the_platform_port_accepts_a_function_only_with_its_own_credentials(server):
    """Auth is off on this server (no --credentials): a user's unsigned request is
    served, an instance's is not; with its own key it may call services and
    Invoke another function."""
    iso = health(server)["isolation"]
    server.deploy("ports-victim", "python3.12", "app.handler", {"app.py": VICTIM})
    server.deploy("ports-hostile", "python3.12", "app.handler", {"app.py": PORTS}, timeout_s=120)
    stolen, _ = server.invoke_ok("ports-victim", {"env": True})
    victim_before = server.function("ports-victim")["function"]
    # An object the victim function shares through a URL presigned with its key.
    s3 = boto3.client("s3", endpoint_url=server.api, region_name="us-east-1",
                      aws_access_key_id="user", aws_secret_access_key="user")
    s3.create_bucket(Bucket="ports-shared")
    s3.put_object(Bucket="ports-shared", Key="note.txt", Body=b"shared on purpose")
    presigned = boto3.client(
        "s3", endpoint_url=server.api, region_name="us-east-1",
        aws_access_key_id=stolen["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stolen["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=stolen["AWS_SESSION_TOKEN"],
        config=botocore.config.Config(signature_version="s3v4"),
    ).generate_presigned_url("get_object", Params={"Bucket": "ports-shared", "Key": "note.txt"})
    evil_sha = server.upload({"app.py": "def handler(e, c):\n    return {'victim': 'pwned'}\n"})
    # The user (this test process) still calls the control API unsigned.
    assert server.session.get(server.api + "/_nimbus/functions", timeout=10).status_code == 200
    got, _ = server.invoke_ok("ports-hostile", {"victim": "ports-victim", "stolen": stolen,
                                                "evil_sha": evil_sha, "presigned": presigned},
                              timeout=180)
    assert got["health"] == 200, got
    if iso["platform_ports_check"] != "active":
        # Loud degradation: no per-instance uids, so the check cannot run.
        assert "uid" in {m["feature"] for m in iso["missing"]}, iso
        assert "platform-ports check is inactive" in server.log_text()
        return
    for call in ("control_list", "control_update", "lambda_unsigned", "sqs_unsigned"):
        assert got[call][0] == 403, (call, got[call])
    assert "MissingAuthenticationToken" in got["sqs_unsigned"][1], got
    assert got["foreign_key"] == [403, "UnrecognizedClientException"], got
    assert got["stolen_key"][0] == 403, got
    assert got["stolen_key"][1] in ("UnrecognizedClientException", "InvalidClientTokenId"), got
    # Nothing leaked through the refusals, and the victim's code is unchanged.
    assert "ports-victim" not in got["control_list"][1], got
    assert server.function("ports-victim")["function"] == victim_before
    assert server.invoke_ok("ports-victim", {})[0] == {"victim": "original", "ok": True}
    assert got["presigned"] == [200, "shared on purpose"], got
    # Its own credentials work as before.
    assert got["sqs_own"] == ["mine"], got
    assert got["invoke_own"] == {"victim": "original", "ok": True}, got


# A function asking a service to call the platform's port for it (server-side
# request forgery): an EventBridge API destination aimed at the control API.
SSRF = r'''
import json, os
import boto3
from botocore.config import Config

def handler(event, context):
    eb = boto3.client("events", config=Config(retries={"max_attempts": 0}))
    conn = eb.create_connection(
        Name="ssrf", AuthorizationType="API_KEY",
        AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k"}})
    dest = eb.create_api_destination(
        Name="ssrf", ConnectionArn=conn["ConnectionArn"], HttpMethod="PUT",
        InvocationEndpoint=os.environ["AWS_ENDPOINT_URL"] + "/_nimbus/functions/ssrf-created")
    eb.put_rule(Name="ssrf", EventPattern=json.dumps({"source": ["ssrf"]}))
    eb.put_targets(Rule="ssrf", Targets=[
        {"Id": "control", "Arn": dest["ApiDestinationArn"], "InputPath": "$.detail"}])
    r = eb.put_events(Entries=[{"Source": "ssrf", "DetailType": "deploy",
                                "Detail": json.dumps(event["deploy"])}])
    return {"failed": r["FailedEntryCount"]}
'''


def test_a_service_cannot_be_made_to_call_the_control_api_for_a_function(server):
    iso = health(server)["isolation"]
    if iso["platform_ports_check"] != "active":
        assert "uid" in {m["feature"] for m in iso["missing"]}, iso
        return
    server.deploy("ssrf", "python3.12", "app.handler", {"app.py": SSRF}, timeout_s=60)
    sha = server.upload({"app.py": "def handler(e, c):\n    return 'created by ssrf'\n"})
    got, _ = server.invoke_ok("ssrf", {"deploy": {"runtime": "python3.12", "handler": "app.handler",
                                                  "code_sha256": sha}})
    assert got == {"failed": 0}, got

    def refused_delivery():
        return [l for l in server.log_text().splitlines()
                if "path=/_nimbus/functions/ssrf-created" in l and "status=403" in l]

    # The delivery reached the edge, unsigned from the server's own socket: refused.
    wait_for(refused_delivery, timeout=60, what="the API destination's call refused")
    r = server.session.get(server.api + "/_nimbus/functions/ssrf-created", timeout=10)
    assert r.status_code == 404, r.text


def test_without_instance_uids_the_platform_port_check_is_reported_inactive(server_factory):
    """`--isolation off`: the edge cannot tell an instance from the user, and says so."""
    s = server_factory(env={"NIMBUS_ISOLATION": "off"})
    iso = health(s)["isolation"]
    assert iso["mode"] == "off" and iso["peer_check"] is False, iso
    assert iso["platform_ports_check"] == "inactive", iso
    assert "the platform-ports check is inactive" in s.log_text()


@pytest.fixture(scope="module")
def server():
    """This module's server, isolated as a default `nimbus up` is."""
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, env={"NIMBUS_ISOLATION": "auto"}).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)
