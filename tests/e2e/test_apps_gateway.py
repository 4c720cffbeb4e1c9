"""Gateway settings from manifests (issue 18), with the real CLI and binary:
serverless.yml `provider.httpApi.cors`/`authorizers` and the `httpApi` event's
`authorizer`, SAM `AWS::Serverless::HttpApi` `CorsConfiguration`/`Auth` and the
`HttpApi` event's `Auth`. A JWT authorizer finds its keys through the issuer's
OpenID discovery document, served here by the test with a JWKS of a key the test
signs tokens with; a Lambda REQUEST authorizer is a function of the app.
Redeploys replace and remove the settings; `nimbus app rm` removes them."""

import http.server
import json
import threading
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

HANDLER = """
import json

def main(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps(event)}

def token(event, context):
    t = event.get("authorizationToken")
    if t not in ("allow", "deny"):
        raise Exception("Unauthorized")
    return {"principalId": "u1", "context": {"via": "token"},
            "policyDocument": {"Version": "2012-10-17", "Statement": [{
                "Action": "execute-api:Invoke", "Resource": event["methodArn"],
                "Effect": "Allow" if t == "allow" else "Deny"}]}}

def auth(event, context):
    ok = (event.get("headers") or {}).get("x-token") == "letmein"
    return {"isAuthorized": ok, "context": {"who": "tester", "route": event.get("routeArn", "")}}
"""


