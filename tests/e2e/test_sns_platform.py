"""SNS's mobile push, SMS and data-protection operations end to end against the
real binary with boto3, the aws CLI and the JS SDK v3: platform applications and endpoints
(idempotent creation, AWS's conflict error, disabled endpoints, per-platform
bodies, `application` subscriptions), the SMS account attributes, opt-outs and
the SMS sandbox's one-time-password handshake, data-protection policies, the
errors, and that all of it survives `kill -9`."""

import json
import os
import re
import subprocess
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
REGION = "us-east-1"


def sns(server):
    return boto3.client(
        "sns", endpoint_url=server.api, region_name=REGION,
        aws_access_key_id="AKIDSNSTEST", aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


def error_of(fn):
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def deliveries(server, protocol):
    r = requests.get(f"{server.api}/_nimbus/services/sns/deliveries",
                     params={"protocol": protocol}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["Deliveries"]


def opt_out(server, phone):
    r = requests.post(f"{server.api}/_nimbus/services/sns/sms/opt-out",
                      params={"phoneNumber": phone}, timeout=10)
    assert r.status_code == 200, r.text


def gcm_app(c, name="push-app", **extra):
    return c.create_platform_application(
        Name=name, Platform="GCM",
        Attributes={"PlatformCredential": "server-key-secret", **extra},
    )["PlatformApplicationArn"]


# -- platform applications ---------------------------------------------------------

def test_platform_applications_are_created_listed_updated_and_hide_credentials(server):
    c = sns(server)
    arn = gcm_app(c, "apps-gcm", EventEndpointCreated="arn:aws:sns:us-east-1:123456789012:events")
    assert arn.endswith(":app/GCM/apps-gcm") and arn.startswith("arn:aws:sns:us-east-1:")
    apns = c.create_platform_application(
        Name="apps-apns", Platform="APNS",
        Attributes={"PlatformCredential": "-----BEGIN PRIVATE KEY-----x", "PlatformPrincipal": "cert"},
    )["PlatformApplicationArn"]
    assert apns.endswith(":app/APNS/apps-apns")

    attrs = c.get_platform_application_attributes(PlatformApplicationArn=arn)["Attributes"]
    assert attrs["Enabled"] == "true"
    assert attrs["EventEndpointCreated"] == "arn:aws:sns:us-east-1:123456789012:events"
    assert "PlatformCredential" not in attrs and "PlatformPrincipal" not in attrs

    c.set_platform_application_attributes(
        PlatformApplicationArn=arn,
        Attributes={"PlatformCredential": "rotated", "SuccessFeedbackSampleRate": "50"})
    attrs = c.get_platform_application_attributes(PlatformApplicationArn=arn)["Attributes"]
    assert attrs["SuccessFeedbackSampleRate"] == "50" and "PlatformCredential" not in attrs

    listed = {a["PlatformApplicationArn"]: a["Attributes"]
              for page in c.get_paginator("list_platform_applications").paginate()
              for a in page["PlatformApplications"]}
    assert {arn, apns} <= set(listed)
    assert all("PlatformCredential" not in a for a in listed.values())

    # Errors, as AWS's codes.
    assert error_of(lambda: c.create_platform_application(
        Name="x", Platform="FCM", Attributes={"PlatformCredential": "k"}))[0] == "InvalidParameter"
    assert error_of(lambda: c.create_platform_application(
        Name="bad name!", Platform="GCM", Attributes={"PlatformCredential": "k"}))[0] == "InvalidParameter"
    assert error_of(lambda: c.create_platform_application(
        Name="nocred", Platform="GCM", Attributes={}))[0] == "InvalidParameter"
    assert error_of(lambda: c.set_platform_application_attributes(
        PlatformApplicationArn=arn, Attributes={"Bogus": "1"}))[0] == "InvalidParameter"
    missing = arn.replace("apps-gcm", "nope")
    assert error_of(lambda: c.get_platform_application_attributes(PlatformApplicationArn=missing)) == \
        ("NotFound", "PlatformApplication does not exist")
    assert error_of(lambda: c.list_endpoints_by_platform_application(PlatformApplicationArn=missing)) == \
        ("NotFound", "PlatformApplication does not exist")
    assert error_of(lambda: c.create_platform_endpoint(PlatformApplicationArn=missing, Token="t"))[0] == \
        "NotFound"


def test_endpoints_are_idempotent_per_token_and_conflict_as_aws(server):
    c = sns(server)
    app = gcm_app(c, "idem-app")
    ep = c.create_platform_endpoint(PlatformApplicationArn=app, Token="tok-1",
                                    CustomUserData="user-1")["EndpointArn"]
    assert ":endpoint/GCM/idem-app/" in ep
    # Same token, same attributes: the same endpoint.
    assert c.create_platform_endpoint(PlatformApplicationArn=app, Token="tok-1",
                                      CustomUserData="user-1")["EndpointArn"] == ep
    # Without CustomUserData, it is not compared.
    assert c.create_platform_endpoint(PlatformApplicationArn=app, Token="tok-1")["EndpointArn"] == ep
    # Same token, different attributes: AWS's error, naming the endpoint.
    code, msg = error_of(lambda: c.create_platform_endpoint(
        PlatformApplicationArn=app, Token="tok-1", CustomUserData="someone else"))
    assert code == "InvalidParameter"
    assert msg == (f"Invalid parameter: Token Reason: Endpoint {ep} already exists "
                   "with the same Token, but different attributes.")

    attrs = c.get_endpoint_attributes(EndpointArn=ep)["Attributes"]
    assert attrs == {"Enabled": "true", "Token": "tok-1", "CustomUserData": "user-1"}
    c.set_endpoint_attributes(EndpointArn=ep, Attributes={"Token": "tok-2", "Enabled": "false"})
    attrs = c.get_endpoint_attributes(EndpointArn=ep)["Attributes"]
    assert attrs["Token"] == "tok-2" and attrs["Enabled"] == "false"
    # Re-registering a disabled endpoint's token conflicts (Enabled defaults to true).
    assert error_of(lambda: c.create_platform_endpoint(
        PlatformApplicationArn=app, Token="tok-2"))[0] == "InvalidParameter"
    assert c.create_platform_endpoint(PlatformApplicationArn=app, Token="tok-2",
                                      Attributes={"Enabled": "false"})["EndpointArn"] == ep
    assert error_of(lambda: c.set_endpoint_attributes(
        EndpointArn=ep, Attributes={"Enabled": "maybe"}))[0] == "InvalidParameter"
    assert error_of(lambda: c.set_endpoint_attributes(
        EndpointArn=ep, Attributes={"Colour": "red"}))[0] == "InvalidParameter"

    others = [c.create_platform_endpoint(PlatformApplicationArn=app, Token=f"t{i}")["EndpointArn"]
              for i in range(3)]
    listed = [e for page in c.get_paginator("list_endpoints_by_platform_application")
              .paginate(PlatformApplicationArn=app) for e in page["Endpoints"]]
    assert sorted(e["EndpointArn"] for e in listed) == sorted([ep, *others])
    assert {e["EndpointArn"]: e["Attributes"]["Token"] for e in listed}[ep] == "tok-2"

    metrics = requests.get(f"{server.api}/metrics", timeout=10).text
    gauge = re.search(r"^nimbus_sns_platform_endpoints (\d+)$", metrics, re.M)
    assert gauge and int(gauge.group(1)) >= 4, metrics
    c.delete_endpoint(EndpointArn=others[0])
    c.delete_endpoint(EndpointArn=others[0])  # deleting again succeeds, as in AWS
    assert error_of(lambda: c.get_endpoint_attributes(EndpointArn=others[0])) == \
        ("NotFound", "Endpoint does not exist")
    assert len(c.list_endpoints_by_platform_application(PlatformApplicationArn=app)["Endpoints"]) == 3

    # Deleting the application deletes its endpoints.
    c.delete_platform_application(PlatformApplicationArn=app)
    assert error_of(lambda: c.get_endpoint_attributes(EndpointArn=ep))[0] == "NotFound"
    c.delete_platform_application(PlatformApplicationArn=app)  # idempotent
    assert app not in [a["PlatformApplicationArn"]
                       for a in c.list_platform_applications()["PlatformApplications"]]


def test_publish_to_an_endpoint_is_recorded_with_the_platforms_body(server):
    c = sns(server)
    app = gcm_app(c, "pub-app")
    ep = c.create_platform_endpoint(PlatformApplicationArn=app, Token="device-1")["EndpointArn"]
    plain = c.publish(TargetArn=ep, Message="hello device")["MessageId"]
    gcm_body = json.dumps({"notification": {"title": "hi"}})
    structured = c.publish(TargetArn=ep, MessageStructure="json", Message=json.dumps(
        {"default": "fallback", "GCM": gcm_body, "APNS": "not this"}))["MessageId"]
    only_default = c.publish(TargetArn=ep, MessageStructure="json",
                             Message=json.dumps({"default": "fallback", "APNS": "x"}))["MessageId"]
    recs = {d["MessageId"]: d for d in deliveries(server, "application")}
    assert recs[plain]["Endpoint"] == ep and recs[plain]["Message"] == "hello device"
    assert recs[structured]["Message"] == gcm_body
    assert recs[only_default]["Message"] == "fallback"

    # A disabled endpoint refuses, a missing one is not found, bad input is refused.
    c.set_endpoint_attributes(EndpointArn=ep, Attributes={"Enabled": "false"})
    assert error_of(lambda: c.publish(TargetArn=ep, Message="x")) == \
        ("EndpointDisabled", "Endpoint is disabled")
    c.set_endpoint_attributes(EndpointArn=ep, Attributes={"Enabled": "true"})
    assert error_of(lambda: c.publish(TargetArn=ep, Message=""))[0] == "InvalidParameter"
    assert error_of(lambda: c.publish(TargetArn=ep, MessageStructure="json",
                                      Message='{"GCM": "no default"}'))[0] == "InvalidParameter"
    c.delete_endpoint(EndpointArn=ep)
    assert error_of(lambda: c.publish(TargetArn=ep, Message="x")) == \
        ("NotFound", "Endpoint does not exist")


def test_application_subscriptions_deliver_to_enabled_endpoints_only(server):
    c = sns(server)
    app = gcm_app(c, "sub-app")
    on = c.create_platform_endpoint(PlatformApplicationArn=app, Token="on")["EndpointArn"]
    off = c.create_platform_endpoint(PlatformApplicationArn=app, Token="off",
                                     Attributes={"Enabled": "false"})["EndpointArn"]
    topic = c.create_topic(Name="push-fanout")["TopicArn"]
    for ep in (on, off):
        c.subscribe(TopicArn=topic, Protocol="application", Endpoint=ep)
    missing = on.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    assert error_of(lambda: c.subscribe(TopicArn=topic, Protocol="application", Endpoint=missing)) == \
        ("NotFound", "Endpoint does not exist")

    mid = c.publish(TopicArn=topic, MessageStructure="json", Message=json.dumps(
        {"default": "d", "GCM": "for android"}))["MessageId"]
    wait_for(lambda: any(d["MessageId"] == mid for d in deliveries(server, "application")),
             timeout=30, what="the application delivery")
    wait_for(lambda: requests.get(f"{server.api}/_nimbus/services/sns/outbox", timeout=10)
             .json()["Backlog"] == 0, timeout=30, what="the outbox drained")
    got = [d for d in deliveries(server, "application") if d["MessageId"] == mid]
    assert [(d["Endpoint"], d["Message"]) for d in got] == [(on, "for android")]


# -- SMS -----------------------------------------------------------------------------

def test_sms_attributes_are_stored_and_validated(server):
    c = sns(server)
    c.set_sms_attributes(attributes={"DefaultSMSType": "Transactional", "MonthlySpendLimit": "5",
                                     "DefaultSenderID": "Nimbus1"})
    got = c.get_sms_attributes()["attributes"]
    assert got["DefaultSMSType"] == "Transactional" and got["MonthlySpendLimit"] == "5"
    assert c.get_sms_attributes(attributes=["DefaultSenderID"])["attributes"] == \
        {"DefaultSenderID": "Nimbus1"}
    assert error_of(lambda: c.set_sms_attributes(attributes={"DefaultSMSType": "Loud"}))[0] == \
        "InvalidParameter"
    assert error_of(lambda: c.set_sms_attributes(attributes={"Nope": "1"}))[0] == "InvalidParameter"
    assert c.get_sms_attributes()["attributes"]["DefaultSMSType"] == "Transactional"


def test_opted_out_numbers_are_not_sent_to_until_opted_in(server):
    c = sns(server)
    phone = "+15555550142"
    assert c.check_if_phone_number_is_opted_out(phoneNumber=phone)["isOptedOut"] is False
    opt_out(server, phone)
    assert c.check_if_phone_number_is_opted_out(phoneNumber=phone)["isOptedOut"] is True
    assert phone in c.list_phone_numbers_opted_out()["phoneNumbers"]

    topic = c.create_topic(Name="sms-optout")["TopicArn"]
    c.subscribe(TopicArn=topic, Protocol="sms", Endpoint=phone)
    direct = c.publish(PhoneNumber=phone, Message="not delivered")["MessageId"]
    via_topic = c.publish(TopicArn=topic, Message="not delivered either")["MessageId"]
    wait_for(lambda: requests.get(f"{server.api}/_nimbus/services/sns/outbox", timeout=10)
             .json()["Backlog"] == 0, timeout=30, what="the outbox drained")
    ids = {d["MessageId"] for d in deliveries(server, "sms")}
    assert direct not in ids and via_topic not in ids

    c.opt_in_phone_number(phoneNumber=phone)
    assert c.check_if_phone_number_is_opted_out(phoneNumber=phone)["isOptedOut"] is False
    assert phone not in c.list_phone_numbers_opted_out()["phoneNumbers"]
    again = c.publish(PhoneNumber=phone, Message="now delivered")["MessageId"]
    assert again in {d["MessageId"] for d in deliveries(server, "sms")}

    assert error_of(lambda: c.check_if_phone_number_is_opted_out(phoneNumber="555"))[0] == \
        "InvalidParameter"
    assert error_of(lambda: c.opt_in_phone_number(phoneNumber="abc"))[0] == "InvalidParameter"


def test_sms_sandbox_verifies_with_the_recorded_one_time_password(server):
    c = sns(server)
    phone = "+15555550177"
    assert c.get_sms_sandbox_account_status()["IsInSandbox"] is False
    c.create_sms_sandbox_phone_number(PhoneNumber=phone, LanguageCode="en-GB")
    assert {"PhoneNumber": phone, "Status": "Pending"} in \
        c.list_sms_sandbox_phone_numbers()["PhoneNumbers"]
    otp_msgs = [d["Message"] for d in deliveries(server, "sms") if d["Endpoint"] == phone]
    assert len(otp_msgs) == 1
    otp = otp_msgs[0].rsplit(" ", 1)[1]
    assert len(otp) == 6 and otp.isdigit()

    wrong = "000000" if otp != "000000" else "111111"
    with pytest.raises(ClientError) as e:
        c.verify_sms_sandbox_phone_number(PhoneNumber=phone, OneTimePassword=wrong)
    assert e.value.response["Error"]["Code"] == "VerificationException"
    c.verify_sms_sandbox_phone_number(PhoneNumber=phone, OneTimePassword=otp)
    assert {"PhoneNumber": phone, "Status": "Verified"} in \
        c.list_sms_sandbox_phone_numbers()["PhoneNumbers"]
    assert error_of(lambda: c.create_sms_sandbox_phone_number(PhoneNumber=phone))[0] == "UserError"

    c.delete_sms_sandbox_phone_number(PhoneNumber=phone)
    assert phone not in [n["PhoneNumber"] for n in c.list_sms_sandbox_phone_numbers()["PhoneNumbers"]]
    assert error_of(lambda: c.delete_sms_sandbox_phone_number(PhoneNumber=phone))[0] == \
        "ResourceNotFound"
    assert error_of(lambda: c.verify_sms_sandbox_phone_number(
        PhoneNumber=phone, OneTimePassword="123456"))[0] == "ResourceNotFound"
    assert error_of(lambda: c.create_sms_sandbox_phone_number(PhoneNumber="12"))[0] == \
        "InvalidParameter"
    opted = "+15555550178"
    opt_out(server, opted)
    assert error_of(lambda: c.create_sms_sandbox_phone_number(PhoneNumber=opted))[0] == "OptedOut"
    # Pagination with MaxResults.
    for i in range(3):
        c.create_sms_sandbox_phone_number(PhoneNumber=f"+1555555020{i}")
    pages = list(c.get_paginator("list_sms_sandbox_phone_numbers").paginate(
        PaginationConfig={"PageSize": 2}))
    numbers = [n["PhoneNumber"] for p in pages for n in p["PhoneNumbers"]]
    assert len(pages) >= 2 and len(numbers) == len(set(numbers)) >= 3


def test_origination_numbers_are_an_honest_empty_list(server):
    c = sns(server)
    assert c.list_origination_numbers()["PhoneNumbers"] == []
    assert error_of(lambda: c.list_origination_numbers(MaxResults=31))[0] == "ValidationException"


# -- data protection ------------------------------------------------------------------

def test_data_protection_policies_are_stored_per_topic(server):
    c = sns(server)
    topic = c.create_topic(Name="protected")["TopicArn"]
    assert c.get_data_protection_policy(ResourceArn=topic)["DataProtectionPolicy"] == ""
    policy = {
        "Name": "basic", "Description": "deny card numbers", "Version": "2021-06-01",
        "Statement": [{
            "Sid": "deny", "DataDirection": "Inbound", "Principal": ["*"],
            "DataIdentifier": ["arn:aws:dataprotection::aws:data-identifier/CreditCardNumber"],
            "Operation": {"Deny": {}},
        }],
    }
    c.put_data_protection_policy(ResourceArn=topic, DataProtectionPolicy=json.dumps(policy))
    assert json.loads(c.get_data_protection_policy(ResourceArn=topic)["DataProtectionPolicy"]) == policy
    assert json.loads(c.get_topic_attributes(TopicArn=topic)["Attributes"]["DataProtectionPolicy"]) == \
        policy
    assert error_of(lambda: c.put_data_protection_policy(
        ResourceArn=topic, DataProtectionPolicy="{not json"))[0] == "InvalidParameter"
    missing = topic + "-gone"
    assert error_of(lambda: c.get_data_protection_policy(ResourceArn=missing)) == \
        ("NotFound", "Topic does not exist")
    assert error_of(lambda: c.put_data_protection_policy(
        ResourceArn=missing, DataProtectionPolicy="{}"))[0] == "NotFound"


# -- the aws CLI ----------------------------------------------------------------------

def test_aws_cli_creates_and_lists_platform_endpoints(server):
    aws = ROOT / ".venv" / "bin" / "aws"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDSNSTEST", AWS_SECRET_ACCESS_KEY="secret",
               AWS_DEFAULT_REGION=REGION)

    def run(*args):
        p = subprocess.run([str(aws), "--endpoint-url", server.api, "--output", "json", "sns", *args],
                           capture_output=True, text=True, env=env, timeout=120)
        return p.returncode, p.stdout, p.stderr

    rc, out, err = run("create-platform-application", "--name", "cli-app", "--platform", "GCM",
                       "--attributes", "PlatformCredential=cli-key")
    assert rc == 0, err
    app = json.loads(out)["PlatformApplicationArn"]
    rc, out, err = run("create-platform-endpoint", "--platform-application-arn", app,
                       "--token", "cli-token", "--custom-user-data", "cli-user")
    assert rc == 0, err
    ep = json.loads(out)["EndpointArn"]
    rc, out, err = run("list-endpoints-by-platform-application", "--platform-application-arn", app)
    assert rc == 0, err
    assert [e["EndpointArn"] for e in json.loads(out)["Endpoints"]] == [ep]
    rc, out, err = run("get-sms-sandbox-account-status")
    assert rc == 0 and json.loads(out) == {"IsInSandbox": False}, err
    rc, out, err = run("get-endpoint-attributes", "--endpoint-arn", ep + "x")
    assert rc != 0 and "NotFound" in err


# -- durability -----------------------------------------------------------------------

def test_platform_and_sms_state_survives_kill9(server_factory):
    s = server_factory()
    c = sns(s)
    app = gcm_app(c, "durable-app")
    ep = c.create_platform_endpoint(PlatformApplicationArn=app, Token="durable",
                                    CustomUserData="u")["EndpointArn"]
    c.set_sms_attributes(attributes={"DefaultSMSType": "Promotional"})
    opt_out(s, "+15555550300")
    c.create_sms_sandbox_phone_number(PhoneNumber="+15555550301")
    topic = c.create_topic(Name="durable-dp")["TopicArn"]
    c.put_data_protection_policy(ResourceArn=topic, DataProtectionPolicy='{"Name": "p"}')
    s.kill()
    s.start()
    c = sns(s)
    assert c.get_endpoint_attributes(EndpointArn=ep)["Attributes"] == \
        {"Enabled": "true", "Token": "durable", "CustomUserData": "u"}
    assert c.get_platform_application_attributes(PlatformApplicationArn=app)["Attributes"]["Enabled"] == "true"
    assert c.get_sms_attributes()["attributes"] == {"DefaultSMSType": "Promotional"}
    assert c.check_if_phone_number_is_opted_out(phoneNumber="+15555550300")["isOptedOut"] is True
    assert c.list_sms_sandbox_phone_numbers()["PhoneNumbers"] == \
        [{"PhoneNumber": "+15555550301", "Status": "Pending"}]
    assert c.get_data_protection_policy(ResourceArn=topic)["DataProtectionPolicy"] == '{"Name": "p"}'


# -- the AWS SDK for JavaScript v3 ------------------------------------------------------

def test_js_sdk_v3_platform_endpoints_sms_and_data_protection(server):
    modules = ROOT / "sdk" / "node_modules"
    assert (modules / "@aws-sdk" / "client-sns").is_dir(), "run scripts/install-sdks"
    env = dict(os.environ, NODE_PATH=str(modules))
    p = subprocess.run(["node", str(Path(__file__).with_name("sns_platform_js.js")), server.api],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["app"].endswith(":app/APNS_SANDBOX/js-app")
    assert out["appAttrs"] == {"Enabled": "true"}
    assert ":endpoint/APNS_SANDBOX/js-app/" in out["endpoint"]
    assert out["endpoints"] == [{"EndpointArn": out["endpoint"], "Attributes": {
        "Enabled": "true", "Token": "js-device", "CustomUserData": "js"}}]
    assert out["conflict"].startswith("InvalidParameterException: Invalid parameter: Token Reason: "
                                      f"Endpoint {out['endpoint']} already exists")
    assert out["missing"] == "NotFoundException: Endpoint does not exist"
    assert out["optedOut"] is False and out["inSandbox"] is False
    assert out["dataProtection"] == '{"Name":"js"}'
    [rec] = [d for d in deliveries(server, "application") if d["MessageId"] == out["messageId"]]
    assert rec["Endpoint"] == out["endpoint"] and rec["Message"] == '{"aps":{"alert":"hi"}}'
