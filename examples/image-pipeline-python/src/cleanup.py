"""Daily: delete the uploads that have been processed (incoming/X once
processed/X.json exists). Unprocessed ones (failed jobs) are kept for a look."""

import os

import boto3

s3 = boto3.client("s3")


def keys(bucket, prefix):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield o["Key"]


def handler(event, context):
    bucket = os.environ["BUCKET"]
    done = {k[len("processed/"):-len(".json")] for k in keys(bucket, "processed/")}
    removed = []
    for key in keys(bucket, "incoming/"):
        if key[len("incoming/"):] in done:
            s3.delete_object(Bucket=bucket, Key=key)
            removed.append(key)
    return {"removed": sorted(removed)}
