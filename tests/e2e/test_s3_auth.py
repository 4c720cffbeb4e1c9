"""S3 with credentials configured (every request must be signed): browser POST
uploads with a SigV4-signed policy (boto3's `generate_presigned_post` and
`requests`, as an HTML form posts), and large PUTs whose signature covers a
declared `x-amz-content-sha256`, checked while the body streams to disk."""

import base64
import datetime
import hashlib
import hmac
import json
import re
import shutil
import tempfile

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import Server, wait_for

KEY, SECRET = "AKIDPOST", "post-secret"


@pytest.fixture(scope="module")
def server():
    d = tempfile.mkdtemp(prefix="nimbus-test-")
    s = Server(d, ["--credentials", f"{KEY}:{SECRET}"]).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def client(server, service="s3"):
    return boto3.client(
        service,
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3v4", retries={"total_max_attempts": 1},
                      s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def s3(server):
    c = client(server)
    c.create_bucket(Bucket="forms")
    return c


def post(presigned, data, filename="photo.jpg", extra=None, content_type="image/jpeg"):
    fields = dict(presigned["fields"])
    fields.update(extra or {})
    return requests.post(presigned["url"], data=fields,
                         files={"file": (filename, data, content_type)}, timeout=60,
                         allow_redirects=False)


def error(r):
    code = re.search(r"<Code>(.*?)</Code>", r.text)
    msg = re.search(r"<Message>(.*?)</Message>", r.text)
    return r.status_code, code and code.group(1), msg and msg.group(1)


def test_generate_presigned_post_uploads_with_filename_and_headers(s3):
    p = s3.generate_presigned_post(
        "forms", "uploads/${filename}",
        Fields={"Content-Type": "image/jpeg", "x-amz-meta-owner": "alice"},
        Conditions=[["starts-with", "$Content-Type", "image/"], {"x-amz-meta-owner": "alice"},
                    ["content-length-range", 1, 10 * 1024 * 1024]],
        ExpiresIn=600)
    assert "x-amz-signature" in p["fields"], p["fields"]
    body = bytes(range(256)) * 4096  # 1 MiB
    r = post(p, body, filename="cat.jpg")
    assert r.status_code == 204, r.text
    assert r.headers["etag"] == '"%s"' % hashlib.md5(body).hexdigest()
    assert r.headers["location"].endswith("/forms/uploads/cat.jpg")
    got = s3.get_object(Bucket="forms", Key="uploads/cat.jpg")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/jpeg"
    assert got["Metadata"] == {"owner": "alice"}


def test_success_action_status_201_and_redirect(s3):
    p = s3.generate_presigned_post("forms", "k201", Fields={"success_action_status": "201"},
                                   Conditions=[{"success_action_status": "201"}])
    r = post(p, b"hello")
    assert r.status_code == 201, r.text
    assert "<Bucket>forms</Bucket>" in r.text and "<Key>k201</Key>" in r.text
    assert '<ETag>"%s"</ETag>' % hashlib.md5(b"hello").hexdigest() in r.text.replace("&quot;", '"')
    p = s3.generate_presigned_post(
        "forms", "kredir", Fields={"success_action_redirect": "http://example.com/done?x=1"},
        Conditions=[{"success_action_redirect": "http://example.com/done?x=1"}])
    r = post(p, b"redirected")
    assert r.status_code == 303, r.text
    loc = r.headers["location"]
    assert loc.startswith("http://example.com/done?x=1&bucket=forms&key=kredir&etag="), loc
    assert s3.get_object(Bucket="forms", Key="kredir")["Body"].read() == b"redirected"


def test_policy_conditions_are_enforced(s3):
    # content-length-range
    p = s3.generate_presigned_post("forms", "small", Conditions=[["content-length-range", 0, 10]])
    r = post(p, b"x" * 11)
    assert error(r)[:2] == (400, "EntityTooLarge"), r.text
    p = s3.generate_presigned_post("forms", "small", Conditions=[["content-length-range", 5, 10]])
    assert error(post(p, b"abc"))[:2] == (400, "EntityTooSmall")
    # an eq condition the form breaks
    p = s3.generate_presigned_post("forms", "meta", Fields={"x-amz-meta-a": "1"},
                                   Conditions=[{"x-amz-meta-a": "1"}])
    status, code, msg = error(post(p, b"data", extra={"x-amz-meta-a": "2"}))
    assert (status, code) == (403, "AccessDenied")
    assert msg.startswith("Invalid according to Policy: Policy Condition failed:"), msg
    # starts-with on the key
    p = s3.generate_presigned_post("forms", "uploads/${filename}")
    status, code, msg = error(post(p, b"data", extra={"key": "elsewhere/x"}))
    assert (status, code) == (403, "AccessDenied") and "Policy Condition failed" in msg, msg
    # a field no condition names
    p = s3.generate_presigned_post("forms", "extra")
    status, code, msg = error(post(p, b"data", extra={"x-amz-meta-sneaky": "1"}))
    assert (status, code, msg) == (403, "AccessDenied",
                                   "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky")
    # x-ignore- fields are ignored
    r = post(p, b"data", extra={"x-ignore-me": "1"})
    assert r.status_code == 204, r.text
    for key in ["small", "meta", "elsewhere/x"]:
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket="forms", Key=key)


