"""Lambda layers through boto3 and the aws CLI against the real binary: publish,
get, list (filters, pagination), delete; functions importing from layers they do
not bundle (Python and Node), two layers with a clash (the later one wins), a tool
in <opt>/bin on PATH, and Lambda's errors."""

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import zipfile

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import make_zip

ROLE = "arn:aws:iam::123456789012:role/lambda-role"


@pytest.fixture(scope="module")
def lam(server):
    return boto3.client(
        "lambda",
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}),
    )


def publish(lam, name, files, **kw):
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": make_zip(files)}, **kw)


def invoke(lam, name):
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    return body


def test_publish_get_and_download(lam, server):
    files = {"python/greet_lib.py": "def hello():\n    return 'hi from layer'\n"}
    zip_bytes = make_zip(files)
    v1 = lam.publish_layer_version(
        LayerName="pylib", Description="greetings", Content={"ZipFile": zip_bytes},
        CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["x86_64"], LicenseInfo="MIT")
    assert v1["Version"] == 1
    assert v1["LayerArn"] == "arn:aws:lambda:us-east-1:123456789012:layer:pylib"
    assert v1["LayerVersionArn"] == v1["LayerArn"] + ":1"
    assert v1["Content"]["CodeSize"] == len(zip_bytes)
    assert v1["Content"]["CodeSha256"] == base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
    # Content.Location downloads the zip from the endpoint the client used.
    assert requests.get(v1["Content"]["Location"], timeout=30).content == zip_bytes
    got = lam.get_layer_version(LayerName="pylib", VersionNumber=1)
    assert got["Description"] == "greetings" and got["LicenseInfo"] == "MIT"
    assert got["CompatibleRuntimes"] == ["python3.12"]
    by_arn = lam.get_layer_version_by_arn(Arn=v1["LayerVersionArn"])
    assert by_arn["LayerVersionArn"] == v1["LayerVersionArn"]
    by_layer_arn = lam.get_layer_version(LayerName=v1["LayerArn"], VersionNumber=1)
    assert by_layer_arn["Version"] == 1


def test_python_function_imports_from_two_layers_later_wins(lam):
    a = publish(lam, "py-a", {
        "python/shared_mod.py": "WHO = 'a'\n",
        "python/only_a.py": "X = 1\n",
        "python/lib/python3.12/site-packages/sitepkg/__init__.py": "NAME = 'site'\n",
        "bin/layer-tool": ("#!/bin/sh\necho tool-says-hi\n", 0o755),
    })
    b = publish(lam, "py-b", {"python/shared_mod.py": "WHO = 'b'\n"})
    code = (
        "import shared_mod, only_a, sitepkg, subprocess, os\n"
        "def handler(event, context):\n"
        "    out = subprocess.run(['layer-tool'], capture_output=True, text=True).stdout.strip()\n"
        "    return {'who': shared_mod.WHO, 'a': only_a.X, 'site': sitepkg.NAME, 'tool': out,\n"
        "            'ld': os.environ.get('LD_LIBRARY_PATH', '')}\n"
    )
    f = lam.create_function(
        FunctionName="two-layers", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": code})},
        Layers=[a["LayerVersionArn"], b["LayerVersionArn"]])
    assert [l["Arn"] for l in f["Layers"]] == [a["LayerVersionArn"], b["LayerVersionArn"]]
    assert f["Layers"][0]["CodeSize"] == a["Content"]["CodeSize"]
    out = invoke(lam, "two-layers")
    assert out["who"] == "b" and out["a"] == 1 and out["site"] == "site"
    assert out["tool"] == "tool-says-hi"
    assert out["ld"].endswith("/lib")
    # Reversed order: the other layer wins.
    lam.update_function_configuration(
        FunctionName="two-layers", Layers=[b["LayerVersionArn"], a["LayerVersionArn"]])
    assert invoke(lam, "two-layers")["who"] == "a"
    cfg = lam.get_function_configuration(FunctionName="two-layers")
    assert [l["Arn"] for l in cfg["Layers"]] == [b["LayerVersionArn"], a["LayerVersionArn"]]
    assert lam.get_function(FunctionName="two-layers")["Configuration"]["Layers"] == cfg["Layers"]


