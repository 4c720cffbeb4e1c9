"""CORS on the gateway against the real binary, as HTTP APIs do it: preflights answered
by the gateway (no route, no invocation) when CORS is configured, CORS headers on every
response for an allowed origin (the function's own replaced), none for others; set
through the control API and `nimbus cors set|show|clear`; durable across kill -9."""

import shutil
import tempfile
import time

import pytest
import requests

from conftest import Server

ECHO = """
import json

def handler(event, context):
    return {"statusCode": 200,
            "headers": {"x-fn-request-id": context.aws_request_id, "x-request-id": "r1",
                        "access-control-allow-origin": "https://from-the-function",
                        "access-control-max-age": "1"},
            "body": json.dumps({"method": event["requestContext"]["http"]["method"]})}
"""

APP = "https://app.example.com"
CONFIG = {
    "allow_origins": [APP, "http://localhost:3000"],
    "allow_methods": ["GET", "POST", "DELETE"],
    "allow_headers": ["Content-Type", "Authorization"],
    "expose_headers": ["x-request-id"],
    "allow_credentials": True,
    "max_age": 300,
}


@pytest.fixture(scope="module")
def gw():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d).start()
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    for key in ("GET /items", "POST /items", "ANY /any/{proxy+}"):
        r = s.session.put(f"{s.api}/_nimbus/routes", json={"route_key": key, "function": "echo"}, timeout=10)
        assert r.status_code in (200, 201), r.text
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def set_cors(s, config, expect=200):
    r = s.session.put(f"{s.api}/_nimbus/cors", json=config, timeout=10)
    assert r.status_code == expect, r.text
    return r.json()


def clear_cors(s):
    assert s.session.delete(f"{s.api}/_nimbus/cors", timeout=10).status_code == 204


