"""IAM enforced on every call (issue 19): under `--iam enforce` a function whose
role allows only dynamodb:GetItem on one table gets AccessDeniedException on
PutItem and on another table, and succeeds once put_role_policy widens the role
(no restart); a bucket policy denying a user overrides the user's identity
allow; STS AssumeRole credentials act as the role session until they expire,
then get ExpiredToken; GetCallerIdentity answers the caller's real ARN. Under
`--iam audit` the same denial is logged with the missing statement, counted in
/metrics, and the call goes through.

Needs the function SDKs (`scripts/install-sdks`)."""

import json
import os
import shutil
import tempfile
import time
from urllib.parse import urlencode

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import ROOT, Server, make_zip, wait_for

ACCOUNT = "123456789012"
KEY, SECRET = "AKIANIMBUSIAMROOT001", "iamroot/Secret+Key0000000000000000000001"
TRUST_LAMBDA = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})
TRUST_ACCOUNT = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                   "Action": "sts:AssumeRole"}],
})

FUNCTION = """
import boto3
from botocore.exceptions import ClientError

def handler(event, context):
    ddb = boto3.client("dynamodb")
    try:
        if event["op"] == "get":
            ddb.get_item(TableName=event["table"], Key={"id": {"S": "1"}})
        else:
            ddb.put_item(TableName=event["table"], Item={"id": {"S": "1"}, "v": {"S": "x"}})
        return {"ok": True}
    except ClientError as e:
        return {"ok": False, "code": e.response["Error"]["Code"],
                "message": e.response["Error"]["Message"]}
"""


def sdk_dir():
    for d in (ROOT / "sdk", ROOT.parent.parent / "main" / "sdk", "/work/main/sdk"):
        if (os.path.join(str(d), "python", "boto3", "__init__.py")) and os.path.isfile(
            os.path.join(str(d), "python", "boto3", "__init__.py")
        ):
            return str(d)
    pytest.fail("the function SDKs are not installed: run scripts/install-sdks")


def start(mode, extra=()):
    d = tempfile.mkdtemp(prefix="nimbus-iam-")
    s = Server(
        d,
        ["--credentials", f"{KEY}:{SECRET}", "--iam", mode, "--sts-min-duration", "1", *extra],
        env={"NIMBUS_SDK_DIR": sdk_dir()},
    ).start()
    return s, d


@pytest.fixture(scope="module")
def enforced():
    s, d = start("enforce")
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def allow(*actions):
    """An identity policy allowing `actions` on everything."""
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]})


def code_of(call):
    """The error code and message `call` fails with."""
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def client(server, service, key=KEY, secret=SECRET, token=None):
    return boto3.client(
        service,
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 0}, read_timeout=120,
                      s3={"addressing_style": "path"}),
    )


