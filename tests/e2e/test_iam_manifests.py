"""A manifest's role is a real IAM role (issue 19): `nimbus deploy` of a
serverless.yml whose `iamRoleStatements` allow only `dynamodb:GetItem` on its
table creates that role in IAM and makes it the function's execution role, so
under `--iam enforce` the function's GetItem works and its PutItem (and a
GetItem on another table) gets AccessDeniedException; a SAM template whose
function has the `DynamoDBReadPolicy` template likewise (its `AutoPublishAlias`
alias too); `nimbus app rm`
deletes the role (GetRole → NoSuchEntity).

Needs the function SDKs (`scripts/install-sdks`)."""

import json
import os
import shutil
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import NIMBUS_BIN
from test_iam_enforce import KEY, SECRET, client, start

FUNCTION = """
import os
import boto3
from botocore.exceptions import ClientError

def handler(event, context):
    ddb = boto3.client("dynamodb")
    table = event.get("table") or os.environ["TABLE"]
    try:
        if event["op"] == "get":
            ddb.get_item(TableName=table, Key={"id": {"S": "1"}})
        else:
            ddb.put_item(TableName=table, Item={"id": {"S": "1"}})
        return {"ok": True}
    except ClientError as e:
        return {"ok": False, "code": e.response["Error"]["Code"],
                "message": e.response["Error"]["Message"]}
"""

SERVERLESS = """service: iamapp
provider:
  name: aws
  runtime: python3.12
  environment:
    TABLE:
      Ref: Table
  iamRoleStatements:
    - Effect: Allow
      Action: dynamodb:GetItem
      Resource:
        Fn::GetAtt: [Table, Arn]
functions:
  fn:
    handler: app.handler
    timeout: 60
resources:
  Resources:
    Table:
      Type: AWS::DynamoDB::Table
      Properties:
        BillingMode: PAY_PER_REQUEST
        AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
        KeySchema: [{AttributeName: id, KeyType: HASH}]
"""

SAM = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  Reader:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      CodeUri: .
      Timeout: 60
      AutoPublishAlias: live
      Environment:
        Variables:
          TABLE: !Ref Items
      Policies:
        - DynamoDBReadPolicy:
            TableName: !Ref Items
  Items:
    Type: AWS::Serverless::SimpleTable
"""


@pytest.fixture(scope="module")
def enforced():
    s, d = start("enforce")
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def cli(server, cwd, *args):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_REGION": "us-east-1"}
    for k in ("NIMBUS_ACCESS_KEY", "NIMBUS_SECRET_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(k, None)
    return subprocess.run([NIMBUS_BIN, "--endpoint", server.api, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


def invoke(server, name, payload, qualifier=None):
    kw = {"Qualifier": qualifier} if qualifier else {}
    r = client(server, "lambda").invoke(FunctionName=name, Payload=json.dumps(payload), **kw)
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    return body


def other_table(server):
    try:
        client(server, "dynamodb").create_table(
            TableName="NotTheAppsTable",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ResourceInUseException"
    return "NotTheAppsTable"


def role_of(server, function):
    arn = client(server, "lambda").get_function_configuration(FunctionName=function)["Role"]
    return arn.rsplit("/", 1)[1]


def test_serverless_iam_role_statements_are_the_functions_role(enforced, tmp_path):
    app = tmp_path / "iamapp"
    app.mkdir()
    (app / "app.py").write_text(FUNCTION)
    (app / "serverless.yml").write_text(SERVERLESS)
    p = cli(enforced, app, "deploy")
    assert p.returncode == 0, p.stdout + p.stderr
    iam = client(enforced, "iam")
    role = role_of(enforced, "iamapp-dev-fn")
    assert role == "iamapp-dev-us-east-1-lambdaRole"
    # The role is IAM's, with the declared statement in its inline policy.
    got = iam.get_role(RoleName=role)["Role"]
    assert got["Arn"] == f"arn:aws:iam::123456789012:role/{role}"
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    assert names == ["iamapp-dev-lambda"]
    doc = iam.get_role_policy(RoleName=role, PolicyName=names[0])["PolicyDocument"]
    assert {"Effect": "Allow", "Action": "dynamodb:GetItem"}.items() <= doc["Statement"][-1].items()

    assert invoke(enforced, "iamapp-dev-fn", {"op": "get"}) == {"ok": True}
    denied = invoke(enforced, "iamapp-dev-fn", {"op": "put"})
    assert denied["code"] == "AccessDeniedException", denied
    assert f"assumed-role/{role}/iamapp-dev-fn is not authorized to perform: dynamodb:PutItem" \
        in denied["message"], denied
    elsewhere = invoke(enforced, "iamapp-dev-fn", {"op": "get", "table": other_table(enforced)})
    assert elsewhere["code"] == "AccessDeniedException", elsewhere

    # A redeploy with PutItem added widens the same role in place.
    (app / "serverless.yml").write_text(
        SERVERLESS.replace("Action: dynamodb:GetItem", "Action: [dynamodb:GetItem, dynamodb:PutItem]"))
    p = cli(enforced, app, "deploy")
    assert p.returncode == 0, p.stdout + p.stderr
    assert invoke(enforced, "iamapp-dev-fn", {"op": "put"}) == {"ok": True}
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["iamapp-dev-lambda"]

    p = cli(enforced, app, "app", "rm", "iamapp-dev")
    assert p.returncode == 0, p.stdout + p.stderr
    with pytest.raises(ClientError) as e:
        iam.get_role(RoleName=role)
    assert e.value.response["Error"]["Code"] == "NoSuchEntity"


def test_sam_policy_template_is_the_functions_role(enforced, tmp_path):
    app = tmp_path / "samiam"
    app.mkdir()
    (app / "app.py").write_text(FUNCTION)
    (app / "template.yaml").write_text(SAM)
    p = cli(enforced, app, "deploy")
    assert p.returncode == 0, p.stdout + p.stderr
    lam = client(enforced, "lambda")
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]
             if "samiam" in f["FunctionName"]]
    assert len(names) == 1, names
    fn = names[0]
    role = role_of(enforced, fn)
    iam = client(enforced, "iam")
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]]
    assert attached == ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
    (pol,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    stmt = iam.get_role_policy(RoleName=role, PolicyName=pol)["PolicyDocument"]["Statement"][0]
    assert stmt["Action"] == ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query",
                              "dynamodb:BatchGetItem", "dynamodb:DescribeTable"]

    assert invoke(enforced, fn, {"op": "get"}) == {"ok": True}
    denied = invoke(enforced, fn, {"op": "put"})
    assert denied["code"] == "AccessDeniedException", denied
    # The alias (AutoPublishAlias) serves a version with the declared role too.
    assert invoke(enforced, fn, {"op": "get"}, qualifier="live") == {"ok": True}
    denied = invoke(enforced, fn, {"op": "put"}, qualifier="live")
    assert f"assumed-role/{role}/" in denied["message"], denied
    elsewhere = invoke(enforced, fn, {"op": "get", "table": other_table(enforced)})
    assert elsewhere["code"] == "AccessDeniedException", elsewhere

    p = cli(enforced, app, "app", "rm", "samiam")
    assert p.returncode == 0, p.stdout + p.stderr
    with pytest.raises(ClientError) as e:
        iam.get_role(RoleName=role)
    assert e.value.response["Error"]["Code"] == "NoSuchEntity"
