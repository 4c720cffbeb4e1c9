"""SSM Parameter Store against the real binary with boto3, the aws CLI and the JS
SDK v3: the three parameter types, versions, selectors, labels, paths, history,
describe filters, tags, deletion, the Secrets Manager reference bridge and AWS's
errors; then a scan of the data dir, the server log and /metrics for every secret
value written in this module."""

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT


def ssm(server):
    return boto3.client("ssm", endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 0}))


def code_of(e):
    return e.value.response["Error"]["Code"]


# Every secret value this module writes: none may appear in plain text on disk,
# in the log or in /metrics.
SECRETS = ["Sup3rS3cretParamValue-91f2", "Sup3rS3cretParamValue-v2-77aa",
           "SecretManagerValue-4c1e9b", "JsSdkSecureValue-e0d3", "CliSecureValue-a8b1"]


def test_types_versions_selectors_and_labels(server):
    c = ssm(server)
    r = c.put_parameter(Name="/app/db/host", Value="db.local", Type="String")
    assert (r["Version"], r["Tier"]) == (1, "Standard")
    c.put_parameter(Name="/app/db/password", Value=SECRETS[0], Type="SecureString")
    c.put_parameter(Name="/app/hosts", Value="a,b,c", Type="StringList")
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="/app/db/host", Value="x", Type="String")
    assert code_of(e) == "ParameterAlreadyExists"
    r = c.put_parameter(Name="/app/db/password", Value=SECRETS[1], Overwrite=True)
    assert r["Version"] == 2
    enc = c.get_parameter(Name="/app/db/password")["Parameter"]
    assert enc["Type"] == "SecureString" and enc["Value"] not in SECRETS
    p = c.get_parameter(Name="/app/db/password", WithDecryption=True)["Parameter"]
    assert p["Value"] == SECRETS[1] and p["Version"] == 2
    assert p["ARN"].endswith(":parameter/app/db/password")
    p1 = c.get_parameter(Name="/app/db/password:1", WithDecryption=True)["Parameter"]
    assert p1["Value"] == SECRETS[0] and p1["Selector"] == ":1"
    r = c.label_parameter_version(Name="/app/db/password", ParameterVersion=1, Labels=["stable", "1bad"])
    assert r["InvalidLabels"] == ["1bad"] and r["ParameterVersion"] == 1
    assert c.get_parameter(Name="/app/db/password:stable", WithDecryption=True)["Parameter"]["Value"] == SECRETS[0]
    with pytest.raises(ClientError) as e:
        c.get_parameter(Name="/app/db/password:9")
    assert code_of(e) == "ParameterVersionNotFound"
    hist = c.get_parameter_history(Name="/app/db/password", WithDecryption=True)["Parameters"]
    assert [h["Version"] for h in hist] == [1, 2] and hist[0]["Labels"] == ["stable"]
    assert [h["Value"] for h in hist] == SECRETS[:2]
    u = c.unlabel_parameter_version(Name="/app/db/password", ParameterVersion=1, Labels=["stable", "nope"])
    assert u == {**u, "RemovedLabels": ["stable"], "InvalidLabels": ["nope"]}
    g = c.get_parameters(Names=["/app/hosts", "/missing", "/app/db/host"])
    assert [p["Value"] for p in g["Parameters"]] == ["a,b,c", "db.local"]
    assert g["InvalidParameters"] == ["/missing"]
    with pytest.raises(ClientError) as e:
        c.get_parameter(Name="/nope")
    assert code_of(e) == "ParameterNotFound"


