"""Lambda function URLs against the real binary: the five *FunctionUrlConfig operations
through boto3 (shapes, Qualifier, errors), requests to the URL on the gateway listener
by path prefix and by Host (payload 2.0 as function URLs send it), AWS_IAM checked
with SigV4 (service lambda) against the server's credentials, the URL's CORS, and
durability across kill -9."""

import json
import re
import shutil
import tempfile
from urllib.parse import urlparse

import boto3
import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import Server, make_zip

ECHO = """
import json

def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-fn-request-id": context.aws_request_id,
                    "access-control-allow-origin": "https://from-the-function"},
        "body": json.dumps(event),
    }
"""

PLAIN = """
def handler(event, context):
    return {"hello": event["rawPath"]}
"""

ROOT_KEY, ROOT_SECRET = "AKIANIMBUSURLROOT001", "url/Secret+Key00000000000000000000000001"
ALICE_KEY, ALICE_SECRET = "AKIANIMBUSURLALICE01", "alice/Secret+Key000000000000000000000001"
ACCOUNT = "123456789012"
URL_RE = re.compile(r"^http://127\.0\.0\.1:\d+/_url/([a-z0-9]{32})/$")


def lambda_client(server, key="test", secret="test"):
    return boto3.client(
        "lambda", endpoint_url=server.api, region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 0}),
    )


def error_of(e):
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def srv():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d).start()
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    s.deploy("plain", "python3.12", "app.handler", {"app.py": PLAIN})
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


# -- the API -------------------------------------------------------------------

