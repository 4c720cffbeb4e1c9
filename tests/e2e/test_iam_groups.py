"""IAM groups (issue 19): create, get with members, list (for a user too),
members added and removed, inline and attached group policies — which apply
to every member under `--iam enforce`, at once — and AWS's DeleteConflict
errors while a group has members or policies, or a user is in a group."""

from test_iam_enforce import allow, client, code_of, enforced  # noqa: F401 (a fixture)

ACCOUNT = "123456789012"


def test_group_policies_apply_to_members(enforced):
    iam = client(enforced, "iam")
    g = iam.create_group(GroupName="devs", Path="/eng/")["Group"]
    assert g["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/eng/devs" and g["GroupId"].startswith("AGPA")
    assert code_of(lambda: iam.create_group(GroupName="DEVS"))[0] == "EntityAlreadyExists"
    iam.create_user(UserName="dana")
    k = iam.create_access_key(UserName="dana")["AccessKey"]
    as_dana = lambda svc: client(enforced, svc, k["AccessKeyId"], k["SecretAccessKey"])
    assert code_of(lambda: as_dana("sqs").list_queues())[0] == "AccessDenied"

    iam.put_group_policy(GroupName="devs", PolicyName="read-queues", PolicyDocument=allow("sqs:ListQueues"))
    assert code_of(lambda: as_dana("sqs").list_queues())[0] == "AccessDenied"  # not a member yet
    iam.add_user_to_group(GroupName="devs", UserName="dana")
    as_dana("sqs").list_queues()
    got = iam.get_group(GroupName="devs")
    assert [u["UserName"] for u in got["Users"]] == ["dana"]
    assert [x["GroupName"] for x in iam.list_groups_for_user(UserName="dana")["Groups"]] == ["devs"]
    assert [x["GroupName"] for x in iam.list_groups(PathPrefix="/eng/")["Groups"]] == ["devs"]
    assert iam.list_groups(PathPrefix="/ops/")["Groups"] == []
    assert iam.list_group_policies(GroupName="devs")["PolicyNames"] == ["read-queues"]
    doc = iam.get_group_policy(GroupName="devs", PolicyName="read-queues")["PolicyDocument"]
    assert doc["Statement"][0]["Action"] == ["sqs:ListQueues"]

    # A managed policy attached to the group.
    arn = iam.create_policy(PolicyName="s3-list", PolicyDocument=allow("s3:ListAllMyBuckets"))["Policy"]["Arn"]
    assert code_of(lambda: as_dana("s3").list_buckets())[0] == "AccessDenied"
    iam.attach_group_policy(GroupName="devs", PolicyArn=arn)
    as_dana("s3").list_buckets()
    assert [p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName="devs")["AttachedPolicies"]] == [arn]
    assert [x["GroupName"] for x in iam.list_entities_for_policy(PolicyArn=arn)["PolicyGroups"]] == ["devs"]
    assert code_of(lambda: iam.delete_policy(PolicyArn=arn))[0] == "DeleteConflict"

    # Conflicts while the group is in use.
    code, msg = code_of(lambda: iam.delete_group(GroupName="devs"))
    assert (code, msg) == ("DeleteConflict", "Cannot delete entity, must remove users from group first.")
    iam.delete_access_key(UserName="dana", AccessKeyId=k["AccessKeyId"])
    code, msg = code_of(lambda: iam.delete_user(UserName="dana"))
    assert (code, msg) == ("DeleteConflict", "Cannot delete entity, must remove users from group first.")

    # Leaving the group takes its permissions away.
    k2 = iam.create_access_key(UserName="dana")["AccessKey"]
    as_dana2 = lambda svc: client(enforced, svc, k2["AccessKeyId"], k2["SecretAccessKey"])
    as_dana2("sqs").list_queues()
    iam.remove_user_from_group(GroupName="devs", UserName="dana")
    assert code_of(lambda: as_dana2("sqs").list_queues())[0] == "AccessDenied"
    assert code_of(lambda: iam.remove_user_from_group(GroupName="devs", UserName="dana"))[0] == "NoSuchEntity"

    assert code_of(lambda: iam.delete_group(GroupName="devs"))[0] == "DeleteConflict"
    iam.delete_group_policy(GroupName="devs", PolicyName="read-queues")
    iam.detach_group_policy(GroupName="devs", PolicyArn=arn)
    iam.delete_group(GroupName="devs")
    assert code_of(lambda: iam.get_group(GroupName="devs"))[0] == "NoSuchEntity"