class Issuer:
    """An OpenID issuer on loopback: its discovery document and its JWKS."""

    def __init__(self):
        self.hits = {"discovery": 0, "jwks": 0}
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    outer.hits["discovery"] += 1
                    doc = {"issuer": outer.url, "jwks_uri": outer.url + "/keys"}
                elif self.path == "/keys":
                    outer.hits["jwks"] += 1
                    k = RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
                    k.update(kid="k1", alg="RS256", use="sig")
                    doc = {"keys": [k]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, key=KEY, **over):
        now = int(time.time())
        c = {"iss": self.url, "aud": "api", "sub": "user-7", "iat": now - 5, "exp": now + 300}
        c.update(over)
        return jwt.encode(c, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def issuer():
    i = Issuer()
    yield i
    i.httpd.shutdown()


def write_app(d, manifest, name="serverless.yml"):
    d.mkdir(parents=True, exist_ok=True)
    (d / "handler.py").write_text(HANDLER)
    (d / name).write_text(manifest)
    return d


def deploy(server, d, *extra):
    return server.cli("deploy", *extra, cwd=d, timeout=180)


def authorizers(server):
    r = server.session.get(f"{server.api}/_nimbus/authorizers", timeout=10)
    return {a["name"]: a for a in r.json()["authorizers"]}


def cors(server):
    return server.session.get(f"{server.api}/_nimbus/cors", timeout=10).json()["cors"]


def route_keys(server):
    r = server.session.get(f"{server.api}/_nimbus/routes", timeout=10).json()["routes"]
    return {x["route_key"]: x for x in r}


def sls_manifest(issuer, *, cors_block=True, with_request=True):
    cors_yaml = """
    cors:
      allowedOrigins: [https://app.example.com]
      allowedHeaders: [Content-Type, Authorization]
      allowCredentials: true
      maxAge: 600""" if cors_block else ""
    req_auth = """
      reqAuth:
        type: request
        functionName: auth
        identitySource: $request.header.X-Token
        enableSimpleResponses: true
        payloadVersion: '2.0'
        resultTtlInSeconds: 0""" if with_request else ""
    req_route = """
      - httpApi:
          method: GET
          path: /req
          authorizer: reqAuth""" if with_request else ""
    return f"""service: gwapp
frameworkVersion: '3'
provider:
  name: aws
  runtime: python3.12
  httpApi:{cors_yaml}
    authorizers:
      jwtAuth:
        identitySource: $request.header.Authorization
        issuerUrl: {issuer.url}
        audience:
          - api{req_auth}
functions:
  api:
    handler: handler.main
    events:
      - httpApi:
          method: GET
          path: /me
          authorizer:
            name: jwtAuth
      - httpApi:
          method: GET
          path: /admin
          authorizer:
            name: jwtAuth
            scopes: [admin]
      - httpApi: GET /open{req_route}
  auth:
    handler: handler.auth
"""


def test_serverless_yml_jwt_lambda_authorizers_and_cors(server, issuer, tmp_path):
    d = write_app(tmp_path / "gwapp", sls_manifest(issuer))
    p = deploy(server, d)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    assert issuer.hits["discovery"] >= 1

    auths = authorizers(server)
    assert {"gwapp-dev.jwtAuth", "gwapp-dev.reqAuth"} <= set(auths)
    assert auths["gwapp-dev.jwtAuth"]["jwt"]["jwks"] == issuer.url + "/keys"
    assert auths["gwapp-dev.reqAuth"]["lambda"]["function"] == "gwapp-dev-auth"
    routes = route_keys(server)
    assert routes["GET /me"]["authorizer"] == "gwapp-dev.jwtAuth"
    assert routes["GET /admin"]["authorization_scopes"] == ["admin"]
    assert "authorizer" not in routes["GET /open"]

    gw = server.gateway
    # JWT: no token, a token signed by another key, an expired one → 401.
    assert requests.get(gw + "/me", timeout=30).status_code == 401
    bad = issuer.token(key=OTHER_KEY)
    assert requests.get(gw + "/me", headers={"authorization": f"Bearer {bad}"}, timeout=30).status_code == 401
    old = issuer.token(exp=int(time.time()) - 60)
    assert requests.get(gw + "/me", headers={"authorization": f"Bearer {old}"}, timeout=30).status_code == 401
    good = issuer.token(scope="read")
    r = requests.get(gw + "/me", headers={"authorization": f"Bearer {good}"}, timeout=30)
    assert r.status_code == 200, r.text
    claims = r.json()["requestContext"]["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "user-7" and claims["iss"] == issuer.url
    # Scopes: the route needs `admin`.
    r = requests.get(gw + "/admin", headers={"authorization": f"Bearer {good}"}, timeout=30)
    assert r.status_code == 403, r.text
    admin = issuer.token(scope="read admin")
    r = requests.get(gw + "/admin", headers={"authorization": f"Bearer {admin}"}, timeout=30)
    assert r.status_code == 200, r.text
    # A route without an authorizer stays open.
    assert requests.get(gw + "/open", timeout=30).status_code == 200

    # The Lambda REQUEST authorizer with simple responses.
    assert requests.get(gw + "/req", timeout=30).status_code == 401
    assert requests.get(gw + "/req", headers={"x-token": "nope"}, timeout=30).status_code == 403
    r = requests.get(gw + "/req", headers={"x-token": "letmein"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["requestContext"]["authorizer"]["lambda"]["who"] == "tester"

    # CORS: the preflight is answered with the manifest's origin, others get none.
    pre = requests.options(gw + "/me", headers={
        "origin": "https://app.example.com", "access-control-request-method": "GET",
        "access-control-request-headers": "authorization"}, timeout=30)
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    assert pre.headers["access-control-allow-credentials"] == "true"
    assert pre.headers["access-control-max-age"] == "600"
    assert "GET" in pre.headers["access-control-allow-methods"]
    evil = requests.options(gw + "/me", headers={
        "origin": "https://evil.example.com", "access-control-request-method": "GET"}, timeout=30)
    assert "access-control-allow-origin" not in evil.headers
    r = requests.get(gw + "/open", headers={"origin": "https://app.example.com"}, timeout=30)
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    c = cors(server)
    assert c["allow_origins"] == ["https://app.example.com"] and c["max_age"] == 600

    # The app records what it owns on the gateway.
    shown = server.session.get(f"{server.api}/_nimbus/apps/gwapp-dev", timeout=10).json()
    assert sorted(shown["Gateway"]["Authorizers"]) == ["gwapp-dev.jwtAuth", "gwapp-dev.reqAuth"]
    p = server.cli("app", "show", "gwapp-dev")
    assert p.returncode == 0, p.stderr
    assert "Authorizers: gwapp-dev.jwtAuth, gwapp-dev.reqAuth" in p.stdout, p.stdout
    assert "CORS: the gateway's configuration (origins https://app.example.com)" in p.stdout

    # Redeploy without CORS and without the request authorizer (and its route):
    # both are removed; the JWT authorizer is kept.
    write_app(d, sls_manifest(issuer, cors_block=False, with_request=False))
    p = deploy(server, d)
    assert p.returncode == 0, p.stdout + p.stderr
    assert cors(server) is None
    auths = authorizers(server)
    assert "gwapp-dev.reqAuth" not in auths and "gwapp-dev.jwtAuth" in auths
    assert "GET /req" not in route_keys(server)
    assert requests.get(gw + "/me", timeout=30).status_code == 401

    # `nimbus app rm` removes the authorizers with the routes.
    p = server.cli("app", "rm", "gwapp-dev")
    assert p.returncode == 0, p.stdout + p.stderr
    assert not [n for n in authorizers(server) if n.startswith("gwapp-dev.")]
    assert "GET /me" not in route_keys(server)


def test_cors_true_and_app_rm_clears_it(server, issuer, tmp_path):
    m = """service: corsapp
provider:
  name: aws
  runtime: python3.12
  httpApi:
    cors: true
functions:
  api:
    handler: handler.main
    events:
      - httpApi: GET /c
      - httpApi: POST /c
"""
    d = write_app(tmp_path / "corsapp", m)
    p = deploy(server, d)
    assert p.returncode == 0, p.stdout + p.stderr
    c = cors(server)
    # The Framework's defaults: any origin, its header list, the routes' methods.
    assert c["allow_origins"] == ["*"]
    assert "authorization" in c["allow_headers"] and "x-api-key" in c["allow_headers"]
    assert set(c["allow_methods"]) == {"OPTIONS", "GET", "POST"}
    pre = requests.options(server.gateway + "/c", headers={
        "origin": "https://any.example.org", "access-control-request-method": "POST"}, timeout=30)
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"

    # Another app may not take the gateway's CORS configuration over.
    other = write_app(tmp_path / "other", m.replace("corsapp", "otherapp").replace("/c", "/o")
                      .replace("cors: true", "cors:\n      allowedOrigins: [https://o.example.com]"))
    p = deploy(server, other)
    assert p.returncode == 1
    assert "CORS configuration was set outside app otherapp-dev" in p.stderr
    assert "nothing was changed" in p.stderr
    assert cors(server)["allow_origins"] == ["*"]

    p = server.cli("app", "rm", "corsapp-dev")
    assert p.returncode == 0, p.stdout + p.stderr
    assert cors(server) is None


def test_refusals_name_file_and_line(server, issuer, tmp_path):
    iam = """service: iamapp
provider:
  name: aws
  runtime: python3.12
functions:
  api:
    handler: handler.main
    events:
      - httpApi:
          method: GET
          path: /iam
          authorizer:
            type: aws_iam
"""
    d = write_app(tmp_path / "iam", iam)
    p = deploy(server, d)
    assert p.returncode == 1
    assert "serverless.yml:13: error:" in p.stderr and "aws_iam" in p.stderr, p.stderr
    assert "GET /iam" not in route_keys(server)

    unknown = iam.replace("type: aws_iam", "name: nope")
    d = write_app(tmp_path / "unknown", unknown)
    p = deploy(server, d)
    assert p.returncode == 1
    assert 'no authorizer named "nope"' in p.stderr, p.stderr

    # An issuer without a discovery document: refused before any change.
    gone = f"""service: gone
provider:
  name: aws
  runtime: python3.12
  httpApi:
    authorizers:
      j:
        identitySource: $request.header.Authorization
        issuerUrl: {issuer.url}/missing
        audience: api
functions:
  api:
    handler: handler.main
    events:
      - httpApi:
          method: GET
          path: /gone
          authorizer: j
"""
    d = write_app(tmp_path / "gone", gone)
    p = deploy(server, d)
    assert p.returncode == 1
    assert "serverless.yml:7: error: authorizer j: cannot find the issuer's keys" in p.stderr, p.stderr
    assert "GET /gone" not in route_keys(server)
    fns = server.session.get(f"{server.api}/_nimbus/functions", timeout=10).json()["functions"]
    assert not [f for f in fns if f["function"]["name"] == "gone-dev-api"]


def sam_template(issuer):
    return f"""AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    CodeUri: .
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration:
        AllowOrigins: [https://sam.example.com]
        AllowMethods: [GET]
        AllowHeaders: [authorization]
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration:
              issuer: {issuer.url}
              audience: [api]
          Gate:
            FunctionArn: !GetAtt Auth.Arn
            AuthorizerPayloadFormatVersion: '2.0'
            EnableSimpleResponses: true
            Identity:
              Headers: [X-Token]
  Handler:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handler.main
      Events:
        Me:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /sam/me
        Open:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /sam/open
            Auth:
              Authorizer: NONE
        Gated:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /sam/gated
            Auth:
              Authorizer: Gate
  Auth:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handler.auth
"""


def test_sam_http_api_auth_and_cors(server, issuer, tmp_path):
    d = write_app(tmp_path / "samgw", sam_template(issuer), name="template.yaml")
    p = deploy(server, d)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    routes = route_keys(server)
    assert routes["GET /sam/me"]["authorizer"] == "samgw.Jwt"
    assert "authorizer" not in routes["GET /sam/open"]
    assert routes["GET /sam/gated"]["authorizer"] == "samgw.Gate"

    gw = server.gateway
    assert requests.get(gw + "/sam/me", timeout=30).status_code == 401
    r = requests.get(gw + "/sam/me", headers={"authorization": f"Bearer {issuer.token()}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "user-7"
    assert requests.get(gw + "/sam/open", timeout=30).status_code == 200
    assert requests.get(gw + "/sam/gated", headers={"x-token": "no"}, timeout=30).status_code == 403
    assert requests.get(gw + "/sam/gated", headers={"x-token": "letmein"}, timeout=30).status_code == 200
    pre = requests.options(gw + "/sam/me", headers={
        "origin": "https://sam.example.com", "access-control-request-method": "GET"}, timeout=30)
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://sam.example.com"

    p = server.cli("app", "rm", "samgw")
    assert p.returncode == 0, p.stdout + p.stderr
    assert not [n for n in authorizers(server) if n.startswith("samgw.")]
    assert cors(server) is None


REST = """service: restgw
provider:
  name: aws
  runtime: python3.12
functions:
  api:
    handler: handler.main
    events:
      - http:
          method: get
          path: rest/items
          cors: true
          authorizer: gate
      - http:
          method: post
          path: rest/items
          cors: true
          authorizer:
            name: gate
            resultTtlInSeconds: 300
      - http:
          method: get
          path: rest/public
  gate:
    handler: handler.token
"""


def test_http_event_token_authorizer_and_cors(server, tmp_path):
    d = write_app(tmp_path / "restgw", REST)
    p = deploy(server, d)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    a = authorizers(server)["restgw-dev.gate"]
    assert a["lambda"]["type"] == "TOKEN" and a["lambda"]["function"] == "restgw-dev-gate"
    gw = server.gateway
    assert requests.get(gw + "/rest/items", timeout=30).status_code == 401
    assert requests.get(gw + "/rest/items", headers={"authorization": "nope"}, timeout=30).status_code == 401
    assert requests.get(gw + "/rest/items", headers={"authorization": "deny"}, timeout=30).status_code == 403
    r = requests.get(gw + "/rest/items", headers={"authorization": "allow"}, timeout=30)
    assert r.status_code == 200, r.text
    ctx = r.json()["requestContext"]["authorizer"]
    assert ctx["principalId"] == "u1" and ctx["via"] == "token"
    assert requests.get(gw + "/rest/public", timeout=30).status_code == 200
    c = cors(server)
    assert c["allow_origins"] == ["*"] and set(c["allow_methods"]) == {"OPTIONS", "GET", "POST"}
    pre = requests.options(gw + "/rest/items", headers={
        "origin": "https://x.example.com", "access-control-request-method": "POST"}, timeout=30)
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"
    p = server.cli("app", "rm", "restgw-dev")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "restgw-dev.gate" not in authorizers(server)
    assert cors(server) is None
