"""Runs for `PaymentRecorded` events of 100 or more (the rule's numeric
pattern): reads the sender from a Secrets Manager secret and mails a receipt."""

import json
import os

import boto3

secrets = boto3.client("secretsmanager")
ses = boto3.client("ses")
_settings = None


def settings():
    global _settings
    if _settings is None:
        _settings = json.loads(secrets.get_secret_value(SecretId=os.environ["SECRET_ID"])["SecretString"])
    return _settings


def handler(event, context):
    payment = event["detail"]
    s = settings()
    ses.send_email(
        Source=s["from"],
        ReplyToAddresses=[s["replyTo"]],
        Destination={"ToAddresses": [payment["email"]]},
        Message={
            "Subject": {"Data": f"Payment {payment['id']} received"},
            "Body": {"Text": {"Data": f"We received your payment of {payment['amount']}. Thank you."}},
        },
    )
    return {"mailed": payment["id"]}