def signed_post_fields(policy_doc, secret=SECRET, date=None):
    """Fields of a SigV4 POST form signed by hand (to control the policy)."""
    date = date or datetime.datetime.now(datetime.timezone.utc)
    day, stamp = date.strftime("%Y%m%d"), date.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{KEY}/{day}/us-east-1/s3/aws4_request"
    policy_doc = dict(policy_doc)
    policy_doc["conditions"] = policy_doc["conditions"] + [
        {"x-amz-algorithm": "AWS4-HMAC-SHA256"}, {"x-amz-credential": credential},
        {"x-amz-date": stamp}]
    policy = base64.b64encode(json.dumps(policy_doc).encode()).decode()

    def h(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()

    k = h(h(h(h(("AWS4" + secret).encode(), day), "us-east-1"), "s3"), "aws4_request")
    sig = hmac.new(k, policy.encode(), hashlib.sha256).hexdigest()
    return {"policy": policy, "x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": credential,
            "x-amz-date": stamp, "x-amz-signature": sig}


def test_expired_policy_bad_signature_and_missing_fields(server, s3):
    url = f"{server.api}/forms"
    past = {"expiration": "2020-01-01T00:00:00Z",
            "conditions": [{"bucket": "forms"}, {"key": "old"}]}
    r = requests.post(url, data={"key": "old", **signed_post_fields(past)},
                      files={"file": ("f", b"x")})
    assert error(r) == (403, "AccessDenied", "Invalid according to Policy: Policy expired."), r.text
    future = {"expiration": "2099-01-01T00:00:00Z",
              "conditions": [{"bucket": "forms"}, {"key": "forged"}]}
    r = requests.post(url, data={"key": "forged", **signed_post_fields(future, secret="wrong")},
                      files={"file": ("f", b"x")})
    assert error(r)[:2] == (403, "SignatureDoesNotMatch"), r.text
    # The right secret with the same policy works (the form is otherwise fine).
    r = requests.post(url, data={"key": "forged", **signed_post_fields(future)},
                      files={"file": ("f", b"x")})
    assert r.status_code == 204, r.text
    # Another bucket than the policy's.
    s3.create_bucket(Bucket="other-forms")
    r = requests.post(f"{server.api}/other-forms", data={"key": "forged", **signed_post_fields(future)},
                      files={"file": ("f", b"x")})
    assert error(r)[:2] == (403, "AccessDenied") and '"bucket"' in r.text.replace("&quot;", '"'), r.text
    # No policy at all while credentials are on: anonymous, refused.
    r = requests.post(url, data={"key": "anon"}, files={"file": ("f", b"x")})
    assert error(r)[:2] == (403, "AccessDenied"), r.text
    # No key / no file.
    r = requests.post(url, data=signed_post_fields(future), files={"file": ("f", b"x")})
    assert error(r)[:2] == (400, "InvalidArgument"), r.text
    r = requests.post(url, data={"key": "forged", **signed_post_fields(future)},
                      files={"notfile": ("f", b"x")})
    assert error(r)[:2] == (400, "InvalidArgument"), r.text
    # A policy that is not base64 JSON.
    fields = signed_post_fields(future)
    fields["policy"] = "not base64!"
    r = requests.post(url, data={"key": "forged", **fields}, files={"file": ("f", b"x")})
    assert error(r)[:2] == (400, "InvalidPolicyDocument"), r.text
    # No such bucket.
    r = requests.post(f"{server.api}/no-such-forms", data={"key": "x", **signed_post_fields(future)},
                      files={"file": ("f", b"x")})
    assert error(r)[:2] == (404, "NoSuchBucket"), r.text


def test_post_upload_notifies_object_created_post(server, s3):
    sqs = client(server, "sqs")
    q = sqs.create_queue(QueueName="post-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket="posted")
    s3.put_bucket_notification_configuration(Bucket="posted", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    p = s3.generate_presigned_post("posted", "a/${filename}")
    assert post(p, b"notify me", filename="n.txt").status_code == 204
    records = []

    def got():
        for m in sqs.receive_message(QueueUrl=q, WaitTimeSeconds=1).get("Messages", []):
            body = json.loads(m["Body"])
            records.extend(r for r in body.get("Records", []))
        return records

    wait_for(got, timeout=20, what="the POST upload's notification")
    assert records[0]["eventName"] == "ObjectCreated:Post"
    assert records[0]["s3"]["object"]["key"] == "a/n.txt"
    assert records[0]["s3"]["object"]["size"] == len(b"notify me")


def test_post_upload_with_authentication_off(server_factory):
    s = server_factory()
    c = boto3.client("s3", endpoint_url=s.api, region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="y",
                     config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    c.create_bucket(Bucket="open")
    # No policy: every request is allowed when authentication is off.
    r = requests.post(f"{s.api}/open", data={"key": "plain"}, files={"file": ("f", b"open")})
    assert r.status_code == 204, r.text
    assert c.get_object(Bucket="open", Key="plain")["Body"].read() == b"open"
    # A policy, when given, is still checked.
    p = c.generate_presigned_post("open", "limited", Conditions=[["content-length-range", 0, 2]])
    assert error(post(p, b"too long"))[:2] == (400, "EntityTooLarge")


# -- large PUTs with a signed payload hash -------------------------------------

def peak_rss_kib(server):
    with open(f"/proc/{server.proc.pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


def signed_put(server, path, body, declared):
    url = server.api + path
    headers = {"X-Amz-Content-SHA256": declared, "Content-Length": str(len(body))}
    req = AWSRequest(method="PUT", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(req)
    return requests.put(url, data=body, headers=dict(req.headers), timeout=300)


def test_large_put_with_signed_sha256_streams_and_checks_the_hash(server, s3):
    s3.create_bucket(Bucket="big")
    body = bytes(range(256)) * (256 * 1024)  # 64 MiB
    digest = hashlib.sha256(body).hexdigest()
    before = peak_rss_kib(server)
    r = signed_put(server, "/big/good", body, digest)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"%s"' % hashlib.md5(body).hexdigest()
    grown_mib = (peak_rss_kib(server) - before) / 1024
    # Buffered, the body alone would have added 64 MiB to the peak.
    assert grown_mib < 40, f"peak RSS grew {grown_mib:.0f} MiB during a 64 MiB PUT"
    head = s3.head_object(Bucket="big", Key="good")
    assert head["ContentLength"] == len(body)
    # A wrong declared hash (the signature covers it, so only the body betrays it).
    wrong = hashlib.sha256(b"something else").hexdigest()
    r = signed_put(server, "/big/bad", body, wrong)
    status, code, _ = error(r)
    assert (status, code) == (400, "XAmzContentSHA256Mismatch"), r.text
    assert f"<ClientComputedContentSHA256>{wrong}</ClientComputedContentSHA256>" in r.text
    assert f"<S3ComputedContentSHA256>{digest}</S3ComputedContentSHA256>" in r.text
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket="big", Key="bad")
    # Overwriting with a wrong hash leaves the old object.
    r = signed_put(server, "/big/good", b"tiny", wrong)
    assert error(r)[:2] == (400, "XAmzContentSHA256Mismatch")
    assert s3.head_object(Bucket="big", Key="good")["ContentLength"] == len(body)