def test_create_get_update_list_delete(srv):
    lam = lambda_client(srv)
    cors = {"AllowOrigins": ["https://app.example.com"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["content-type"], "ExposeHeaders": ["x-fn-request-id"],
            "AllowCredentials": True, "MaxAge": 300}
    c = lam.create_function_url_config(FunctionName="plain", AuthType="NONE", Cors=cors)
    assert c["ResponseMetadata"]["HTTPStatusCode"] == 201
    m = URL_RE.match(c["FunctionUrl"])
    assert m, c["FunctionUrl"]
    assert c["FunctionUrl"].startswith(srv.gateway + "/_url/")
    assert c["FunctionArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:plain"
    assert c["AuthType"] == "NONE" and c["InvokeMode"] == "BUFFERED"
    assert c["Cors"] == {"AllowOrigins": ["https://app.example.com"], "AllowMethods": ["GET", "POST"],
                         "AllowHeaders": ["content-type"], "ExposeHeaders": ["x-fn-request-id"],
                         "AllowCredentials": True, "MaxAge": 300}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", c["CreationTime"])
    assert "LastModifiedTime" not in c

    g = lam.get_function_url_config(FunctionName="plain")
    for k in ("FunctionUrl", "FunctionArn", "AuthType", "Cors", "CreationTime", "InvokeMode"):
        assert g[k] == c[k], k
    assert g["LastModifiedTime"] >= g["CreationTime"]

    # The URL answers.
    r = requests.get(c["FunctionUrl"] + "some/path?x=1", timeout=30)
    assert r.status_code == 200 and r.json() == {"hello": "/some/path"}

    u = lam.update_function_url_config(FunctionName="plain", AuthType="AWS_IAM",
                                       Cors={"AllowOrigins": ["*"]}, InvokeMode="RESPONSE_STREAM")
    assert u["FunctionUrl"] == c["FunctionUrl"] and u["CreationTime"] == c["CreationTime"]
    assert u["AuthType"] == "AWS_IAM" and u["InvokeMode"] == "RESPONSE_STREAM"
    assert u["Cors"]["AllowOrigins"] == ["*"] and u["Cors"]["AllowCredentials"] is False
    # Only what is given changes.
    u2 = lam.update_function_url_config(FunctionName="plain", AuthType="NONE")
    assert u2["Cors"]["AllowOrigins"] == ["*"] and u2["InvokeMode"] == "RESPONSE_STREAM"

    listed = lam.list_function_url_configs(FunctionName="plain")["FunctionUrlConfigs"]
    assert [x["FunctionUrl"] for x in listed] == [c["FunctionUrl"]]
    assert set(listed[0]) >= {"FunctionUrl", "FunctionArn", "CreationTime", "LastModifiedTime",
                              "AuthType", "InvokeMode", "Cors"}

    lam.delete_function_url_config(FunctionName="plain")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName="plain")
    assert lam.list_function_url_configs(FunctionName="plain")["FunctionUrlConfigs"] == []
    # The URL is gone from the gateway.
    assert requests.get(c["FunctionUrl"], timeout=10).status_code == 404


def test_qualifier_names_an_alias(srv):
    lam = lambda_client(srv)
    v = lam.publish_version(FunctionName="echo")["Version"]
    lam.create_alias(FunctionName="echo", Name="live", FunctionVersion=v)
    a = lam.create_function_url_config(FunctionName="echo", Qualifier="live", AuthType="NONE")
    assert a["FunctionArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:echo:live"
    b = lam.create_function_url_config(FunctionName="echo", AuthType="NONE")
    assert a["FunctionUrl"] != b["FunctionUrl"]
    # name:alias in FunctionName works as the Qualifier does.
    assert lam.get_function_url_config(FunctionName="echo:live")["FunctionUrl"] == a["FunctionUrl"]
    arns = sorted(x["FunctionArn"] for x in lam.list_function_url_configs(FunctionName="echo")["FunctionUrlConfigs"])
    assert arns == [f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:echo",
                    f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:echo:live"]
    r = requests.get(a["FunctionUrl"], timeout=30)
    assert r.status_code == 200
    rid = r.headers["x-fn-request-id"]
    rec = next(x for x in srv.records("echo") if x["request_id"] == rid)
    assert rec["version"] == v and rec["trigger"] == "http"
    # Pagination.
    page = lam.list_function_url_configs(FunctionName="echo", MaxItems=1)
    assert len(page["FunctionUrlConfigs"]) == 1 and page["NextMarker"]
    rest = lam.list_function_url_configs(FunctionName="echo", Marker=page["NextMarker"])
    assert len(rest["FunctionUrlConfigs"]) == 1 and "NextMarker" not in rest
    lam.delete_function_url_config(FunctionName="echo", Qualifier="live")
    lam.delete_function_url_config(FunctionName="echo")


def test_errors(srv):
    lam = lambda_client(srv)
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as e:
        lam.create_function_url_config(FunctionName="ghost", AuthType="NONE")
    assert "Function not found" in str(e.value)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_function_url_config(FunctionName="plain", Qualifier="nope", AuthType="NONE")
    with pytest.raises(lam.exceptions.ClientError) as e:
        lam.create_function_url_config(FunctionName="plain", Qualifier="1", AuthType="NONE")
    assert error_of(e) == ("ValidationException", 400)
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as e:
        lam.get_function_url_config(FunctionName="plain")
    assert "does not exist" in str(e.value)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_function_url_config(FunctionName="plain", AuthType="NONE")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_url_config(FunctionName="plain")
    # Bad values (sent raw: boto3 validates enums only client-side-not-at-all for strings).
    r = srv.session.post(f"{srv.api}/2021-10-31/functions/plain/url", json={"AuthType": "OPEN"})
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "ValidationException", r.text
    assert "authType" in r.json()["message"]
    r = srv.session.post(f"{srv.api}/2021-10-31/functions/plain/url", json={})
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "ValidationException", r.text
    r = srv.session.post(f"{srv.api}/2021-10-31/functions/plain/url",
                         json={"AuthType": "NONE", "Cors": {"AllowOrigins": ["*"], "AllowCredentials": True}})
    assert r.status_code == 400, r.text
    r = srv.session.post(f"{srv.api}/2021-10-31/functions/plain/url",
                         json={"AuthType": "NONE", "Cors": {"MaxAge": 90000}})
    assert r.status_code == 400, r.text
    lam.create_function_url_config(FunctionName="plain", AuthType="NONE")
    with pytest.raises(lam.exceptions.ResourceConflictException) as e:
        lam.create_function_url_config(FunctionName="plain", AuthType="NONE")
    assert "FunctionUrlConfig exists" in str(e.value)
    lam.delete_function_url_config(FunctionName="plain")


def test_deleting_the_function_deletes_its_url(srv):
    srv.deploy("doomed", "python3.12", "app.handler", {"app.py": PLAIN})
    lam = lambda_client(srv)
    c = lam.create_function_url_config(FunctionName="doomed", AuthType="NONE")
    assert requests.get(c["FunctionUrl"], timeout=30).status_code == 200
    assert srv.delete("doomed").status_code == 204
    assert requests.get(c["FunctionUrl"], timeout=10).status_code == 404
    # A new function of the same name starts without a URL.
    srv.deploy("doomed", "python3.12", "app.handler", {"app.py": PLAIN})
    assert requests.get(c["FunctionUrl"], timeout=10).status_code == 404
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName="doomed")
    assert lam.list_function_url_configs(FunctionName="doomed")["FunctionUrlConfigs"] == []
    c2 = lam.create_function_url_config(FunctionName="doomed", AuthType="NONE")
    assert c2["FunctionUrl"] != c["FunctionUrl"]
    assert requests.get(c2["FunctionUrl"], timeout=30).status_code == 200


# -- the URL ---------------------------------------------------------------------

def test_event_is_function_url_payload(srv):
    lam = lambda_client(srv)
    c = lam.create_function_url_config(FunctionName="echo", AuthType="NONE")
    url_id = URL_RE.match(c["FunctionUrl"]).group(1)
    try:
        r = requests.post(c["FunctionUrl"] + "my/path?parameter1=value1&parameter1=value2&parameter2=value",
                          data=b'{"example": "test"}',
                          headers={"Content-Type": "application/json", "Cookie": "a=1; b=2",
                                   "User-Agent": "url-test/1"}, timeout=30)
        assert r.status_code == 200, r.text
        e = r.json()
        assert e["version"] == "2.0" and e["routeKey"] == "$default"
        assert e["rawPath"] == "/my/path"
        assert e["rawQueryString"] == "parameter1=value1&parameter1=value2&parameter2=value"
        assert e["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "value"}
        assert e["cookies"] == ["a=1", "b=2"]
        assert e["headers"]["content-type"] == "application/json"
        assert e["body"] == '{"example": "test"}' and e["isBase64Encoded"] is False
        ctx = e["requestContext"]
        assert ctx["apiId"] == url_id and ctx["domainPrefix"] == url_id
        assert ctx["domainName"] == urlparse(srv.gateway).netloc
        assert ctx["accountId"] == "anonymous"
        assert "authorizer" not in ctx
        assert ctx["routeKey"] == "$default" and ctx["stage"] == "$default"
        assert ctx["http"] == {"method": "POST", "path": "/my/path", "protocol": "HTTP/1.1",
                               "sourceIp": "127.0.0.1", "userAgent": "url-test/1"}
        assert ctx["requestId"] == r.headers["apigw-requestid"]
        # Without a CORS config the function's own CORS headers pass through.
        assert r.headers["access-control-allow-origin"] == "https://from-the-function"

        # The bare URL and the URL without its trailing slash are the root path.
        assert requests.get(c["FunctionUrl"], timeout=30).json()["rawPath"] == "/"
        assert requests.get(c["FunctionUrl"].rstrip("/"), timeout=30).json()["rawPath"] == "/"

        # Host routing: <url-id>.lambda-url.<anything>, the path as sent.
        host = f"{url_id}.lambda-url.localhost:{urlparse(srv.gateway).port}"
        r = requests.get(f"{srv.gateway}/by/host?x=1", headers={"Host": host}, timeout=30)
        assert r.status_code == 200, r.text
        e = r.json()
        assert e["rawPath"] == "/by/host" and e["requestContext"]["domainName"] == host
        assert e["requestContext"]["domainPrefix"] == url_id
    finally:
        lam.delete_function_url_config(FunctionName="echo")


def test_unknown_url_is_404(srv):
    r = requests.get(f"{srv.gateway}/_url/{'x' * 32}/", timeout=10)
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}
    host = f"{'y' * 32}.lambda-url.localhost"
    r = requests.get(f"{srv.gateway}/", headers={"Host": host}, timeout=10)
    assert r.status_code == 404


def test_url_cors(srv):
    lam = lambda_client(srv)
    c = lam.create_function_url_config(
        FunctionName="echo", AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example.com"], "AllowMethods": ["POST"],
              "AllowHeaders": ["content-type", "x-custom"], "ExposeHeaders": ["x-fn-request-id"],
              "MaxAge": 600})
    try:
        before = len(srv.records("echo"))
        r = requests.options(c["FunctionUrl"] + "anything", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, X-Custom"}, timeout=10)
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert r.headers["access-control-allow-methods"] == "POST"
        assert r.headers["access-control-allow-headers"] == "content-type,x-custom"
        assert r.headers["access-control-max-age"] == "600"
        r = requests.post(c["FunctionUrl"], json={}, headers={"Origin": "https://app.example.com"}, timeout=30)
        assert r.status_code == 200
        # The URL's CORS replaces the function's.
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert r.headers["access-control-expose-headers"] == "x-fn-request-id"
        r = requests.post(c["FunctionUrl"], json={}, headers={"Origin": "https://evil.example.com"}, timeout=30)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        # The preflight invoked nothing: two POSTs, two records.
        import time
        time.sleep(0.5)
        assert len(srv.records("echo")) == before + 2
    finally:
        lam.delete_function_url_config(FunctionName="echo")


# -- AWS_IAM -------------------------------------------------------------------

class SigV4(requests.auth.AuthBase):
    """Sign a `requests` request with botocore's signer."""

    def __init__(self, key=ROOT_KEY, secret=ROOT_SECRET, service="lambda", region="us-east-1"):
        self.signer = botocore.auth.SigV4Auth(Credentials(key, secret), service, region)

    def __call__(self, r):
        headers = {k: v for k, v in r.headers.items() if k.lower() in ("content-type", "host")}
        aws = AWSRequest(method=r.method, url=r.url, data=r.body or b"", headers=headers)
        self.signer.add_auth(aws)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"):
            if name in aws.headers:
                r.headers[name] = aws.headers[name]
        return r


@pytest.fixture(scope="module")
def authed():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, ["--credentials", f"{ROOT_KEY}:{ROOT_SECRET}",
                  "--credentials", f"{ALICE_KEY}:{ALICE_SECRET}:alice"]).start()
    s.session.auth = SigV4(service="nimbus")
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_aws_iam_requires_a_lambda_signature(authed):
    lam = lambda_client(authed, ROOT_KEY, ROOT_SECRET)
    c = lam.create_function_url_config(FunctionName="echo", AuthType="AWS_IAM")
    url = c["FunctionUrl"] + "iam/path?q=1"
    try:
        r = requests.get(url, timeout=10)
        assert r.status_code == 403 and r.json() == {"Message": "Forbidden"}
        r = requests.get(url, auth=SigV4(secret="wrong/secret0000000000000000000000000001"), timeout=10)
        assert r.status_code == 403
        r = requests.get(url, auth=SigV4(service="execute-api"), timeout=10)
        assert r.status_code == 403
        r = requests.post(url, data=b'{"a":1}', headers={"Content-Type": "application/json"},
                          auth=SigV4(), timeout=30)
        assert r.status_code == 200, r.text
        e = r.json()
        assert e["rawPath"] == "/iam/path" and e["body"] == '{"a":1}'
        ctx = e["requestContext"]
        assert ctx["accountId"] == ACCOUNT
        iam = ctx["authorizer"]["iam"]
        assert iam["accessKey"] == ROOT_KEY and iam["accountId"] == ACCOUNT
        assert iam["userArn"] == f"arn:aws:iam::{ACCOUNT}:root"
        assert iam["cognitoIdentity"] is None and iam["principalOrgId"] is None
        # A tampered body no longer matches its signature.
        req = requests.Request("POST", url, data=b'{"a":1}', headers={"Content-Type": "application/json"},
                               auth=SigV4()).prepare()
        req.body = b'{"a":2}'
        req.headers["Content-Length"] = "7"
        assert requests.Session().send(req, timeout=10).status_code == 403
        # An IAM user's signature names the user.
        r = requests.get(url, auth=SigV4(ALICE_KEY, ALICE_SECRET), timeout=30)
        assert r.status_code == 200, r.text
        iam = r.json()["requestContext"]["authorizer"]["iam"]
        assert iam["accessKey"] == ALICE_KEY
        assert iam["userArn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
        assert iam["userId"].startswith("AIDA")
        # Switching the URL to NONE opens it.
        lam.update_function_url_config(FunctionName="echo", AuthType="NONE")
        assert requests.get(url, timeout=30).status_code == 200
    finally:
        lam.delete_function_url_config(FunctionName="echo")


# -- durability ----------------------------------------------------------------

def test_urls_survive_kill_9(server_factory, data_dir):
    s = server_factory()
    s.deploy("plain", "python3.12", "app.handler", {"app.py": PLAIN})
    lam = lambda_client(s)
    c = lam.create_function_url_config(FunctionName="plain", AuthType="NONE",
                                       Cors={"AllowOrigins": ["https://a.example"]})
    url_id = URL_RE.match(c["FunctionUrl"]).group(1)
    s.kill()
    s2 = server_factory(data=data_dir)
    lam2 = lambda_client(s2)
    g = lam2.get_function_url_config(FunctionName="plain")
    assert URL_RE.match(g["FunctionUrl"]).group(1) == url_id
    assert g["Cors"]["AllowOrigins"] == ["https://a.example"]
    r = requests.get(g["FunctionUrl"] + "after", timeout=30)
    assert r.status_code == 200 and r.json() == {"hello": "/after"}
