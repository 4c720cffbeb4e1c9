"""PUT /images/{name}: store the body under incoming/ and queue a processing job."""

import base64
import json
import os
import re

import boto3

s3 = boto3.client("s3")
sqs = boto3.client("sqs")
NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def handler(event, context):
    name = event["pathParameters"]["name"]
    if not NAME.match(name):
        return {"statusCode": 400, "body": json.dumps({"message": "bad image name"})}
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    if not data:
        return {"statusCode": 400, "body": json.dumps({"message": "empty image"})}
    key = f"incoming/{name}"
    s3.put_object(Bucket=os.environ["BUCKET"], Key=key, Body=data)
    sqs.send_message(QueueUrl=os.environ["JOBS_QUEUE_URL"], MessageBody=json.dumps({"key": key}))
    return {"statusCode": 202, "headers": {"content-type": "application/json"},
            "body": json.dumps({"key": key, "bytes": len(data)})}
