"""Functions reach Nimbus's services unmodified, as on Lambda: every instance gets
AWS_ENDPOINT_URL, its region and temporary credentials of its own, and finds
boto3 / the AWS SDK for JavaScript v3 without bundling them. A Python function
calling `boto3.client('sts').get_caller_identity()` and a Node function calling
`@aws-sdk/client-sts`'s GetCallerIdentity, neither naming an endpoint or a
credential, are told they are their function's role; with SigV4 enforced the
same holds, a tampered session token is refused, the function never sees the
server's own keys, and its keys stop working once it is deleted.

Needs the SDKs installed (`scripts/install-sdks`, which `scripts/test` runs)."""

import json
import shutil
import tempfile

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT, Server, make_zip

ACCOUNT = "123456789012"
ROOT_KEY, ROOT_SECRET = "AKIANIMBUSFNROOT0001", "fnroot/Secret+Key00000000000000000000001"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/service-role/thumbs-role"
NODE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/node-role"

PYTHON = """
import os
import boto3

def handler(event, context):
    if event.get("env"):
        return dict(os.environ)
    ident = boto3.client("sts").get_caller_identity()
    return {"Arn": ident["Arn"], "UserId": ident["UserId"], "Account": ident["Account"],
            "boto3": boto3.__file__}
"""

NODE = """
const { STSClient, GetCallerIdentityCommand } = require('@aws-sdk/client-sts');
exports.handler = async (event) => {
  if (event.env) return { ...process.env };
  const r = await new STSClient({}).send(new GetCallerIdentityCommand({}));
  return { Arn: r.Arn, UserId: r.UserId, Account: r.Account,
           sdk: require.resolve('@aws-sdk/client-sts') };
};
"""

# A function bundling its own "boto3": its copy wins over the provided one.
BUNDLED = {
    "app.py": "import boto3\ndef handler(event, context):\n    return boto3.WHO\n",
    "boto3/__init__.py": "WHO = 'bundled'\n",
}


def sdks_installed():
    sdk = ROOT / "sdk"
    return (sdk / "python" / "boto3" / "__init__.py").is_file() and (
        sdk / "node_modules" / "@aws-sdk" / "client-sts" / "package.json"
    ).is_file()


@pytest.fixture(autouse=True)
def _need_sdks():
    assert sdks_installed(), "the function SDKs are not installed: run scripts/install-sdks"


def clients(server, **creds):
    kw = dict(
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id=creds.get("key", "anything"),
        aws_secret_access_key=creds.get("secret", "anything"),
        config=Config(retries={"max_attempts": 0}, read_timeout=120),
    )
    if "token" in creds:
        kw["aws_session_token"] = creds["token"]
    return boto3.client("lambda", **kw), boto3.client("sts", **kw)


def deploy(lam, name, runtime, handler, code, role=None):
    args = dict(
        FunctionName=name,
        Runtime=runtime,
        Handler=handler,
        Code={"ZipFile": make_zip(code)},
        Timeout=60,
    )
    if role:
        args["Role"] = role
    lam.create_function(**args)


def invoke(lam, name, payload=None):
    r = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}))
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    return body


