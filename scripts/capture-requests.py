#!/usr/bin/env python3
"""Capture real AWS SDK requests, byte for byte, as the edge's routing fixtures.

Starts a recording HTTP server on loopback and sends one real request per AWS API
Nimbus serves with botocore (boto3) and with the AWS SDK for JavaScript v3
(scripts/capture/send.js), plus the special shapes the edge must route: a presigned
S3 GET URL, an S3 PutObject sent aws-chunked with a trailing CRC32, SQS over the
legacy awsQuery protocol (a form POST signed with botocore's SigV4Auth) and
virtual-host-style S3. Each raw request (request line, headers, body exactly as
sent, chunk framing included) is saved as

    crates/edge/tests/fixtures/<client>-<service>-<Operation>.http

with <client> `botocore` or `jssdk` and <service> Nimbus's name for the API. The
recorder answers every request `400` with a small error in the request's protocol,
and the clients make one attempt only, so nothing retries.

Usage: .venv/bin/python scripts/capture-requests.py [--only SUBSTRING]
(needs `npm ci` in scripts/capture for the JS SDK cases). Fixtures carry signatures
and dates of the moment they were captured: they are test data, re-captured only
when a client changes what it sends.
"""

import argparse
import json
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import botocore.session
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates" / "edge" / "tests" / "fixtures"
NODE_DIR = ROOT / "scripts" / "capture"
ACCESS_KEY, SECRET_KEY = "AKIDNIMBUSCAPTURE", "nimbus-capture-secret"
BUCKET = "nimbus-capture"


# --- the recorder ---------------------------------------------------------------------
def read_request(sock):
    """One HTTP/1.1 request, raw: head, then the body by Content-Length or chunked
    transfer encoding (framing and trailers kept). Answers `Expect: 100-continue`."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("expect", "").lower() == "100-continue":
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = rest

    def more():
        nonlocal body
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("client closed mid-body")
        body += chunk

    if "chunked" in headers.get("transfer-encoding", "").lower():
        pos = 0
        while True:
            while b"\r\n" not in body[pos:]:
                more()
            line_end = body.index(b"\r\n", pos)
            size = int(body[pos:line_end].split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                # Trailer fields, then an empty line.
                while True:
                    while b"\r\n" not in body[pos:]:
                        more()
                    end = body.index(b"\r\n", pos)
                    if end == pos:
                        pos += 2
                        break
                    pos = end + 2
                break
            while len(body) < pos + size + 2:
                more()
            pos += size + 2
        body = body[:pos]
    else:
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            more()
        body = body[:length]
    return head + b"\r\n\r\n" + body, lines[0], headers


def error_answer(request_line, headers):
    """A small 400 in the request's protocol, so the SDK raises and does not retry."""
    msg = "captured by scripts/capture-requests.py"
    ctype = headers.get("content-type", "")
    target = "x-amz-target" in headers
    path = request_line.split(" ")[1] if " " in request_line else "/"
    if target:
        body = json.dumps({"__type": "CapturedOnly", "message": msg})
        extra, ct = "", "application/x-amz-json-1.1"
    elif "x-www-form-urlencoded" in ctype or "Action=" in path:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>CapturedOnly</Code>"
            f"<Message>{msg}</Message></Error><RequestId>captured</RequestId></ErrorResponse>"
        )
        extra, ct = "", "text/xml"
    elif path.startswith(("/v2/email", "/20")):  # SES v2, Lambda (restJson1)
        body = json.dumps({"message": msg})
        extra, ct = "x-amzn-ErrorType: CapturedOnly\r\n", "application/json"
    else:  # S3
        body = f"<Error><Code>CapturedOnly</Code><Message>{msg}</Message></Error>"
        extra, ct = "", "application/xml"
    data = body.encode()
    return (
        f"HTTP/1.1 400 Bad Request\r\nContent-Type: {ct}\r\n{extra}"
        f"x-amzn-RequestId: captured\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode() + data


class Recorder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RecorderHandler)
        self.lock = threading.Lock()
        self.captured = []

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self):
        with self.lock:
            out, self.captured = self.captured, []
        return out


class RecorderHandler(socketserver.BaseRequestHandler):
    def handle(self):
        got = read_request(self.request)
        if got is None:
            return
        raw, request_line, headers = got
        with self.server.lock:
            self.server.captured.append(raw)
        self.request.sendall(error_answer(request_line, headers))
        self.request.shutdown(socket.SHUT_WR)


