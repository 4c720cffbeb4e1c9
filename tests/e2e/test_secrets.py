"""Secrets Manager against the real binary with boto3 and the aws CLI: secrets,
versions and staging labels, idempotency, binary values, tags, resource policies,
random passwords, deletion with a recovery window, lookups by name and ARN, AWS's
errors, rotation by a Python function deployed on Nimbus (the AWS rotation
template's four steps), and the values surviving a `kill -9`."""

import base64
import json
import subprocess
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT, wait_for


def sm(server):
    return boto3.client(
        "secretsmanager",
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}),
    )


def code_of(e):
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


# The AWS rotation template (SecretsManagerRotationTemplate), trimmed to its logic:
# no endpoint, no credentials in the code.
ROTATOR = '''
import boto3

sm = boto3.client("secretsmanager")

def handler(event, context):
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    meta = sm.describe_secret(SecretId=arn)
    if not meta["RotationEnabled"]:
        raise ValueError("rotation not enabled")
    versions = meta["VersionIdsToStages"]
    if token not in versions:
        raise ValueError("version has no stage for rotation")
    if "AWSCURRENT" in versions[token]:
        return
    if "AWSPENDING" not in versions[token]:
        raise ValueError("version not pending")
    if step == "createSecret":
        sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
        try:
            sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
        except sm.exceptions.ResourceNotFoundException:
            pw = sm.get_random_password(ExcludeCharacters="/@\\"'\\\\")["RandomPassword"]
            sm.put_secret_value(SecretId=arn, ClientRequestToken=token,
                                SecretString=pw, VersionStages=["AWSPENDING"])
    elif step == "setSecret":
        pass
    elif step == "testSecret":
        v = sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
        if "FAIL" in (meta.get("Description") or ""):
            raise RuntimeError("test step refused the pending value")
        assert v["SecretString"]
    elif step == "finishSecret":
        current = None
        for vid, stages in versions.items():
            if "AWSCURRENT" in stages:
                if vid == token:
                    return
                current = vid
                break
        sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                       MoveToVersionId=token, RemoveFromVersionId=current)
    else:
        raise ValueError("bad step " + step)
'''

READER = '''
import boto3

def handler(event, context):
    s = boto3.client("secretsmanager").get_secret_value(SecretId=event["secret"])
    p = boto3.client("ssm").get_parameter(Name=event["param"], WithDecryption=True)
    r = boto3.client("ssm").get_parameter(
        Name="/aws/reference/secretsmanager/" + event["secret"], WithDecryption=True)
    return {"secret": s["SecretString"], "param": p["Parameter"]["Value"],
            "ref": r["Parameter"]["Value"]}
'''


