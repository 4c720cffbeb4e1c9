"""The HTTP gateway against the real binary: routing precedence (literal > param >
greedy > $default, ANY, 404/405), both API Gateway payload formats field by field,
binary bodies both ways, cookies, multi-value headers and query strings, the
502/504/429/500/413 mappings, slowloris, h2c, keep-alive, graceful drain, durable
routes across kill -9, the control API and `nimbus route`."""

import base64
import http.client
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from urllib.parse import urlparse

import pytest
import requests

from conftest import Server, wait_for

ECHO = """
import json

def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-fn-request-id": context.aws_request_id},
        "body": json.dumps(event),
    }
"""

# Returns what the request body's "return" says, after an optional sleep or raise.
RESPOND = """
import base64, json, time

def handler(event, context):
    body = event.get("body") or "{}"
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    cmd = json.loads(body)
    if cmd.get("sleep"):
        time.sleep(cmd["sleep"])
    if cmd.get("raise"):
        raise RuntimeError("asked to fail")
    return cmd.get("return")
"""

HEADER_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def gw():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, ["--gateway-header-timeout", f"{HEADER_TIMEOUT_S}s", "--log-format", "json"]).start()
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    s.deploy("respond", "python3.12", "app.handler", {"app.py": RESPOND}, timeout_s=10)
    for key, fn, extra in [
        ("GET /r/pets/dog/1", "echo", {}),
        ("GET /r/pets/dog/{id}", "echo", {}),
        ("GET /r/pets/{proxy+}", "echo", {}),
        ("ANY /r/{proxy+}", "echo", {}),
        ("GET /r/users/me", "echo", {}),
        ("GET /m/only", "echo", {}),
        ("POST /m/only", "echo", {}),
        ("ANY /v2/{proxy+}", "echo", {}),
        ("ANY /v1/{proxy+}", "echo", {"payload_format": "1.0"}),
        ("POST /respond/v2", "respond", {}),
        ("POST /respond/v1", "respond", {"payload_format": "1.0"}),
        ("POST /slow", "respond", {"timeout_ms": 1000}),
    ]:
        put_route(s, key, fn, **extra)
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def put_route(s, key, function, expect=(200, 201), **extra):
    r = s.session.put(f"{s.api}/_nimbus/routes", json={"route_key": key, "function": function, **extra}, timeout=10)
    if expect is not None:
        assert r.status_code in expect, r.text
    return r


def delete_route(s, key):
    return s.session.delete(f"{s.api}/_nimbus/routes", params={"route_key": key}, timeout=10)