# --- botocore ---------------------------------------------------------------------------
def localhost_resolves_to_loopback():
    """`bucket.localhost` needs a resolver that knows `*.localhost` (systemd-resolved);
    make every `*.localhost` loopback in this process."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def boto(service, endpoint, **config):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def force_trailing_checksum(params, **_):
    """botocore 1.35 sends a streaming checksum as a trailer only over https (newer
    releases and the JS SDK do it over http too); ask for the trailer here so the
    fixture is the aws-chunked STREAMING-UNSIGNED-PAYLOAD-TRAILER shape."""
    algorithm = params["context"].get("checksum", {}).get("request_algorithm")
    if isinstance(algorithm, dict):
        algorithm["in"] = "trailer"


def s3_put_chunked(endpoint):
    s3 = boto("s3", endpoint, s3={"addressing_style": "path"})
    s3.meta.events.register("before-call.s3.PutObject", force_trailing_checksum)
    s3.put_object(Bucket=BUCKET, Key="dir/hello.txt", Body=b"hello world", ChecksumAlgorithm="CRC32")


def s3_presigned_get(endpoint):
    s3 = boto("s3", endpoint, s3={"addressing_style": "path"}, signature_version="s3v4")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "dir/hello.txt"}, ExpiresIn=3600
    )
    requests.get(url, timeout=30)


def s3_virtual_host(endpoint):
    # endpoint http://s3.localhost:<port> + virtual addressing: Host nimbus-capture.s3.localhost
    port = endpoint.rsplit(":", 1)[1]
    s3 = boto("s3", f"http://s3.localhost:{port}", s3={"addressing_style": "virtual"})
    s3.list_objects_v2(Bucket=BUCKET)


def sqs_query(endpoint):
    """SQS over the legacy awsQuery protocol: a form POST signed with SigV4Auth."""
    body = "Action=ListQueues&Version=2012-11-05"
    req = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "sqs", "us-east-1").add_auth(req)
    requests.post(endpoint + "/", data=body, headers=dict(req.headers), timeout=30)


BOTOCORE = {
    "lambda-ListFunctions": lambda e: boto("lambda", e).list_functions(),
    "sts-GetCallerIdentity": lambda e: boto("sts", e).get_caller_identity(),
    "sqs-GetQueueUrl": lambda e: boto("sqs", e).get_queue_url(QueueName="orders"),
    "sqs-ListQueues": sqs_query,
    "sns-ListTopics": lambda e: boto("sns", e).list_topics(),
    "s3-ListBuckets": lambda e: boto("s3", e, s3={"addressing_style": "path"}).list_buckets(),
    "s3-PutObject": s3_put_chunked,
    "s3-GetObject": s3_presigned_get,
    "s3-ListObjectsV2": s3_virtual_host,
    "dynamodb-ListTables": lambda e: boto("dynamodb", e).list_tables(),
    "dynamodbstreams-ListStreams": lambda e: boto("dynamodbstreams", e).list_streams(),
    "kinesis-ListStreams": lambda e: boto("kinesis", e).list_streams(),
    "events-ListEventBuses": lambda e: boto("events", e).list_event_buses(),
    "secretsmanager-ListSecrets": lambda e: boto("secretsmanager", e).list_secrets(),
    "ssm-DescribeParameters": lambda e: boto("ssm", e).describe_parameters(),
    "ses-ListIdentities": lambda e: boto("ses", e).list_identities(),
    "sesv2-ListEmailIdentities": lambda e: boto("sesv2", e).list_email_identities(),
    "iam-ListUsers": lambda e: boto("iam", e).list_users(),
}

JSSDK = [
    "lambda-ListFunctions",
    "sts-GetCallerIdentity",
    "sqs-ListQueues",
    "sns-ListTopics",
    "s3-ListBuckets",
    "s3-PutObject",
    "s3-GetObject",
    "s3-ListObjectsV2",
    "dynamodb-ListTables",
    "dynamodbstreams-ListStreams",
    "kinesis-ListStreams",
    "events-ListEventBuses",
    "secretsmanager-ListSecrets",
    "ssm-DescribeParameters",
    "ses-ListIdentities",
    "sesv2-ListEmailIdentities",
    "sesv2-GetAccount",
    "iam-ListUsers",
]


def save(recorder, name):
    got = recorder.take()
    if len(got) != 1:
        raise SystemExit(f"{name}: expected exactly one request, recorded {len(got)}")
    path = FIXTURES / f"{name}.http"
    path.write_bytes(got[0])
    print(f"wrote {path.relative_to(ROOT)} ({len(got[0])} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="capture only fixtures whose name contains this")
    args = ap.parse_args()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    localhost_resolves_to_loopback()
    recorder = Recorder()
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    print(f"recording on {recorder.endpoint} (botocore {botocore.__version__})")

    for case, send in BOTOCORE.items():
        name = f"botocore-{case}"
        if args.only not in name:
            continue
        try:
            send(recorder.endpoint)
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "CapturedOnly", (name, e.response)
        save(recorder, name)

    if not (NODE_DIR / "node_modules").is_dir():
        raise SystemExit(f"run `npm ci` in {NODE_DIR.relative_to(ROOT)} first")
    for case in JSSDK:
        name = f"jssdk-{case}"
        if args.only not in name:
            continue
        out = subprocess.run(
            ["node", str(NODE_DIR / "send.js"), recorder.endpoint, case],
            capture_output=True, text=True, timeout=120, check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if result.get("status") != 400:
            raise SystemExit(f"{name}: the JS SDK did not get the recorder's answer: {out.stdout}{out.stderr}")
        save(recorder, name)
    recorder.shutdown()


if __name__ == "__main__":
    sys.exit(main())
