"""Permissions boundaries under `--iam enforce` (issue 19): a managed policy set
as a user's or role's boundary (PutUserPermissionsBoundary,
PutRolePermissionsBoundary, CreateRole's PermissionsBoundary) caps what its
identity policies grant — an action the identity allows and the boundary does
not is refused with AWS's "no permissions boundary allows" message — and
removing it restores them, with no restart."""

from test_iam_enforce import TRUST_ACCOUNT, allow, client, code_of, enforced  # noqa: F401 (a fixture)

ACCOUNT = "123456789012"


def test_a_users_boundary_caps_its_policies(enforced):
    iam = client(enforced, "iam")
    sqs_only = iam.create_policy(PolicyName="sqs-only", PolicyDocument=allow("sqs:*"))["Policy"]["Arn"]
    iam.create_user(UserName="bounded")
    iam.put_user_policy(UserName="bounded", PolicyName="p",
                        PolicyDocument=allow("sqs:ListQueues", "s3:ListAllMyBuckets"))
    k = iam.create_access_key(UserName="bounded")["AccessKey"]
    as_user = lambda svc: client(enforced, svc, k["AccessKeyId"], k["SecretAccessKey"])
    as_user("s3").list_buckets()

    iam.put_user_permissions_boundary(UserName="bounded", PermissionsBoundary=sqs_only)
    assert iam.get_user(UserName="bounded")["User"]["PermissionsBoundary"] == {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy", "PermissionsBoundaryArn": sqs_only}
    code, msg = code_of(lambda: as_user("s3").list_buckets())
    assert code == "AccessDenied", msg
    assert msg == (f"User: arn:aws:iam::{ACCOUNT}:user/bounded is not authorized to perform: "
                   "s3:ListAllMyBuckets on resource: * because no permissions boundary allows "
                   "the s3:ListAllMyBuckets action"), msg
    as_user("sqs").list_queues()
    # The boundary grants nothing by itself.
    assert code_of(lambda: as_user("sqs").create_queue(QueueName="nope"))[0] == "AccessDenied"

    iam.delete_user_permissions_boundary(UserName="bounded")
    assert "PermissionsBoundary" not in iam.get_user(UserName="bounded")["User"]
    as_user("s3").list_buckets()
    code, _ = code_of(lambda: iam.delete_user_permissions_boundary(UserName="nobody"))
    assert code == "NoSuchEntity"
    code, _ = code_of(lambda: iam.put_user_permissions_boundary(
        UserName="bounded", PermissionsBoundary=f"arn:aws:iam::{ACCOUNT}:policy/missing"))
    assert code == "NoSuchEntity"


def test_a_roles_boundary_caps_its_sessions(enforced):
    iam = client(enforced, "iam")
    arn = iam.create_policy(PolicyName="sqs-list", PolicyDocument=allow("sqs:ListQueues"))["Policy"]["Arn"]
    role = iam.create_role(RoleName="capped", AssumeRolePolicyDocument=TRUST_ACCOUNT,
                           PermissionsBoundary=arn)["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == arn
    iam.put_role_policy(RoleName="capped", PolicyName="p",
                        PolicyDocument=allow("sqs:ListQueues", "s3:ListAllMyBuckets"))
    c = client(enforced, "sts").assume_role(RoleArn=role["Arn"], RoleSessionName="s1")["Credentials"]
    as_role = lambda svc: client(enforced, svc, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    as_role("sqs").list_queues()
    assert code_of(lambda: as_role("s3").list_buckets())[0] == "AccessDenied"
    iam.delete_role_permissions_boundary(RoleName="capped")
    assert "PermissionsBoundary" not in iam.get_role(RoleName="capped")["Role"]
    as_role("s3").list_buckets()