def test_paths_describe_tags_and_delete(server):
    c = ssm(server)
    for n in ["/tree/a", "/tree/b", "/tree/sub/c", "/tree/sub/deep/d"]:
        c.put_parameter(Name=n, Value="v-" + n, Type="String", Tags=[{"Key": "team", "Value": "x"}])
    one = c.get_parameters_by_path(Path="/tree")["Parameters"]
    assert sorted(p["Name"] for p in one) == ["/tree/a", "/tree/b"]
    names, token = [], None
    while True:
        kw = {"Path": "/tree", "Recursive": True, "MaxResults": 3}
        if token:
            kw["NextToken"] = token
        r = c.get_parameters_by_path(**kw)
        names += [p["Name"] for p in r["Parameters"]]
        token = r.get("NextToken")
        if not token:
            break
    assert names == ["/tree/a", "/tree/b", "/tree/sub/c", "/tree/sub/deep/d"]
    d = c.describe_parameters(ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": ["/tree/sub"]}])
    assert sorted(p["Name"] for p in d["Parameters"]) == ["/tree/sub/c", "/tree/sub/deep/d"]
    d = c.describe_parameters(ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/tree/s"]}])
    assert len(d["Parameters"]) == 2
    d = c.describe_parameters(ParameterFilters=[{"Key": "Type", "Values": ["SecureString"]}])
    assert all(p["Type"] == "SecureString" for p in d["Parameters"])
    with pytest.raises(ClientError) as e:
        c.describe_parameters(ParameterFilters=[{"Key": "Bogus", "Values": ["x"]}])
    assert code_of(e) == "InvalidFilterKey"
    c.add_tags_to_resource(ResourceType="Parameter", ResourceId="/tree/a", Tags=[{"Key": "k", "Value": "v"}])
    c.remove_tags_from_resource(ResourceType="Parameter", ResourceId="/tree/a", TagKeys=["team"])
    assert c.list_tags_for_resource(ResourceType="Parameter", ResourceId="/tree/a")["TagList"] == [{"Key": "k", "Value": "v"}]
    with pytest.raises(ClientError) as e:
        c.list_tags_for_resource(ResourceType="Parameter", ResourceId="/nope")
    assert code_of(e) == "InvalidResourceId"
    c.delete_parameter(Name="/tree/a")
    with pytest.raises(ClientError) as e:
        c.delete_parameter(Name="/tree/a")
    assert code_of(e) == "ParameterNotFound"
    r = c.delete_parameters(Names=["/tree/b", "/tree/zzz"])
    assert r["DeletedParameters"] == ["/tree/b"] and r["InvalidParameters"] == ["/tree/zzz"]


def test_bad_input_errors_tiers_patterns_policies(server):
    c = ssm(server)
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="/aws/mine", Value="x", Type="String")
    assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="no/slash", Value="x", Type="String")
    assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="/new/untyped", Value="x")
    assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="/pat", Value="abc", Type="String", AllowedPattern=r"^\d+$")
    assert code_of(e) == "ParameterPatternMismatchException"
    c.put_parameter(Name="/pat", Value="123", Type="String", AllowedPattern=r"^\d+$")
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="/pat", Value="12a", Overwrite=True)
    assert code_of(e) == "ParameterPatternMismatchException"
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="/big", Value="x" * 5000, Type="String", Tier="Standard")
    assert code_of(e) == "ValidationException"
    assert c.put_parameter(Name="/big", Value="x" * 5000, Type="String", Tier="Intelligent-Tiering")["Tier"] == "Advanced"
    policy = json.dumps([{"Type": "Expiration", "Version": "1.0", "Attributes": {"Timestamp": "2030-01-01T00:00:00.000Z"}}])
    c.put_parameter(Name="/pol", Value="v", Type="String", Tier="Advanced", Policies=policy)
    meta = c.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": ["/pol"]}])["Parameters"][0]
    assert meta["Tier"] == "Advanced" and meta["Policies"][0]["PolicyType"] == "Expiration"
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="/pol2", Value="v", Type="String", Tier="Advanced", Policies='[{"Type":"Bogus","Attributes":{}}]')
    assert code_of(e) == "InvalidPolicyTypeException"
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name="/tagged", Value="v", Type="String", Overwrite=True, Tags=[{"Key": "a", "Value": "b"}])
    assert code_of(e) == "ValidationException"
    c.put_parameter(Name="/img", Value="ami-0123456789abcdef0", Type="String", DataType="aws:ec2:image")
    assert c.get_parameter(Name="/img")["Parameter"]["DataType"] == "aws:ec2:image"
    # Operations outside Parameter Store answer 501 naming themselves.
    with pytest.raises(ClientError) as e:
        c.list_documents()
    assert code_of(e) == "NotImplemented"


