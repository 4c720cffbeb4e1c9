"""Subscribed to the orders topic with a filter policy: only messages whose
`size` attribute is `big` arrive. Logs one JSON line per order."""

import json


def handler(event, context):
    for record in event["Records"]:
        sns = record["Sns"]
        order = json.loads(sns["Message"])
        print(json.dumps({
            "big_order": order["id"],
            "size": sns["MessageAttributes"]["size"]["Value"],
            "topic": sns["TopicArn"].rsplit(":", 1)[-1],
        }))
    return {"handled": len(event["Records"])}
