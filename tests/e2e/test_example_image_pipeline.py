"""examples/image-pipeline-python (issue 18, seed pattern 2): HTTP upload → bucket
+ queue → processor with partial batch failures and a DLQ; bucket event →
thumbnailer; daily cleanup. The serverless.yml deployed unchanged with the real
CLI, driven over HTTP and checked with boto3."""

import json
import shutil
import subprocess

import boto3
import requests

from conftest import NIMBUS_BIN, ROOT, wait_for

BUCKET = "images-dev-uploads"


def deploy(server, app):
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy"], cwd=app,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    return p


def client(server, service):
    return boto3.client(service, endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


def test_image_pipeline(server, tmp_path):
    app = tmp_path / "image-pipeline-python"
    shutil.copytree(ROOT / "examples" / "image-pipeline-python", app)
    deploy(server, app)
    drive(server)


def drive(server):
    s3, sqs = client(server, "s3"), client(server, "sqs")

    def keys(prefix):
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))

    images = {"a.img": b"IMG" + bytes(range(256)) * 4, "b.img": b"IMG" + b"\x01\x02\x03\x04" * 100,
              "corrupt.img": b"not an image at all"}
    for name, data in images.items():
        r = requests.put(f"{server.gateway}/images/{name}", data=data,
                         headers={"content-type": "application/octet-stream"}, timeout=30)
        assert r.status_code == 202, r.text
        assert r.json() == {"key": f"incoming/{name}", "bytes": len(data)}
    assert requests.put(f"{server.gateway}/images/..bad..%2F", data=b"IMG", timeout=30).status_code in (400, 404)

    # The bucket event ran the thumbnailer for every upload.
    want = [f"thumbnails/{n}" for n in sorted(images)]
    wait_for(lambda: keys("thumbnails/") == want, timeout=60, what="three thumbnails")
    thumb = s3.get_object(Bucket=BUCKET, Key="thumbnails/a.img")["Body"].read()
    assert thumb == images["a.img"][:3] + images["a.img"][3::4]

    # The processor handled the good jobs; the bad one failed alone, was retried
    # and moved to the dead-letter queue.
    wait_for(lambda: keys("processed/") == ["processed/a.img.json", "processed/b.img.json"],
             timeout=60, what="two processed images")
    analysis = json.loads(s3.get_object(Bucket=BUCKET, Key="processed/b.img.json")["Body"].read())
    assert analysis["bytes"] == len(images["b.img"])
    dlq = sqs.get_queue_url(QueueName="images-dev-jobs-dlq")["QueueUrl"]
    dead = []

    def in_dlq():
        for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            dead.append(json.loads(m["Body"]))
        return dead

    wait_for(in_dlq, timeout=90, what="the corrupt job in the DLQ")
    assert dead == [{"key": "incoming/corrupt.img"}]
    failed = [json.loads(l["line"]) for l in server.logs("images-dev-process") if l["line"].startswith("{")]
    assert len(failed) == 2 and all("is not an image" in f["error"] for f in failed), failed

    # The daily cleanup is scheduled; run it now: processed uploads go, the failed one stays.
    sched = server.session.get(server.api + "/_nimbus/schedules", timeout=10).json()["schedules"]
    assert [s["expression"] for s in sched if s["name"] == "images-dev-cleanup-schedule-1"] == ["rate(1 day)"]
    out, _ = server.invoke_ok("images-dev-cleanup", {})
    assert out == {"removed": ["incoming/a.img", "incoming/b.img"]}
    assert keys("incoming/") == ["incoming/corrupt.img"]


def test_app_rm_refuses_to_lose_the_uploads(server, tmp_path):
    """The bucket still holds objects: removing the app fails on it, as
    CloudFormation's delete of a non-empty bucket does; the rest is removed."""
    app = tmp_path / "image-pipeline-python"
    shutil.copytree(ROOT / "examples" / "image-pipeline-python", app)
    deploy(server, app)
    s3, sqs = client(server, "s3"), client(server, "sqs")
    s3.put_object(Bucket=BUCKET, Key="keep/me.txt", Body=b"precious")
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "app", "rm", "images-dev"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0, p.stdout + p.stderr
    assert "BucketNotEmpty" in p.stderr, p.stderr
    assert s3.get_object(Bucket=BUCKET, Key="keep/me.txt")["Body"].read() == b"precious"
    queues = [u.rsplit("/", 1)[1] for u in sqs.list_queues().get("QueueUrls", [])]
    assert "images-dev-jobs" not in queues and "images-dev-jobs-dlq" not in queues
