"""What first users hit (issue 20): Lambda-faithful request ids, and REST API
bodies that reach the function as text unless their content type is one of the
API's binary media types (HTTP APIs keep base64 for non-text bodies)."""

import base64
import json
import subprocess
import textwrap

import pytest
import requests

from conftest import concurrently

# An unmodified handler that builds order ids from its request id.
ORDERS = """
def handler(event, context):
    return {"order_id": context.aws_request_id[:8], "request_id": context.aws_request_id}
"""

ECHO = """
import base64, json
def handler(event, context):
    body = event.get("body")
    parsed = None
    if body is not None and not event.get("isBase64Encoded"):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"body": body, "b64": event.get("isBase64Encoded"), "parsed": parsed}),
    }
"""

IMAGE = """
import base64
def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "image/png"},
        "isBase64Encoded": True,
        "body": base64.b64encode(bytes([137, 80, 78, 71, 0, 255])).decode(),
    }
"""


def put_route(s, key, function, **extra):
    r = s.session.put(f"{s.api}/_nimbus/routes", json={"route_key": key, "function": function, **extra}, timeout=10)
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_request_ids_are_random_so_prefixes_do_not_repeat(server):
    server.deploy("orders", "python3.12", "app.handler", {"app.py": ORDERS})
    # 20 callers x 10 invokes each: concurrent enough to run several instances at
    # once, below the platform's concurrency limit on a loaded 2-core CI box.
    batches = concurrently(
        20, lambda i: [server.invoke_ok("orders", {"i": i * 10 + j})[0] for j in range(10)], timeout=300
    )
    results = [r for batch in batches for r in batch]
    ids = [r["order_id"] for r in results]
    assert len(set(ids)) == 200, sorted(ids)
    for r in results:
        full = r["request_id"]
        assert len(full) == 36 and full[14] == "4", full  # UUID version 4


