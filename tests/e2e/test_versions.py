"""Versions, aliases (with weighted routing), qualifiers and provisioned concurrency,
driven through boto3 against the real binary."""

import json
import time

import boto3
import pytest
from botocore.config import Config

from conftest import make_zip, wait_for

CODE = """
import os
VERSION_TAG = {tag!r}
def handler(event, context):
    return {{"tag": VERSION_TAG, "fv": context.function_version, "arn": context.invoked_function_arn,
             "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "pid": os.getpid()}}
"""


def client(server):
    return boto3.client(
        "lambda", endpoint_url=server.api, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}),
    )


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


def code(tag):
    return make_zip({"app.py": CODE.format(tag=tag)})


def create(lam, name, tag="v1", **kw):
    return lam.create_function(
        FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::123456789012:role/r",
        Handler="app.handler", Code={"ZipFile": code(tag)}, **kw)


def invoke(lam, name, qualifier=None):
    kw = {"Qualifier": qualifier} if qualifier else {}
    r = lam.invoke(FunctionName=name, Payload=b"{}", **kw)
    assert "FunctionError" not in r, r["Payload"].read()
    return r["ExecutedVersion"], json.loads(r["Payload"].read())


def test_publish_versions_and_invoke_each(lam):
    c = create(lam, "ver-basic", Publish=True)
    assert c["Version"] == "1"
    # CreateFunction answers the unqualified ARN, even when it publishes (issue 20).
    assert c["FunctionArn"].endswith(":function:ver-basic")
    lam.get_waiter("published_version_active").wait(FunctionName="ver-basic", Qualifier="1")

    # Publishing an unchanged $LATEST returns the same version.
    assert lam.publish_version(FunctionName="ver-basic")["Version"] == "1"

    lam.update_function_code(FunctionName="ver-basic", ZipFile=code("v2"))
    lam.get_waiter("function_updated_v2").wait(FunctionName="ver-basic")
    v2 = lam.publish_version(FunctionName="ver-basic", Description="second")
    assert v2["Version"] == "2" and v2["Description"] == "second"

    lam.update_function_code(FunctionName="ver-basic", ZipFile=code("v3"))
    assert invoke(lam, "ver-basic")[1]["tag"] == "v3"
    ver, out = invoke(lam, "ver-basic", "1")
    assert (ver, out["tag"], out["fv"], out["env_version"]) == ("1", "v1", "1", "1")
    assert out["arn"].endswith(":function:ver-basic:1")
    ver, out = invoke(lam, "ver-basic", "2")
    assert (ver, out["tag"]) == ("2", "v2")
    ver, out = invoke(lam, "ver-basic:2")  # qualifier in the name
    assert (ver, out["tag"]) == ("2", "v2")
    ver, out = invoke(lam, "ver-basic", "$LATEST")
    assert (ver, out["tag"], out["fv"]) == ("$LATEST", "v3", "$LATEST")

    versions = lam.list_versions_by_function(FunctionName="ver-basic")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert lam.get_function(FunctionName="ver-basic", Qualifier="1")["Configuration"]["Version"] == "1"
    assert lam.get_function_configuration(FunctionName="ver-basic", Qualifier="2")["Description"] == "second"

    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="ver-basic", Qualifier="9", Payload=b"{}")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName="ver-basic", Qualifier="nope")


def test_version_pagination_and_preconditions(lam):
    create(lam, "ver-pages")
    for i in range(4):
        lam.update_function_configuration(FunctionName="ver-pages", Environment={"Variables": {"NUM": str(i)}})
        lam.publish_version(FunctionName="ver-pages")
    pages = lam.get_paginator("list_versions_by_function").paginate(
        FunctionName="ver-pages", PaginationConfig={"PageSize": 2})
    seen = [v["Version"] for p in pages for v in p["Versions"]]
    assert seen == ["$LATEST", "1", "2", "3", "4"]

    latest = lam.get_function_configuration(FunctionName="ver-pages")
    lam.update_function_configuration(FunctionName="ver-pages", Description="changed")
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.publish_version(FunctionName="ver-pages", RevisionId=latest["RevisionId"])
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.publish_version(FunctionName="ver-pages", CodeSha256="AAAA" + latest["CodeSha256"][4:])
    v = lam.publish_version(FunctionName="ver-pages", CodeSha256=latest["CodeSha256"])
    assert v["Version"] == "5"