def test_create_get_describe_list_and_lookup_by_name_and_arns(server):
    c = sm(server)
    r = c.create_secret(Name="app/db", SecretString='{"user":"u","pw":"p1"}',
                        Description="db creds", Tags=[{"Key": "env", "Value": "prod"}])
    arn = r["ARN"]
    assert arn.startswith("arn:aws:secretsmanager:us-east-1:") and ":secret:app/db-" in arn
    assert len(arn.rsplit("-", 1)[1]) == 6
    v = c.get_secret_value(SecretId="app/db")
    assert v["SecretString"] == '{"user":"u","pw":"p1"}'
    assert v["VersionStages"] == ["AWSCURRENT"] and v["VersionId"] == r["VersionId"]
    partial = arn[:-7]
    assert c.get_secret_value(SecretId=partial)["ARN"] == arn
    assert c.get_secret_value(SecretId=arn)["Name"] == "app/db"
    d = c.describe_secret(SecretId=arn)
    assert d["Description"] == "db creds" and d["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert d["VersionIdsToStages"] == {r["VersionId"]: ["AWSCURRENT"]}
    assert d["RotationEnabled"] is False and "LastAccessedDate" in d
    names = [s["Name"] for s in c.list_secrets(Filters=[{"Key": "name", "Values": ["app/"]}])["SecretList"]]
    assert "app/db" in names
    with pytest.raises(ClientError) as e:
        c.get_secret_value(SecretId="nope")
    assert code_of(e) == ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
    with pytest.raises(ClientError) as e:
        c.create_secret(Name="app/db", SecretString="x")
    assert code_of(e)[0] == "ResourceExistsException"


def test_versions_stages_idempotency_and_binary(server):
    c = sm(server)
    t1 = str(uuid.uuid4())
    c.create_secret(Name="ver", SecretString="v1", ClientRequestToken=t1)
    # The same request again is answered again.
    assert c.create_secret(Name="ver", SecretString="v1", ClientRequestToken=t1)["VersionId"] == t1
    t2 = str(uuid.uuid4())
    r = c.put_secret_value(SecretId="ver", SecretString="v2", ClientRequestToken=t2)
    assert r["VersionStages"] == ["AWSCURRENT"]
    assert c.put_secret_value(SecretId="ver", SecretString="v2", ClientRequestToken=t2)["VersionId"] == t2
    with pytest.raises(ClientError) as e:
        c.put_secret_value(SecretId="ver", SecretString="other", ClientRequestToken=t2)
    assert code_of(e)[0] == "ResourceExistsException"
    assert c.get_secret_value(SecretId="ver", VersionStage="AWSPREVIOUS")["SecretString"] == "v1"
    assert c.get_secret_value(SecretId="ver", VersionId=t1)["SecretString"] == "v1"
    t3 = str(uuid.uuid4())
    c.put_secret_value(SecretId="ver", SecretString="v3", ClientRequestToken=t3, VersionStages=["staging"])
    assert c.get_secret_value(SecretId="ver")["SecretString"] == "v2"
    assert c.get_secret_value(SecretId="ver", VersionStage="staging")["SecretString"] == "v3"
    with pytest.raises(ClientError) as e:
        c.update_secret_version_stage(SecretId="ver", VersionStage="AWSCURRENT", MoveToVersionId=t3)
    assert code_of(e)[0] == "InvalidParameterException"
    c.update_secret_version_stage(SecretId="ver", VersionStage="AWSCURRENT", MoveToVersionId=t3, RemoveFromVersionId=t2)
    stages = c.describe_secret(SecretId="ver")["VersionIdsToStages"]
    assert stages == {t3: ["staging", "AWSCURRENT"], t2: ["AWSPREVIOUS"]}
    listed = c.list_secret_version_ids(SecretId="ver")["Versions"]
    assert {v["VersionId"] for v in listed} == {t2, t3}
    listed = c.list_secret_version_ids(SecretId="ver", IncludeDeprecated=True)["Versions"]
    assert {v["VersionId"] for v in listed} == {t1, t2, t3}
    with pytest.raises(ClientError) as e:
        c.get_secret_value(SecretId="ver", VersionStage="nolabel")
    assert code_of(e)[0] == "ResourceNotFoundException"

    blob = bytes(range(256))
    c.create_secret(Name="bin", SecretBinary=blob)
    got = c.get_secret_value(SecretId="bin")
    assert got["SecretBinary"] == blob and "SecretString" not in got
    with pytest.raises(ClientError) as e:
        c.create_secret(Name="both", SecretString="a", SecretBinary=b"b")
    assert code_of(e)[0] == "InvalidParameterException"
    # UpdateSecret with a value makes a new current version.
    u = c.update_secret(SecretId="ver", SecretString="v4", Description="d2")
    assert c.get_secret_value(SecretId="ver")["VersionId"] == u["VersionId"]
    assert c.describe_secret(SecretId="ver")["Description"] == "d2"


def test_list_pagination_filters_and_batch_get(server):
    c = sm(server)
    for i in range(5):
        c.create_secret(Name=f"page/s{i}", SecretString=f"val{i}", Tags=[{"Key": "team", "Value": "blue" if i % 2 else "red"}])
    seen, token = [], None
    while True:
        kw = {"Filters": [{"Key": "name", "Values": ["page/"]}], "MaxResults": 2}
        if token:
            kw["NextToken"] = token
        r = c.list_secrets(**kw)
        assert len(r["SecretList"]) <= 2
        seen += [s["Name"] for s in r["SecretList"]]
        token = r.get("NextToken")
        if not token:
            break
    assert seen == [f"page/s{i}" for i in range(5)]
    blue = c.list_secrets(Filters=[{"Key": "tag-value", "Values": ["blue"]}])["SecretList"]
    assert sorted(s["Name"] for s in blue) == ["page/s1", "page/s3"]
    notblue = c.list_secrets(Filters=[{"Key": "name", "Values": ["page/"]}, {"Key": "tag-value", "Values": ["!blue"]}])["SecretList"]
    assert sorted(s["Name"] for s in notblue) == ["page/s0", "page/s2", "page/s4"]
    b = c.batch_get_secret_value(SecretIdList=["page/s0", "page/s1", "missing"])
    assert sorted(v["SecretString"] for v in b["SecretValues"]) == ["val0", "val1"]
    assert b["Errors"][0]["SecretId"] == "missing" and b["Errors"][0]["ErrorCode"] == "ResourceNotFoundException"
    b = c.batch_get_secret_value(Filters=[{"Key": "tag-value", "Values": ["red"]}])
    assert sorted(v["SecretString"] for v in b["SecretValues"]) == ["val0", "val2", "val4"]
    with pytest.raises(ClientError) as e:
        c.list_secrets(NextToken="garbage")
    assert code_of(e)[0] == "InvalidNextTokenException"


def test_delete_restore_force_and_errors(server):
    c = sm(server)
    c.create_secret(Name="gone", SecretString="x")
    with pytest.raises(ClientError) as e:
        c.delete_secret(SecretId="gone", RecoveryWindowInDays=3)
    assert code_of(e) == ("InvalidParameterException", "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
    with pytest.raises(ClientError) as e:
        c.delete_secret(SecretId="gone", RecoveryWindowInDays=7, ForceDeleteWithoutRecovery=True)
    assert code_of(e)[0] == "InvalidParameterException"
    r = c.delete_secret(SecretId="gone", RecoveryWindowInDays=7)
    assert "DeletionDate" in r
    with pytest.raises(ClientError) as e:
        c.get_secret_value(SecretId="gone")
    assert code_of(e) == ("InvalidRequestException", "You can't perform this operation on the secret because it was marked for deletion.")
    assert "DeletedDate" in c.describe_secret(SecretId="gone")
    assert "gone" not in [s["Name"] for s in c.list_secrets()["SecretList"]]
    assert "gone" in [s["Name"] for s in c.list_secrets(IncludePlannedDeletion=True)["SecretList"]]
    with pytest.raises(ClientError) as e:
        c.create_secret(Name="gone", SecretString="y")
    assert code_of(e)[0] == "InvalidRequestException"
    c.restore_secret(SecretId="gone")
    assert c.get_secret_value(SecretId="gone")["SecretString"] == "x"
    c.delete_secret(SecretId="gone", ForceDeleteWithoutRecovery=True)
    with pytest.raises(ClientError) as e:
        c.describe_secret(SecretId="gone")
    assert code_of(e)[0] == "ResourceNotFoundException"
    c.create_secret(Name="gone", SecretString="again")
    with pytest.raises(ClientError) as e:
        c.create_secret(Name="bad name!", SecretString="x")
    assert code_of(e)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        c.put_secret_value(SecretId="gone")
    assert code_of(e)[0] == "InvalidParameterException"


def test_tags_policies_and_random_passwords(server):
    c = sm(server)
    c.create_secret(Name="pol", SecretString="x")
    c.tag_resource(SecretId="pol", Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    c.untag_resource(SecretId="pol", TagKeys=["a"])
    assert c.describe_secret(SecretId="pol")["Tags"] == [{"Key": "b", "Value": "2"}]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})
    assert c.validate_resource_policy(ResourcePolicy=policy)["PolicyValidationPassed"] is True
    bad = c.validate_resource_policy(ResourcePolicy='{"Statement": [{"Effect": "Allow"}]}')
    assert bad["PolicyValidationPassed"] is False and bad["ValidationErrors"]
    c.put_resource_policy(SecretId="pol", ResourcePolicy=policy)
    assert json.loads(c.get_resource_policy(SecretId="pol")["ResourcePolicy"]) == json.loads(policy)
    with pytest.raises(ClientError) as e:
        c.put_resource_policy(SecretId="pol", ResourcePolicy="not json")
    assert code_of(e)[0] == "MalformedPolicyDocumentException"
    public = json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]})
    with pytest.raises(ClientError) as e:
        c.put_resource_policy(SecretId="pol", ResourcePolicy=public, BlockPublicPolicy=True)
    assert code_of(e)[0] == "PublicPolicyException"
    c.delete_resource_policy(SecretId="pol")
    assert "ResourcePolicy" not in c.get_resource_policy(SecretId="pol")

    pw = c.get_random_password()["RandomPassword"]
    assert len(pw) == 32
    pw = c.get_random_password(PasswordLength=50, ExcludePunctuation=True, ExcludeUppercase=True,
                               ExcludeCharacters="abc")["RandomPassword"]
    assert len(pw) == 50 and all(ch.islower() or ch.isdigit() for ch in pw) and not set(pw) & set("abc")
    assert any(ch.isdigit() for ch in pw)
    assert " " in c.get_random_password(PasswordLength=4, IncludeSpace=True, ExcludePunctuation=True)["RandomPassword"]
    with pytest.raises(ClientError) as e:
        c.get_random_password(PasswordLength=5000)
    assert code_of(e)[0] == "InvalidParameterException"


