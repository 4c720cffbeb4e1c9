"""Request validation on gateway routes against the real binary: required query
parameters and headers, and a JSON Schema for the body, answered 400 in API Gateway's
shape (plus the failing fields) without invoking the function; set through the
control API and `nimbus route add --body-schema/--require-query/--require-header`;
durable across kill -9."""

import json
import shutil
import tempfile
import time

import pytest
import requests

from conftest import Server

ECHO = """
import json

def handler(event, context):
    return {"statusCode": 200, "headers": {"x-fn-request-id": context.aws_request_id},
            "body": json.dumps(event)}
"""

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["name", "qty"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "qty": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def gw():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d).start()
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    put_route(s, "POST /orders", body_schema=SCHEMA, required_query=["store"],
              required_headers=["X-Tenant", "x-request-source"])
    put_route(s, "POST /v1/orders", payload_format="1.0", body_schema=SCHEMA)
    put_route(s, "GET /search", required_query=["q"])
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def put_route(s, key, function="echo", expect=(200, 201), **extra):
    r = s.session.put(f"{s.api}/_nimbus/routes", json={"route_key": key, "function": function, **extra},
                      timeout=10)
    if expect is not None:
        assert r.status_code in expect, r.text
    return r


def invocations(s):
    time.sleep(0.3)
    return len(s.records("echo"))


HEADERS = {"X-Tenant": "t1", "X-Request-Source": "test"}


def test_missing_parameters_are_400_without_invoking(gw):
    before = invocations(gw)
    r = requests.post(f"{gw.gateway}/orders", json={"name": "a", "qty": 1}, timeout=10)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"message": "Missing required request parameters: [store, x-tenant, x-request-source]"}
    r = requests.post(f"{gw.gateway}/orders?store=1", json={"name": "a", "qty": 1},
                      headers={"x-tenant": "t"}, timeout=10)
    assert r.json() == {"message": "Missing required request parameters: [x-request-source]"}
    r = requests.get(f"{gw.gateway}/search", timeout=10)
    assert r.status_code == 400
    assert r.json() == {"message": "Missing required request parameters: [q]"}
    # Present with an empty value counts as present.
    assert requests.get(f"{gw.gateway}/search?q=", timeout=30).status_code == 200
    assert invocations(gw) == before + 1


def test_invalid_bodies_name_the_failing_field(gw):
    before = invocations(gw)
    url = f"{gw.gateway}/orders?store=1"
    r = requests.post(url, json={"name": "a", "qty": 0}, headers=HEADERS, timeout=10)
    assert r.status_code == 400
    b = r.json()
    assert b["message"] == "Invalid request body"
    assert [e["path"] for e in b["validationErrors"]] == ["/qty"]
    assert "minimum" in b["validationErrors"][0]["message"] or "less than" in b["validationErrors"][0]["message"]

    r = requests.post(url, json={"name": "a", "qty": 1, "tags": ["x", 5]}, headers=HEADERS, timeout=10)
    assert [e["path"] for e in r.json()["validationErrors"]] == ["/tags/1"]

    r = requests.post(url, json={"qty": 1, "extra": True}, headers=HEADERS, timeout=10)
    msgs = " ".join(e["message"] for e in r.json()["validationErrors"])
    assert "name" in msgs and "extra" in msgs, msgs

    # Not JSON at all.
    r = requests.post(url, data=b"{nope", headers={**HEADERS, "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["message"] == "Invalid request body"
    assert "not valid JSON" in r.json()["validationErrors"][0]["message"]

    # An empty body is validated as {} (API Gateway's behaviour): the required fields fail.
    r = requests.post(url, headers=HEADERS, timeout=10)
    assert r.status_code == 400 and r.json()["message"] == "Invalid request body"

    # Payload format 1.0 routes validate the same way.
    r = requests.post(f"{gw.gateway}/v1/orders", json={"name": 3, "qty": 1}, timeout=10)
    assert r.status_code == 400 and r.json()["validationErrors"][0]["path"] == "/name"
    assert invocations(gw) == before


def test_valid_requests_reach_the_function(gw):
    r = requests.post(f"{gw.gateway}/orders?store=1", json={"name": "a", "qty": 2, "tags": ["x"]},
                      headers=HEADERS, timeout=30)
    assert r.status_code == 200, r.text
    e = r.json()
    assert json.loads(e["body"]) == {"name": "a", "qty": 2, "tags": ["x"]}
    assert e["queryStringParameters"] == {"store": "1"}
    r = requests.post(f"{gw.gateway}/v1/orders", json={"name": "b", "qty": 1}, timeout=30)
    assert r.status_code == 200 and r.json()["version"] == "1.0"


def test_route_listing_shows_validation(gw):
    routes = gw.session.get(f"{gw.api}/_nimbus/routes", timeout=10).json()["routes"]
    r = next(x for x in routes if x["route_key"] == "POST /orders")
    assert r["validation"]["body_schema"] == SCHEMA
    assert r["validation"]["required_query"] == ["store"]
    assert r["validation"]["required_headers"] == ["x-tenant", "x-request-source"]
    plain = next(x for x in routes if x["route_key"] == "GET /search")
    assert "body_schema" not in plain["validation"]


def test_bad_configs_are_refused(gw):
    for extra in (
        {"body_schema": {"type": "no-such-type"}},
        {"body_schema": 5},
        {"required_headers": ["bad header"]},
        {"required_query": [""]},
    ):
        r = put_route(gw, "POST /bad", expect=None, **extra)
        assert r.status_code == 400, (extra, r.text)
    # Remote $refs are never fetched: such a schema is refused when the route is added.
    r = put_route(gw, "POST /bad", expect=None, body_schema={"$ref": "http://example.com/schema.json"})
    assert r.status_code == 400, r.text


def test_cli_flags(gw, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["id"]}))
    p = gw.cli("route", "add", "PUT", "/cli/{id}", "echo", "--body-schema", schema,
               "--require-query", "v", "--require-header", "If-Match")
    assert p.returncode == 0, p.stderr
    r = requests.put(f"{gw.gateway}/cli/1?v=1", json={}, headers={"If-Match": "x"}, timeout=10)
    assert r.status_code == 400 and r.json()["message"] == "Invalid request body"
    r = requests.put(f"{gw.gateway}/cli/1", json={"id": 1}, timeout=10)
    assert r.json() == {"message": "Missing required request parameters: [v, if-match]"}
    r = requests.put(f"{gw.gateway}/cli/1?v=1", json={"id": 1}, headers={"If-Match": "x"}, timeout=30)
    assert r.status_code == 200
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    p = gw.cli("route", "add", "PUT", "/cli2", "echo", "--body-schema", bad)
    assert p.returncode != 0 and "not JSON" in p.stderr


def test_validation_survives_kill_9(server_factory, data_dir):
    s = server_factory()
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    put_route(s, "POST /keep", body_schema=SCHEMA, required_headers=["x-tenant"])
    s.kill()
    s2 = server_factory(data=data_dir)
    r = requests.post(f"{s2.gateway}/keep", json={"name": "a", "qty": 1}, timeout=10)
    assert r.json() == {"message": "Missing required request parameters: [x-tenant]"}
    r = requests.post(f"{s2.gateway}/keep", json={"name": "a"}, headers={"x-tenant": "t"}, timeout=10)
    assert r.status_code == 400 and r.json()["message"] == "Invalid request body"
    r = requests.post(f"{s2.gateway}/keep", json={"name": "a", "qty": 1}, headers={"x-tenant": "t"}, timeout=30)
    assert r.status_code == 200