def test_aliases_crud_and_errors(lam):
    create(lam, "ver-alias", Publish=True)
    lam.update_function_code(FunctionName="ver-alias", ZipFile=code("v2"))
    lam.publish_version(FunctionName="ver-alias")

    a = lam.create_alias(FunctionName="ver-alias", Name="live", FunctionVersion="1", Description="prod")
    assert a["AliasArn"].endswith(":function:ver-alias:live") and a["FunctionVersion"] == "1"
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_alias(FunctionName="ver-alias", Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_alias(FunctionName="ver-alias", Name="ghost", FunctionVersion="7")
    lam.create_alias(FunctionName="ver-alias", Name="edge", FunctionVersion="$LATEST")

    ver, out = invoke(lam, "ver-alias", "live")
    assert (ver, out["tag"]) == ("1", "v1")
    assert out["arn"].endswith(":function:ver-alias:live")
    assert invoke(lam, "ver-alias", "edge")[0] == "$LATEST"
    assert lam.get_function(FunctionName="ver-alias", Qualifier="live")["Configuration"]["Version"] == "1"

    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_alias(FunctionName="ver-alias", Name="live", FunctionVersion="2", RevisionId="stale")
    u = lam.update_alias(FunctionName="ver-alias", Name="live", FunctionVersion="2", RevisionId=a["RevisionId"])
    assert u["FunctionVersion"] == "2" and u["Description"] == "prod"
    assert invoke(lam, "ver-alias", "live")[1]["tag"] == "v2"
    assert lam.get_alias(FunctionName="ver-alias", Name="live")["FunctionVersion"] == "2"

    names = sorted(x["Name"] for x in lam.list_aliases(FunctionName="ver-alias")["Aliases"])
    assert names == ["edge", "live"]
    assert [x["Name"] for x in lam.list_aliases(FunctionName="ver-alias", FunctionVersion="2")["Aliases"]] == ["live"]

    # A version an alias points at cannot be deleted; others can.
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.delete_function(FunctionName="ver-alias", Qualifier="2")
    lam.delete_function(FunctionName="ver-alias", Qualifier="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="ver-alias", Qualifier="1")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.delete_function(FunctionName="ver-alias", Qualifier="$LATEST")

    lam.delete_alias(FunctionName="ver-alias", Name="live")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName="ver-alias", Name="live")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="ver-alias", Qualifier="live", Payload=b"{}")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_alias(FunctionName="ver-alias", Name="123", FunctionVersion="2")