def test_rotation_by_a_python_function_end_to_end(server):
    server.deploy("rotator", "python3.12", "app.handler", {"app.py": ROTATOR}, timeout_s=60)
    c = sm(server)
    r = c.create_secret(Name="rot", SecretString="initial")
    first = r["VersionId"]
    fn_arn = "arn:aws:lambda:us-east-1:000000000000:function:rotator"
    rr = c.rotate_secret(SecretId="rot", RotationLambdaARN=fn_arn, RotationRules={"AutomaticallyAfterDays": 30})
    new = rr["VersionId"]
    assert new != first

    def rotated():
        d = c.describe_secret(SecretId="rot")
        st = d["VersionIdsToStages"]
        # AWSPENDING may stay on the new current version, as on AWS. The function's
        # finishSecret step moves AWSCURRENT; the rotation is recorded as done
        # (LastRotatedDate) only when that invocation has returned, a moment later.
        return st if "AWSCURRENT" in st.get(new, []) and "LastRotatedDate" in d else None

    stages = wait_for(rotated, timeout=60, what="AWSCURRENT on the rotated version")
    assert stages[first] == ["AWSPREVIOUS"]
    cur = c.get_secret_value(SecretId="rot")
    assert cur["VersionId"] == new and cur["SecretString"] not in ("initial", "")
    assert c.get_secret_value(SecretId="rot", VersionStage="AWSPREVIOUS")["SecretString"] == "initial"
    d = c.describe_secret(SecretId="rot")
    assert d["RotationEnabled"] is True and d["RotationLambdaARN"] == fn_arn
    assert d["RotationRules"]["AutomaticallyAfterDays"] == 30
    assert "LastRotatedDate" in d and d["NextRotationDate"] > d["LastRotatedDate"]
    m = server.session.get(server.api + "/metrics", timeout=10).text
    assert "nimbus_secretsmanager_rotations_succeeded_total 1" in m

    # A failing testSecret step: AWSCURRENT stays, AWSPENDING is left on the new version.
    c.create_secret(Name="rotfail", SecretString="keep", Description="FAIL")
    rf = c.rotate_secret(SecretId="rotfail", RotationLambdaARN=fn_arn)
    wait_for(lambda: "nimbus_secretsmanager_rotations_failed_total 1" in server.session.get(server.api + "/metrics", timeout=10).text,
             timeout=60, what="the failed rotation")
    st = c.describe_secret(SecretId="rotfail")["VersionIdsToStages"]
    assert st[rf["VersionId"]] == ["AWSPENDING"]
    assert c.get_secret_value(SecretId="rotfail")["SecretString"] == "keep"
    with pytest.raises(ClientError) as e:
        c.rotate_secret(SecretId="rotfail", ClientRequestToken=str(uuid.uuid4()))
    assert code_of(e) == ("InvalidRequestException", "A previous rotation isn't complete. That rotation will be reattempted.")
    with pytest.raises(ClientError) as e:
        c.rotate_secret(SecretId="rot", RotationLambdaARN="arn:aws:lambda:us-east-1:000000000000:function:nope")
    assert code_of(e)[0] == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        c.rotate_secret(SecretId="rot", RotationRules={"ScheduleExpression": "rate(1 hours)"})
    assert code_of(e)[0] == "InvalidParameterException"
    c.cancel_rotate_secret(SecretId="rot")
    assert c.describe_secret(SecretId="rot")["RotationEnabled"] is False


