"""examples/pipes-filters-sam (issue 18, seed pattern 5): pipes and filters
through S3 prefixes, from an AWS SAM template deployed unchanged with the real
CLI, driven with boto3."""

import json
import shutil
import subprocess

import boto3

from conftest import NIMBUS_BIN, ROOT, wait_for

STACK = "pipes-filters-sam"
BUCKET = f"{STACK}-pipeline"


def deploy(server, app):
    p = subprocess.run([NIMBUS_BIN, "--endpoint", server.api, "deploy"], cwd=app,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not supported yet" not in p.stderr, p.stderr
    return p


def client(server, service):
    return boto3.client(service, endpoint_url=server.api, region_name="us-east-1",
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


def test_pipes_and_filters_through_prefixes(server, tmp_path):
    app = tmp_path / STACK
    shutil.copytree(ROOT / "examples" / STACK, app)
    deploy(server, app)
    drive(server)


def drive(server):
    s3 = client(server, "s3")

    def keys(prefix=""):
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))

    s3.put_object(Bucket=BUCKET, Key="raw/a.txt", Body=b"  The quick FOX\n and  the   dog ")
    s3.put_object(Bucket=BUCKET, Key="raw/b.txt", Body=b"one two two")
    s3.put_object(Bucket=BUCKET, Key="notes/c.txt", Body=b"under no pipe's prefix")

    wait_for(lambda: keys("published/") == ["published/a.txt", "published/b.txt"], timeout=60,
             what="both documents through the three filters")
    a = s3.get_object(Bucket=BUCKET, Key="published/a.txt")["Body"].read().decode()
    assert a == "the quick fox and the dog\n--\n6 words; most frequent: the (2)\n"
    enriched = json.loads(s3.get_object(Bucket=BUCKET, Key="enriched/b.txt.json")["Body"].read())
    assert enriched == {"text": "one two two", "words": 3, "counts": {"one": 1, "two": 2}}
    # Every stage wrote once per document; the object outside the pipes was left alone.
    assert keys() == ["enriched/a.txt.json", "enriched/b.txt.json", "normalized/a.txt", "normalized/b.txt",
                      "notes/c.txt", "published/a.txt", "published/b.txt", "raw/a.txt", "raw/b.txt"]
    for fn, n in (("NormalizeFunction", 2), ("EnrichFunction", 2), ("PublishFunction", 2)):
        assert len(server.records(f"{STACK}-{fn}")) == n, fn
