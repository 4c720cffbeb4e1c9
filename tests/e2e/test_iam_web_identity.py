"""STS AssumeRoleWithWebIdentity against a local OIDC issuer (issue 19): the
test serves an issuer's discovery document and JWKS, starts `nimbus up
--oidc-issuer <it> --iam enforce`, and signs ID tokens with PyJWT. An unsigned
request (as boto3 sends it) with a valid RS256 or ES256 token buys a session of
a role whose trust policy names the issuer as a `Federated` principal with
`<issuer-host>:aud`/`:sub` conditions; the session acts as
`assumed-role/<role>/<session>` under the role's policies. Expired, not yet
valid, badly signed, foreign-issuer tokens and tokens the trust policy does not
admit get AWS's errors; the keys are fetched once and cached; other STS
operations stay signed-only."""

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import jwt
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from test_iam_enforce import KEY, SECRET, client, start

ACCOUNT = "123456789012"


class Issuer:
    """An OIDC issuer: discovery document, JWKS (counted), signing keys."""

    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.jwks_fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/keys"}
                elif self.path == "/keys":
                    issuer.jwks_fetches += 1
                    body = {"keys": [issuer.jwk(RSAAlgorithm, issuer.rsa, "rsa-1", "RS256"),
                                     issuer.jwk(ECAlgorithm, issuer.ec, "ec-1", "ES256")]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.host = self.url.removeprefix("http://")
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def jwk(alg_cls, key, kid, alg):
        d = json.loads(alg_cls.to_jwk(key.public_key()))
        d.update({"kid": kid, "alg": alg, "use": "sig"})
        return d

    def token(self, alg="RS256", key=None, kid=None, **claims):
        now = int(time.time())
        body = {"iss": self.url, "aud": "sts.amazonaws.com", "sub": "repo:octo/app:ref:refs/heads/main",
                "iat": now, "exp": now + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        if key is None:
            key = self.rsa if alg == "RS256" else self.ec
        kid = kid or ("rsa-1" if alg == "RS256" else "ec-1")
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def env():
    issuer = Issuer()
    s, d = start("enforce", ["--oidc-issuer", issuer.url])
    iam = client(s, "iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer.host}"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {f"{issuer.host}:aud": "sts.amazonaws.com"},
                "StringLike": {f"{issuer.host}:sub": "repo:octo/app:*"},
            },
        }],
    }
    iam.create_role(RoleName="ci-deploy", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="ci-deploy", PolicyName="list", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}],
    }))
    yield s, issuer
    s.stop()
    issuer.httpd.shutdown()
    shutil.rmtree(d, ignore_errors=True)


def unsigned_sts(server):
    return boto3.client("sts", endpoint_url=server.api, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 0}))


def assume(server, token, session="gh-run", role="ci-deploy", **kw):
    return unsigned_sts(server).assume_role_with_web_identity(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName=session,
        WebIdentityToken=token, **kw)


def error_of(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"], \
        e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_valid_token_buys_a_session_of_the_role(env):
    server, issuer = env
    r = assume(server, issuer.token())
    assert r["SubjectFromWebIdentityToken"] == "repo:octo/app:ref:refs/heads/main"
    assert r["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-deploy/gh-run"
    assert r["Provider"] == issuer.url
    assert r["Audience"] == "sts.amazonaws.com"
    c = r["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    # The session acts as the role, under its policies.
    as_session = lambda svc: client(server, svc, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    ident = as_session("sts").get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-deploy/gh-run"
    as_session("sqs").list_queues()
    code, msg, _ = error_of(lambda: as_session("sqs").create_queue(QueueName="nope"))
    assert code == "AccessDenied", msg
    assert "assumed-role/ci-deploy/gh-run is not authorized to perform: sqs:CreateQueue" in msg

    # ES256 works as well; the issuer's keys were fetched once.
    r = assume(server, issuer.token("ES256"), session="es-run")
    assert r["AssumedRoleUser"]["Arn"].endswith("/ci-deploy/es-run")
    assert issuer.jwks_fetches == 1


def test_bad_tokens_get_awss_errors(env):
    server, issuer = env
    now = int(time.time())
    code, _, status = error_of(lambda: assume(server, issuer.token(exp=now - 60, iat=now - 700)))
    assert (code, status) == ("ExpiredTokenException", 400)
    code, _, status = error_of(lambda: assume(server, issuer.token(nbf=now + 3600)))
    assert (code, status) == ("IDPRejectedClaim", 403)
    # Signed by a key the issuer does not publish, under a published kid.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    code, _, status = error_of(lambda: assume(server, issuer.token(key=stranger)))
    assert (code, status) == ("InvalidIdentityToken", 400)
    # An issuer the server was not told to trust.
    code, msg, _ = error_of(lambda: assume(server, issuer.token(iss="https://elsewhere.example")))
    assert code == "InvalidIdentityToken"
    assert msg == "No OpenIDConnect provider found in your account for https://elsewhere.example"
    # HS256 (a shared secret) is not an OIDC provider's signature.
    hs = jwt.encode({"iss": issuer.url, "sub": "x", "aud": "a", "exp": now + 600}, "secret", algorithm="HS256")
    assert error_of(lambda: assume(server, hs))[0] == "InvalidIdentityToken"
    assert error_of(lambda: assume(server, "garbage-token"))[0] == "InvalidIdentityToken"
    # Valid tokens the trust policy does not admit: another repository, another audience.
    for token in (issuer.token(sub="repo:evil/app:ref:refs/heads/main"), issuer.token(aud="other")):
        code, msg, status = error_of(lambda: assume(server, token))
        assert (code, msg, status) == ("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403)
    # A role that does not exist.
    assert error_of(lambda: assume(server, issuer.token(), role="missing"))[0] == "AccessDenied"
    # Bad parameters.
    code, _, status = error_of(lambda: assume(server, issuer.token(), session="has space"))
    assert (code, status) == ("ValidationError", 400)
    code, _, _ = error_of(lambda: assume(server, issuer.token(), DurationSeconds=999999))
    assert code == "ValidationError"


def test_only_web_identity_goes_unsigned(env):
    server, issuer = env
    sts = unsigned_sts(server)
    code, _, status = error_of(lambda: sts.get_caller_identity())
    assert (code, status) == ("MissingAuthenticationToken", 403)
    code, _, _ = error_of(lambda: sts.assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/ci-deploy", RoleSessionName="x1"))
    assert code == "MissingAuthenticationToken"
    # Another service unsigned: still refused before it runs.
    sqs = boto3.client("sqs", endpoint_url=server.api, region_name="us-east-1",
                       config=Config(signature_version=UNSIGNED, retries={"max_attempts": 0}))
    assert error_of(lambda: sqs.list_queues())[2] == 403
    # Signed, web identity still works (the signature is not needed, not refused).
    r = client(server, "sts").assume_role_with_web_identity(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/ci-deploy", RoleSessionName="signed",
        WebIdentityToken=issuer.token())
    assert r["AssumedRoleUser"]["Arn"].endswith("/ci-deploy/signed")
