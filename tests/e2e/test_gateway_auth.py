"""Gateway access control against the real binary: Lambda authorizers (TOKEN,
REQUEST 1.0/2.0, IAM-policy and simple responses, caching, failure codes), JWT
authorizers (HS256 secret, RS256/ES256 from a JWKS file and URL, every refusal, scopes),
API keys with usage plans (403s, throttle, quota, quota counters across kill -9),
route throttling, the control API and the CLI. Tokens are minted with PyJWT."""

import http.server
import json
import re
import shutil
import tempfile
import threading
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from conftest import Server, wait_for

ECHO = """
import json

def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
"""

# An IAM-policy authorizer whose answer depends on the token.
AUTHZ = """
import json, time

def handler(event, context):
    if event.get("type") == "TOKEN":
        token = event["authorizationToken"]
    elif isinstance(event.get("identitySource"), list):
        token = event["identitySource"][0]
    else:
        token = event["identitySource"].split(",")[0]
    arn = event.get("methodArn") or event.get("routeArn")
    if token == "unauthorized":
        raise Exception("Unauthorized")
    if token == "boom":
        raise RuntimeError("authorizer bug")
    if token == "garbage":
        return {"hello": "world"}
    if token == "sleep":
        time.sleep(12)
    effect, resource = "Allow", arn
    if token == "deny":
        effect = "Deny"
    if token == "wild":
        resource = "arn:aws:execute-api:*:*:*/*/GET/*"
    return {
        "principalId": "user-" + token,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]},
        "context": {"user": "alice", "n": 7, "admin": True, "event": json.dumps(event)},
    }
"""

SIMPLE = """
import json

def handler(event, context):
    return {"isAuthorized": event["identitySource"][0] == "yes",
            "context": {"user": "bob", "roles": ["a", "b"], "event": json.dumps(event)}}
"""

ISSUER = "https://issuer.nimbus.test"
SECRET = "a-long-shared-secret-for-hs256-tests"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwks_doc():
    r = RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
    r.update(kid="rsa1", alg="RS256", use="sig")
    e = ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True)
    e.update(kid="ec1", alg="ES256", use="sig")
    return {"keys": [r, e]}


def claims(**over):
    now = int(time.time())
    c = {"iss": ISSUER, "aud": "api", "sub": "user-1", "iat": now - 5, "exp": now + 300, "nbf": now - 5}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def hs(**over):
    return jwt.encode(claims(**over), SECRET, algorithm="HS256")


def rs(kid="rsa1", key=None, **over):
    return jwt.encode(claims(**over), key or RSA_KEY, algorithm="RS256", headers={"kid": kid})


def es(**over):
    return jwt.encode(claims(**over), EC_KEY, algorithm="ES256", headers={"kid": "ec1"})