def test_node_function_requires_a_layer_module(lam):
    layer = publish(lam, "node-lib", {
        "nodejs/node_modules/leftpad-ish/index.js": "module.exports = (s, n) => s.padStart(n, '*');\n",
    }, CompatibleRuntimes=["nodejs20.x"])
    code = (
        "const pad = require('leftpad-ish');\n"
        "exports.handler = async () => ({ padded: pad('x', 4) });\n"
    )
    lam.create_function(
        FunctionName="node-layer", Runtime="nodejs20.x", Role=ROLE, Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": code})}, Layers=[layer["LayerVersionArn"]])
    assert invoke(lam, "node-layer") == {"padded": "***x"}


def test_published_version_pins_layers_and_delete_keeps_functions_working(lam):
    v1 = publish(lam, "pin", {"python/pinned.py": "V = 1\n"})
    code = "import pinned\ndef handler(e, c):\n    return pinned.V\n"
    lam.create_function(
        FunctionName="pinned-fn", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": code})}, Layers=[v1["LayerVersionArn"]], Publish=True)
    v2 = publish(lam, "pin", {"python/pinned.py": "V = 2\n"})
    lam.update_function_configuration(FunctionName="pinned-fn", Layers=[v2["LayerVersionArn"]])
    assert invoke(lam, "pinned-fn") == 2
    assert json.loads(lam.invoke(FunctionName="pinned-fn", Qualifier="1")["Payload"].read()) == 1
    lam.delete_layer_version(LayerName="pin", VersionNumber=1)
    lam.delete_layer_version(LayerName="pin", VersionNumber=1)  # idempotent, as Lambda's
    with pytest.raises(ClientError) as e:
        lam.get_layer_version(LayerName="pin", VersionNumber=1)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert json.loads(lam.invoke(FunctionName="pinned-fn", Qualifier="1")["Payload"].read()) == 1
    # Numbers are never reused.
    assert publish(lam, "pin", {"python/pinned.py": "V = 3\n"})["Version"] == 3


def test_list_filters_and_pagination(lam):
    for i in range(5):
        publish(lam, "paged", {f"python/m{i}.py": ""},
                CompatibleRuntimes=["python3.12"] if i % 2 == 0 else ["nodejs20.x"],
                CompatibleArchitectures=["arm64"] if i == 4 else ["x86_64"])
    seen, marker = [], None
    while True:
        kw = {"Marker": marker} if marker else {}
        page = lam.list_layer_versions(LayerName="paged", MaxItems=2, **kw)
        assert len(page["LayerVersions"]) <= 2
        seen += [v["Version"] for v in page["LayerVersions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == [5, 4, 3, 2, 1]
    py = lam.list_layer_versions(LayerName="paged", CompatibleRuntime="python3.12")
    assert [v["Version"] for v in py["LayerVersions"]] == [5, 3, 1]
    arm = lam.list_layer_versions(LayerName="paged", CompatibleArchitecture="arm64")
    assert [v["Version"] for v in arm["LayerVersions"]] == [5]
    paginator = lam.get_paginator("list_layers")
    names = [l["LayerName"] for p in paginator.paginate(PaginationConfig={"PageSize": 2}) for l in p["Layers"]]
    assert "paged" in names and len(names) == len(set(names))
    node = lam.list_layers(CompatibleRuntime="nodejs20.x")["Layers"]
    paged = [l for l in node if l["LayerName"] == "paged"][0]
    assert paged["LatestMatchingVersion"]["Version"] == 4


def test_errors_as_lambdas(lam):
    arns = [publish(lam, f"many{i}", {f"python/x{i}.py": ""})["LayerVersionArn"] for i in range(6)]
    common = dict(Runtime="python3.12", Role=ROLE, Handler="app.handler",
                  Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})})
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName="six", Layers=arns, **common)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "more than 5 layers" in e.value.response["Error"]["Message"]
    missing = "arn:aws:lambda:us-east-1:123456789012:layer:many0:99"
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName="missing", Layers=[missing], **common)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert missing in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        lam.get_layer_version(LayerName="nope", VersionNumber=1)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # Too big: a layer that inflates to 200 MB with code that inflates to 60 MB.
    def zeros(mb, name):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(name, b"\0" * (mb * 1024 * 1024))
        return buf.getvalue()
    big = lam.publish_layer_version(LayerName="big", Content={"ZipFile": zeros(200, "python/blob.bin")})
    with pytest.raises(ClientError) as e:
        lam.create_function(
            FunctionName="toobig", Runtime="python3.12", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": zeros(60, "app.bin")}, Layers=[big["LayerVersionArn"]])
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "exceeds the maximum allowed size of 262144000 bytes" in e.value.response["Error"]["Message"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="toobig")


def test_aws_cli_publishes_and_lists(server, tmp_path):
    z = tmp_path / "layer.zip"
    z.write_bytes(make_zip({"python/cli_mod.py": "X = 1\n"}))
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1")
    aws = [os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin", "aws"),
           "--endpoint-url", server.api, "--output", "json"]
    out = subprocess.run(aws + ["lambda", "publish-layer-version", "--layer-name", "cli-layer",
                                "--zip-file", f"fileb://{z}", "--compatible-runtimes", "python3.12"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Version"] == 1
    out = subprocess.run(aws + ["lambda", "list-layer-versions", "--layer-name", "cli-layer"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [v["Version"] for v in json.loads(out.stdout)["LayerVersions"]] == [1]


def test_layer_version_permissions(lam):
    v = publish(lam, "shared", {"python/s.py": ""})
    with pytest.raises(ClientError) as e:
        lam.get_layer_version_policy(LayerName="shared", VersionNumber=1)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    r = lam.add_layer_version_permission(
        LayerName="shared", VersionNumber=1, StatementId="xaccount",
        Action="lambda:GetLayerVersion", Principal="210987654321")
    st = json.loads(r["Statement"])
    assert st["Principal"] == {"AWS": "arn:aws:iam::210987654321:root"}
    assert st["Resource"] == v["LayerVersionArn"]
    lam.add_layer_version_permission(
        LayerName="shared", VersionNumber=1, StatementId="org", Action="lambda:GetLayerVersion",
        Principal="*", OrganizationId="o-abc123", RevisionId=r["RevisionId"])
    with pytest.raises(ClientError) as e:
        lam.add_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="org",
            Action="lambda:GetLayerVersion", Principal="*")
    assert e.value.response["Error"]["Code"] == "ResourceConflictException"
    with pytest.raises(ClientError) as e:
        lam.add_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="stale",
            Action="lambda:GetLayerVersion", Principal="*", RevisionId=r["RevisionId"])
    assert e.value.response["Error"]["Code"] == "PreconditionFailedException"
    pol = lam.get_layer_version_policy(LayerName="shared", VersionNumber=1)
    doc = json.loads(pol["Policy"])
    assert [s["Sid"] for s in doc["Statement"]] == ["xaccount", "org"]
    assert doc["Statement"][1]["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}
    lam.remove_layer_version_permission(LayerName="shared", VersionNumber=1, StatementId="xaccount")
    with pytest.raises(ClientError) as e:
        lam.remove_layer_version_permission(LayerName="shared", VersionNumber=1, StatementId="xaccount")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        lam.add_layer_version_permission(
            LayerName="shared", VersionNumber=9, StatementId="a",
            Action="lambda:GetLayerVersion", Principal="*")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ---- layers declared in manifests (sls `layers:`, SAM AWS::Serverless::LayerVersion) ----

def nimbus_deploy(server, cwd, *args, expect=0):
    from conftest import NIMBUS_BIN
    e = dict(os.environ)
    e.pop("NIMBUS_ENDPOINT", None)
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy", *map(str, args)],
                       cwd=cwd, capture_output=True, text=True, env=e, timeout=180)
    assert p.returncode == expect, f"rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


SLS = """service: layered
provider:
  name: aws
  runtime: python3.12
layers:
  common:
    path: common-layer
    description: shared helpers
    compatibleRuntimes: [python3.12]
functions:
  greet:
    handler: handler.main
    layers:
      - {Ref: CommonLambdaLayer}
      - EXTRA
"""

HANDLER = """import greeting, extra
def main(event, context):
    return {"greeting": greeting.text(), "extra": extra.VALUE}
"""


def test_serverless_yml_layers_publish_once_and_follow_changes(lam, server, tmp_path):
    extra = publish(lam, "sls-extra", {"python/extra.py": "VALUE = 'from an ARN'\n"})["LayerVersionArn"]
    app = tmp_path / "app"
    (app / "common-layer" / "python").mkdir(parents=True)
    (app / "common-layer" / "python" / "greeting.py").write_text("def text():\n    return 'v1'\n")
    (app / "handler.py").write_text(HANDLER)
    (app / "serverless.yml").write_text(SLS.replace("EXTRA", extra))

    out = nimbus_deploy(server, app)
    assert "layer common published" in out.stderr, out.stderr
    assert invoke(lam, "layered-dev-greet") == {"greeting": "v1", "extra": "from an ARN"}
    cfg = lam.get_function_configuration(FunctionName="layered-dev-greet")
    arns = [l["Arn"] for l in cfg["Layers"]]
    assert arns[0].endswith(":layer:common:1") and arns[1] == extra
    v1 = lam.get_layer_version_by_arn(Arn=arns[0])
    assert v1["Description"] == "shared helpers" and v1["CompatibleRuntimes"] == ["python3.12"]

    # Unchanged: the version is reused, none is published.
    out = nimbus_deploy(server, app)
    assert "layer common unchanged" in out.stderr, out.stderr
    assert len(lam.list_layer_versions(LayerName="common")["LayerVersions"]) == 1

    # Changed content: version 2, and the function runs it.
    (app / "common-layer" / "python" / "greeting.py").write_text("def text():\n    return 'v2'\n")
    nimbus_deploy(server, app)
    assert invoke(lam, "layered-dev-greet")["greeting"] == "v2"
    cfg = lam.get_function_configuration(FunctionName="layered-dev-greet")
    assert cfg["Layers"][0]["Arn"].endswith(":layer:common:2")

    # A Ref to a layer the service does not declare is an error at its line.
    (app / "serverless.yml").write_text(SLS.replace("EXTRA", extra).replace("CommonLambdaLayer", "OtherLambdaLayer"))
    out = nimbus_deploy(server, app, expect=1)
    assert re.search(r"serverless\.yml:\d+: error: functions\.greet\.layers: OtherLambdaLayer is not a layer", out.stderr), out.stderr


SAM = """Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Layers:
      - !Ref Shared
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      LayerName: sam-shared
      ContentUri: shared/
      CompatibleRuntimes: [python3.12]
  Own:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: own/
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: sam-layered
      CodeUri: src/
      Handler: app.handler
      Layers:
        - !Ref Own
"""


def test_sam_layer_versions_with_globals_come_first_and_rollback_unpublishes(lam, server, tmp_path):
    app = tmp_path / "sam"
    for d, mod, val in (("shared", "clash", "shared"), ("own", "clash", "own")):
        (app / d / "python").mkdir(parents=True)
        (app / d / "python" / f"{mod}.py").write_text(f"WHO = {val!r}\n")
    (app / "shared" / "python" / "only_shared.py").write_text("OK = True\n")
    (app / "src").mkdir()
    (app / "src" / "app.py").write_text(
        "import clash, only_shared\ndef handler(e, c):\n    return {'who': clash.WHO, 'ok': only_shared.OK}\n")
    (app / "template.yaml").write_text(SAM)
    nimbus_deploy(server, app)
    # Globals' layers come first, the function's later one wins the clash.
    assert invoke(lam, "sam-layered") == {"who": "own", "ok": True}
    layers = [l["Arn"] for l in lam.get_function_configuration(FunctionName="sam-layered")["Layers"]]
    assert layers[0].endswith(":layer:sam-shared:1") and layers[1].endswith(":layer:Own:1")

    # A deploy that fails after publishing rolls the new layer version back.
    (app / "own" / "python" / "clash.py").write_text("WHO = 'own v2'\n")
    bad = SAM + """  Broken:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: sam-layered-broken
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Layers:
        - arn:aws:lambda:us-east-1:123456789012:layer:no-such-layer:1
"""
    (app / "template.yaml").write_text(bad)
    out = nimbus_deploy(server, app, expect=1)
    assert "layer Own published" in out.stderr, out.stderr
    assert "no-such-layer:1 does not exist" in out.stderr, out.stderr
    assert [v["Version"] for v in lam.list_layer_versions(LayerName="Own")["LayerVersions"]] == [1]
    assert invoke(lam, "sam-layered")["who"] == "own"


JS_LAYERS = r"""
const lambda = require("@aws-sdk/client-lambda");
const zip = (b64) => Buffer.from(b64, "base64");
const c = new lambda.LambdaClient({endpoint: process.argv[1], region: "us-east-1",
  credentials: {accessKeyId: "x", secretAccessKey: "y"}});
(async () => {
  const pub = await c.send(new lambda.PublishLayerVersionCommand({LayerName: "js-layer",
    Description: "from js", CompatibleRuntimes: ["nodejs20.x"], Content: {ZipFile: zip(process.argv[2])}}));
  const byArn = await c.send(new lambda.GetLayerVersionByArnCommand({Arn: pub.LayerVersionArn}));
  const listed = await c.send(new lambda.ListLayersCommand({CompatibleRuntime: "nodejs20.x"}));
  await c.send(new lambda.CreateFunctionCommand({FunctionName: "js-layer-user", Runtime: "nodejs20.x",
    Role: "arn:aws:iam::123456789012:role/r", Handler: "index.handler",
    Code: {ZipFile: zip(process.argv[3])}, Layers: [pub.LayerVersionArn]}));
  const out = await c.send(new lambda.InvokeCommand({FunctionName: "js-layer-user", Payload: Buffer.from("{}")}));
  await c.send(new lambda.DeleteLayerVersionCommand({LayerName: "js-layer", VersionNumber: pub.Version}));
  let gone = null;
  try { await c.send(new lambda.GetLayerVersionCommand({LayerName: "js-layer", VersionNumber: pub.Version})); }
  catch (e) { gone = e.name; }
  const again = await c.send(new lambda.InvokeCommand({FunctionName: "js-layer-user", Payload: Buffer.from("{}")}));
  console.log(JSON.stringify({version: pub.Version, sha: byArn.Content.CodeSha256 === pub.Content.CodeSha256,
    names: listed.Layers.map(l => l.LayerName), payload: Buffer.from(out.Payload).toString(),
    gone, again: Buffer.from(again.Payload).toString()}));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_js_sdk_v3_publishes_a_node_layer_a_function_requires(server):
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent.parent
    node_path = os.pathsep.join(filter(None, [str(root / "sdk" / "node_modules"), os.environ.get("NODE_PATH")]))
    env = dict(os.environ, NODE_PATH=node_path)
    probe = subprocess.run(["node", "-e", "require.resolve('@aws-sdk/client-lambda')"], env=env, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("@aws-sdk/client-lambda not installed (scripts/install-sdks installs it)")
    layer = make_zip({"nodejs/node_modules/shout/index.js": "module.exports = s => s.toUpperCase() + '!';\n"})
    code = make_zip({"index.js": "const shout = require('shout');\n"
                                 "exports.handler = async () => ({said: shout('hi from a layer')});\n"})
    out = subprocess.run(["node", "-e", JS_LAYERS, server.api, base64.b64encode(layer).decode(),
                          base64.b64encode(code).decode()], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["version"] == 1 and got["sha"] is True and "js-layer" in got["names"]
    assert json.loads(got["payload"]) == {"said": "HI FROM A LAYER!"}
    # Deleting the version keeps the function that uses it working, as on AWS.
    assert got["gone"] == "ResourceNotFoundException"
    assert json.loads(got["again"]) == {"said": "HI FROM A LAYER!"}