def test_scheduled_rotation_runs_when_its_time_comes(server):
    """RotateSecret with a schedule and RotateImmediately=False records only the
    schedule; the rotation runs when the schedule is due. The admin route runs
    what is due at a given time, so the schedule is exercised without waiting."""
    import datetime
    server.deploy("rotator2", "python3.12", "app.handler", {"app.py": ROTATOR}, timeout_s=60)
    c = sm(server)
    first = c.create_secret(Name="sched", SecretString="v0")["VersionId"]
    fn_arn = "arn:aws:lambda:us-east-1:000000000000:function:rotator2"
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    c.rotate_secret(SecretId="sched", RotationLambdaARN=fn_arn, RotateImmediately=False,
                    RotationRules={"ScheduleExpression": "rate(4 hours)"})
    after = datetime.datetime.now(datetime.timezone.utc)
    d = c.describe_secret(SecretId="sched")
    assert d["RotationEnabled"] is True and "LastRotatedDate" not in d
    nxt = d["NextRotationDate"]
    four = datetime.timedelta(hours=4)
    assert before + four <= nxt <= after + four, (before, nxt, after)
    # Nothing was started: no AWSPENDING version.
    assert d["VersionIdsToStages"] == {first: ["AWSCURRENT"]}

    def run(at):
        r = server.session.post(f"{server.api}/_nimbus/services/secrets/rotations/run",
                                params={"now": int(at.timestamp() * 1000)}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["Started"]

    assert run(nxt - datetime.timedelta(seconds=1)) == []
    assert run(nxt) == [d["ARN"]]

    def rotated():
        st = c.describe_secret(SecretId="sched")
        cur = [v for v, stages in st["VersionIdsToStages"].items() if "AWSCURRENT" in stages]
        return st if cur != [first] and "LastRotatedDate" in st else None

    st = wait_for(rotated, timeout=60, what="the scheduled rotation")
    assert st["VersionIdsToStages"][first] == ["AWSPREVIOUS"]
    assert c.get_secret_value(SecretId="sched")["SecretString"] != "v0"
    # The next one is scheduled from the rotation, four hours on.
    assert st["NextRotationDate"] >= st["LastRotatedDate"] + four - datetime.timedelta(seconds=1)
    # A cron schedule: the next 12:00 UTC.
    c.create_secret(Name="sched-cron", SecretString="x")
    c.rotate_secret(SecretId="sched-cron", RotationLambdaARN=fn_arn, RotateImmediately=False,
                    RotationRules={"ScheduleExpression": "cron(0 12 * * ? *)"})
    nxt = c.describe_secret(SecretId="sched-cron")["NextRotationDate"].astimezone(datetime.timezone.utc)
    assert (nxt.hour, nxt.minute, nxt.second) == (12, 0, 0)
    assert datetime.timedelta(0) < nxt - after <= datetime.timedelta(days=1)


def test_a_function_reads_a_secret_and_a_parameter_with_no_endpoint_in_its_code(server):
    c = sm(server)
    c.create_secret(Name="fn/secret", SecretString="s3cr3t-for-fn")
    ssm = boto3.client("ssm", endpoint_url=server.api, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    ssm.put_parameter(Name="/fn/param", Value="param-for-fn", Type="SecureString")
    server.deploy("reader", "python3.12", "app.handler", {"app.py": READER}, timeout_s=30)
    out, _ = server.invoke_ok("reader", {"secret": "fn/secret", "param": "/fn/param"})
    assert out == {"secret": "s3cr3t-for-fn", "param": "param-for-fn", "ref": "s3cr3t-for-fn"}


def test_aws_cli(server):
    env_cli = ["aws", "--endpoint-url", server.api, "--region", "us-east-1", "--output", "json"]
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "PATH": str(ROOT / ".venv" / "bin") + ":/usr/bin:/bin"}

    def aws(*args):
        p = subprocess.run([*env_cli, *args], capture_output=True, text=True, env=env, timeout=60)
        return p

    p = aws("secretsmanager", "create-secret", "--name", "cli/one", "--secret-string", "from-cli")
    assert p.returncode == 0, p.stderr
    p = aws("secretsmanager", "get-secret-value", "--secret-id", "cli/one")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["SecretString"] == "from-cli"
    p = aws("secretsmanager", "describe-secret", "--secret-id", "cli/missing")
    assert p.returncode != 0 and "ResourceNotFoundException" in p.stderr


def test_values_survive_kill_9_and_key_rotation(server_factory, data_dir):
    s = server_factory()
    c = sm(s)
    c.create_secret(Name="durable", SecretString="durable-value-1")
    ssm = boto3.client("ssm", endpoint_url=s.api, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    ssm.put_parameter(Name="/durable/p", Value="durable-param-1", Type="SecureString")
    keyring = json.loads((data_dir / "keys" / "keyring.json").read_text())
    assert len(keyring["keys"]) == 1
    assert (data_dir / "keys" / "keyring.json").stat().st_mode & 0o777 == 0o600
    # Rotate through the running server: new key, everything re-encrypted at once.
    p = s.cli("keys", "rotate")
    assert p.returncode == 0, p.stderr
    assert "re-encrypted 1 value(s) in secretsmanager" in p.stdout and "re-encrypted 1 value(s) in ssm" in p.stdout
    new_key = json.loads((data_dir / "keys" / "keyring.json").read_text())["current"]
    assert new_key != keyring["current"]
    import sqlite3
    db = sqlite3.connect(data_dir / "secretsmanager.db")
    assert {r[0] for r in db.execute("SELECT key_id FROM secret_versions")} == {new_key}
    db.close()
    c.put_secret_value(SecretId="durable", SecretString="durable-value-2")
    s.kill()
    # Offline rotation on the data dir; the next start re-encrypts.
    p = s.cli("keys", "rotate", "--data-dir", str(data_dir))
    assert p.returncode == 0, p.stderr
    third = json.loads((data_dir / "keys" / "keyring.json").read_text())["current"]
    s2 = server_factory()
    c2 = sm(s2)
    assert c2.get_secret_value(SecretId="durable")["SecretString"] == "durable-value-2"
    assert c2.get_secret_value(SecretId="durable", VersionStage="AWSPREVIOUS")["SecretString"] == "durable-value-1"
    ssm2 = boto3.client("ssm", endpoint_url=s2.api, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")
    assert ssm2.get_parameter(Name="/durable/p", WithDecryption=True)["Parameter"]["Value"] == "durable-param-1"
    db = sqlite3.connect(data_dir / "secretsmanager.db")
    assert {r[0] for r in db.execute("SELECT key_id FROM secret_versions")} == {third}
    db.close()
    db = sqlite3.connect(data_dir / "ssm.db")
    assert {r[0] for r in db.execute("SELECT key_id FROM secure_values")} == {third}
    db.close()
    ls = s2.cli("keys", "ls")
    assert ls.returncode == 0 and ls.stdout.count("nk-") == 3 and f"{third} (current)" in ls.stdout