class JwksServer:
    """A JWKS over HTTP on loopback that counts its fetches."""

    def __init__(self, doc):
        self.hits = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def gw():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d).start()
    jwks_path = f"{d}/jwks.json"
    with open(jwks_path, "w") as f:
        json.dump(jwks_doc(), f)
    jwks_http = JwksServer(jwks_doc())
    s.jwks_http = jwks_http
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    s.deploy("counted", "python3.12", "app.handler", {"app.py": ECHO})
    s.deploy("authz", "python3.12", "app.handler", {"app.py": AUTHZ}, timeout_s=15)
    s.deploy("simple", "python3.12", "app.handler", {"app.py": SIMPLE})

    put_authorizer(s, "tok", {"type": "lambda", "lambda": {"function": "authz", "type": "TOKEN", "ttl_seconds": 0}})
    put_authorizer(s, "tok-cached", {"type": "lambda", "lambda": {
        "function": "authz", "type": "TOKEN", "identity_sources": ["$request.header.X-Token"], "ttl_seconds": 300}})
    put_authorizer(s, "req1", {"type": "lambda", "lambda": {
        "function": "authz", "type": "REQUEST", "payload_format": "1.0", "ttl_seconds": 0,
        "identity_sources": ["$request.header.Authorization", "$request.querystring.tenant"]}})
    put_authorizer(s, "req2", {"type": "lambda", "lambda": {
        "function": "authz", "type": "REQUEST", "payload_format": "2.0", "ttl_seconds": 0}})
    put_authorizer(s, "simple", {"type": "lambda", "lambda": {
        "function": "simple", "payload_format": "2.0", "simple_responses": True, "ttl_seconds": 0}})
    put_authorizer(s, "jwt-hs", {"type": "jwt", "jwt": {"issuer": ISSUER, "audiences": ["api", "other"], "secret": SECRET}})
    put_authorizer(s, "jwt-file", {"type": "jwt", "jwt": {"issuer": ISSUER, "audiences": ["api"], "jwks": jwks_path}})
    put_authorizer(s, "jwt-url", {"type": "jwt", "jwt": {"issuer": ISSUER, "audiences": ["api"], "jwks": jwks_http.url}})

    for key, fn, extra in [
        ("GET /token/{id}", "echo", {"authorizer": "lambda:tok", "payload_format": "1.0"}),
        ("ANY /cached/{proxy+}", "echo", {"authorizer": "tok-cached"}),
        ("GET /req1", "echo", {"authorizer": "lambda:req1", "payload_format": "1.0"}),
        ("GET /req2/{id}", "echo", {"authorizer": "lambda:req2"}),
        ("GET /simple", "echo", {"authorizer": "lambda:simple"}),
        ("GET /jwt/hs", "echo", {"authorizer": "jwt:jwt-hs"}),
        ("GET /jwt/file", "echo", {"authorizer": "jwt:jwt-file", "payload_format": "1.0"}),
        ("GET /jwt/url", "echo", {"authorizer": "jwt:jwt-url"}),
        ("GET /jwt/scoped", "echo", {"authorizer": "jwt:jwt-hs", "authorization_scopes": ["read:things", "admin"]}),
        ("GET /open", "echo", {}),
    ]:
        put_route(s, key, fn, **extra)
    yield s
    s.stop()
    jwks_http.close()
    shutil.rmtree(d, ignore_errors=True)


def put_authorizer(s, name, body, expect=(200, 201)):
    r = s.session.put(f"{s.api}/_nimbus/authorizers/{name}", json=body, timeout=10)
    if expect is not None:
        assert r.status_code in expect, r.text
    return r


def put_route(s, key, function, expect=(200, 201), **extra):
    r = s.session.put(f"{s.api}/_nimbus/routes", json={"route_key": key, "function": function, **extra}, timeout=10)
    if expect is not None:
        assert r.status_code in expect, r.text
    return r


