"""The payments table's stream (inserts only, by the mapping's filter criteria):
each new payment becomes a `PaymentRecorded` event on the ledger's bus."""

import json
import os

import boto3

events = boto3.client("events")


def handler(event, context):
    entries = []
    for record in event["Records"]:
        image = record["dynamodb"]["NewImage"]
        payment = {"id": image["id"]["S"], "amount": int(image["amount"]["N"]), "email": image["email"]["S"]}
        print(json.dumps({"projected": payment["id"], "eventName": record["eventName"]}))
        entries.append({
            "EventBusName": os.environ["BUS_NAME"],
            "Source": "ledger.payments",
            "DetailType": "PaymentRecorded",
            "Detail": json.dumps(payment),
        })
    for i in range(0, len(entries), 10):
        r = events.put_events(Entries=entries[i:i + 10])
        if r["FailedEntryCount"]:
            raise RuntimeError(f"PutEvents failed: {r['Entries']}")
