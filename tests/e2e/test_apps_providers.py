"""The app engine's providers for S3, DynamoDB, Kinesis, EventBridge, Secrets
Manager, SSM and SES on the real binary: a Template applied through the control
API (`PUT /_nimbus/apps/NAME`) creates each resource through the service's own
API (checked with boto3), `Ref`/`Fn::GetAtt` return what CloudFormation
documents, a redeploy updates in place, function environment variables that
name resources are set on the function (and restored by a rollback), and
removing the app deletes everything in reverse dependency order — except a
bucket that still holds objects, which fails as CloudFormation's delete does."""

import json

import boto3
import pytest
from botocore.config import Config

from conftest import wait_for

RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {"env": {k: v for k, v in os.environ.items() if k.startswith("APP_")}}
"""


def client(server, service):
    return boto3.client(service, endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id="AKIDAPPS", aws_secret_access_key="secret",
                        config=Config(retries={"total_max_attempts": 1}))


def put_app(server, name, template, **flags):
    return server.session.put(f"{server.api}/_nimbus/apps/{name}",
                              json={"template": template, **flags}, timeout=120)


def rm_app(server, name):
    return server.session.delete(f"{server.api}/_nimbus/apps/{name}", timeout=120)


def events(path):
    try:
        return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    except FileNotFoundError:
        return []


@pytest.fixture(scope="module")
def env(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("providers") / "events.jsonl"
    server.deploy("recorder", "python3.12", "app.handler", {"app.py": RECORDER},
                  environment={"OUT": str(out), "KEEP": "me"})
    return server, out


def template():
    return {
        "Resources": {
            "Uploads": {
                "Type": "AWS::S3::Bucket",
                "DependsOn": ["UploadsPermission"],
                "Properties": {
                    "VersioningConfiguration": {"Status": "Enabled"},
                    "CorsConfiguration": {"CorsRules": [
                        {"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["*"], "MaxAge": 300}]},
                    "LifecycleConfiguration": {"Rules": [
                        {"Id": "tmp", "Prefix": "tmp/", "Status": "Enabled", "ExpirationInDays": 1}]},
                    "Tags": [{"Key": "team", "Value": "a"}],
                    "NotificationConfiguration": {
                        "LambdaConfigurations": [{
                            "Event": "s3:ObjectCreated:*",
                            "Function": {"Fn::GetAtt": ["RecorderLambdaFunction", "Arn"]},
                            "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "in/"}]}}}],
                        "EventBridgeConfiguration": {"EventBridgeEnabled": True},
                    },
                },
            },
            "UploadsPermission": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {"FunctionName": {"Ref": "RecorderLambdaFunction"},
                               "Action": "lambda:InvokeFunction", "Principal": "s3.amazonaws.com"},
            },
            "UploadsPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": {"Ref": "Uploads"}, "PolicyDocument": {
                    "Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                        "Resource": {"Fn::Sub": "${Uploads.Arn}/*"}}]}},
            },
            "Orders": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                             {"AttributeName": "email", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "GlobalSecondaryIndexes": [{"IndexName": "by-email",
                                                "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                                                "Projection": {"ProjectionType": "ALL"}}],
                    "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
                    "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True},
                },
            },
            "Clicks": {"Type": "AWS::Kinesis::Stream",
                       "Properties": {"ShardCount": 1, "RetentionPeriodHours": 48}},
            "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "prov-bus"}},
            "Inbox": {"Type": "AWS::SQS::Queue"},
            "InboxPolicy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {"Queues": [{"Ref": "Inbox"}], "PolicyDocument": {
                    "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                                   "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["Inbox", "Arn"]}}]}},
            },
            "OrderPlaced": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventBusName": {"Ref": "Bus"},
                    "EventPattern": {"source": ["shop"], "detail-type": ["OrderPlaced"]},
                    "Targets": [{"Id": "inbox", "Arn": {"Fn::GetAtt": ["Inbox", "Arn"]},
                                 "InputTransformer": {"InputPathsMap": {"id": "$.detail.id"},
                                                      "InputTemplate": "{\"order\": <id>}"}}],
                },
            },
            "ApiKey": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {"GenerateSecretString": {
                    "SecretStringTemplate": "{\"user\": \"app\"}", "GenerateStringKey": "password",
                    "PasswordLength": 24, "ExcludePunctuation": True}},
            },
            "Mode": {"Type": "AWS::SSM::Parameter",
                     "Properties": {"Type": "String", "Value": "fast", "Tags": {"team": "a"}}},
            "Sender": {"Type": "AWS::SES::EmailIdentity",
                       "Properties": {"EmailIdentity": "prov-sender@example.com"}},
        },
        "Outputs": {
            "Bucket": {"Value": {"Ref": "Uploads"}},
            "BucketArn": {"Value": {"Fn::GetAtt": ["Uploads", "Arn"]}},
            "BucketDomain": {"Value": {"Fn::GetAtt": ["Uploads", "RegionalDomainName"]}},
            "Table": {"Value": {"Ref": "Orders"}},
            "TableArn": {"Value": {"Fn::GetAtt": ["Orders", "Arn"]}},
            "StreamArn": {"Value": {"Fn::GetAtt": ["Orders", "StreamArn"]}},
            "Stream": {"Value": {"Ref": "Clicks"}},
            "StreamArnK": {"Value": {"Fn::GetAtt": ["Clicks", "Arn"]}},
            "BusName": {"Value": {"Ref": "Bus"}},
            "BusArn": {"Value": {"Fn::GetAtt": ["Bus", "Arn"]}},
            "Rule": {"Value": {"Ref": "OrderPlaced"}},
            "RuleArn": {"Value": {"Fn::GetAtt": ["OrderPlaced", "Arn"]}},
            "Secret": {"Value": {"Ref": "ApiKey"}},
            "Param": {"Value": {"Ref": "Mode"}},
            "ParamValue": {"Value": {"Fn::GetAtt": ["Mode", "Value"]}},
            "Identity": {"Value": {"Ref": "Sender"}},
        },
        "Functions": {"RecorderLambdaFunction": "recorder"},
        "FunctionEnvironment": {"RecorderLambdaFunction": {
            "APP_TABLE": {"Ref": "Orders"},
            "APP_BUCKET_ARN": {"Fn::Sub": "arn:aws:s3:::${Uploads}"},
            "APP_MODE": {"Fn::GetAtt": ["Mode", "Value"]},
        }},
    }


def test_every_type_is_created_updated_and_removed(env):
    server, out = env
    s3, ddb, kin = client(server, "s3"), client(server, "dynamodb"), client(server, "kinesis")
    ev, sm, ssm = client(server, "events"), client(server, "secretsmanager"), client(server, "ssm")
    ses, sqs, lam = client(server, "ses"), client(server, "sqs"), client(server, "lambda")

    r = put_app(server, "prov-dev", template())
    assert r.status_code == 200, r.text
    o = r.json()["outputs"]
    bucket, table, stream = o["Bucket"], o["Table"], o["Stream"]
    # Generated names: <stack>-<logicalId>-<suffix>, lower case for a bucket.
    assert bucket.startswith("prov-dev-uploads-") and bucket == bucket.lower()
    assert table.startswith("prov-dev-Orders-") and stream.startswith("prov-dev-Clicks-")
    assert o["BucketArn"] == f"arn:aws:s3:::{bucket}"
    assert o["BucketDomain"] == f"{bucket}.s3.us-east-1.amazonaws.com"

    # S3: each sub-configuration, through S3's own API.
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["MaxAgeSeconds"] == 300
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["ID"] == "tmp"
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "a"}]
    n = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert n["LambdaFunctionConfigurations"][0]["LambdaFunctionArn"].endswith(":function:recorder")
    assert "EventBridgeConfiguration" in n
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]["Resource"] == \
        f"arn:aws:s3:::{bucket}/*"

    # DynamoDB: keys, index, stream, TTL.
    t = ddb.describe_table(TableName=table)["Table"]
    assert o["TableArn"] == t["TableArn"] and o["StreamArn"] == t["LatestStreamArn"]
    assert t["GlobalSecondaryIndexes"][0]["IndexName"] == "by-email"
    assert t["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires" and ttl["TimeToLiveStatus"] == "ENABLED"

    # Kinesis.
    k = kin.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert o["StreamArnK"] == k["StreamARN"] and k["RetentionPeriodHours"] == 48

    # EventBridge: the rule's Ref is <bus>|<rule> on a custom bus; an event on the
    # bus reaches the queue through the input transformer.
    assert o["BusName"] == "prov-bus" and o["BusArn"].endswith(":event-bus/prov-bus")
    bus, rule = o["Rule"].split("|")
    assert bus == "prov-bus" and rule.startswith("prov-dev-OrderPlaced-")
    assert ev.describe_rule(Name=rule, EventBusName=bus)["Arn"] == o["RuleArn"]
    inbox = sqs.get_queue_url(QueueName=[q for q in [x["PhysicalResourceId"] for x in server.session.get(
        f"{server.api}/_nimbus/apps/prov-dev", timeout=10).json()["Resources"]
        if x["LogicalResourceId"] == "Inbox"]][0].rsplit("/", 1)[1])["QueueUrl"]
    ev.put_events(Entries=[{"Source": "shop", "DetailType": "OrderPlaced", "Detail": '{"id": 42}',
                            "EventBusName": "prov-bus"}])
    got = []
    wait_for(lambda: got.extend(sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1).get("Messages", []))
             or got, timeout=30, what="the transformed event in the queue")
    assert json.loads(got[0]["Body"]) == {"order": 42}

    # Secrets Manager: the generated value fills the template; Ref is the ARN.
    v = json.loads(sm.get_secret_value(SecretId=o["Secret"])["SecretString"])
    assert v["user"] == "app" and len(v["password"]) == 24 and v["password"].isalnum()
    assert o["Secret"].startswith("arn:aws:secretsmanager:us-east-1:")

    # SSM and SES.
    assert ssm.get_parameter(Name=o["Param"])["Parameter"]["Value"] == "fast"
    assert o["ParamValue"] == "fast"
    assert o["Identity"] == "prov-sender@example.com"
    assert "prov-sender@example.com" in ses.list_identities()["Identities"]

    # The function's environment: the resource values merged with its own.
    cfg = lam.get_function_configuration(FunctionName="recorder")["Environment"]["Variables"]
    assert cfg["APP_TABLE"] == table and cfg["APP_MODE"] == "fast"
    assert cfg["APP_BUCKET_ARN"] == f"arn:aws:s3:::{bucket}" and cfg["KEEP"] == "me"

    # The bucket notification runs the function.
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"a")
    wait_for(lambda: any(rec.get("s3", {}).get("object", {}).get("key") == "in/a.txt"
                         for e in events(out) for rec in e.get("Records", [])),
             timeout=30, what="the bucket event")

    # A redeploy of the same template changes nothing.
    r = put_app(server, "prov-dev", template())
    assert r.status_code == 200, r.text
    assert {p["action"] for p in r.json()["plan"]} == {"keep"}

    # Updates in place: every physical name stays.
    t2 = template()
    res = t2["Resources"]
    res["Uploads"]["Properties"]["VersioningConfiguration"] = {"Status": "Suspended"}
    del res["Uploads"]["Properties"]["CorsConfiguration"]
    res["Orders"]["Properties"]["GlobalSecondaryIndexes"] = []
    res["Orders"]["Properties"]["StreamSpecification"] = {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    res["Clicks"]["Properties"]["RetentionPeriodHours"] = 24
    res["OrderPlaced"]["Properties"]["EventPattern"] = {"source": ["shop2"]}
    res["Mode"]["Properties"]["Value"] = "slow"
    r = put_app(server, "prov-dev", t2)
    assert r.status_code == 200, r.text
    plan = {p["logical_id"]: p["action"] for p in r.json()["plan"]}
    assert plan["Uploads"] == plan["Orders"] == plan["Clicks"] == plan["OrderPlaced"] == plan["Mode"] == "update"
    o2 = r.json()["outputs"]
    assert (o2["Bucket"], o2["Table"], o2["Stream"], o2["Rule"]) == (bucket, table, stream, o["Rule"])
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_bucket_cors(Bucket=bucket)
    t = ddb.describe_table(TableName=table)["Table"]
    assert "GlobalSecondaryIndexes" not in t or t["GlobalSecondaryIndexes"] == []
    assert t["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert o2["StreamArn"] == t["LatestStreamArn"] != o["StreamArn"]
    assert kin.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["RetentionPeriodHours"] == 24
    assert json.loads(ev.describe_rule(Name=rule, EventBusName=bus)["EventPattern"]) == {"source": ["shop2"]}
    assert ssm.get_parameter(Name=o["Param"])["Parameter"]["Value"] == "slow"
    cfg = lam.get_function_configuration(FunctionName="recorder")["Environment"]["Variables"]
    assert cfg["APP_MODE"] == "slow"

    # Dropping data-bearing resources that hold data is refused: the bucket has an
    # object; the table and the stream are empty — until the stream has a record.
    r = put_app(server, "prov-dev", {"Resources": {}, "Functions": t2["Functions"]})
    assert r.status_code == 409, r.text
    msg = r.json()["message"]
    assert "Uploads" in msg and "Orders" not in msg and "Clicks" not in msg, msg
    kin.put_record(StreamName=stream, Data=b"x", PartitionKey="k")
    r = put_app(server, "prov-dev", {"Resources": {}, "Functions": t2["Functions"]})
    assert r.status_code == 409 and "Clicks" in r.json()["message"], r.text

    # Removing the app: the bucket still holds an object (two versions), so its
    # delete fails as CloudFormation's does; everything else is gone.
    r = rm_app(server, "prov-dev")
    assert r.status_code == 500, r.text
    assert "BucketNotEmpty" in r.json()["message"], r.text
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.describe_table(TableName=table)
    with pytest.raises(kin.exceptions.ResourceNotFoundException):
        kin.describe_stream_summary(StreamName=stream)
    with pytest.raises(ev.exceptions.ResourceNotFoundException):
        ev.describe_event_bus(Name="prov-bus")
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.describe_secret(SecretId=o["Secret"])
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=o["Param"])
    assert "prov-sender@example.com" not in ses.list_identities()["Identities"]
    # Emptied, the bucket goes with the next rm.
    for ver in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=ver["Key"], VersionId=ver["VersionId"])
    for m in s3.list_object_versions(Bucket=bucket).get("DeleteMarkers", []):
        s3.delete_object(Bucket=bucket, Key=m["Key"], VersionId=m["VersionId"])
    r = rm_app(server, "prov-dev")
    assert r.status_code == 200, r.text
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_a_table_with_items_is_not_replaced_silently_and_retain_keeps_it(env):
    server, _ = env
    ddb = client(server, "dynamodb")

    def table(key, policy=None):
        r = {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": "prov-keep",
            "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}]}}
        if policy:
            r["DeletionPolicy"] = policy
        return {"Resources": {"T": r}}

    assert put_app(server, "prov-keep", table("id")).status_code == 200
    ddb.put_item(TableName="prov-keep", Item={"id": {"S": "1"}})
    # A new key schema replaces the table: refused (custom name, and it holds data).
    r = put_app(server, "prov-keep", table("pk"))
    assert r.status_code == 409, r.text
    assert "holds data" in r.json()["message"]
    # Removing it from the template is refused too, unless retained.
    assert put_app(server, "prov-keep", {"Resources": {}}).status_code == 409
    assert put_app(server, "prov-keep", table("id", "Retain")).status_code == 200
    r = rm_app(server, "prov-keep")
    assert r.status_code == 200, r.text
    assert ddb.get_item(TableName="prov-keep", Key={"id": {"S": "1"}})["Item"]["id"] == {"S": "1"}


def test_a_failed_change_keeps_existing_names_and_restores_the_function_environment(env):
    server, _ = env
    ssm, lam = client(server, "ssm"), client(server, "lambda")
    ssm.put_parameter(Name="prov-taken", Value="theirs", Type="String")
    before = lam.get_function_configuration(FunctionName="recorder")["Environment"]["Variables"]
    t = {
        "Resources": {
            "Mine": {"Type": "AWS::SSM::Parameter", "Properties": {"Type": "String", "Value": "x"}},
            # A named create of a name that exists fails the change …
            "Taken": {"Type": "AWS::SSM::Parameter", "DependsOn": ["Mine"],
                      "Properties": {"Name": "prov-taken", "Type": "String", "Value": "ours"}},
        },
    }
    r = put_app(server, "prov-fail", t)
    assert r.status_code == 500, r.text
    assert "already exists" in r.json()["message"]
    # … and the rollback neither deletes nor changes the parameter it did not
    # create, and deletes the one it did.
    assert ssm.get_parameter(Name="prov-taken")["Parameter"]["Value"] == "theirs"
    names = [p["Name"] for p in ssm.describe_parameters()["Parameters"]]
    assert not [n for n in names if n.startswith("prov-fail-Mine-")], names

    # The environment step runs after the resources; a failure after it (an
    # export another app owns) restores the function's variables.
    owner = {"Resources": {}, "Outputs": {"X": {"Value": "1", "Export": {"Name": "prov-x"}}}}
    assert put_app(server, "prov-owner", owner).status_code == 200
    t = {
        "Resources": {"Mine": {"Type": "AWS::SSM::Parameter",
                               "Properties": {"Type": "String", "Value": "x"}}},
        "Outputs": {"X": {"Value": {"Ref": "Mine"}, "Export": {"Name": "prov-x"}}},
        "Functions": {"RecorderLambdaFunction": "recorder"},
        "FunctionEnvironment": {"RecorderLambdaFunction": {"APP_PARAM": {"Ref": "Mine"}}},
    }
    r = put_app(server, "prov-fail", t)
    assert r.status_code == 500, r.text
    assert "already exported" in r.json()["message"], r.text
    assert lam.get_function_configuration(FunctionName="recorder")["Environment"]["Variables"] == before
    names = [p["Name"] for p in ssm.describe_parameters()["Parameters"]]
    assert not [n for n in names if n.startswith("prov-fail-Mine-")], names
    assert rm_app(server, "prov-owner").status_code == 200


def test_custom_s3_adds_notifications_to_an_existing_bucket(env):
    """serverless.yml `s3: {bucket, existing: true}` compiles to the Framework's
    `Custom::S3`: the function's notifications join the bucket's own, and go
    again with the app, leaving the others."""
    server, out = env
    s3, sqs = client(server, "s3"), client(server, "sqs")
    s3.create_bucket(Bucket="prov-legacy")
    q = sqs.create_queue(QueueName="prov-legacy-q")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket="prov-legacy", NotificationConfiguration={
        "QueueConfigurations": [{"Id": "theirs", "QueueArn": qarn, "Events": ["s3:ObjectRemoved:*"]}]})
    t = {"Resources": {"RecorderCustomS31": {
            "Type": "Custom::S3", "DependsOn": ["RecorderLambdaFunction"],
            "Properties": {"FunctionName": "recorder", "BucketName": "prov-legacy",
                           "BucketConfigs": [{"Event": "s3:ObjectCreated:*",
                                              "Rules": [{"Prefix": "legacy/"}]}]}}},
         "Functions": {"RecorderLambdaFunction": "recorder"}}
    r = put_app(server, "prov-custom", t)
    assert r.status_code == 200, r.text
    n = s3.get_bucket_notification_configuration(Bucket="prov-legacy")
    assert [c["Id"] for c in n["QueueConfigurations"]] == ["theirs"]
    [mine] = n["LambdaFunctionConfigurations"]
    assert mine["LambdaFunctionArn"].endswith(":function:recorder")
    assert mine["Filter"]["Key"]["FilterRules"] == [{"Name": "Prefix", "Value": "legacy/"}]
    s3.put_object(Bucket="prov-legacy", Key="legacy/x.txt", Body=b"x")
    wait_for(lambda: any(rec.get("s3", {}).get("object", {}).get("key") == "legacy/x.txt"
                         for e in events(out) for rec in e.get("Records", [])),
             timeout=30, what="the existing bucket's event")
    assert rm_app(server, "prov-custom").status_code == 200
    n = s3.get_bucket_notification_configuration(Bucket="prov-legacy")
    assert [c["Id"] for c in n["QueueConfigurations"]] == ["theirs"]
    assert "LambdaFunctionConfigurations" not in n


def test_kill_9_mid_change_rolls_the_new_types_back_on_restart(server_factory):
    import signal
    import threading

    import requests

    server = server_factory(env={"NIMBUS_APPS_PAUSE_AFTER_STEP": "5"})
    key = [{"AttributeName": "id", "AttributeType": "S"}]
    template = {"Resources": {
        "A": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "crash-bucket"}},
        "B": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": "crash-table", "AttributeDefinitions": key,
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]}},
        "C": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "crash-stream"}},
        "D": {"Type": "AWS::SecretsManager::Secret", "Properties": {"Name": "crash-secret",
                                                                  "SecretString": "s"}},
        "E": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "crash-param", "Type": "String",
                                                          "Value": "v"}},
        "F": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "crash-bus"}},
    }}

    def deploy_until_killed():
        try:
            requests.put(f"{server.api}/_nimbus/apps/crashy", json={"template": template}, timeout=120)
        except requests.ConnectionError:
            pass

    threading.Thread(target=deploy_until_killed, daemon=True).start()

    def steps_done(s):
        r = s.session.get(f"{s.api}/_nimbus/apps/crashy", timeout=10)
        if r.status_code != 200 or not r.json()["Changes"]:
            return 0
        return sum(1 for x in r.json()["Changes"][0]["Steps"] if x["State"] == "done")

    wait_for(lambda: steps_done(server) == 5, timeout=30, what="five applied steps")
    assert client(server, "ssm").get_parameter(Name="crash-param")["Parameter"]["Value"] == "v"
    server.stop(sig=signal.SIGKILL)
    restarted = server_factory(data=server.data_dir)
    wait_for(lambda: restarted.session.get(f"{restarted.api}/_nimbus/apps/crashy", timeout=10)
             .json()["Status"] == "ROLLBACK_COMPLETE", timeout=30, what="the change rolled back")
    s3, ddb, kin = client(restarted, "s3"), client(restarted, "dynamodb"), client(restarted, "kinesis")
    sm, ssm, ev = client(restarted, "secretsmanager"), client(restarted, "ssm"), client(restarted, "events")
    assert "crash-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "crash-table" not in ddb.list_tables()["TableNames"]
    assert "crash-stream" not in kin.list_streams()["StreamNames"]
    assert [x["Name"] for x in sm.list_secrets()["SecretList"] if x["Name"] == "crash-secret"] == []
    assert [p["Name"] for p in ssm.describe_parameters()["Parameters"] if p["Name"] == "crash-param"] == []
    assert "crash-bus" not in [b["Name"] for b in ev.list_event_buses()["EventBuses"]]
    # Named creates are not refused afterwards: the app deploys whole.
    r = put_app(restarted, "crashy", template)
    assert r.status_code == 200, r.text
    assert "crash-bus" in [b["Name"] for b in ev.list_event_buses()["EventBuses"]]


def test_a_property_the_engine_does_not_apply_fails_a_strict_deploy(server, tmp_path):
    """The CLI reports each resource property the engine would drop, with its
    line: not applied → "not supported yet" (strict deploys fail before any
    change); accepted without effect on one node → a warning."""
    import subprocess

    from conftest import NIMBUS_BIN

    app = tmp_path / "props"
    app.mkdir()
    (app / "handler.py").write_text("def main(event, context):\n    return {}\n")
    manifest = (
        "service: props\nprovider:\n  runtime: python3.12\n  environment:\n    TABLE: !Ref Table\n"
        "functions:\n  a:\n    handler: handler.main\n"
        "resources:\n  Resources:\n    Table:\n      Type: AWS::DynamoDB::Table\n      Properties:\n"
        "        AttributeDefinitions: [{AttributeName: id, AttributeType: S}]\n"
        "        KeySchema: [{AttributeName: id, KeyType: HASH}]\n"
        "        PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}\n"
        "        ImportSourceSpecification: {InputFormat: CSV}\n")
    (app / "serverless.yml").write_text(manifest)

    def deploy(*args):
        return subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy", *args], cwd=app,
                              capture_output=True, text=True, timeout=180)

    p = deploy()
    assert p.returncode == 1, p.stdout + p.stderr
    assert "serverless.yml:11: not supported yet: resource Table (AWS::DynamoDB::Table): property " \
           "ImportSourceSpecification is not applied by the app engine" in p.stderr, p.stderr
    assert "serverless.yml:11: warning: resource Table (AWS::DynamoDB::Table): property " \
           "PointInTimeRecoverySpecification is accepted and has no effect" in p.stderr, p.stderr
    assert "nothing was deployed" in p.stderr
    assert server.session.get(f"{server.api}/_nimbus/apps/props-dev", timeout=10).status_code == 404
    # Without it, the app deploys: the table, and the function's TABLE is its name.
    (app / "serverless.yml").write_text(manifest.replace("        ImportSourceSpecification: {InputFormat: CSV}\n", ""))
    p = deploy()
    assert p.returncode == 0, p.stdout + p.stderr
    lam = client(server, "lambda")
    t = lam.get_function_configuration(FunctionName="props-dev-a")["Environment"]["Variables"]["TABLE"]
    assert t.startswith("props-dev-Table-")
    assert client(server, "dynamodb").describe_table(TableName=t)["Table"]["TableStatus"] == "ACTIVE"
    # A redeploy keeps TABLE (the CLI sets the function's own variables, the engine adds TABLE again).
    p = deploy()
    assert p.returncode == 0, p.stdout + p.stderr
    assert lam.get_function_configuration(FunctionName="props-dev-a")["Environment"]["Variables"]["TABLE"] == t


def test_an_alias_sees_the_variables_that_name_resources(server, tmp_path):
    """SAM `AutoPublishAlias`: events invoke the alias, so the version it points
    at must carry the variables the engine sets once the table exists."""
    import subprocess

    from conftest import NIMBUS_BIN

    app = tmp_path / "aliased"
    app.mkdir()
    (app / "app.py").write_text("import os\ndef handler(event, context):\n    return os.environ.get('TABLE')\n")
    (app / "template.yaml").write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\n"
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      Runtime: python3.12\n      Handler: app.handler\n      CodeUri: .\n"
        "      AutoPublishAlias: live\n      Environment:\n        Variables:\n          TABLE: !Ref Items\n"
        "  Items:\n    Type: AWS::Serverless::SimpleTable\n")
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy"], cwd=app,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    lam = client(server, "lambda")
    name = [f["FunctionName"] for f in lam.list_functions()["Functions"] if "aliased" in f["FunctionName"]]
    assert len(name) == 1, name
    out = json.loads(lam.invoke(FunctionName=name[0], Qualifier="live")["Payload"].read())
    assert out and out.startswith("aliased-Items-"), out
    assert client(server, "dynamodb").describe_table(TableName=out)["Table"]["TableStatus"] == "ACTIVE"