def event_of(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def respond(s, value, fmt="v2", **cmd):
    return requests.post(f"{s.gateway}/respond/{fmt}", json={"return": value, **cmd}, timeout=30)


# -- routing -------------------------------------------------------------------

def test_routing_precedence(gw):
    g = gw.gateway
    # AWS's own example: exact, then {param}, then the deepest greedy, then ANY greedy.
    assert event_of(requests.get(f"{g}/r/pets/dog/1"))["routeKey"] == "GET /r/pets/dog/1"
    e = event_of(requests.get(f"{g}/r/pets/dog/2"))
    assert e["routeKey"] == "GET /r/pets/dog/{id}" and e["pathParameters"] == {"id": "2"}
    e = event_of(requests.get(f"{g}/r/pets/cat/1"))
    assert e["routeKey"] == "GET /r/pets/{proxy+}" and e["pathParameters"] == {"proxy": "cat/1"}
    e = event_of(requests.post(f"{g}/r/pets/dog/1"))
    assert e["routeKey"] == "ANY /r/{proxy+}" and e["pathParameters"] == {"proxy": "pets/dog/1"}
    assert e["requestContext"]["http"]["method"] == "POST"
    # A literal segment beats a parameter.
    assert event_of(requests.get(f"{g}/r/users/me"))["routeKey"] == "GET /r/users/me"
    # Path parameters arrive decoded.
    e = event_of(requests.get(f"{g}/r/pets/dog/caf%C3%A9%20au%20lait"))
    assert e["pathParameters"] == {"id": "café au lait"}
    assert e["rawPath"] == "/r/pets/dog/caf%C3%A9%20au%20lait"
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
        e = event_of(requests.request(method, f"{g}/r/anything/at/all"))
        assert e["routeKey"] == "ANY /r/{proxy+}", method


def test_not_found_and_method_not_allowed(gw):
    g = gw.gateway
    for url in (f"{g}/nothing/here", f"{g}/", f"{g}/r", f"{g}/m/only/deeper"):
        r = requests.get(url)
        assert r.status_code == 404, url
        assert r.json() == {"message": "Not Found"}
        assert r.headers["content-type"] == "application/json"
        assert r.headers["apigw-requestid"]
    r = requests.delete(f"{g}/m/only")
    assert r.status_code == 405
    assert r.json() == {"message": "Method Not Allowed"}
    assert r.headers["allow"] == "GET, POST"
    assert event_of(requests.post(f"{g}/m/only"))["routeKey"] == "POST /m/only"


def test_default_route_catches_the_rest(gw):
    put_route(gw, "$default", "echo", payload_format="1.0")
    try:
        e = event_of(requests.get(f"{gw.gateway}/nothing/here?x=1"))
        assert e["resource"] == "$default" and e["path"] == "/nothing/here"
        # Greedy and method-specific routes still win over $default, and a method
        # mismatch now falls to $default instead of 405.
        assert event_of(requests.get(f"{gw.gateway}/r/x"))["routeKey"] == "ANY /r/{proxy+}"
        e = event_of(requests.delete(f"{gw.gateway}/m/only"))
        assert e["resource"] == "$default"
    finally:
        assert delete_route(gw, "$default").status_code == 204
    assert requests.get(f"{gw.gateway}/nothing/here").status_code == 404


# -- payload format 2.0 ----------------------------------------------------------

def test_v2_event_fields(gw):
    body = json.dumps({"hello": "wörld"})
    r = requests.post(
        f"{gw.gateway}/v2/items/7?tag=a&tag=b&q=x%20y&empty=",
        data=body.encode(),
        headers={"Content-Type": "application/json", "User-Agent": "gw-test/1.0",
                 "Cookie": "session=abc; theme=dark", "X-Custom": "v"},
    )
    e = event_of(r)
    assert e["version"] == "2.0"
    assert e["routeKey"] == "ANY /v2/{proxy+}"
    assert e["rawPath"] == "/v2/items/7"
    assert e["rawQueryString"] == "tag=a&tag=b&q=x%20y&empty="
    assert e["cookies"] == ["session=abc", "theme=dark"]
    h = e["headers"]
    assert all(k == k.lower() for k in h), h
    assert "cookie" not in h
    assert h["content-type"] == "application/json"
    assert h["user-agent"] == "gw-test/1.0"
    assert h["x-custom"] == "v"
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-port"] == urlparse(gw.gateway).netloc.split(":")[1]
    assert h["x-amzn-trace-id"].startswith("Root=1-")
    assert h["host"] == urlparse(gw.gateway).netloc
    assert e["queryStringParameters"] == {"tag": "a,b", "q": "x y", "empty": ""}
    assert e["pathParameters"] == {"proxy": "items/7"}
    assert e["body"] == body and e["isBase64Encoded"] is False
    assert "stageVariables" not in e
    c = e["requestContext"]
    assert set(c) == {"accountId", "apiId", "domainName", "domainPrefix", "http", "requestId",
                      "routeKey", "stage", "time", "timeEpoch"}, set(c)
    assert c["accountId"] == "123456789012"
    assert len(c["apiId"]) == 10
    assert c["domainName"] == urlparse(gw.gateway).netloc
    assert c["domainPrefix"] == "127"
    assert c["http"] == {"method": "POST", "path": "/v2/items/7", "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "gw-test/1.0"}
    assert c["requestId"] == r.headers["apigw-requestid"]
    assert c["routeKey"] == "ANY /v2/{proxy+}" and c["stage"] == "$default"
    assert abs(c["timeEpoch"] / 1000 - time.time()) < 60
    assert time.strftime("/%Y:", time.gmtime(c["timeEpoch"] / 1000)) in c["time"]
    assert c["time"].endswith(" +0000")


def test_v2_duplicate_headers_comma_joined_and_no_optional_fields(gw):
    conn = http.client.HTTPConnection(urlparse(gw.gateway).netloc, timeout=10)
    conn.putrequest("GET", "/v2/plain")
    conn.putheader("X-Dup", "one")
    conn.putheader("X-Dup", "two")
    conn.endheaders()
    resp = conn.getresponse()
    e = json.loads(resp.read())
    assert resp.status == 200
    assert e["headers"]["x-dup"] == "one,two"
    assert e["rawQueryString"] == ""
    for absent in ("cookies", "queryStringParameters", "body", "stageVariables"):
        assert absent not in e, absent
    assert e["isBase64Encoded"] is False
    conn.close()


# -- payload format 1.0 ----------------------------------------------------------

def test_v1_event_fields(gw):
    conn = http.client.HTTPConnection(urlparse(gw.gateway).netloc, timeout=10)
    conn.putrequest("PUT", "/v1/things/9?a=1&a=2&b=x+y", skip_accept_encoding=True)
    conn.putheader("X-Dup", "one")
    conn.putheader("X-Dup", "two")
    conn.putheader("Content-Type", "text/plain; charset=utf-8")
    conn.putheader("User-Agent", "gw-test/1.0")
    conn.putheader("Cookie", "a=1; b=2")
    body = "plain text body".encode()
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    assert resp.status == 200
    rid = resp.getheader("apigw-requestid")
    e = json.loads(resp.read())
    conn.close()
    assert e["version"] == "1.0"
    assert e["resource"] == "/v1/{proxy+}"
    assert e["path"] == "/v1/things/9"
    assert e["httpMethod"] == "PUT"
    assert e["headers"]["X-Dup"] == "two"
    assert e["multiValueHeaders"]["X-Dup"] == ["one", "two"]
    assert e["headers"]["Content-Type"] == "text/plain; charset=utf-8"
    assert e["headers"]["Cookie"] == "a=1; b=2"
    assert e["queryStringParameters"] == {"a": "2", "b": "x y"}
    assert e["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"]}
    assert e["pathParameters"] == {"proxy": "things/9"}
    assert e["stageVariables"] is None
    assert e["body"] == "plain text body" and e["isBase64Encoded"] is False
    c = e["requestContext"]
    assert c["accountId"] == "123456789012" and len(c["apiId"]) == 10
    assert c["requestId"] == rid
    assert c["stage"] == "$default"
    assert c["resourcePath"] == "/v1/{proxy+}"
    assert c["httpMethod"] == "PUT" and c["path"] == "/v1/things/9"
    assert c["protocol"] == "HTTP/1.1"
    assert abs(c["requestTimeEpoch"] / 1000 - time.time()) < 60
    assert c["requestTime"].endswith(" +0000")
    assert c["authorizer"] == {"claims": None, "scopes": None}
    assert c["resourceId"] is None
    ident = c["identity"]
    assert ident["sourceIp"] == "127.0.0.1" and ident["userAgent"] == "gw-test/1.0"
    assert ident["accessKey"] is None and ident["user"] is None and ident["userArn"] is None


def test_v1_absent_maps_are_null(gw):
    e = event_of(requests.get(f"{gw.gateway}/v1/bare"))
    assert e["queryStringParameters"] is None
    assert e["multiValueQueryStringParameters"] is None
    assert e["body"] is None and e["isBase64Encoded"] is False
    assert e["stageVariables"] is None


# -- bodies ----------------------------------------------------------------------

BINARY = bytes(range(256)) * 4


@pytest.mark.parametrize("prefix", ["v1", "v2"])
def test_binary_request_bodies_are_base64(gw, prefix):
    e = event_of(requests.post(f"{gw.gateway}/{prefix}/upload", data=BINARY,
                               headers={"Content-Type": "application/octet-stream"}))
    assert e["isBase64Encoded"] is True
    assert base64.b64decode(e["body"]) == BINARY
    # Form posts and bodies without a content type are base64 too, as HTTP APIs do.
    e = event_of(requests.post(f"{gw.gateway}/{prefix}/form", data={"a": "1"}))
    assert e["isBase64Encoded"] is True and base64.b64decode(e["body"]) == b"a=1"
    e = event_of(requests.post(f"{gw.gateway}/{prefix}/none", data=b"raw", headers={"Content-Type": ""}))
    assert e["isBase64Encoded"] is True and base64.b64decode(e["body"]) == b"raw"
    e = event_of(requests.post(f"{gw.gateway}/{prefix}/xml", data=b"<a/>", headers={"Content-Type": "application/xml"}))
    assert e["isBase64Encoded"] is False and e["body"] == "<a/>"


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_binary_response_body_is_decoded(gw, fmt):
    r = respond(gw, {"statusCode": 200, "headers": {"content-type": "image/png"},
                     "body": base64.b64encode(BINARY).decode(), "isBase64Encoded": True}, fmt)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content == BINARY


# -- responses -------------------------------------------------------------------

def test_v2_infers_a_response_without_status_code(gw):
    r = respond(gw, {"message": "hi", "n": [1, 2]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"message": "hi", "n": [1, 2]}
    r = respond(gw, "Hello from Lambda!")
    assert r.status_code == 200 and r.text == "Hello from Lambda!"
    # A body alone is still no statusCode: the whole value is the body.
    r = respond(gw, {"body": "x"})
    assert r.status_code == 200 and r.json() == {"body": "x"}


def test_v2_status_headers_and_cookies(gw):
    r = respond(gw, {"statusCode": 201, "headers": {"X-Num": 5, "Location": "/things/1"},
                     "cookies": ["a=1; Path=/", "b=2; HttpOnly"], "body": "created"})
    assert r.status_code == 201
    assert r.text == "created"
    assert r.headers["x-num"] == "5" and r.headers["location"] == "/things/1"
    assert r.raw.headers.getlist("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


def test_v1_multi_value_headers_win(gw):
    r = respond(gw, {"statusCode": 202, "headers": {"X-A": "single", "X-B": "from-headers"},
                     "multiValueHeaders": {"x-b": ["m1", "m2"], "Set-Cookie": ["c=1", "d=2"]},
                     "body": "ok"}, "v1")
    assert r.status_code == 202
    assert r.headers["x-a"] == "single"
    assert r.raw.headers.getlist("x-b") == ["m1", "m2"]
    assert r.raw.headers.getlist("set-cookie") == ["c=1", "d=2"]
    # v1 has no inferred responses and no cookies field.
    r = respond(gw, {"message": "no status"}, "v1")
    assert r.status_code == 502 and r.json() == {"message": "Internal server error"}


def test_empty_and_status_only_responses(gw):
    r = respond(gw, {"statusCode": 204})
    assert r.status_code == 204 and r.content == b""
    r = respond(gw, {"statusCode": "404", "body": "nope"})
    assert r.status_code == 404 and r.text == "nope"


# -- errors ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_function_error_is_502(gw, fmt):
    r = respond(gw, None, fmt, **{"raise": True})
    assert r.status_code == 502
    assert r.json() == {"message": "Internal server error"}


@pytest.mark.parametrize("value", [
    {"statusCode": 200, "body": {"not": "a string"}},
    {"statusCode": "abc"},
    {"statusCode": 42},
    {"statusCode": 200, "headers": ["x"]},
    {"statusCode": 200, "body": "***", "isBase64Encoded": True},
    {"statusCode": 200, "headers": {"bad header": "x"}},
])
def test_malformed_response_is_502(gw, value):
    r = respond(gw, value)
    assert r.status_code == 502, r.text
    assert r.json() == {"message": "Internal server error"}


def test_integration_timeout_is_504(gw):
    before = {rec["request_id"] for rec in gw.records("respond")}
    t0 = time.time()
    r = requests.post(f"{gw.gateway}/slow", json={"sleep": 3, "return": "late"}, timeout=30)
    answered = time.time()
    assert r.status_code == 504
    assert r.json() == {"message": "Endpoint request timed out"}
    # The gateway waited for its timeout (about 1 s) before giving up...
    assert answered - t0 > 0.9, answered - t0
    # ...and the function ran on to the end, as behind API Gateway, finishing after
    # the client had its 504 (the record's end, same host clock).
    rec = wait_for(lambda: next((rec for rec in gw.records("respond")
                                 if rec["request_id"] not in before and rec["outcome"] == "success"
                                 and rec["duration_ms"] >= 2900), None),
                   timeout=15, what="the slow invocation's record")
    assert answered * 1000 < rec["start_ms"] + rec["duration_ms"], (answered, rec)


def test_throttled_is_429(gw):
    gw.deploy("zero", "python3.12", "app.handler", {"app.py": ECHO}, reserved_concurrency=0)
    put_route(gw, "GET /zero", "zero")
    r = requests.get(f"{gw.gateway}/zero")
    assert r.status_code == 429
    assert r.json() == {"message": "Too Many Requests"}


def test_route_to_deleted_function_is_500(gw):
    gw.deploy("doomed", "python3.12", "app.handler", {"app.py": ECHO})
    put_route(gw, "GET /doomed", "doomed")
    assert requests.get(f"{gw.gateway}/doomed").status_code == 200
    assert gw.delete("doomed").status_code == 204
    r = requests.get(f"{gw.gateway}/doomed")
    assert r.status_code == 500
    assert r.json() == {"message": "Internal Server Error"}
    assert delete_route(gw, "GET /doomed").status_code == 204


def test_body_over_10mb_is_413(gw):
    big = b"x" * (10 * 1024 * 1024 + 1)
    r = requests.post(f"{gw.gateway}/v2/big", data=big, headers={"Content-Type": "text/plain"})
    assert r.status_code == 413
    assert r.json() == {"message": "Request Entity Too Large"}

    # Without a Content-Length (chunked), the limit holds while reading.
    def chunks():
        for _ in range(11):
            yield b"y" * (1024 * 1024)

    r = requests.post(f"{gw.gateway}/v2/big", data=chunks(), headers={"Content-Type": "text/plain"})
    assert r.status_code == 413
    # Under the gateway's limit but over Lambda's 6 MB invoke payload: 413 as well,
    # without running the function.
    r = requests.post(f"{gw.gateway}/v2/big", data=b"z" * (7 * 1024 * 1024), headers={"Content-Type": "text/plain"})
    assert r.status_code == 413
    r = requests.post(f"{gw.gateway}/v2/ok", data=b"z" * 1000, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200


# -- the HTTP server -------------------------------------------------------------

def test_slowloris_is_cut_off(gw):
    host, port = urlparse(gw.gateway).netloc.split(":")
    s = socket.create_connection((host, int(port)))
    s.settimeout(HEADER_TIMEOUT_S + 10)
    t0 = time.time()
    s.sendall(b"GET /r/pets/dog/1 HTTP/1.1\r\nHost: x\r\n")
    closed_after = None
    try:
        for _ in range(40):
            time.sleep(0.25)
            s.sendall(b"X")  # one byte of a header that never ends
    except (BrokenPipeError, ConnectionResetError):
        closed_after = time.time() - t0
    if closed_after is None:
        data = s.recv(4096)
        closed_after = time.time() - t0
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    s.close()
    assert closed_after < HEADER_TIMEOUT_S + 3, closed_after
    # A well-behaved client on another connection is unaffected.
    assert requests.get(f"{gw.gateway}/r/pets/dog/1").status_code == 200


def test_silent_connection_is_closed(gw):
    host, port = urlparse(gw.gateway).netloc.split(":")
    s = socket.create_connection((host, int(port)))
    s.settimeout(HEADER_TIMEOUT_S + 10)
    t0 = time.time()
    assert s.recv(100) == b""
    assert time.time() - t0 < HEADER_TIMEOUT_S + 3
    s.close()


def test_keep_alive_reuses_the_connection(gw):
    conn = http.client.HTTPConnection(urlparse(gw.gateway).netloc, timeout=10)
    conn.connect()
    sock = conn.sock
    for i in range(3):
        conn.request("GET", f"/r/pets/dog/{i + 2}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["pathParameters"] == {"id": str(i + 2)}
        assert conn.sock is sock
    conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_h2c_prior_knowledge(gw):
    p = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-H", "X-Mixed-Case: yes",
         f"{gw.gateway}/v1/h2?x=1"],
        capture_output=True, text=True, timeout=30,
    )
    if "unsupported" in p.stderr.lower() or p.returncode == 1 and "http2" in p.stderr.lower():
        pytest.skip("curl without HTTP/2")
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/2 200"), head
    e = json.loads(body)
    assert e["requestContext"]["protocol"] == "HTTP/2.0"
    # HTTP/2 names arrive lower-cased and stay so; :authority becomes host.
    assert e["headers"]["x-mixed-case"] == "yes"
    assert e["headers"]["host"] == urlparse(gw.gateway).netloc
    assert e["queryStringParameters"] == {"x": "1"}


def test_access_log_line(gw):
    r = requests.get(f"{gw.gateway}/r/pets/dog/1")
    rid = r.headers["apigw-requestid"]
    fn_rid = r.headers["x-fn-request-id"]

    def line():
        for l in gw.log_text().splitlines():
            if l.startswith("{") and "nimbus::gateway::access" in l and rid in l:
                return json.loads(l)
        return None

    rec = wait_for(line, timeout=5, what="the access log line")
    f = rec["fields"]
    assert rec["target"] == "nimbus::gateway::access" and rec["level"] == "INFO"
    assert f["request_id"] == rid
    assert f["route"] == "GET /r/pets/dog/1" and f["method"] == "GET" and f["path"] == "/r/pets/dog/1"
    assert f["status"] == 200
    assert f["function_request_id"] == fn_rid
    assert 0 < f["integration_ms"] <= f["latency_ms"]
    # Requests that match no route are logged too, without a function.
    rid = requests.get(f"{gw.gateway}/nothing").headers["apigw-requestid"]
    f = wait_for(line, timeout=5, what="the 404 access log line")["fields"]
    assert f["status"] == 404 and f["route"] == "" and f["function_request_id"] == ""


# -- control API and CLI --------------------------------------------------------

def test_route_validation(gw):
    for body, code in [
        ({"route_key": "GET /x/", "function": "echo"}, 400),
        ({"route_key": "FETCH /x", "function": "echo"}, 400),
        ({"route_key": "GET /{a+}/b", "function": "echo"}, 400),
        ({"route_key": "GET /x", "function": "echo", "timeout_ms": 31000}, 400),
        ({"route_key": "GET /x", "function": "echo", "payload_format": "3.0"}, 400),
        ({"route_key": "GET /x", "function": "no-such-fn"}, 404),
        ({"route_key": "GET /x", "function": "echo", "qualifier": "nope"}, 404),
        ({"function": "echo"}, 400),
    ]:
        r = gw.session.put(f"{gw.api}/_nimbus/routes", json=body, timeout=10)
        assert r.status_code == code, (body, r.status_code, r.text)
    r = gw.session.put(f"{gw.api}/_nimbus/routes", json={"route_key": "GET /x", "function": "no-such-fn"})
    assert "no-such-fn does not exist" in r.json()["message"]
    assert delete_route(gw, "GET /never-added").status_code == 404


def test_method_and_path_form_and_replace(gw):
    r = gw.session.put(f"{gw.api}/_nimbus/routes",
                       json={"method": "get", "path": "/mp/{id}", "function": "echo"})
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["route_key"] == "GET /mp/{id}" and v["payload_format"] == "2.0" and v["timeout_ms"] == 29000
    assert v["url"] == f"{gw.gateway}/mp/{{id}}"
    r = put_route(gw, "GET /mp/{id}", "echo", payload_format="1.0")
    assert r.status_code == 200 and r.json()["created_ms"] == v["created_ms"]
    assert event_of(requests.get(f"{gw.gateway}/mp/3"))["version"] == "1.0"
    listed = gw.session.get(f"{gw.api}/_nimbus/routes").json()
    assert listed["gateway_url"] == gw.gateway
    assert any(x["route_key"] == "GET /mp/{id}" and x["payload_format"] == "1.0" for x in listed["routes"])
    assert delete_route(gw, "GET /mp/{id}").status_code == 204
    assert requests.get(f"{gw.gateway}/mp/3").status_code == 404


def test_route_to_an_alias(gw):
    api = gw.api
    r = gw.session.post(f"{api}/2015-03-31/functions/echo/versions", json={})
    assert r.status_code == 201, r.text
    version = r.json()["Version"]
    r = gw.session.post(f"{api}/2015-03-31/functions/echo/aliases",
                        json={"Name": "live", "FunctionVersion": version})
    assert r.status_code == 201, r.text
    put_route(gw, "GET /aliased", "echo", qualifier="live")
    r = requests.get(f"{gw.gateway}/aliased")
    assert r.status_code == 200
    recs = wait_for(lambda: [x for x in gw.records("echo") if x["request_id"] == r.headers["x-fn-request-id"]],
                    what="the aliased invocation record")
    assert recs[0]["version"] == version
    assert recs[0]["trigger"] == "http"


def test_cli_route_add_ls_rm(gw):
    p = gw.cli("route", "add", "GET", "/cli/{id}", "echo", "--payload", "1.0", "--timeout", "5")
    assert p.returncode == 0, p.stderr
    assert f"{gw.gateway}/cli/{{id}}" in p.stdout
    e = event_of(requests.get(f"{gw.gateway}/cli/abc"))
    assert e["version"] == "1.0" and e["pathParameters"] == {"id": "abc"}

    p = gw.cli("route", "ls")
    assert p.returncode == 0, p.stderr
    line = next(l for l in p.stdout.splitlines() if l.startswith("GET /cli/{id}"))
    assert "echo" in line and "1.0" in line and "5s" in line and f"{gw.gateway}/cli/{{id}}" in line

    p = gw.cli("route", "add", "POST", "/cli", "ghost")
    assert p.returncode != 0
    assert "function ghost does not exist" in p.stderr, p.stderr

    p = gw.cli("route", "rm", "GET", "/cli/{id}")
    assert p.returncode == 0, p.stderr
    assert requests.get(f"{gw.gateway}/cli/abc").status_code == 404
    p = gw.cli("route", "rm", "GET", "/cli/{id}")
    assert p.returncode != 0 and "Route not found" in p.stderr


# -- lifecycle -------------------------------------------------------------------

def test_routes_survive_kill_9(server_factory, data_dir):
    s = server_factory()
    s.deploy("keeper", "python3.12", "app.handler", {"app.py": ECHO})
    put_route(s, "GET /keep/{id}", "keeper", payload_format="1.0", timeout_ms=5000)
    put_route(s, "GET /gone", "keeper")
    assert delete_route(s, "GET /gone").status_code == 204
    s.kill()
    s2 = server_factory(data=data_dir)
    e = event_of(requests.get(f"{s2.gateway}/keep/1"))
    assert e["version"] == "1.0" and e["pathParameters"] == {"id": "1"}
    assert requests.get(f"{s2.gateway}/gone").status_code == 404
    routes = s2.session.get(f"{s2.api}/_nimbus/routes").json()["routes"]
    assert [(r["route_key"], r["timeout_ms"]) for r in routes] == [("GET /keep/{id}", 5000)]


def test_shutdown_drains_in_flight_requests(server_factory):
    s = server_factory()
    s.deploy("respond", "python3.12", "app.handler", {"app.py": RESPOND}, timeout_s=10)
    put_route(s, "POST /slow", "respond")
    assert requests.post(f"{s.gateway}/slow", json={"return": "warm"}).status_code == 200
    out = {}

    def call():
        out["r"] = requests.post(f"{s.gateway}/slow", json={"sleep": 2, "return": "finished"}, timeout=30)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.8)
    s.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert out["r"].status_code == 200 and out["r"].text == "finished"
    assert s.proc.wait(30) == 0


def test_every_invocation_and_api_request_logged_once(gw):
    """Server logs (issue 6 item 5): one structured line per invocation and per API
    request, in JSON with --log-format json."""
    r = requests.get(f"{gw.gateway}/r/pets/dog/2")
    fn_rid = r.headers["x-fn-request-id"]
    api = requests.post(f"{gw.api}/2015-03-31/functions/no-such-fn/invocations", data=b"{}")
    assert api.status_code == 404
    api_rid = api.headers["x-amzn-requestid"]

    def lines(target, needle):
        return [json.loads(l) for l in gw.log_text().splitlines()
                if l.startswith("{") and f'"target":"{target}"' in l and needle in l]

    inv = wait_for(lambda: lines("nimbus::invocation", fn_rid), timeout=5, what="the invocation line")
    assert len(inv) == 1, inv
    f = inv[0]["fields"]
    assert f["request_id"] == fn_rid and f["trigger"] == "http" and f["outcome"] == "success"
    assert f["duration_ms"] > 0 and f["memory_mb"] > 0 and f["trace_id"].startswith("Root=1-")
    acc = wait_for(lambda: lines("nimbus::api::access", api_rid), timeout=5, what="the API access line")
    assert len(acc) == 1, acc
    f = acc[0]["fields"]
    assert f["status"] == 404 and f["method"] == "POST" and f["error_type"] == "ResourceNotFoundException"
    assert f["path"] == "/2015-03-31/functions/no-such-fn/invocations" and f["latency_ms"] >= 0
