"""STS GetFederationToken under `--iam enforce` (issue 19): an IAM user's key
asks for a federated user's credentials; the session is
`arn:aws:sts::<account>:federated-user/<name>` (GetCallerIdentity says so) and
may do only what both the user's policies and the session policy allow —
nothing without a session policy, as on AWS. Session credentials cannot ask;
durations are bounded as AWS bounds them (the root's at one hour)."""

import json
import shutil

import pytest
from botocore.exceptions import ClientError

from test_iam_enforce import client, start

ACCOUNT = "123456789012"


def allow(*actions):
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]})


@pytest.fixture(scope="module")
def env():
    s, d = start("enforce")
    iam = client(s, "iam")
    iam.create_user(UserName="broker")
    iam.put_user_policy(UserName="broker", PolicyName="p",
                        PolicyDocument=allow("sqs:ListQueues", "sqs:CreateQueue", "s3:ListAllMyBuckets",
                                             "sts:GetFederationToken"))
    k = iam.create_access_key(UserName="broker")["AccessKey"]
    yield s, (k["AccessKeyId"], k["SecretAccessKey"])
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def code_of(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_federated_users_get_the_intersection_of_user_and_session_policy(env):
    server, (key, secret) = env
    sts = client(server, "sts", key, secret)
    r = sts.get_federation_token(Name="bob", Policy=allow("sqs:*", "sts:GetFederationToken"),
                                 DurationSeconds=900)
    assert r["FederatedUser"] == {"FederatedUserId": f"{ACCOUNT}:bob",
                                  "Arn": f"arn:aws:sts::{ACCOUNT}:federated-user/bob"}
    c = r["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    fed = lambda svc: client(server, svc, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    ident = fed("sts").get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:federated-user/bob"
    assert ident["UserId"] == f"{ACCOUNT}:bob"
    # Both allow: works.
    url = fed("sqs").create_queue(QueueName="fed-q")["QueueUrl"]
    fed("sqs").list_queues()
    # The session policy allows sqs:*, the user does not allow DeleteQueue.
    code, msg = code_of(lambda: fed("sqs").delete_queue(QueueUrl=url))
    assert code == "AccessDenied", msg
    # The user allows s3:ListAllMyBuckets, the session policy does not.
    code, msg = code_of(lambda: fed("s3").list_buckets())
    assert code == "AccessDenied", msg
    assert f"federated-user/bob is not authorized to perform: s3:ListAllMyBuckets" in msg
    assert msg.endswith("because no session policy allows the s3:ListAllMyBuckets action"), msg

    # No session policy: nothing.
    c2 = sts.get_federation_token(Name="nobody")["Credentials"]
    none = client(server, "sqs", c2["AccessKeyId"], c2["SecretAccessKey"], c2["SessionToken"])
    assert code_of(lambda: none.list_queues())[0] == "AccessDenied"

    # Session credentials cannot ask for more, even where both policies allow it.
    code, msg = code_of(lambda: fed("sts").get_federation_token(Name="carol", Policy=allow("sqs:*")))
    assert (code, msg) == ("AccessDenied", "Cannot call GetFederationToken with session credentials")


def test_names_and_durations_are_validated(env):
    server, (key, secret) = env
    sts = client(server, "sts", key, secret)
    assert code_of(lambda: sts.get_federation_token(Name="bad name"))[0] == "ValidationError"
    assert code_of(lambda: sts.get_federation_token(Name="bob", DurationSeconds=129601))[0] == "ValidationError"
    assert sts.get_federation_token(Name="bob", DurationSeconds=129600)["Credentials"]["AccessKeyId"]
    # The root's tokens last at most an hour.
    root = client(server, "sts")
    assert code_of(lambda: root.get_federation_token(Name="rr", DurationSeconds=3601))[0] == "ValidationError"
    r = root.get_federation_token(Name="rootfed", Policy=allow("sqs:ListQueues"))
    c = r["Credentials"]
    fed = lambda svc: client(server, svc, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    fed("sqs").list_queues()
    assert code_of(lambda: fed("sqs").create_queue(QueueName="rootfed-q"))[0] == "AccessDenied"
