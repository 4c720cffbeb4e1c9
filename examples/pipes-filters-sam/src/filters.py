"""Three filters; each reads the object that triggered it and writes its result
under the next prefix of the same bucket (the bucket name comes from the event)."""

import json
import urllib.parse

import boto3

s3 = boto3.client("s3")


def _each(event):
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        yield bucket, key.split("/", 1)[1], body


def normalize(event, context):
    """raw/X → normalized/X: lower case, one space between words."""
    for bucket, name, body in _each(event):
        s3.put_object(Bucket=bucket, Key=f"normalized/{name}", Body=" ".join(body.lower().split()))


def enrich(event, context):
    """normalized/X → enriched/X.json: the text with its word counts."""
    for bucket, name, body in _each(event):
        words = body.split()
        counts = {w: words.count(w) for w in sorted(set(words))}
        s3.put_object(Bucket=bucket, Key=f"enriched/{name}.json",
                      Body=json.dumps({"text": body, "words": len(words), "counts": counts}))


def publish(event, context):
    """enriched/X.json → published/X: a small report."""
    for bucket, name, body in _each(event):
        doc = json.loads(body)
        top = sorted(doc["counts"].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        report = f"{doc['text']}\n--\n{doc['words']} words; most frequent: {top[0]} ({top[1]})\n"
        s3.put_object(Bucket=bucket, Key=f"published/{name[:-len('.json')]}", Body=report)