def test_secretsmanager_reference_bridge(server):
    c = ssm(server)
    sm = boto3.client("secretsmanager", endpoint_url=server.api, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    arn = sm.create_secret(Name="bridge/db", SecretString=SECRETS[2])["ARN"]
    p = c.get_parameter(Name="/aws/reference/secretsmanager/bridge/db", WithDecryption=True)["Parameter"]
    assert p["Value"] == SECRETS[2] and p["Type"] == "SecureString" and p["ARN"] == arn
    assert json.loads(p["SourceResult"])["Name"] == "bridge/db"
    with pytest.raises(ClientError) as e:
        c.get_parameter(Name="/aws/reference/secretsmanager/bridge/db")
    assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        c.get_parameter(Name="/aws/reference/secretsmanager/missing", WithDecryption=True)
    assert code_of(e) == "ParameterNotFound"


def test_js_sdk_v3(server):
    script = r"""
const { SSMClient, PutParameterCommand, GetParameterCommand } = require('@aws-sdk/client-ssm');
const { SecretsManagerClient, CreateSecretCommand, GetSecretValueCommand } = require('@aws-sdk/client-secrets-manager');
(async () => {
  const cfg = { endpoint: process.env.EP, region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } };
  const ssm = new SSMClient(cfg), sm = new SecretsManagerClient(cfg);
  const put = await ssm.send(new PutParameterCommand({ Name: '/js/p', Value: process.env.V, Type: 'SecureString' }));
  const got = await ssm.send(new GetParameterCommand({ Name: '/js/p', WithDecryption: true }));
  await sm.send(new CreateSecretCommand({ Name: 'js/s', SecretString: process.env.V }));
  const s = await sm.send(new GetSecretValueCommand({ SecretId: 'js/s' }));
  let err = null;
  try { await sm.send(new GetSecretValueCommand({ SecretId: 'js/none' })); } catch (e) { err = e.name; }
  console.log(JSON.stringify({ version: put.Version, value: got.Parameter.Value, secret: s.SecretString, err }));
})().catch((e) => { console.error(e); process.exit(1); });
"""
    env = dict(os.environ, EP=server.api, V=SECRETS[3], NODE_PATH=str(ROOT / "sdk" / "node_modules"))
    p = subprocess.run(["node", "-e", script], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out == {"version": 1, "value": SECRETS[3], "secret": SECRETS[3], "err": "ResourceNotFoundException"}


def test_aws_cli(server):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    base = [str(ROOT / ".venv" / "bin" / "aws"), "--endpoint-url", server.api, "--region", "us-east-1", "--output", "json"]
    p = subprocess.run([*base, "ssm", "put-parameter", "--name", "/cli/p", "--value", SECRETS[4], "--type", "SecureString"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([*base, "ssm", "get-parameter", "--name", "/cli/p", "--with-decryption"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Parameter"]["Value"] == SECRETS[4]
    p = subprocess.run([*base, "ssm", "get-parameter", "--name", "/cli/none"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode != 0 and "ParameterNotFound" in p.stderr


def test_no_secret_value_in_plain_text_anywhere(server):
    """Runs last in the module: every value above was written and read."""
    metrics = server.session.get(server.api + "/metrics", timeout=10).text
    assert "nimbus_ssm_parameters" in metrics and "nimbus_secretsmanager_secrets" in metrics
    admin = server.session.get(server.api + "/_nimbus/services/secrets", timeout=10)
    assert admin.status_code == 200 and admin.json()["Secrets"] >= 1
    admin_ssm = server.session.get(server.api + "/_nimbus/services/ssm", timeout=10).text
    haystacks = {"metrics": metrics, "log": server.log_text(), "admin": admin.text + admin_ssm}
    for name, text in haystacks.items():
        for s in SECRETS:
            assert s not in text, f"{s} in the {name}"
    needles = [s.encode() for s in SECRETS]
    scanned = 0
    for path in Path(server.data_dir).rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            scanned += 1
            for n in needles:
                assert n not in data, f"{n!r} in plain text in {path}"
    assert scanned >= 3
