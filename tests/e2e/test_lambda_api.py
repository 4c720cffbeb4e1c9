"""The Lambda management API through boto3, a client nobody here wrote."""

import base64
import io
import json
import zipfile

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import make_zip

HANDLER = """
import json, os
def handler(event, context):
    return {"v": os.environ.get("VAL", "none"), "event": event}
"""


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


def create(lam, name, code=HANDLER, **kw):
    return lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role="arn:aws:iam::123456789012:role/lambda-role",
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": code})},
        **kw,
    )


def test_create_get_invoke_update_delete(lam):
    out = create(lam, "crud", Environment={"Variables": {"VAL": "1"}}, Tags={"team": "a"}, MemorySize=256, Timeout=5)
    assert out["FunctionName"] == "crud"
    assert out["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:crud"
    assert out["State"] == "Active" and out["LastUpdateStatus"] == "Successful"
    assert out["MemorySize"] == 256 and out["Timeout"] == 5
    assert len(base64.b64decode(out["CodeSha256"])) == 32
    lam.get_waiter("function_exists").wait(FunctionName="crud")
    lam.get_waiter("function_active_v2").wait(FunctionName="crud")

    got = lam.get_function(FunctionName="crud")
    assert got["Configuration"]["Environment"]["Variables"] == {"VAL": "1"}
    assert got["Tags"] == {"team": "a"}

    r = lam.invoke(FunctionName="crud", Payload=json.dumps({"k": 1}))
    assert r["StatusCode"] == 200
    assert json.loads(r["Payload"].read()) == {"v": "1", "event": {"k": 1}}

    rev = got["Configuration"]["RevisionId"]
    upd = lam.update_function_configuration(FunctionName="crud", Environment={"Variables": {"VAL": "2"}}, RevisionId=rev)
    assert upd["RevisionId"] != rev
    lam.get_waiter("function_updated_v2").wait(FunctionName="crud")
    r = lam.invoke(FunctionName="crud", Payload=b"{}")
    assert json.loads(r["Payload"].read())["v"] == "2"

    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="crud", Timeout=9, RevisionId=rev)
    assert e.value.response["Error"]["Code"] == "PreconditionFailedException"

    new_code = HANDLER.replace('"none"', '"none"').replace("return {", 'return {"new": True, ')
    upd = lam.update_function_code(FunctionName="crud", ZipFile=make_zip({"app.py": new_code}))
    assert upd["CodeSha256"] != out["CodeSha256"]
    r = lam.invoke(FunctionName="crud", Payload=b"{}")
    assert json.loads(r["Payload"].read())["new"] is True

    lam.delete_function(FunctionName="crud")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="crud")


def test_conflict_and_validation_errors(lam):
    create(lam, "dupe")
    with pytest.raises(lam.exceptions.ResourceConflictException):
        create(lam, "dupe")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        # 64 MB is refused by boto3's own validator; 20 GB passes it and the server refuses.
        create(lam, "bad-mem", MemorySize=20480)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_function(
            FunctionName="bad-zip", Runtime="python3.12", Role="r", Handler="app.handler",
            Code={"ZipFile": b"not a zip"},
        )
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_function(
            FunctionName="bad-runtime", Runtime="cobol85", Role="r", Handler="a.b",
            Code={"ZipFile": make_zip({"a.py": ""})},
        )


def test_list_functions_pagination(lam):
    for i in range(7):
        create(lam, f"page-{i}")
    names = []
    for page in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 3}):
        assert len(page["Functions"]) <= 3
        names += [f["FunctionName"] for f in page["Functions"]]
    assert [n for n in names if n.startswith("page-")] == [f"page-{i}" for i in range(7)]
    assert len(names) == len(set(names))


def test_concurrency_and_throttle(lam):
    create(lam, "conc")
    assert lam.put_function_concurrency(FunctionName="conc", ReservedConcurrentExecutions=0)["ReservedConcurrentExecutions"] == 0
    assert lam.get_function_concurrency(FunctionName="conc")["ReservedConcurrentExecutions"] == 0
    with pytest.raises(lam.exceptions.TooManyRequestsException) as e:
        lam.invoke(FunctionName="conc", Payload=b"{}")
    assert e.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    lam.delete_function_concurrency(FunctionName="conc")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName="conc")
    assert lam.invoke(FunctionName="conc", Payload=b"{}")["StatusCode"] == 200
    s = lam.get_account_settings()
    assert s["AccountLimit"]["ConcurrentExecutions"] >= 1
    assert s["AccountUsage"]["FunctionCount"] >= 1


def test_tags(lam):
    arn = create(lam, "tagged")["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"a": "1", "b": "2"})
    lam.untag_resource(Resource=arn, TagKeys=["a"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}


def test_invoke_errors_and_log_tail(lam):
    create(lam, "boom", code="def handler(e, c):\n    print('about to fail')\n    raise KeyError('nope')\n")
    r = lam.invoke(FunctionName="boom", LogType="Tail", Payload=b"{}")
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(r["Payload"].read())
    assert err["errorType"] == "KeyError"
    log = base64.b64decode(r["LogResult"]).decode()
    assert "about to fail" in log and "REPORT RequestId" in log
    assert lam.invoke(FunctionName="boom", InvocationType="DryRun")["StatusCode"] == 204
    assert lam.invoke(FunctionName="boom", InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName="boom", Payload=json.dumps({"x": "y" * (6 * 1024 * 1024)}))
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="boom", Qualifier="nope", Payload=b"{}")
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName="boom", Payload=b"{not json")


def test_event_invoke_config_via_boto3(lam):
    create(lam, "eic")
    lam.put_function_event_invoke_config(FunctionName="eic", MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120)
    c = lam.get_function_event_invoke_config(FunctionName="eic")
    assert c["MaximumRetryAttempts"] == 1 and c["MaximumEventAgeInSeconds"] == 120
    lam.update_function_event_invoke_config(FunctionName="eic", MaximumRetryAttempts=0)
    c = lam.get_function_event_invoke_config(FunctionName="eic")
    assert c["MaximumRetryAttempts"] == 0 and c["MaximumEventAgeInSeconds"] == 120
    assert len(lam.list_function_event_invoke_configs(FunctionName="eic")["FunctionEventInvokeConfigs"]) == 1
    lam.delete_function_event_invoke_config(FunctionName="eic")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName="eic")