def check_identity(got, role, function):
    assert got["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{function}", got
    assert got["Account"] == ACCOUNT
    role_id, session = got["UserId"].split(":")
    assert session == function
    assert role_id.startswith("AROA") and len(role_id) == 21, got


def run_both(server, lam):
    """Deploy and call the Python and Node functions; returns their environments."""
    deploy(lam, "whoami-py", "python3.12", "app.handler", {"app.py": PYTHON}, role=ROLE_ARN)
    deploy(lam, "whoami-node", "nodejs20.x", "index.handler", {"index.js": NODE}, role=NODE_ROLE_ARN)

    got = invoke(lam, "whoami-py")
    check_identity(got, "thumbs-role", "whoami-py")
    assert got["boto3"].startswith(str(ROOT / "sdk" / "python")), got

    got = invoke(lam, "whoami-node")
    check_identity(got, "node-role", "whoami-node")
    assert got["sdk"].startswith(str(ROOT / "sdk" / "node_modules")), got

    envs = {n: invoke(lam, n, {"env": True}) for n in ("whoami-py", "whoami-node")}
    host, port = server.api.removeprefix("http://").rsplit(":", 1)
    for name, env in envs.items():
        assert env["AWS_ENDPOINT_URL"] == server.api, (name, env["AWS_ENDPOINT_URL"])
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
        assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA") and len(env["AWS_ACCESS_KEY_ID"]) == 20
        assert env["AWS_SECRET_ACCESS_KEY"] and env["AWS_SESSION_TOKEN"]
    # Each function has keys of its own.
    assert envs["whoami-py"]["AWS_ACCESS_KEY_ID"] != envs["whoami-node"]["AWS_ACCESS_KEY_ID"]
    assert envs["whoami-py"]["AWS_SESSION_TOKEN"] != envs["whoami-node"]["AWS_SESSION_TOKEN"]
    return envs


def test_functions_call_sts_as_their_role_without_credentials(server_factory):
    server = server_factory()
    assert "sdks boto3 1." in "".join(server.output), "".join(server.output)[-2000:]
    lam, _ = clients(server)
    envs = run_both(server, lam)

    # Authentication is off, yet the function's keys still say who calls.
    env = envs["whoami-py"]
    _, sts = clients(
        server,
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        token=env["AWS_SESSION_TOKEN"],
    )
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/thumbs-role/whoami-py")

    # A function without a role acts as a default one named after it.
    server.deploy("norole", "python3.12", "app.handler", {"app.py": PYTHON})
    got = invoke(lam, "norole")
    check_identity(got, "nimbus-norole-role", "norole")
    # (Likely started from a spare: it sees the same SDK path.)
    assert got["boto3"].startswith(str(ROOT / "sdk" / "python")), got

    # A bundled copy of the SDK wins over the provided one, as on Lambda.
    deploy(lam, "bundled", "python3.12", "app.handler", BUNDLED, role=ROLE_ARN)
    assert invoke(lam, "bundled") == "bundled"


@pytest.fixture
def authed():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, ["--credentials", f"{ROOT_KEY}:{ROOT_SECRET}"]).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def error_code(err):
    return err.response["Error"]["Code"]


def test_with_sigv4_enforced_function_keys_verify_and_nothing_else(authed):
    lam, root_sts = clients(authed, key=ROOT_KEY, secret=ROOT_SECRET)
    assert root_sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    envs = run_both(authed, lam)

    for name, env in envs.items():
        # The server's own keys never reach a function.
        for value in env.values():
            assert ROOT_KEY not in value and ROOT_SECRET not in value, name

    env = envs["whoami-py"]
    key, secret, token = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_SESSION_TOKEN"]
    _, sts = clients(authed, key=key, secret=secret, token=token)
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/thumbs-role/whoami-py")

    # A presigned URL made with the function's keys carries the token too.
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
    assert "X-Amz-Security-Token=" in url

    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and "assumed-role/thumbs-role/whoami-py" in r.text, r.text

    # A tampered token, another function's token or none at all: refused.
    tampered = ("A" if token[0] != "A" else "B") + token[1:]
    other = envs["whoami-node"]["AWS_SESSION_TOKEN"]
    for bad in (tampered, other):
        _, sts = clients(authed, key=key, secret=secret, token=bad)
        with pytest.raises(ClientError) as e:
            sts.get_caller_identity()
        assert error_code(e.value) == "InvalidClientTokenId"
    _, sts = clients(authed, key=key, secret=secret)
    with pytest.raises(ClientError) as e:
        sts.get_caller_identity()
    assert error_code(e.value) == "InvalidClientTokenId"
    lam_bad, _ = clients(authed, key=key, secret=secret, token=tampered)
    with pytest.raises(ClientError) as e:
        lam_bad.list_functions()
    assert error_code(e.value) == "UnrecognizedClientException"

    # Deleting the function revokes its keys.
    lam.delete_function(FunctionName="whoami-py")
    _, sts = clients(authed, key=key, secret=secret, token=token)
    with pytest.raises(ClientError) as e:
        sts.get_caller_identity()
    assert error_code(e.value) == "InvalidClientTokenId"
    # The other function's keys still work.
    node = envs["whoami-node"]
    _, sts = clients(
        authed,
        key=node["AWS_ACCESS_KEY_ID"],
        secret=node["AWS_SECRET_ACCESS_KEY"],
        token=node["AWS_SESSION_TOKEN"],
    )
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/node-role/whoami-node")