def test_rest_route_passes_a_form_body_as_text(server):
    server.deploy("echo-rest", "python3.12", "app.handler", {"app.py": ECHO})
    route = put_route(server, "POST /rest/orders", "echo-rest", api_type="REST", payload_format="1.0")
    assert route["api_type"] == "REST"
    # What `curl -d '{"item": "tea"}'` sends: application/x-www-form-urlencoded.
    r = requests.post(
        server.gateway + "/rest/orders",
        data='{"item": "tea"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["b64"] is False
    assert got["parsed"] == {"item": "tea"}
    # Really curl, as the first user ran it.
    out = subprocess.run(
        ["curl", "-s", "-d", '{"item": "jam"}', server.gateway + "/rest/orders"],
        capture_output=True, text=True, timeout=30,
    )
    assert json.loads(out.stdout)["parsed"] == {"item": "jam"}, out.stdout


def test_rest_binary_media_types_base64_matching_bodies_only(server):
    server.deploy("echo-bin", "python3.12", "app.handler", {"app.py": ECHO})
    put_route(
        server, "POST /rest/upload", "echo-bin",
        api_type="REST", payload_format="1.0", binary_media_types=["image/*", "application/octet-stream"],
    )
    raw = bytes([0, 1, 2, 250, 255])
    r = requests.post(server.gateway + "/rest/upload", data=raw, headers={"content-type": "image/png"}, timeout=30)
    got = r.json()
    assert got["b64"] is True and base64.b64decode(got["body"]) == raw, got
    r = requests.post(server.gateway + "/rest/upload", data="a=1&b=2",
                      headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    got = r.json()
    assert got["b64"] is False and got["body"] == "a=1&b=2", got


def test_http_api_keeps_base64_for_form_bodies(server):
    server.deploy("echo-http", "python3.12", "app.handler", {"app.py": ECHO})
    put_route(server, "POST /http/orders", "echo-http", payload_format="1.0")
    r = requests.post(server.gateway + "/http/orders", data="a=1",
                      headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    got = r.json()
    assert got["b64"] is True and base64.b64decode(got["body"]) == b"a=1", got


def test_rest_responses_are_decoded_only_for_binary_media_types(server):
    server.deploy("image", "python3.12", "app.handler", {"app.py": IMAGE})
    put_route(server, "GET /rest/plain.png", "image", api_type="REST", payload_format="1.0")
    put_route(server, "GET /rest/binary.png", "image", api_type="REST", payload_format="1.0",
              binary_media_types=["image/png"])
    want = bytes([137, 80, 78, 71, 0, 255])
    # No binary media types: API Gateway hands the base64 text through.
    r = requests.get(server.gateway + "/rest/plain.png", timeout=30)
    assert r.content == base64.b64encode(want), r.content
    r = requests.get(server.gateway + "/rest/binary.png", headers={"accept": "image/png"}, timeout=30)
    assert r.content == want


def test_route_validation_and_cli(server):
    server.deploy("echo-cli", "python3.12", "app.handler", {"app.py": ECHO})
    r = server.session.put(f"{server.api}/_nimbus/routes", json={
        "route_key": "POST /bad", "function": "echo-cli", "api_type": "REST", "payload_format": "2.0"}, timeout=10)
    assert r.status_code == 400 and "1.0" in r.text, r.text
    r = server.session.put(f"{server.api}/_nimbus/routes", json={
        "route_key": "POST /bad", "function": "echo-cli", "api_type": "SOAP"}, timeout=10)
    assert r.status_code == 400 and "SOAP" in r.text, r.text
    p = server.cli("route", "add", "POST", "/cli/rest", "echo-cli", "--api", "rest",
                   "--binary-media-type", "image/png")
    assert p.returncode == 0, p.stderr
    routes = {x["route_key"]: x for x in server.session.get(f"{server.api}/_nimbus/routes").json()["routes"]}
    assert routes["POST /cli/rest"]["api_type"] == "REST"
    assert routes["POST /cli/rest"]["payload_format"] == "1.0"
    assert routes["POST /cli/rest"]["binary_media_types"] == ["image/png"]


def test_serverless_http_events_are_rest_routes_with_binary_media_types(server, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "handler.py").write_text(ECHO)
    (app / "serverless.yml").write_text(textwrap.dedent("""
        service: firstuser
        provider:
          name: aws
          runtime: python3.12
          apiGateway:
            binaryMediaTypes:
              - image/png
        functions:
          create:
            handler: handler.handler
            events:
              - http:
                  path: sls/orders
                  method: post
    """))
    p = server.cli("deploy", cwd=app, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    routes = {x["route_key"]: x for x in server.session.get(f"{server.api}/_nimbus/routes").json()["routes"]}
    route = routes["POST /sls/orders"]
    assert route["api_type"] == "REST" and route["binary_media_types"] == ["image/png"], route
    r = requests.post(server.gateway + "/sls/orders", data='{"n": 1}',
                      headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert r.json()["parsed"] == {"n": 1}, r.text


@pytest.mark.parametrize("size", [2_000_000, 7_000_000])
def test_cli_async_invoke_too_large_prints_lambdas_error(server, tmp_path, size):
    server.deploy("sink", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return 1\n"})
    payload = tmp_path / "big.json"
    payload.write_text(json.dumps({"a": "x" * size}))
    p = server.cli("invoke", "sink", "--async", "--payload", f"@{payload}", timeout=120)
    assert p.returncode != 0
    assert "RequestTooLargeException" in p.stderr, p.stderr
    assert "error sending request" not in p.stderr, p.stderr


def test_boto3_async_invoke_too_large_gets_request_too_large(server):
    import boto3
    import botocore.exceptions
    server.deploy("sink2", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return 1\n"})
    lam = boto3.client("lambda", endpoint_url=server.api, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="y")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.invoke(FunctionName="sink2", InvocationType="Event", Payload=json.dumps({"a": "x" * 2_000_000}))
    assert e.value.response["Error"]["Code"] == "RequestTooLargeException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_interpreter_notice_is_given_once_per_function(server):
    code = {"app.py": "def handler(e, c):\n    return 1\n"}
    first = server.deploy("noticed", "python3.12", "app.handler", code).json()
    if not first.get("notice"):
        pytest.skip("python3.12 is installed here: no stand-in notice to give")
    again = server.deploy("noticed", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return 2\n"}).json()
    assert again.get("notice") is None, again
    # Another function still hears it once.
    other = server.deploy("noticed-too", "python3.12", "app.handler", code).json()
    assert other.get("notice") == first["notice"]


def test_resource_policies_add_get_remove(server):
    import boto3
    import botocore.exceptions
    server.deploy("guarded", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return 1\n"})
    lam = boto3.client("lambda", endpoint_url=server.api, region_name="eu-west-1",
                       aws_access_key_id="x", aws_secret_access_key="y")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.get_policy(FunctionName="guarded")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    out = lam.add_permission(FunctionName="guarded", StatementId="s3-invoke", Action="lambda:InvokeFunction",
                             Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::uploads",
                             SourceAccount="123456789012")
    st = json.loads(out["Statement"])
    assert st["Principal"] == {"Service": "s3.amazonaws.com"}
    assert st["Resource"] == "arn:aws:lambda:eu-west-1:123456789012:function:guarded"
    assert st["Condition"]["ArnLike"]["AWS:SourceArn"] == "arn:aws:s3:::uploads"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.add_permission(FunctionName="guarded", StatementId="s3-invoke", Action="lambda:InvokeFunction",
                           Principal="s3.amazonaws.com")
    assert e.value.response["Error"]["Code"] == "ResourceConflictException"
    lam.add_permission(FunctionName="arn:aws:lambda:eu-west-1:123456789012:function:guarded",
                       StatementId="account", Action="lambda:GetFunction", Principal="210987654321")
    got = lam.get_policy(FunctionName="guarded")
    doc = json.loads(got["Policy"])
    assert [s["Sid"] for s in doc["Statement"]] == ["s3-invoke", "account"]
    assert doc["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::210987654321:root"}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.remove_permission(FunctionName="guarded", StatementId="s3-invoke", RevisionId="stale")
    assert e.value.response["Error"]["Code"] == "PreconditionFailedException"
    lam.remove_permission(FunctionName="guarded", StatementId="s3-invoke", RevisionId=got["RevisionId"])
    assert [s["Sid"] for s in json.loads(lam.get_policy(FunctionName="guarded")["Policy"])["Statement"]] == ["account"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.remove_permission(FunctionName="guarded", StatementId="s3-invoke")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # Policies are durable: they survive a restart.
    server.stop()
    server.start()
    lam = boto3.client("lambda", endpoint_url=server.api, region_name="eu-west-1",
                       aws_access_key_id="x", aws_secret_access_key="y")
    assert [s["Sid"] for s in json.loads(lam.get_policy(FunctionName="guarded")["Policy"])["Statement"]] == ["account"]


def test_arns_as_lambda_returns_them(server):
    import io
    import zipfile
    import boto3
    import botocore.exceptions
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(e, c):\n    return 1\n")
    lam = boto3.client("lambda", endpoint_url=server.api, region_name="ap-southeast-2",
                       aws_access_key_id="x", aws_secret_access_key="y")
    base = "arn:aws:lambda:ap-southeast-2:123456789012:function:arnful"
    r = lam.create_function(FunctionName="arnful", Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::123456789012:role/service-role/r", Code={"ZipFile": buf.getvalue()},
                            Publish=True, Tags={"team": "a"})
    assert r["FunctionArn"] == base and r["Version"] == "1", r
    versions = lam.list_versions_by_function(FunctionName="arnful")["Versions"]
    assert [(v["Version"], v["FunctionArn"]) for v in versions] == [("$LATEST", base + ":$LATEST"), ("1", base + ":1")]
    assert lam.get_function(FunctionName="arnful")["Tags"] == {"team": "a"}
    # Partial and full ARNs, qualified or not, name the function everywhere.
    for name in ("123456789012:function:arnful", base, base + ":1"):
        assert lam.get_function_configuration(FunctionName=name)["FunctionName"] == "arnful"
    lam.put_function_concurrency(FunctionName=base, ReservedConcurrentExecutions=3)
    assert lam.get_function_concurrency(FunctionName="123456789012:function:arnful")["ReservedConcurrentExecutions"] == 3
    # Messages carry the request's region, not the server's.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.get_alias(FunctionName="arnful", Name="nope")
    assert "arn:aws:lambda:ap-southeast-2:" in e.value.response["Error"]["Message"], e.value.response
    # Role must be an IAM role ARN.
    for role in ("not-an-arn", "arn:aws:iam::123456789012:user/u"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            lam.create_function(FunctionName="badrole", Runtime="python3.12", Handler="app.handler",
                                Role=role, Code={"ZipFile": buf.getvalue()})
        assert e.value.response["Error"]["Code"] == "ValidationException", e.value.response
        assert "at 'role' failed to satisfy constraint" in e.value.response["Error"]["Message"]
    # Code.Location downloads the package from the endpoint the client used.
    loc = lam.get_function(FunctionName="arnful")["Code"]["Location"]
    assert loc.startswith(server.api), loc
    got = requests.get(loc, timeout=30)
    assert got.status_code == 200 and zipfile.ZipFile(io.BytesIO(got.content)).read("app.py")


def test_code_from_s3(server):
    import io
    import zipfile
    import boto3
    import botocore.config
    import botocore.exceptions
    kw = dict(endpoint_url=server.api, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    s3 = boto3.client("s3", config=botocore.config.Config(s3={"addressing_style": "path"}), **kw)
    lam = boto3.client("lambda", **kw)

    def pkg(tag):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("app.py", f"def handler(e, c):\n    return {tag!r}\n")
        return buf.getvalue()

    s3.create_bucket(Bucket="deploy-pkgs")
    s3.put_object(Bucket="deploy-pkgs", Key="fn/v1.zip", Body=pkg("v1"))
    lam.create_function(FunctionName="from-s3", Runtime="python3.12", Handler="app.handler",
                        Role="arn:aws:iam::123456789012:role/r",
                        Code={"S3Bucket": "deploy-pkgs", "S3Key": "fn/v1.zip"})
    assert json.loads(lam.invoke(FunctionName="from-s3")["Payload"].read()) == "v1"
    s3.put_object(Bucket="deploy-pkgs", Key="fn/v2.zip", Body=pkg("v2"))
    lam.update_function_code(FunctionName="from-s3", S3Bucket="deploy-pkgs", S3Key="fn/v2.zip")
    assert json.loads(lam.invoke(FunctionName="from-s3")["Payload"].read()) == "v2"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.update_function_code(FunctionName="from-s3", S3Bucket="deploy-pkgs", S3Key="missing.zip")
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidParameterValueException", err
    assert "S3 Error Code: NoSuchKey" in err["Message"], err