def test_weighted_alias_routing_splits_traffic(lam):
    create(lam, "ver-weights", Publish=True)
    lam.update_function_code(FunctionName="ver-weights", ZipFile=code("v2"))
    lam.publish_version(FunctionName="ver-weights")
    lam.create_alias(FunctionName="ver-weights", Name="canary", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    got = lam.get_alias(FunctionName="ver-weights", Name="canary")
    assert got["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.3}
    counts = {"1": 0, "2": 0}
    for _ in range(200):
        ver, out = invoke(lam, "ver-weights", "canary")
        assert out["tag"] == {"1": "v1", "2": "v2"}[ver]
        counts[ver] += 1
    share = counts["2"] / 200
    assert abs(share - 0.3) <= 0.10, counts

    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_alias(FunctionName="ver-weights", Name="canary",
                         RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    # Shift everything to version 2.
    lam.update_alias(FunctionName="ver-weights", Name="canary", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {}})
    assert {invoke(lam, "ver-weights", "canary")[0] for _ in range(10)} == {"2"}


def test_provisioned_concurrency_on_version_and_alias(lam, server):
    create(lam, "ver-prov", Publish=True)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_provisioned_concurrency_config(
            FunctionName="ver-prov", Qualifier="$LATEST", ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName="ver-prov", Qualifier="1")

    r = lam.put_provisioned_concurrency_config(
        FunctionName="ver-prov", Qualifier="1", ProvisionedConcurrentExecutions=2)
    assert r["RequestedProvisionedConcurrentExecutions"] == 2
    assert r["Status"] in ("IN_PROGRESS", "READY")
    wait_for(lambda: lam.get_provisioned_concurrency_config(
        FunctionName="ver-prov", Qualifier="1")["Status"] == "READY", timeout=30)
    got = lam.get_provisioned_concurrency_config(FunctionName="ver-prov", Qualifier="1")
    assert got["AvailableProvisionedConcurrentExecutions"] == 2

    # The provisioned instances serve the version warm: no cold start, initialization type says so.
    r = lam.invoke(FunctionName="ver-prov", Qualifier="1", Payload=b"{}", LogType="Tail")
    import base64
    tail = base64.b64decode(r["LogResult"]).decode()
    assert "Init Duration" not in tail, tail

    lam.create_alias(FunctionName="ver-prov", Name="live", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(
        FunctionName="ver-prov", Qualifier="live", ProvisionedConcurrentExecutions=1)
    configs = lam.list_provisioned_concurrency_configs(FunctionName="ver-prov")["ProvisionedConcurrencyConfigs"]
    assert sorted(c["FunctionArn"].rsplit(":", 1)[1] for c in configs) == ["1", "live"]

    lam.delete_provisioned_concurrency_config(FunctionName="ver-prov", Qualifier="live")
    lam.delete_provisioned_concurrency_config(FunctionName="ver-prov", Qualifier="1")
    assert lam.list_provisioned_concurrency_configs(FunctionName="ver-prov")["ProvisionedConcurrencyConfigs"] == []


def test_versions_and_aliases_survive_kill_9(server_factory):
    s = server_factory()
    lam = client(s)
    create(lam, "ver-durable", Publish=True)
    lam.update_function_code(FunctionName="ver-durable", ZipFile=code("v2"))
    lam.publish_version(FunctionName="ver-durable")
    lam.create_alias(FunctionName="ver-durable", Name="live", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    lam.put_provisioned_concurrency_config(
        FunctionName="ver-durable", Qualifier="2", ProvisionedConcurrentExecutions=1)
    s.kill()
    s2 = server_factory(data=s.data_dir)
    lam = client(s2)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="ver-durable")["Versions"]] == ["$LATEST", "1", "2"]
    assert invoke(lam, "ver-durable", "1")[1]["tag"] == "v1"
    assert lam.get_alias(FunctionName="ver-durable", Name="live")["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}
    wait_for(lambda: lam.get_provisioned_concurrency_config(
        FunctionName="ver-durable", Qualifier="2")["Status"] == "READY", timeout=30)
    # A new version after restart continues the numbering.
    lam.update_function_code(FunctionName="ver-durable", ZipFile=code("v3"))
    assert lam.publish_version(FunctionName="ver-durable")["Version"] == "3"


def test_async_invoke_of_an_alias_runs_its_version(lam, tmp_path):
    create(lam, "ver-async", Publish=True)
    lam.update_function_code(FunctionName="ver-async", ZipFile=code("v2"))
    lam.create_alias(FunctionName="ver-async", Name="stable", FunctionVersion="1")
    r = lam.invoke(FunctionName="ver-async", Qualifier="stable", InvocationType="Event", Payload=b"{}")
    assert r["StatusCode"] == 202
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="ver-async", Qualifier="missing", InvocationType="Event", Payload=b"{}")
    # The record says which version ran.
    import requests

    def ran():
        recs = requests.get(f"{lam.meta.endpoint_url}/_nimbus/invocations",
                            params={"function": "ver-async"}).json()
        recs = recs.get("invocations", recs) if isinstance(recs, dict) else recs
        return [x for x in recs if x.get("version") == "1"]
    wait_for(ran, timeout=30)


def test_arns_use_the_requests_region_and_dry_run_knows_qualifiers(server):
    lam = boto3.client("lambda", endpoint_url=server.api, region_name="eu-west-3",
                       aws_access_key_id="test", aws_secret_access_key="test",
                       config=Config(retries={"max_attempts": 0}))
    c = create(lam, "ver-region", Publish=True)
    assert c["FunctionArn"].startswith("arn:aws:lambda:eu-west-3:123456789012:function:ver-region")
    a = lam.create_alias(FunctionName="ver-region", Name="live", FunctionVersion="1")
    assert a["AliasArn"] == "arn:aws:lambda:eu-west-3:123456789012:function:ver-region:live"
    assert lam.invoke(FunctionName="ver-region", Qualifier="live", InvocationType="DryRun")["StatusCode"] == 204
    assert lam.invoke(FunctionName="ver-region", Qualifier="1", InvocationType="DryRun")["StatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="ver-region", Qualifier="2", InvocationType="DryRun")
