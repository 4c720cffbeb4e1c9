"""The IAM API with boto3 (issue 19): roles, inline and managed policies with
versions, users and access keys, with IAM's errors; the state survives kill -9;
iam:PassRole is checked on CreateFunction under --iam enforce."""

import json
import shutil
import signal
import tempfile

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Server, make_zip

ACCOUNT = "123456789012"
KEY, SECRET = "AKIANIMBUSIAMAPI0001", "iamapi/Secret+Key00000000000000000000001"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def doc(*actions, resource="*"):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": list(actions), "Resource": resource}]})


@pytest.fixture(scope="module")
def srv():
    d = tempfile.mkdtemp(prefix="nimbus-iamapi-")
    s = Server(d, ["--credentials", f"{KEY}:{SECRET}", "--iam", "enforce"]).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def client(server, service, key=KEY, secret=SECRET):
    return boto3.client(service, endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 0}))


def code(e):
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_roles_policies_and_errors(srv):
    iam = client(srv, "iam")
    role = iam.create_role(RoleName="app", AssumeRolePolicyDocument=TRUST, Description="d")["Role"]
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/app"
    assert role["RoleId"].startswith("AROA") and len(role["RoleId"]) == 21
    assert iam.get_role(RoleName="app")["Role"]["AssumeRolePolicyDocument"] == json.loads(TRUST)
    with pytest.raises(ClientError) as e:
        iam.create_role(RoleName="APP", AssumeRolePolicyDocument=TRUST)
    assert code(e) == ("EntityAlreadyExists", 409)
    with pytest.raises(ClientError) as e:
        iam.get_role(RoleName="ghost")
    assert code(e) == ("NoSuchEntity", 404)
    assert e.value.response["Error"]["Message"] == "The role with name ghost cannot be found."
    with pytest.raises(ClientError) as e:
        iam.put_role_policy(RoleName="app", PolicyName="p", PolicyDocument='{"Statement":[{"Effect":"Allow","Resource":"*"}]}')
    assert code(e) == ("MalformedPolicyDocument", 400)
    assert e.value.response["Error"]["Message"] == "Policy statement must contain actions."
    iam.put_role_policy(RoleName="app", PolicyName="p", PolicyDocument=doc("sqs:*"))
    assert iam.list_role_policies(RoleName="app")["PolicyNames"] == ["p"]

    # Managed policies with versions.
    arn = iam.create_policy(PolicyName="reads", PolicyDocument=doc("s3:GetObject"))["Policy"]["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/reads"
    v2 = iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc("s3:Get*"), SetAsDefault=True)
    assert v2["PolicyVersion"]["VersionId"] == "v2" and v2["PolicyVersion"]["IsDefaultVersion"]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"
    got = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert got["Document"] == json.loads(doc("s3:GetObject")) and not got["IsDefaultVersion"]
    with pytest.raises(ClientError) as e:
        iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
    assert code(e) == ("DeleteConflict", 409)
    iam.attach_role_policy(RoleName="app", PolicyArn=arn)
    iam.attach_role_policy(RoleName="app",
                           PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    names = [p["PolicyName"] for p in iam.list_attached_role_policies(RoleName="app")["AttachedPolicies"]]
    assert names == ["reads", "AWSLambdaBasicExecutionRole"]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    with pytest.raises(ClientError) as e:
        iam.delete_policy(PolicyArn=arn)
    assert code(e) == ("DeleteConflict", 409)
    with pytest.raises(ClientError) as e:
        iam.delete_role(RoleName="app")
    assert code(e) == ("DeleteConflict", 409)
    with pytest.raises(ClientError) as e:
        iam.attach_role_policy(RoleName="app", PolicyArn="arn:aws:iam::aws:policy/NoSuchPolicy")
    assert code(e) == ("NoSuchEntity", 404)
    # Size limits.
    big = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::b/{'x' * 6200}"}]})
    with pytest.raises(ClientError) as e:
        iam.create_policy(PolicyName="big", PolicyDocument=big)
    assert code(e) == ("LimitExceeded", 409)


def test_users_access_keys_and_pass_role(srv):
    iam = client(srv, "iam")
    iam.create_user(UserName="dev")
    iam.put_user_policy(UserName="dev", PolicyName="lambda",
                        PolicyDocument=doc("lambda:CreateFunction", "lambda:GetFunction"))
    k = iam.create_access_key(UserName="dev")["AccessKey"]
    assert k["AccessKeyId"].startswith("AKIA") and len(k["SecretAccessKey"]) == 40
    iam.create_access_key(UserName="dev")
    with pytest.raises(ClientError) as e:
        iam.create_access_key(UserName="dev")
    assert code(e) == ("LimitExceeded", 409)
    assert len(iam.list_access_keys(UserName="dev")["AccessKeyMetadata"]) == 2
    iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=TRUST)
    lam = client(srv, "lambda", k["AccessKeyId"], k["SecretAccessKey"])
    create = dict(FunctionName="f", Runtime="python3.12", Handler="app.handler",
                  Role=f"arn:aws:iam::{ACCOUNT}:role/fn-role",
                  Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})})
    with pytest.raises(ClientError) as e:
        lam.create_function(**create)
    assert code(e)[0] == "AccessDeniedException"
    assert "iam:PassRole" in e.value.response["Error"]["Message"]
    iam.put_user_policy(UserName="dev", PolicyName="pass",
                        PolicyDocument=doc("iam:PassRole", resource=f"arn:aws:iam::{ACCOUNT}:role/fn-role"))
    lam.create_function(**create)
    # Inactive keys stop verifying; active again, they work.
    iam.update_access_key(UserName="dev", AccessKeyId=k["AccessKeyId"], Status="Inactive")
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName="f")
    assert code(e)[0] == "UnrecognizedClientException"
    iam.update_access_key(UserName="dev", AccessKeyId=k["AccessKeyId"], Status="Active")
    assert lam.get_function(FunctionName="f")["Configuration"]["FunctionName"] == "f"


def test_state_survives_kill_9(server_factory, data_dir):
    s = server_factory("--credentials", f"{KEY}:{SECRET}", "--iam", "enforce")
    iam = client(s, "iam")
    iam.create_role(RoleName="durable", AssumeRolePolicyDocument=TRUST)
    iam.put_role_policy(RoleName="durable", PolicyName="p", PolicyDocument=doc("sqs:*"))
    iam.create_user(UserName="u")
    k = iam.create_access_key(UserName="u")["AccessKey"]
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    s2 = server_factory("--credentials", f"{KEY}:{SECRET}", "--iam", "enforce")
    iam = client(s2, "iam")
    assert iam.get_role_policy(RoleName="durable", PolicyName="p")["PolicyDocument"] == json.loads(doc("sqs:*"))
    # The user's key verifies after the restart (and, with no policy, is denied by IAM).
    sts = client(s2, "sts", k["AccessKeyId"], k["SecretAccessKey"])
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/u"
    with pytest.raises(ClientError) as e:
        client(s2, "sqs", k["AccessKeyId"], k["SecretAccessKey"]).list_queues()
    assert "sqs:ListQueues" in e.value.response["Error"]["Message"]
