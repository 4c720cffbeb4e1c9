"""The bucket's ObjectCreated event under incoming/: write a "thumbnail" under
thumbnails/. No imaging library is needed for the example: the thumbnail is a
byte-level stand-in for a resize — the magic header, then every 4th byte."""

import os
import urllib.parse

import boto3

s3 = boto3.client("s3")


def shrink(data: bytes) -> bytes:
    return data[:3] + data[3::4]


def handler(event, context):
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        name = key.split("/", 1)[1]
        s3.put_object(Bucket=bucket, Key=f"thumbnails/{name}", Body=shrink(data))
