"""SigV4 authentication of the API listener, driven by clients nobody here wrote
(boto3/botocore signing, presigned URLs) and by the `nimbus` CLI.

A server started with `--credentials` must refuse, in the protocol's own error
shape, every request not signed by one of its keys, on every route (Lambda, STS,
the /_nimbus control API) except GET /_nimbus/health; one started without must
accept everything."""

import datetime
import json
import shutil
import subprocess
import tempfile
import time
import types

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import NIMBUS_BIN, Server, make_zip

ROOT_KEY, ROOT_SECRET = "AKIANIMBUSROOT000001", "root/Secret+Key0000000000000000000000001"
ALICE_KEY, ALICE_SECRET = "AKIANIMBUSALICE00001", "alice/Secret+Key000000000000000000000001"
WRONG_SECRET = "not/the+right/secret000000000000000000001"
ACCOUNT = "123456789012"

HANDLER = """
def handler(event, context):
    return {"got": event}
"""


@pytest.fixture(scope="module")
def authed():
    """One server requiring signatures: the root key on the command line, alice's
    (an IAM user) from NIMBUS_CREDENTIALS."""
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(
        d,
        ["--credentials", f"{ROOT_KEY}:{ROOT_SECRET}"],
        env={"NIMBUS_CREDENTIALS": f"{ALICE_KEY}:{ALICE_SECRET}:alice"},
    ).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def client(server, service, key=ROOT_KEY, secret=ROOT_SECRET):
    return boto3.client(
        service,
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 0}),
    )


class SigV4(requests.auth.AuthBase):
    """Sign a `requests` request with botocore's signer."""

    def __init__(self, key=ROOT_KEY, secret=ROOT_SECRET, service="nimbus", region="us-east-1"):
        self.signer = botocore.auth.SigV4Auth(Credentials(key, secret), service, region)

    def __call__(self, r):
        headers = {k: v for k, v in r.headers.items() if k.lower() == "content-type"}
        aws = AWSRequest(method=r.method, url=r.url, data=r.body or b"", headers=headers)
        self.signer.add_auth(aws)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws.headers:
                r.headers[name] = aws.headers[name]
        return r


def error_code(err):
    return err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]


def deploy_with_boto3(lam, name):
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=f"arn:aws:iam::{ACCOUNT}:role/r",
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )


# -- the right credentials -----------------------------------------------------


def test_boto3_with_the_right_credentials_works(authed):
    lam = client(authed, "lambda")
    deploy_with_boto3(lam, "signed-fn")
    out = lam.invoke(FunctionName="signed-fn", Payload=json.dumps({"k": "v"}))
    assert out["StatusCode"] == 200
    assert json.loads(out["Payload"].read()) == {"got": {"k": "v"}}
    # The IAM user's key works as well.
    alice = client(authed, "lambda", ALICE_KEY, ALICE_SECRET)
    names = [f["FunctionName"] for f in alice.list_functions()["Functions"]]
    assert "signed-fn" in names
    # ARN in the path: boto3 percent-encodes it, and signs the double encoding.
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:signed-fn"
    assert lam.get_function(FunctionName=arn)["Configuration"]["FunctionName"] == "signed-fn"
    lam.delete_function(FunctionName="signed-fn")