def event_of(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def refused(r, status, message):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json() == {"message": message}
    assert r.headers["content-type"] == "application/json"


def invocations(s, fn):
    return len(s.records(fn))


# -- Lambda authorizers ------------------------------------------------------------

def test_token_authorizer_allow_and_event_shapes(gw):
    r = requests.get(f"{gw.gateway}/token/7", headers={"Authorization": "allow"})
    e = event_of(r)
    a = e["requestContext"]["authorizer"]
    # 1.0: principalId and the context's keys side by side.
    assert a["principalId"] == "user-allow"
    assert a["user"] == "alice" and a["n"] == 7 and a["admin"] is True
    assert isinstance(a["integrationLatency"], int)
    # The TOKEN event, exactly as AWS documents it.
    ev = json.loads(a["event"])
    assert set(ev) == {"type", "authorizationToken", "methodArn"}
    assert ev["type"] == "TOKEN" and ev["authorizationToken"] == "allow"
    api_id = e["requestContext"]["apiId"]
    assert re.fullmatch(rf"arn:aws:execute-api:[a-z0-9-]+:123456789012:{api_id}/\$default/GET/token/7", ev["methodArn"]), ev


def test_lambda_authorizer_failure_codes(gw):
    g = gw.gateway
    before = invocations(gw, "authz")
    refused(requests.get(f"{g}/token/1"), 401, "Unauthorized")  # no identity: not called
    refused(requests.get(f"{g}/token/1", headers={"Authorization": ""}), 401, "Unauthorized")
    assert invocations(gw, "authz") == before
    refused(requests.get(f"{g}/token/1", headers={"Authorization": "deny"}), 403, "Forbidden")
    refused(requests.get(f"{g}/token/1", headers={"Authorization": "unauthorized"}), 401, "Unauthorized")
    refused(requests.get(f"{g}/token/1", headers={"Authorization": "boom"}), 500, "Internal Server Error")
    refused(requests.get(f"{g}/token/1", headers={"Authorization": "garbage"}), 500, "Internal Server Error")
    # The policy names GET only: the ARN is matched with IAM wildcards.
    assert requests.get(f"{g}/token/1", headers={"Authorization": "wild"}).status_code == 200


def test_lambda_authorizer_timeout_is_500(gw):
    before = invocations(gw, "authz")
    t0 = time.time()
    r = requests.get(f"{gw.gateway}/token/1", headers={"Authorization": "sleep"}, timeout=60)
    answered = time.time()
    refused(r, 500, "Internal Server Error")
    # It waited for the authorizer's timeout (10 s), not less...
    assert answered - t0 > 9, answered - t0
    # The abandoned call runs on to its 12 s sleep; let it finish so that the tests
    # after this one, which count the authorizer's invocations, start from a settled count.
    wait_for(lambda: invocations(gw, "authz") == before + 1, timeout=10,
             what="the abandoned authorizer call to finish")
    # ...and gave up on it: the client had its 500 before the 12 s sleep ended.
    rec = max(gw.records("authz"), key=lambda x: x["start_ms"])
    assert answered * 1000 < rec["start_ms"] + rec["duration_ms"], (answered, rec)


def test_request_authorizer_v1_event(gw):
    r = requests.get(f"{gw.gateway}/req1?tenant=acme&x=1", headers={"Authorization": "allow"})
    e = event_of(r)
    a = e["requestContext"]["authorizer"]
    assert a["principalId"] == "user-allow"
    ev = json.loads(a["event"])
    assert ev["type"] == "REQUEST"
    assert ev["methodArn"].endswith("/$default/GET/req1")
    assert ev["identitySource"] == "allow,acme" and ev["authorizationToken"] == "allow,acme"
    assert ev["resource"] == "/req1" and ev["path"] == "/req1" and ev["httpMethod"] == "GET"
    assert ev["headers"]["Authorization"] == "allow"
    assert ev["multiValueHeaders"]["Authorization"] == ["allow"]
    assert ev["queryStringParameters"] == {"tenant": "acme", "x": "1"}
    assert ev["multiValueQueryStringParameters"] == {"tenant": ["acme"], "x": ["1"]}
    assert "body" not in ev and "isBase64Encoded" not in ev
    assert "authorizer" not in ev["requestContext"]
    assert ev["requestContext"]["resourcePath"] == "/req1"
    # Every identity source must be present, else 401 without a call.
    refused(requests.get(f"{gw.gateway}/req1", headers={"Authorization": "allow"}), 401, "Unauthorized")
    refused(requests.get(f"{gw.gateway}/req1?tenant=", headers={"Authorization": "allow"}), 401, "Unauthorized")


def test_request_authorizer_v2_event_and_lambda_context(gw):
    r = requests.get(f"{gw.gateway}/req2/5?q=1", headers={"Authorization": "allow"})
    e = event_of(r)
    lam = e["requestContext"]["authorizer"]["lambda"]
    assert lam["user"] == "alice" and lam["n"] == 7
    ev = json.loads(lam["event"])
    assert ev["version"] == "2.0" and ev["type"] == "REQUEST"
    assert ev["routeArn"].endswith("/$default/GET/req2/5")
    assert ev["identitySource"] == ["allow"]
    assert ev["routeKey"] == "GET /req2/{id}" and ev["rawPath"] == "/req2/5" and ev["rawQueryString"] == "q=1"
    assert ev["headers"]["authorization"] == "allow"
    assert ev["pathParameters"] == {"id": "5"}
    assert ev["requestContext"]["http"]["method"] == "GET"
    assert "body" not in ev and "isBase64Encoded" not in ev


def test_simple_response_authorizer(gw):
    e = event_of(requests.get(f"{gw.gateway}/simple", headers={"Authorization": "yes"}))
    lam = e["requestContext"]["authorizer"]["lambda"]
    assert lam["user"] == "bob" and lam["roles"] == ["a", "b"]
    refused(requests.get(f"{gw.gateway}/simple", headers={"Authorization": "no"}), 403, "Forbidden")


def test_authorizer_results_are_cached_per_identity(gw):
    g = gw.gateway
    n0 = invocations(gw, "authz")
    assert event_of(requests.get(f"{g}/cached/a", headers={"X-Token": "wild"}))["requestContext"]["authorizer"]["lambda"]["user"] == "alice"
    wait_for(lambda: invocations(gw, "authz") == n0 + 1, what="one authorizer call")
    for path in ("a", "b/c"):
        assert requests.get(f"{g}/cached/{path}", headers={"X-Token": "wild"}).status_code == 200
    # The cached policy is evaluated again for each request: POST is not in it.
    refused(requests.post(f"{g}/cached/a", headers={"X-Token": "wild"}), 403, "Forbidden")
    time.sleep(0.5)
    assert invocations(gw, "authz") == n0 + 1
    # Another identity is another cache entry; denies are cached too.
    refused(requests.get(f"{g}/cached/a", headers={"X-Token": "deny"}), 403, "Forbidden")
    refused(requests.get(f"{g}/cached/a", headers={"X-Token": "deny"}), 403, "Forbidden")
    wait_for(lambda: invocations(gw, "authz") == n0 + 2, what="the second identity's call")
    time.sleep(0.5)
    assert invocations(gw, "authz") == n0 + 2


# -- JWT authorizers ---------------------------------------------------------------

def get(gw, path, token=None, prefix="Bearer "):
    h = {} if token is None else {"Authorization": prefix + token}
    return requests.get(f"{gw.gateway}{path}", headers=h)


def test_jwt_hs256_claims_in_v2_event(gw):
    e = event_of(get(gw, "/jwt/hs", hs(scope="read write", custom=5, groups=["x", "y"])))
    j = e["requestContext"]["authorizer"]["jwt"]
    assert j["claims"]["sub"] == "user-1" and j["claims"]["iss"] == ISSUER
    assert j["claims"]["custom"] == "5" and j["claims"]["groups"] == "[x y]"
    assert j["scopes"] == ["read", "write"]
    # The Bearer prefix is optional; client_id stands in for aud; any listed audience.
    assert get(gw, "/jwt/hs", hs(), prefix="").status_code == 200
    assert get(gw, "/jwt/hs", hs(aud=None, client_id="api")).status_code == 200
    assert get(gw, "/jwt/hs", hs(aud=["x", "other"])).status_code == 200


@pytest.mark.parametrize("why,token", [
    ("expired", lambda: hs(exp=int(time.time()) - 60)),
    ("not yet valid", lambda: hs(nbf=int(time.time()) + 120)),
    ("issued in the future", lambda: hs(iat=int(time.time()) + 120)),
    ("bad signature", lambda: jwt.encode(claims(), "another-secret-of-some-length", algorithm="HS256")),
    ("wrong issuer", lambda: hs(iss="https://evil.test")),
    ("wrong audience", lambda: hs(aud="someone-else")),
    ("no audience", lambda: hs(aud=None)),
    ("no exp", lambda: hs(exp=None)),
    ("not a JWT", lambda: "not.a.jwt"),
    ("alg none", lambda: jwt.encode(claims(), None, algorithm="none")),
    ("RS256 without a JWKS", lambda: rs()),
])
def test_jwt_refusals_are_401(gw, why, token):
    refused(get(gw, "/jwt/hs", token()), 401, "Unauthorized")


def test_jwt_missing_token_is_401(gw):
    refused(get(gw, "/jwt/hs"), 401, "Unauthorized")
    refused(get(gw, "/jwt/hs", "", prefix="Bearer "), 401, "Unauthorized")


def test_jwt_rs256_and_es256_from_a_jwks_file_v1_claims(gw):
    e = event_of(get(gw, "/jwt/file", rs(scope="a b")))
    a = e["requestContext"]["authorizer"]
    assert a["claims"]["sub"] == "user-1" and a["scopes"] == ["a", "b"]
    e = event_of(get(gw, "/jwt/file", es()))
    assert e["requestContext"]["authorizer"]["claims"]["aud"] == "api"
    assert e["requestContext"]["authorizer"]["scopes"] is None
    # A key the JWKS does not have, under a known or unknown kid.
    refused(get(gw, "/jwt/file", rs(key=OTHER_RSA_KEY)), 401, "Unauthorized")
    refused(get(gw, "/jwt/file", rs(kid="nope")), 401, "Unauthorized")
    # HS256 signed with the public key's PEM (algorithm confusion) and HS tokens on a
    # JWKS-only authorizer are refused.
    refused(get(gw, "/jwt/file", hs()), 401, "Unauthorized")
    refused(get(gw, "/jwt/file", rs(exp=int(time.time()) - 1)), 401, "Unauthorized")


def test_jwt_jwks_url_is_fetched_once_and_cached(gw):
    for _ in range(5):
        assert get(gw, "/jwt/url", rs()).status_code == 200
    assert get(gw, "/jwt/url", es()).status_code == 200
    assert gw.jwks_http.hits == 1


def test_jwt_scopes(gw):
    assert get(gw, "/jwt/scoped", hs(scope="other read:things")).status_code == 200
    assert get(gw, "/jwt/scoped", hs(scp=["admin"])).status_code == 200
    refused(get(gw, "/jwt/scoped", hs(scope="read:other")), 403, "Forbidden")
    refused(get(gw, "/jwt/scoped", hs()), 403, "Forbidden")
    # A bad token is still 401, not 403.
    refused(get(gw, "/jwt/scoped", hs(exp=1)), 401, "Unauthorized")


# -- API keys, usage plans, throttling -----------------------------------------------

def make_plan(s, name, **body):
    r = s.session.put(f"{s.api}/_nimbus/usage-plans/{name}", json=body, timeout=10)
    assert r.status_code in (200, 201), r.text
    return r.json()


def make_key(s, name, **body):
    r = s.session.post(f"{s.api}/_nimbus/api-keys", json={"name": name, **body}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def test_api_keys_and_quota(gw):
    make_plan(gw, "five-a-day", throttle={"rate": 100, "burst": 100}, quota={"limit": 5, "period": "DAY"})
    good = make_key(gw, "good", plan="five-a-day")
    assert len(good["value"]) == 40 and len(good["id"]) == 10
    planless = make_key(gw, "planless")
    disabled = make_key(gw, "disabled", plan="five-a-day", enabled=False)
    put_route(gw, "GET /keyed", "echo", api_key_required=True, payload_format="1.0")
    u = f"{gw.gateway}/keyed"
    refused(requests.get(u), 403, "Forbidden")
    refused(requests.get(u, headers={"x-api-key": "x" * 40}), 403, "Forbidden")
    refused(requests.get(u, headers={"x-api-key": planless["value"]}), 403, "Forbidden")
    refused(requests.get(u, headers={"x-api-key": disabled["value"]}), 403, "Forbidden")
    e = event_of(requests.get(u, headers={"x-api-key": good["value"]}))
    ident = e["requestContext"]["identity"]
    assert ident["apiKey"] == good["value"] and ident["apiKeyId"] == good["id"]
    for _ in range(4):
        assert requests.get(u, headers={"x-api-key": good["value"]}).status_code == 200
    refused(requests.get(u, headers={"x-api-key": good["value"]}), 429, "Limit Exceeded")
    usage = gw.session.get(f"{gw.api}/_nimbus/api-keys/{good['id']}/usage").json()
    assert usage["used"] == 5 and usage["limit"] == 5 and usage["remaining"] == 0 and usage["period"] == "DAY"
    # Enabling a key through the API makes it work at once.
    r = gw.session.patch(f"{gw.api}/_nimbus/api-keys/{disabled['id']}", json={"enabled": True})
    assert r.status_code == 200 and "value" not in r.json()
    assert requests.get(u, headers={"x-api-key": disabled["value"]}).status_code == 200
    # Values are listed only on request.
    listed = gw.session.get(f"{gw.api}/_nimbus/api-keys").json()["api_keys"]
    assert all("value" not in k for k in listed)
    listed = gw.session.get(f"{gw.api}/_nimbus/api-keys", params={"include_values": "true"}).json()["api_keys"]
    assert any(k["value"] == good["value"] for k in listed)


def test_api_key_throttle(gw):
    make_plan(gw, "trickle", throttle={"rate": 0.2, "burst": 2})
    k = make_key(gw, "trickler", plan="trickle")
    put_route(gw, "GET /keyed-counted", "counted", api_key_required=True)
    n0 = invocations(gw, "counted")
    codes = [requests.get(f"{gw.gateway}/keyed-counted", headers={"x-api-key": k["value"]}).status_code
             for _ in range(4)]
    assert codes == [200, 200, 429, 429], codes
    r = requests.get(f"{gw.gateway}/keyed-counted", headers={"x-api-key": k["value"]})
    refused(r, 429, "Too Many Requests")
    time.sleep(1)
    assert invocations(gw, "counted") == n0 + 2


def test_route_throttle_before_invoking(gw):
    put_route(gw, "GET /throttled", "counted", throttle={"rate": 0.5, "burst": 3})
    n0 = invocations(gw, "counted")
    codes = [requests.get(f"{gw.gateway}/throttled").status_code for _ in range(6)]
    assert codes == [200, 200, 200, 429, 429, 429], codes
    refused(requests.get(f"{gw.gateway}/throttled"), 429, "Too Many Requests")
    time.sleep(2.2)  # one token back at 0.5/s
    assert requests.get(f"{gw.gateway}/throttled").status_code == 200
    time.sleep(1)
    assert invocations(gw, "counted") == n0 + 4
    # Other routes are not affected.
    assert requests.get(f"{gw.gateway}/open").status_code == 200


def test_authorizer_and_api_key_together(gw):
    make_plan(gw, "both-plan", quota={"limit": 100, "period": "MONTH"})
    k = make_key(gw, "both", plan="both-plan")
    put_route(gw, "GET /both", "echo", authorizer="jwt:jwt-hs", api_key_required=True, payload_format="1.0")
    u = f"{gw.gateway}/both"
    refused(requests.get(u, headers={"x-api-key": k["value"]}), 401, "Unauthorized")
    refused(requests.get(u, headers={"Authorization": hs()}), 403, "Forbidden")
    e = event_of(requests.get(u, headers={"Authorization": hs(), "x-api-key": k["value"]}))
    assert e["requestContext"]["authorizer"]["claims"]["sub"] == "user-1"
    assert e["requestContext"]["identity"]["apiKeyId"] == k["id"]


def test_unprotected_routes_are_unchanged(gw):
    e = event_of(requests.get(f"{gw.gateway}/open"))
    assert "authorizer" not in e["requestContext"]


# -- control API -------------------------------------------------------------------

def test_control_api_validation(gw):
    api = gw.api
    for name, body in [
        ("bad", {"type": "jwt", "jwt": {"issuer": ISSUER, "audiences": []}}),
        ("bad", {"type": "jwt", "jwt": {"issuer": ISSUER, "audiences": ["a"]}}),
        ("bad", {"type": "jwt", "lambda": {"function": "authz"}}),
        ("bad", {"type": "lambda", "lambda": {"function": "authz", "type": "TOKEN",
                                              "identity_sources": ["$request.querystring.t"]}}),
        ("bad", {"type": "lambda", "lambda": {"function": "authz", "simple_responses": True, "payload_format": "1.0"}}),
        ("bad", {"type": "lambda", "lambda": {"function": "authz", "ttl_seconds": 4000}}),
        ("bad", {"type": "lambda", "lambda": {"function": "authz", "unknown": 1}}),
        ("bad name!", {"type": "jwt", "jwt": {"issuer": ISSUER, "audiences": ["a"], "secret": "x"}}),
    ]:
        r = gw.session.put(f"{api}/_nimbus/authorizers/{name}", json=body)
        assert r.status_code == 400, (body, r.text)
    r = put_authorizer(gw, "ghost", {"type": "lambda", "lambda": {"function": "no-such-fn"}}, expect=None)
    assert r.status_code == 404
    # Routes: unknown authorizer, kind mismatch, scopes without JWT, bad throttle.
    assert put_route(gw, "GET /v", "echo", expect=None, authorizer="nope").status_code == 404
    assert put_route(gw, "GET /v", "echo", expect=None, authorizer="jwt:tok").status_code == 400
    assert put_route(gw, "GET /v", "echo", expect=None, authorizer="lambda:tok",
                     authorization_scopes=["x"]).status_code == 400
    assert put_route(gw, "GET /v", "echo", expect=None, throttle={"rate": 0, "burst": 1}).status_code == 400
    # In-use objects cannot be deleted.
    r = gw.session.delete(f"{api}/_nimbus/authorizers/jwt-hs")
    assert r.status_code == 409 and "GET /jwt/hs" in r.json()["message"]
    make_plan(gw, "used-plan", quota={"limit": 1, "period": "WEEK"})
    make_key(gw, "user-of-plan", plan="used-plan")
    assert gw.session.delete(f"{api}/_nimbus/usage-plans/used-plan").status_code == 409
    assert gw.session.post(f"{api}/_nimbus/api-keys", json={"name": "k", "plan": "nope"}).status_code == 404
    assert gw.session.post(f"{api}/_nimbus/api-keys", json={"name": "k", "value": "short"}).status_code == 400
    # Secrets are never shown.
    a = gw.session.get(f"{api}/_nimbus/authorizers/jwt-hs").json()
    assert a["jwt"]["secret"] != SECRET
    names = [x["name"] for x in gw.session.get(f"{api}/_nimbus/authorizers").json()["authorizers"]]
    assert "jwt-hs" in names and "tok" in names
    # The route record carries its settings.
    routes = gw.session.get(f"{api}/_nimbus/routes").json()["routes"]
    scoped = next(r for r in routes if r["route_key"] == "GET /jwt/scoped")
    assert scoped["authorizer"] == "jwt-hs" and scoped["authorization_scopes"] == ["read:things", "admin"]


def test_cli(gw):
    p = gw.cli("usage-plan", "create", "cli-plan", "--rate", "50", "--burst", "100", "--quota", "1000", "--period", "month")
    assert p.returncode == 0, p.stderr
    assert "rate 50/s burst 100, quota 1000/MONTH" in p.stdout
    p = gw.cli("apikey", "create", "cli-key", "--plan", "cli-plan")
    assert p.returncode == 0, p.stderr
    value = re.search(r"x-api-key: (\S+)", p.stdout).group(1)
    p = gw.cli("authorizer", "create", "cli-jwt", "--jwt", "--issuer", ISSUER, "--audience", "api", "--secret", SECRET)
    assert p.returncode == 0, p.stderr
    assert "Created jwt authorizer cli-jwt" in p.stdout
    p = gw.cli("authorizer", "create", "cli-tok", "--lambda", "authz", "--type", "TOKEN", "--ttl", "0")
    assert p.returncode == 0, p.stderr
    p = gw.cli("route", "add", "GET", "/cli-auth", "echo", "--auth", "jwt:cli-jwt", "--auth", "apikey",
               "--scope", "read", "--throttle", "5:10")
    assert p.returncode == 0, p.stderr
    u = f"{gw.gateway}/cli-auth"
    refused(requests.get(u, headers={"Authorization": hs(scope="read")}), 403, "Forbidden")
    assert requests.get(u, headers={"Authorization": hs(scope="read"), "x-api-key": value}).status_code == 200
    p = gw.cli("route", "ls")
    line = next(l for l in p.stdout.splitlines() if l.startswith("GET /cli-auth"))
    assert "[auth cli-jwt scopes read; apikey; throttle 5/s burst 10]" in line, line
    p = gw.cli("authorizer", "ls")
    assert p.returncode == 0 and "cli-jwt" in p.stdout and "cli-tok" in p.stdout and "TOKEN" in p.stdout
    assert SECRET not in p.stdout
    p = gw.cli("apikey", "usage", "cli-key")
    assert p.returncode == 0 and "1 of 1000 requests this month" in p.stdout, p.stdout
    p = gw.cli("apikey", "ls")
    assert "cli-key" in p.stdout and value not in p.stdout
    assert value in gw.cli("apikey", "ls", "--values").stdout
    p = gw.cli("authorizer", "rm", "cli-jwt")
    assert p.returncode != 0 and "used by route" in p.stderr
    p = gw.cli("route", "add", "GET", "/cli-bad", "echo", "--auth", "magic")
    assert p.returncode != 0 and "jwt:NAME, lambda:NAME or apikey" in p.stderr
    assert gw.cli("route", "rm", "GET", "/cli-auth").returncode == 0
    assert gw.cli("authorizer", "rm", "cli-jwt").returncode == 0
    assert gw.cli("apikey", "rm", "cli-key").returncode == 0
    p = gw.cli("usage-plan", "ls")
    assert "cli-plan" in p.stdout
    assert gw.cli("usage-plan", "rm", "cli-plan").returncode == 0


# -- durability --------------------------------------------------------------------

def test_definitions_and_quota_survive_kill_9(server_factory, data_dir):
    s = server_factory()
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    make_plan(s, "three", quota={"limit": 3, "period": "DAY"})
    k = make_key(s, "durable", plan="three")
    put_authorizer(s, "jwt-hs", {"type": "jwt", "jwt": {"issuer": ISSUER, "audiences": ["api"], "secret": SECRET}})
    put_route(s, "GET /q", "echo", api_key_required=True)
    put_route(s, "GET /j", "echo", authorizer="jwt-hs", throttle={"rate": 10, "burst": 10})
    for _ in range(3):
        assert requests.get(f"{s.gateway}/q", headers={"x-api-key": k["value"]}).status_code == 200
    refused(requests.get(f"{s.gateway}/q", headers={"x-api-key": k["value"]}), 429, "Limit Exceeded")
    time.sleep(1.5)  # counters are written back every second
    s.kill()
    s2 = server_factory(data=data_dir)
    refused(requests.get(f"{s2.gateway}/q", headers={"x-api-key": k["value"]}), 429, "Limit Exceeded")
    refused(requests.get(f"{s2.gateway}/j"), 401, "Unauthorized")
    assert requests.get(f"{s2.gateway}/j", headers={"Authorization": "Bearer " + hs()}).status_code == 200
    assert s2.session.get(f"{s2.api}/_nimbus/api-keys/durable/usage").json()["used"] == 3


def test_quota_counted_before_sigterm_survives(server_factory, data_dir):
    s = server_factory()
    s.deploy("echo", "python3.12", "app.handler", {"app.py": ECHO})
    make_plan(s, "two", quota={"limit": 2, "period": "MONTH"})
    k = make_key(s, "graceful", plan="two")
    put_route(s, "GET /q", "echo", api_key_required=True)
    for _ in range(2):
        assert requests.get(f"{s.gateway}/q", headers={"x-api-key": k["value"]}).status_code == 200
    assert s.stop() == 0  # right away: the shutdown writes the counters
    s2 = server_factory(data=data_dir)
    refused(requests.get(f"{s2.gateway}/q", headers={"x-api-key": k["value"]}), 429, "Limit Exceeded")