def preflight(s, path, origin=APP, method="POST", headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(f"{s.gateway}{path}", headers=h, timeout=10)


def records(s):
    time.sleep(0.3)
    return len(s.records("echo"))


@pytest.fixture
def cors(gw):
    set_cors(gw, CONFIG)
    yield
    clear_cors(gw)


def test_without_cors_preflights_go_to_routes(gw):
    assert gw.session.get(f"{gw.api}/_nimbus/cors", timeout=10).json() == {"cors": None}
    # No OPTIONS route: 405; an ANY route takes the preflight to the function.
    r = preflight(gw, "/items")
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
    r = preflight(gw, "/any/x")
    assert r.status_code == 200 and r.json() == {"method": "OPTIONS"}
    # The function's own CORS headers pass through untouched.
    r = requests.get(f"{gw.gateway}/items", headers={"Origin": APP}, timeout=30)
    assert r.headers["access-control-allow-origin"] == "https://from-the-function"


def test_preflight_answered_by_the_gateway(gw, cors):
    before = records(gw)
    for path in ("/items", "/any/deep/path", "/no/such/route"):
        r = preflight(gw, path, headers="content-type, authorization")
        assert r.status_code == 204, (path, r.text)
        assert r.content == b""
        h = r.headers
        assert h["access-control-allow-origin"] == APP
        assert h["access-control-allow-methods"] == "GET,POST,DELETE"
        assert h["access-control-allow-headers"] == "content-type,authorization"
        assert h["access-control-allow-credentials"] == "true"
        assert h["access-control-max-age"] == "300"
        assert "origin" in h["vary"].lower()
        assert "access-control-expose-headers" not in h
        assert h["apigw-requestid"]
    assert records(gw) == before, "a preflight must not invoke the function"


def test_refused_preflights_carry_no_cors_headers(gw, cors):
    for kw in ({"origin": "https://evil.example.com"}, {"method": "PUT"},
               {"headers": "content-type, x-not-allowed"}):
        r = preflight(gw, "/items", **kw)
        assert r.status_code == 204, kw
        assert not any(k.lower().startswith("access-control-") for k in r.headers), (kw, r.headers)
    # An OPTIONS without Access-Control-Request-Method is no preflight: routed as usual.
    r = requests.options(f"{gw.gateway}/any/x", headers={"Origin": APP}, timeout=30)
    assert r.status_code == 200 and r.json() == {"method": "OPTIONS"}
    assert r.headers["access-control-allow-origin"] == APP


def test_cors_headers_on_every_response(gw, cors):
    r = requests.get(f"{gw.gateway}/items", headers={"Origin": APP}, timeout=30)
    assert r.status_code == 200
    h = r.headers
    # The gateway's CORS replaces the function's.
    assert h["access-control-allow-origin"] == APP
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-expose-headers"] == "x-request-id"
    assert "access-control-max-age" not in h
    assert h["x-request-id"] == "r1"
    # The gateway's own answers too (404, 405).
    for method, path, status in (("GET", "/nothing", 404), ("PUT", "/items", 405)):
        r = requests.request(method, f"{gw.gateway}{path}", headers={"Origin": "http://localhost:3000"}, timeout=10)
        assert r.status_code == status
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    # Another origin, or none: no CORS headers at all (the function's are dropped too).
    for headers in ({"Origin": "https://evil.example.com"}, {}):
        r = requests.get(f"{gw.gateway}/items", headers=headers, timeout=30)
        assert r.status_code == 200
        assert not any(k.lower().startswith("access-control-") for k in r.headers), r.headers


def test_wildcards(gw):
    set_cors(gw, {"allow_origins": ["*"], "allow_methods": ["*"], "allow_headers": ["*"]})
    try:
        r = preflight(gw, "/items", origin="https://anywhere.example", method="PATCH", headers="x-a, x-b")
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-methods"] == "PATCH"
        assert r.headers["access-control-allow-headers"] == "x-a,x-b"
        assert "access-control-allow-credentials" not in r.headers
        r = requests.post(f"{gw.gateway}/items", headers={"Origin": "https://anywhere.example"}, timeout=30)
        assert r.headers["access-control-allow-origin"] == "*"
    finally:
        clear_cors(gw)


def test_invalid_configs_are_refused(gw):
    for bad in (
        {"allow_origins": ["*"], "allow_credentials": True},
        {"allow_origins": ["app.example.com"]},
        {"allow_origins": [APP], "allow_methods": ["FETCH"]},
        {"allow_origins": [APP], "allow_headers": ["bad header"]},
        {"allow_origins": [APP], "max_age": 86401},
        {"allow_origins": [APP], "unknown_field": 1},
    ):
        r = gw.session.put(f"{gw.api}/_nimbus/cors", json=bad, timeout=10)
        assert r.status_code == 400, (bad, r.text)
    assert gw.session.get(f"{gw.api}/_nimbus/cors", timeout=10).json() == {"cors": None}


def test_cli_set_show_clear(gw):
    p = gw.cli("cors", "set", "--origin", APP, "--origin", "http://localhost:3000", "--method", "GET,POST",
               "--header", "content-type", "--expose-header", "x-request-id", "--credentials", "--max-age", "60")
    assert p.returncode == 0, p.stderr
    assert "CORS on" in p.stdout
    c = gw.session.get(f"{gw.api}/_nimbus/cors", timeout=10).json()["cors"]
    assert c == {"allow_origins": [APP, "http://localhost:3000"], "allow_methods": ["GET", "POST"],
                 "allow_headers": ["content-type"], "expose_headers": ["x-request-id"],
                 "allow_credentials": True, "max_age": 60}
    p = gw.cli("cors", "show")
    assert p.returncode == 0 and APP in p.stdout and "60s" in p.stdout, p.stdout
    assert preflight(gw, "/items").headers["access-control-max-age"] == "60"
    p = gw.cli("cors", "set", "--origin", "*", "--credentials")
    assert p.returncode != 0 and "credentials" in p.stderr.lower(), p.stderr
    p = gw.cli("cors", "clear")
    assert p.returncode == 0 and "CORS off" in p.stdout
    assert gw.cli("cors", "show").stdout.strip() == "CORS off"
    assert preflight(gw, "/items").status_code == 405


def test_cors_survives_kill_9(server_factory, data_dir):
    s = server_factory()
    set_cors(s, CONFIG)
    s.kill()
    s2 = server_factory(data=data_dir)
    r = preflight(s2, "/whatever", headers="content-type")
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == APP
    assert s2.session.get(f"{s2.api}/_nimbus/cors", timeout=10).json()["cors"]["max_age"] == 300