def test_sts_get_caller_identity_names_root_and_users(authed):
    me = client(authed, "sts").get_caller_identity()
    assert me["Account"] == ACCOUNT
    assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert me["UserId"] == ACCOUNT
    alice = client(authed, "sts", ALICE_KEY, ALICE_SECRET).get_caller_identity()
    assert alice["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert alice["UserId"].startswith("AIDA") and len(alice["UserId"]) == 21
    assert alice["Account"] == ACCOUNT


def test_sts_xml_is_what_aws_sends(authed):
    r = requests.post(
        authed.api + "/",
        data="Action=GetCallerIdentity&Version=2011-06-15",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        auth=SigV4(service="sts"),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/xml"
    assert r.text.startswith('<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">')
    assert f"<Arn>arn:aws:iam::{ACCOUNT}:root</Arn>" in r.text
    assert f"<UserId>{ACCOUNT}</UserId>" in r.text and f"<Account>{ACCOUNT}</Account>" in r.text
    assert "<ResponseMetadata>" in r.text and "<RequestId>" in r.text


def test_sts_unknown_and_unimplemented_actions_name_themselves(authed):
    def call(body):
        return requests.post(
            authed.api + "/", data=body, auth=SigV4(service="sts"), timeout=10,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    r = call("Action=FlyToTheMoon&Version=2011-06-15")
    assert r.status_code == 400, r.text
    assert "<Code>InvalidAction</Code>" in r.text
    assert "Could not find operation FlyToTheMoon for version 2011-06-15" in r.text
    r = call("Action=GetCallerIdentity&Version=2099-01-01")
    assert r.status_code == 400 and "for version 2099-01-01" in r.text
    r = call("Action=AssumeRoleWithSAML&Version=2011-06-15&RoleArn=x&PrincipalArn=y&SAMLAssertion=z")
    assert r.status_code == 501, r.text
    assert "<Code>InvalidAction</Code>" in r.text and "AssumeRoleWithSAML" in r.text
    with pytest.raises(ClientError) as e:
        client(authed, "sts").decode_authorization_message(EncodedMessage="opaque")
    assert error_code(e.value) == ("InvalidAction", 501)


def test_signed_control_api(authed):
    r = requests.get(authed.api + "/_nimbus/functions", auth=SigV4(), timeout=10)
    assert r.status_code == 200, r.text
    # Signed with a body: code upload, then deploy.
    r = requests.post(authed.api + "/_nimbus/code", data=make_zip({"app.py": HANDLER}), auth=SigV4(), timeout=30)
    assert r.status_code == 200, r.text
    # Health is open to everyone.
    assert requests.get(authed.api + "/_nimbus/health", timeout=10).status_code == 200


def test_presigned_urls_work_and_expire(authed):
    lam = client(authed, "lambda")
    url = lam.generate_presigned_url("list_functions", Params={}, ExpiresIn=60)
    assert "X-Amz-Signature=" in url
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert "Functions" in r.json()

    # What `aws eks get-token` makes: a presigned GetCallerIdentity.
    sts_url = client(authed, "sts").generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
    r = requests.get(sts_url, timeout=10)
    assert r.status_code == 200, r.text
    assert f"<Arn>arn:aws:iam::{ACCOUNT}:root</Arn>" in r.text

    # Tampered: another parameter value.
    r = requests.get(url + "&MaxItems=1", timeout=10)
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"] == "InvalidSignatureException"

    short = lam.generate_presigned_url("list_functions", Params={}, ExpiresIn=1)
    time.sleep(2.1)
    r = requests.get(short, timeout=10)
    assert r.status_code == 403, r.text
    assert r.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert r.json()["message"] == "Request has expired"


# -- wrong, unknown or missing credentials --------------------------------------


@pytest.mark.parametrize(
    "key,secret,lambda_code,sts_code",
    [
        (ROOT_KEY, WRONG_SECRET, "InvalidSignatureException", "SignatureDoesNotMatch"),
        ("AKIAUNKNOWNKEY000001", ROOT_SECRET, "UnrecognizedClientException", "InvalidClientTokenId"),
    ],
    ids=["wrong-secret", "unknown-key"],
)
def test_bad_credentials_are_refused_everywhere(authed, key, secret, lambda_code, sts_code):
    with pytest.raises(ClientError) as e:
        client(authed, "lambda", key, secret).list_functions()
    assert error_code(e.value) == (lambda_code, 403)
    with pytest.raises(ClientError) as e:
        client(authed, "lambda", key, secret).invoke(FunctionName="whatever", Payload=b"{}")
    assert error_code(e.value) == (lambda_code, 403)

    with pytest.raises(ClientError) as e:
        client(authed, "sts", key, secret).get_caller_identity()
    assert error_code(e.value) == (sts_code, 403)

    for method, path in [("GET", "/_nimbus/functions"), ("DELETE", "/_nimbus/functions/x"),
                         ("POST", "/_nimbus/code"), ("GET", "/no/such/route")]:
        r = requests.request(method, authed.api + path, data=b"abc" if method == "POST" else None,
                             auth=SigV4(key, secret), timeout=10)
        assert r.status_code == 403, (method, path, r.text)
        assert r.headers["x-amzn-errortype"] == lambda_code, (method, path)
        assert "message" in r.json()


def test_error_messages_are_aws_wording(authed):
    with pytest.raises(ClientError) as e:
        client(authed, "lambda", "AKIAUNKNOWNKEY000001", ROOT_SECRET).list_functions()
    assert e.value.response["Error"]["Message"] == "The security token included in the request is invalid."
    with pytest.raises(ClientError) as e:
        client(authed, "lambda", ROOT_KEY, WRONG_SECRET).list_functions()
    assert e.value.response["Error"]["Message"].startswith(
        "The request signature we calculated does not match the signature you provided."
    )


def test_unsigned_requests_are_refused(authed):
    for method, path in [("GET", "/_nimbus/functions"), ("GET", "/_nimbus/invocations"),
                         ("GET", "/2015-03-31/functions/"), ("POST", "/2015-03-31/functions/f/invocations"),
                         ("GET", "/no/such/route")]:
        r = requests.request(method, authed.api + path, data=b"{}" if method == "POST" else None, timeout=10)
        assert r.status_code == 403, (method, path, r.text)
        assert r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
        assert r.json()["message"] == "Missing Authentication Token"
    # STS answers in XML.
    r = requests.post(authed.api + "/", data={"Action": "GetCallerIdentity", "Version": "2011-06-15"}, timeout=10)
    assert r.status_code == 403
    assert r.headers["content-type"] == "text/xml"
    assert "<ErrorResponse" in r.text and "<Code>MissingAuthenticationToken</Code>" in r.text
    # A large unsigned body is refused before it is read (the server may hang up
    # while the client is still sending it).
    try:
        r = requests.post(authed.api + "/_nimbus/code", data=b"x" * (8 * 1024 * 1024), timeout=30)
        assert r.status_code == 403, r.text
    except requests.ConnectionError:
        pass
    assert requests.get(authed.api + "/_nimbus/health", timeout=10).status_code == 200


def test_tampered_body_is_refused(authed):
    s = requests.Session()
    req = requests.Request(
        "POST", authed.api + "/2015-03-31/functions/f/invocations", data=b'{"a": 1}', auth=SigV4(service="lambda")
    ).prepare()
    req.body = b'{"a": 2}'
    r = s.send(req, timeout=10)
    assert r.status_code == 403, r.text
    assert r.headers["x-amzn-errortype"] == "InvalidSignatureException"


@pytest.fixture
def skewed_clock(monkeypatch):
    """botocore signs as if its clock were 20 minutes behind."""
    real = datetime.datetime

    class Behind(real):
        @classmethod
        def utcnow(cls):
            return real.utcnow() - datetime.timedelta(minutes=20)

    monkeypatch.setattr(botocore.auth, "datetime", types.SimpleNamespace(datetime=Behind))


def test_clock_skew_is_refused(authed, skewed_clock):
    with pytest.raises(ClientError) as e:
        client(authed, "lambda").list_functions()
    assert error_code(e.value) == ("InvalidSignatureException", 403)
    assert e.value.response["Error"]["Message"].startswith("Signature expired:")


def test_payload_limit_holds_for_signed_invokes(authed):
    lam = client(authed, "lambda")
    deploy_with_boto3(lam, "big")
    big = json.dumps({"blob": "x" * (6 * 1024 * 1024)})
    r = requests.post(authed.api + "/2015-03-31/functions/big/invocations", data=big,
                      auth=SigV4(service="lambda"), timeout=60)
    assert r.status_code == 413, r.text[:200]
    assert r.headers["x-amzn-errortype"] == "RequestTooLargeException"
    ok = json.dumps({"blob": "x" * (1024 * 1024)})
    r = requests.post(authed.api + "/2015-03-31/functions/big/invocations", data=ok,
                      auth=SigV4(service="lambda"), timeout=60)
    assert r.status_code == 200, r.text[:200]
    lam.delete_function(FunctionName="big")


# -- the nimbus CLI ------------------------------------------------------------------


def test_cli_signs_with_credentials_and_explains_without(authed, tmp_path, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NIMBUS_ACCESS_KEY", "NIMBUS_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    r = authed.cli("ls")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "requires signed requests" in lines[0] and "AWS_ACCESS_KEY_ID" in lines[0], lines[0]

    (tmp_path / "app.py").write_text(HANDLER)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ROOT_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
    r = authed.cli("deploy", "cli-fn", "--code", tmp_path, "--runtime", "python3.12", "--handler", "app.handler")
    assert r.returncode == 0, r.stderr
    r = authed.cli("invoke", "cli-fn", "--payload", '{"x": 1}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"got": {"x": 1}}
    r = authed.cli("ls")
    assert r.returncode == 0 and "cli-fn" in r.stdout, r.stderr
    r = authed.cli("logs", "cli-fn")
    assert r.returncode == 0 and "START RequestId" in r.stdout, r.stderr

    # Flags win over the environment; a wrong secret is one clear line.
    r = authed.cli("--access-key", ROOT_KEY, "--secret-key", WRONG_SECRET, "ls")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "InvalidSignatureException" in lines[0] and ROOT_KEY in lines[0], r.stderr
    r = authed.cli("--access-key", ALICE_KEY, "--secret-key", ALICE_SECRET, "rm", "cli-fn")
    assert r.returncode == 0, r.stderr


# -- without credentials -----------------------------------------------------------


def test_without_credentials_everything_is_accepted(server):
    assert "auth OFF" in server.log_text()
    r = requests.get(server.api + "/_nimbus/functions", timeout=10)
    assert r.status_code == 200
    r = requests.get(server.api + "/_nimbus/functions", auth=SigV4("any", "thing"), timeout=10)
    assert r.status_code == 200
    me = client(server, "sts", "whoever", "whatever").get_caller_identity()
    assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    r = server.cli("ls")
    assert r.returncode == 0, r.stderr


def test_bad_credentials_config_stops_startup(data_dir):
    (data_dir / "keys").write_text("# only a comment\n")
    for args, says in [
        (["--credentials", "no-secret"], "expected ACCESS_KEY:SECRET"),
        (["--credentials", "A:1", "--credentials", "A:2"], "configured twice"),
        (["--credentials-file", str(data_dir / "missing")], "cannot read credentials file"),
        (["--credentials-file", str(data_dir / "keys")], "has no access keys"),
    ]:
        p = subprocess.run(
            [NIMBUS_BIN, "up", "--data-dir", str(data_dir / "d"), "--listen", "127.0.0.1:0",
             "--gateway-listen", "127.0.0.1:0", *args],
            capture_output=True, text=True, timeout=30,
        )
        assert p.returncode != 0, args
        assert says in p.stderr, (args, p.stderr)
        assert "nimbus ready" not in p.stdout


def test_credentials_file(data_dir):
    (data_dir / "keys").write_text(f"# team keys\n\n{ROOT_KEY}:{ROOT_SECRET}\n{ALICE_KEY}:{ALICE_SECRET}:alice\n")
    s = Server(data_dir / "d", ["--credentials-file", str(data_dir / "keys")]).start()
    try:
        assert "auth sigv4 (2 access keys)" in s.log_text()
        me = client(s, "sts", ALICE_KEY, ALICE_SECRET).get_caller_identity()
        assert me["Arn"].endswith(":user/alice")
        assert requests.get(s.api + "/_nimbus/functions", timeout=10).status_code == 403
    finally:
        s.stop()