def setup_tables_and_function(server, name, role):
    ddb = client(server, "dynamodb")
    for t in ("Orders", "Other"):
        try:
            ddb.create_table(
                TableName=t,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ResourceInUseException"
    client(server, "lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Handler="app.handler",
        Role=f"arn:aws:iam::{ACCOUNT}:role/{role}",
        Code={"ZipFile": make_zip({"app.py": FUNCTION})},
        Timeout=60,
    )


def invoke(server, name, payload):
    r = client(server, "lambda").invoke(FunctionName=name, Payload=json.dumps(payload))
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    return body


def test_role_policy_is_enforced_and_changes_apply_without_restart(enforced):
    iam = client(enforced, "iam")
    iam.create_role(RoleName="orders-reader", AssumeRolePolicyDocument=TRUST_LAMBDA)
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/Orders"
    get_only = {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadOrders", "Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": table}]}
    iam.put_role_policy(RoleName="orders-reader", PolicyName="ddb", PolicyDocument=json.dumps(get_only))
    setup_tables_and_function(enforced, "reader", "orders-reader")

    assert invoke(enforced, "reader", {"op": "get", "table": "Orders"}) == {"ok": True}
    denied = invoke(enforced, "reader", {"op": "put", "table": "Orders"})
    assert denied["code"] == "AccessDeniedException", denied
    assert denied["message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/orders-reader/reader is not authorized to "
        f"perform: dynamodb:PutItem on resource: {table} because no identity-based policy "
        "allows the dynamodb:PutItem action"
    )
    other = invoke(enforced, "reader", {"op": "get", "table": "Other"})
    assert other["code"] == "AccessDeniedException", other
    assert f"table/Other" in other["message"]

    # Widen the role through the API: the next call is allowed, no restart.
    get_only["Statement"].append(
        {"Sid": "WriteOrders", "Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": table})
    iam.put_role_policy(RoleName="orders-reader", PolicyName="ddb", PolicyDocument=json.dumps(get_only))
    assert invoke(enforced, "reader", {"op": "put", "table": "Orders"}) == {"ok": True}
    assert invoke(enforced, "reader", {"op": "get", "table": "Other"})["code"] == "AccessDeniedException"

    # The policy reads back as it was written.
    got = iam.get_role_policy(RoleName="orders-reader", PolicyName="ddb")["PolicyDocument"]
    assert got == get_only


def test_bucket_policy_deny_overrides_identity_allow(enforced):
    iam = client(enforced, "iam")
    s3 = client(enforced, "s3")
    s3.create_bucket(Bucket="photos")
    s3.put_object(Bucket="photos", Key="cat.jpg", Body=b"meow")
    for user in ("bob", "carol"):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    s3.put_bucket_policy(Bucket="photos", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "NoBob", "Effect": "Deny",
                       "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/bob"},
                       "Action": "s3:GetObject", "Resource": "arn:aws:s3:::photos/*"}]}))
    keys = {u: iam.create_access_key(UserName=u)["AccessKey"] for u in ("bob", "carol")}

    def as_user(u, service):
        return client(enforced, service, keys[u]["AccessKeyId"], keys[u]["SecretAccessKey"])

    assert as_user("carol", "s3").get_object(Bucket="photos", Key="cat.jpg")["Body"].read() == b"meow"
    with pytest.raises(ClientError) as e:
        as_user("bob", "s3").get_object(Bucket="photos", Key="cat.jpg")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # The deny names GetObject only: bob's identity allow still lets him write.
    as_user("bob", "s3").put_object(Bucket="photos", Key="bob.txt", Body=b"hi")
    # GetCallerIdentity answers the user's ARN and IAM's user id.
    ident = as_user("bob", "sts").get_caller_identity()
    assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/bob"
    assert ident["UserId"] == iam.get_user(UserName="bob")["User"]["UserId"]
    # A deleted key stops verifying at once.
    iam.delete_access_key(UserName="carol", AccessKeyId=keys["carol"]["AccessKeyId"])
    with pytest.raises(ClientError) as e:
        as_user("carol", "s3").get_object(Bucket="photos", Key="cat.jpg")
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_assume_role_sessions_act_as_the_role_and_expire(enforced):
    iam = client(enforced, "iam")
    iam.create_role(RoleName="ops", AssumeRolePolicyDocument=TRUST_ACCOUNT)
    iam.put_role_policy(RoleName="ops", PolicyName="sqs", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}]}))
    sts = client(enforced, "sts")
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/ops"
    # AWS's validation: DurationSeconds above the role's maximum.
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="s1", DurationSeconds=43201)
    assert e.value.response["Error"]["Code"] == "ValidationError"
    # A role whose trust policy does not name the caller cannot be assumed.
    iam.create_role(RoleName="lambda-only", AssumeRolePolicyDocument=TRUST_LAMBDA)
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/lambda-only", RoleSessionName="x1")
    assert e.value.response["Error"]["Code"] == "AccessDenied"

    long = sts.assume_role(RoleArn=role_arn, RoleSessionName="long-one")["Credentials"]
    # Below AWS's 900 s only with the testing flag (and boto3's own check off).
    unchecked = boto3.client(
        "sts", endpoint_url=enforced.api, region_name="us-east-1", aws_access_key_id=KEY,
        aws_secret_access_key=SECRET, config=Config(parameter_validation=False))
    short = unchecked.assume_role(RoleArn=role_arn, RoleSessionName="short-one",
                                  DurationSeconds=2)["Credentials"]
    as_long = lambda svc: client(enforced, svc, long["AccessKeyId"], long["SecretAccessKey"], long["SessionToken"])
    ident = as_long("sts").get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/long-one"
    assert ident["UserId"].endswith(":long-one") and ident["UserId"].startswith("AROA")
    as_long("sqs").list_queues()
    with pytest.raises(ClientError) as e:
        as_long("sqs").create_queue(QueueName="nope")
    assert e.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException")
    assert "sqs:CreateQueue" in e.value.response["Error"]["Message"]

    as_short = client(enforced, "sts", short["AccessKeyId"], short["SecretAccessKey"], short["SessionToken"])
    expiry = short["Expiration"].timestamp()
    # Past the expiry (the server's clock is this machine's), the key is refused.
    while time.time() < expiry + 0.5:
        time.sleep(0.2)
    with pytest.raises(ClientError) as e:
        as_short.get_caller_identity()
    assert e.value.response["Error"]["Code"] == "ExpiredToken"
    # The long session is unaffected.
    assert as_long("sts").get_caller_identity()["Arn"].endswith("/long-one")


