"""The edge listener routes by protocol: every request on the API port reaches one
front-end, or gets an AWS-shaped error naming what was not recognised, in the
protocol the request spoke — also when SigV4 refuses it."""

import shutil
import tempfile

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import Server

KEY, SECRET = "AKIANIMBUSEDGE000001", "edge/Secret+Key00000000000000000000000001"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def authed():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, ["--credentials", f"{KEY}:{SECRET}"]).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def signed(method, url, service, body=b"", headers=None, key=KEY, secret=SECRET):
    aws = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    botocore.auth.SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(aws)
    return requests.request(method, url, data=body, headers=dict(aws.headers.items()), timeout=10)


def test_unknown_x_amz_target_is_named_in_awsjson(server):
    r = requests.post(
        server.api + "/",
        data=b"{}",
        headers={"X-Amz-Target": "AmazonFrobnicator_20990101.Frob",
                 "Content-Type": "application/x-amz-json-1.1"},
        timeout=10,
    )
    assert r.status_code == 400, r.text
    assert r.headers["x-amzn-errortype"] == "UnknownOperationException"
    assert r.headers["content-type"].startswith("application/x-amz-json-1.1")
    body = r.json()
    assert body["__type"].endswith("UnknownOperationException")
    assert "AmazonFrobnicator_20990101" in body["message"]
    assert r.headers["x-amzn-requestid"]


def test_unknown_action_is_invalid_action_in_xml(server):
    r = requests.post(
        server.api + "/",
        data={"Action": "FrobnicateEverything", "Version": "2099-01-01"},
        timeout=10,
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "text/xml"
    assert "<ErrorResponse" in r.text and "<Code>InvalidAction</Code>" in r.text
    assert "FrobnicateEverything" in r.text and "2099-01-01" in r.text
    # The same with `?Action=` on a GET.
    r = requests.get(server.api + "/?Action=FrobnicateEverything&Version=2099-01-01", timeout=10)
    assert r.status_code == 400 and "<Code>InvalidAction</Code>" in r.text


def test_nothing_recognised_names_method_and_path(server):
    r = requests.delete(server.api + "/no/such/thing", timeout=10)
    assert r.status_code == 404
    assert r.headers["x-amzn-errortype"] == "UnknownOperationException"
    assert "DELETE /no/such/thing" in r.json()["message"]


def test_botocore_sts_still_works_signed_and_unsigned_routing(server):
    sts = boto3.client("sts", endpoint_url=server.api, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="y")
    me = sts.get_caller_identity()
    assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:root" and me["Account"] == ACCOUNT
    # Unsigned, by Action + Version alone.
    r = requests.post(server.api + "/", data={"Action": "GetCallerIdentity", "Version": "2011-06-15"}, timeout=10)
    assert r.status_code == 200 and "<GetCallerIdentityResult>" in r.text
    # Lambda by its REST prefix, unsigned.
    r = requests.get(server.api + "/2015-03-31/functions/", timeout=10)
    assert r.status_code == 200 and "Functions" in r.json()


def test_botocore_sts_with_credentials(authed):
    sts = boto3.client("sts", endpoint_url=authed.api, region_name="us-east-1",
                       aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                       config=Config(retries={"max_attempts": 0}))
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"


def test_sigv4_refusal_for_an_awsjson_api_is_json(authed):
    # Signed for DynamoDB with a wrong secret: refused in awsJson, not XML or Lambda's shape.
    r = signed(
        "POST", authed.api + "/", "dynamodb", body=b"{}",
        headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                 "Content-Type": "application/x-amz-json-1.0"},
        secret="wrong/secret000000000000000000000000000001",
    )
    assert r.status_code in (400, 403), r.text
    assert r.headers["content-type"].startswith("application/x-amz-json")
    body = r.json()
    assert body["__type"].endswith("InvalidSignatureException"), body
    assert r.headers["x-amzn-errortype"] == "InvalidSignatureException"
    # Unsigned: MissingAuthenticationToken, still JSON.
    r = requests.post(authed.api + "/", data=b"{}", timeout=10,
                      headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                               "Content-Type": "application/x-amz-json-1.0"})
    assert r.status_code in (400, 403)
    assert "MissingAuthenticationToken" in r.json()["__type"]
    # A query-protocol request is refused in XML.
    r = requests.post(authed.api + "/", data={"Action": "ListUsers", "Version": "2010-05-08"}, timeout=10)
    assert r.status_code == 403 and r.headers["content-type"] == "text/xml"
    assert "<Code>MissingAuthenticationToken</Code>" in r.text
