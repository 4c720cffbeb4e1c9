"""The jobs queue's consumer. Each job reads its image and writes a small JSON
analysis next to it under processed/. A job that fails (here: an image whose
bytes do not start with the `IMG` magic) is reported in `batchItemFailures`, so
only it is retried — and, after the queue's maxReceiveCount, moved to the DLQ —
while the rest of the batch is deleted."""

import hashlib
import json
import os

import boto3

s3 = boto3.client("s3")


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            key = json.loads(record["body"])["key"]
            data = s3.get_object(Bucket=os.environ["BUCKET"], Key=key)["Body"].read()
            if not data.startswith(b"IMG"):
                raise ValueError(f"{key} is not an image")
            name = key.split("/", 1)[1]
            s3.put_object(
                Bucket=os.environ["BUCKET"],
                Key=f"processed/{name}.json",
                Body=json.dumps({"key": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}),
            )
        except Exception as e:  # noqa: BLE001 — one bad job must not fail the batch
            print(json.dumps({"failed": record["messageId"], "error": str(e)}))
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