def signed_get(server, path):
    req = AWSRequest(method="GET", url=server.api + path)
    SigV4Auth(Credentials(KEY, SECRET), "nimbus", "us-east-1").add_auth(req)
    return requests.get(server.api + path, headers=dict(req.headers), timeout=10)


def test_audit_mode_reports_the_missing_statement_and_allows():
    s, d = start("audit")
    try:
        client(s, "iam").create_role(RoleName="thin", AssumeRolePolicyDocument=TRUST_LAMBDA)
        setup_tables_and_function(s, "auditee", "thin")
        assert invoke(s, "auditee", {"op": "put", "table": "Orders"}) == {"ok": True}
        table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/Orders"
        wait_for(lambda: "iam audit" in s.log_text(), what="the audit log line")
        line = next(l for l in s.log_text().splitlines() if "iam audit" in l and "PutItem" in l)
        assert "dynamodb:PutItem" in line and table in line, line
        assert '{"Effect":"Allow","Action":"dynamodb:PutItem","Resource":"%s"}' % table in line, line
        metrics = signed_get(s, "/metrics")
        assert metrics.status_code == 200, metrics.text
        assert 'nimbus_iam_audit_would_deny_by_action_total{action="dynamodb:PutItem"} 1' in metrics.text
        # The simulator agrees and names the deciding statement once allowed.
        sim = signed_get(s, "/_nimbus/services/iam/simulate?" + urlencode({
            "principal": f"arn:aws:iam::{ACCOUNT}:role/thin", "action": "dynamodb:PutItem",
            "resource": table})).json()
        assert sim.get("Decision") == "implicitDeny", sim
        cli = ["--access-key", KEY, "--secret-key", SECRET, "iam", "simulate",
               "--principal", f"arn:aws:iam::{ACCOUNT}:role/thin",
               "--action", "dynamodb:PutItem", "--resource", table]
        r = s.cli(*cli)
        assert r.returncode == 1 and "DENIED (implicitDeny)" in r.stdout, (r.stdout, r.stderr)
        client(s, "iam").put_role_policy(RoleName="thin", PolicyName="w", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Sid": "Write", "Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": table}]}))
        sim = signed_get(s, "/_nimbus/services/iam/simulate?" + urlencode({
            "principal": f"arn:aws:iam::{ACCOUNT}:role/thin", "action": "dynamodb:PutItem",
            "resource": table})).json()
        assert sim["Decision"] == "allowed" and sim["Statement"]["Statement"] == "Write", sim
        r = s.cli(*cli)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "ALLOWED" in r.stdout and "deciding statement: Write in inline policy w of role thin" in r.stdout, r.stdout
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)
