"""SES v1 and v2 end to end: boto3, the aws CLI and the JS SDK v3 against the real
binary — identities, sending (simple, raw with an attachment, templated, bulk), the
durable outbox read back through the control API and `nimbus mail`, configuration
sets with event destinations and the mailbox simulator's events, AWS's errors, the
relay to a real SMTP server (aiosmtpd), and acknowledged mail surviving kill -9."""

import base64
import json
import os
import socket
import subprocess
from email.message import EmailMessage
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
NODE_MODULES = ROOT / "sdk" / "node_modules"
AWS = ROOT / ".venv" / "bin" / "aws"


def client(server, service):
    return boto3.client(
        service, endpoint_url=server.api, region_name="us-east-1",
        aws_access_key_id="AKIDNIMBUS", aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture(scope="module")
def ses(server):
    c = client(server, "ses")
    c.verify_email_identity(EmailAddress="sender@example.com")
    return c


@pytest.fixture(scope="module")
def sesv2(server):
    return client(server, "sesv2")


def outbox(server, message_id):
    r = server.session.get(f"{server.api}/_nimbus/services/mail/messages/{message_id}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def events(server):
    r = server.session.get(f"{server.api}/_nimbus/services/mail/events?limit=1000", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["Events"]


def code_of(fn, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    return e.value.response["Error"]["Code"]


def test_identities(ses):
    ses.verify_email_identity(EmailAddress="a@example.org")
    token = ses.verify_domain_identity(Domain="Example.NET")["VerificationToken"]
    assert token
    ids = ses.list_identities()["Identities"]
    assert {"a@example.org", "example.net", "sender@example.com"} <= set(ids)
    assert "example.net" not in ses.list_identities(IdentityType="EmailAddress")["Identities"]
    assert ses.list_identities(IdentityType="Domain")["Identities"] == ["example.net"]
    attrs = ses.get_identity_verification_attributes(
        Identities=["a@example.org", "example.net", "nobody@x.org"])["VerificationAttributes"]
    assert attrs["a@example.org"]["VerificationStatus"] == "Success"
    assert attrs["example.net"]["VerificationToken"] == token
    assert "nobody@x.org" not in attrs
    ses.delete_identity(Identity="a@example.org")
    assert "a@example.org" not in ses.list_identities()["Identities"]
    assert "a@example.org" not in ses.list_verified_email_addresses()["VerifiedEmailAddresses"]


def test_send_email_lands_in_the_outbox(server, ses):
    # An unverified sender is refused.
    with pytest.raises(ClientError) as e:
        ses.send_email(Source="stranger@nowhere.org", Destination={"ToAddresses": ["x@y.org"]},
                       Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}})
    assert e.value.response["Error"]["Code"] == "MessageRejected"
    assert "stranger@nowhere.org" in e.value.response["Error"]["Message"]
    # A domain identity verifies every address in it.
    ses.verify_domain_identity(Domain="shop.test")
    mid = ses.send_email(
        Source="Shop <orders@shop.test>",
        Destination={"ToAddresses": ["ann@example.org"], "CcAddresses": ["bob@example.org"],
                     "BccAddresses": ["audit@example.org"]},
        Message={"Subject": {"Data": "Your order 42"},
                 "Body": {"Text": {"Data": "Thanks for your order."},
                          "Html": {"Data": "<p>Thanks for your <b>order</b>.</p>"}}},
        ReplyToAddresses=["help@shop.test"])["MessageId"]
    m = outbox(server, mid)
    assert m["Subject"] == "Your order 42"
    assert m["Destinations"] == ["ann@example.org", "bob@example.org", "audit@example.org"]
    assert m["Text"].strip() == "Thanks for your order."
    assert m["Html"] == "<p>Thanks for your <b>order</b>.</p>"
    headers = {h["Name"].lower(): h["Value"] for h in m["Headers"]}
    assert headers["subject"] == "Your order 42"
    assert "ann@example.org" in headers["to"] and "bob@example.org" in headers["cc"]
    assert "bcc" not in headers
    assert "help@shop.test" in headers["reply-to"]
    assert m["Relay"]["Status"] == "none"
    listed = server.session.get(f"{server.api}/_nimbus/services/mail/messages", timeout=10).json()
    assert listed["Messages"][0]["MessageId"] == mid
    # The CLI reads the same outbox.
    ls = server.cli("mail", "ls")
    assert ls.returncode == 0, ls.stderr
    assert mid in ls.stdout and "Your order 42" in ls.stdout
    show = server.cli("mail", "show", mid)
    assert show.returncode == 0, show.stderr
    assert "Thanks for your order." in show.stdout and "Subject: Your order 42" in show.stdout
    bad = server.cli("mail", "show", "no-such-message")
    assert bad.returncode != 0
    # Quota and statistics count what was sent.
    quota = ses.get_send_quota()
    assert quota["Max24HourSend"] == 200.0 and quota["SentLast24Hours"] >= 3
    points = ses.get_send_statistics()["SendDataPoints"]
    assert sum(p["DeliveryAttempts"] for p in points) >= 3


def test_send_raw_email_keeps_attachments(server, ses):
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "ann@example.org"
    msg["Subject"] = "Invoice"
    msg.set_content("Invoice attached.")
    pdf = bytes(range(256)) * 40
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice.pdf")
    mid = ses.send_raw_email(RawMessage={"Data": msg.as_bytes()})["MessageId"]
    m = outbox(server, mid)
    assert m["Source"] == "sender@example.com" and m["Destinations"] == ["ann@example.org"]
    assert m["Subject"] == "Invoice"
    assert m["Text"].strip() == "Invoice attached."
    [att] = m["Attachments"]
    assert att["Filename"] == "invoice.pdf" and att["ContentType"] == "application/pdf"
    assert base64.b64decode(att["ContentBase64"]) == pdf
    raw = server.session.get(f"{server.api}/_nimbus/services/mail/messages/{mid}/raw", timeout=10)
    assert raw.content == msg.as_bytes()
    # Destinations override the headers' recipients; From must be verified.
    mid = ses.send_raw_email(Destinations=["other@example.org"],
                             RawMessage={"Data": msg.as_bytes()})["MessageId"]
    assert outbox(server, mid)["Destinations"] == ["other@example.org"]
    msg.replace_header("From", "stranger@nowhere.org")
    assert code_of(ses.send_raw_email, RawMessage={"Data": msg.as_bytes()}) == "MessageRejected"


def test_templates(server, ses):
    ses.create_template(Template={
        "TemplateName": "welcome", "SubjectPart": "Welcome, {{name}}!",
        "TextPart": "Hi {{name}}, your plan is {{plan.tier}}.",
        "HtmlPart": "<h1>Hi {{name}}</h1>"})
    assert code_of(ses.create_template, Template={"TemplateName": "welcome", "SubjectPart": "x"}) \
        == "AlreadyExists"
    t = ses.get_template(TemplateName="welcome")["Template"]
    assert t["SubjectPart"] == "Welcome, {{name}}!"
    assert [x["Name"] for x in ses.list_templates()["TemplatesMetadata"]] == ["welcome"]
    rendered = ses.test_render_template(
        TemplateName="welcome", TemplateData=json.dumps({"name": "Ann & Co", "plan": {"tier": "pro"}})
    )["RenderedTemplate"]
    assert "Subject: Welcome, Ann & Co!" in rendered
    assert code_of(ses.test_render_template, TemplateName="welcome",
                   TemplateData='{"name": "x"}') == "MissingRenderingAttribute"
    mid = ses.send_templated_email(
        Source="sender@example.com", Destination={"ToAddresses": ["ann@example.org"]},
        Template="welcome", TemplateData=json.dumps({"name": "Ann <3", "plan": {"tier": "pro"}})
    )["MessageId"]
    m = outbox(server, mid)
    assert m["Subject"] == "Welcome, Ann <3!"
    assert m["Text"].strip() == "Hi Ann <3, your plan is pro."
    assert m["Html"] == "<h1>Hi Ann &lt;3</h1>"
    bulk = ses.send_bulk_templated_email(
        Source="sender@example.com", Template="welcome",
        DefaultTemplateData=json.dumps({"name": "friend", "plan": {"tier": "free"}}),
        Destinations=[
            {"Destination": {"ToAddresses": ["one@example.org"]}},
            {"Destination": {"ToAddresses": ["two@example.org"]},
             "ReplacementTemplateData": json.dumps({"name": "Two", "plan": {"tier": "pro"}})},
        ])["Status"]
    assert [s["Status"] for s in bulk] == ["Success", "Success"]
    assert outbox(server, bulk[1]["MessageId"])["Subject"] == "Welcome, Two!"
    assert outbox(server, bulk[0]["MessageId"])["Subject"] == "Welcome, friend!"
    ses.update_template(Template={"TemplateName": "welcome", "SubjectPart": "Hello {{name}}",
                                  "TextPart": "x"})
    assert ses.get_template(TemplateName="welcome")["Template"]["SubjectPart"] == "Hello {{name}}"
    ses.delete_template(TemplateName="welcome")
    assert code_of(ses.get_template, TemplateName="welcome") == "TemplateDoesNotExist"
    assert code_of(ses.send_templated_email, Source="sender@example.com",
                   Destination={"ToAddresses": ["a@b.org"]}, Template="welcome",
                   TemplateData="{}") == "TemplateDoesNotExist"


def test_configuration_sets_and_the_mailbox_simulator(server, ses):
    topic = "arn:aws:sns:us-east-1:123456789012:ses-events"
    ses.create_configuration_set(ConfigurationSet={"Name": "tracked"})
    assert code_of(ses.create_configuration_set, ConfigurationSet={"Name": "tracked"}) == \
        "ConfigurationSetAlreadyExists"
    ses.create_configuration_set_event_destination(
        ConfigurationSetName="tracked",
        EventDestination={"Name": "to-sns", "Enabled": True,
                          "MatchingEventTypes": ["send", "delivery", "bounce", "complaint"],
                          "SNSDestination": {"TopicARN": topic}})
    d = ses.describe_configuration_set(ConfigurationSetName="tracked",
                                       ConfigurationSetAttributeNames=["eventDestinations"])
    assert d["EventDestinations"][0]["SNSDestination"]["TopicARN"] == topic
    assert sorted(d["EventDestinations"][0]["MatchingEventTypes"]) == \
        ["bounce", "complaint", "delivery", "send"]
    assert "tracked" in [c["Name"] for c in ses.list_configuration_sets()["ConfigurationSets"]]
    before = {e["Id"] for e in events(server)}
    mid = ses.send_email(
        Source="sender@example.com", ConfigurationSetName="tracked",
        Destination={"ToAddresses": ["success@simulator.amazonses.com",
                                     "bounce@simulator.amazonses.com",
                                     "complaint@simulator.amazonses.com"]},
        Message={"Subject": {"Data": "sim"}, "Body": {"Text": {"Data": "t"}}},
        Tags=[{"Name": "campaign", "Value": "c1"}])["MessageId"]
    new = [e for e in events(server) if e["Id"] not in before]
    assert all(e["Target"] == topic for e in new)
    by_type = {e["EventType"]: e["Event"] for e in new}
    assert sorted(by_type) == ["Bounce", "Complaint", "Delivery", "Send"]
    assert all(ev["mail"]["messageId"] == mid for ev in by_type.values())
    assert by_type["Send"]["mail"]["tags"]["campaign"] == ["c1"]
    assert [r["emailAddress"] for r in by_type["Bounce"]["bounce"]["bouncedRecipients"]] == \
        ["bounce@simulator.amazonses.com"]
    assert by_type["Bounce"]["bounce"]["bounceType"] == "Permanent"
    assert [r["emailAddress"] for r in by_type["Complaint"]["complaint"]["complainedRecipients"]] \
        == ["complaint@simulator.amazonses.com"]
    assert "bounce@simulator.amazonses.com" not in by_type["Delivery"]["delivery"]["recipients"]
    # A destination that matches only bounces gets nothing for a clean send.
    ses.update_configuration_set_event_destination(
        ConfigurationSetName="tracked",
        EventDestination={"Name": "to-sns", "Enabled": True, "MatchingEventTypes": ["bounce"],
                          "SNSDestination": {"TopicARN": topic}})
    before = {e["Id"] for e in events(server)}
    ses.send_email(Source="sender@example.com", ConfigurationSetName="tracked",
                   Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}})
    assert [e for e in events(server) if e["Id"] not in before] == []
    assert code_of(ses.send_email, Source="sender@example.com", ConfigurationSetName="nope",
                   Destination={"ToAddresses": ["a@b.org"]},
                   Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}) == \
        "ConfigurationSetDoesNotExist"
    ses.delete_configuration_set_event_destination(ConfigurationSetName="tracked",
                                                   EventDestinationName="to-sns")
    assert code_of(ses.delete_configuration_set_event_destination, ConfigurationSetName="tracked",
                   EventDestinationName="to-sns") == "EventDestinationDoesNotExist"
    ses.delete_configuration_set(ConfigurationSetName="tracked")


def test_identity_notification_topics(server, ses):
    topic = "arn:aws:sns:us-east-1:123456789012:bounces"
    ses.verify_domain_identity(Domain="notify.test")
    ses.set_identity_notification_topic(Identity="notify.test", NotificationType="Bounce",
                                        SnsTopic=topic)
    attrs = ses.get_identity_notification_attributes(Identities=["notify.test"])[
        "NotificationAttributes"]["notify.test"]
    assert attrs["BounceTopic"] == topic and "ComplaintTopic" not in attrs
    before = {e["Id"] for e in events(server)}
    mid = ses.send_email(Source="app@notify.test",
                         Destination={"ToAddresses": ["bounce@simulator.amazonses.com",
                                                     "ok@example.org"]},
                         Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}})["MessageId"]
    new = [e for e in events(server) if e["Id"] not in before]
    assert [(e["Target"], e["EventType"]) for e in new] == [(topic, "Bounce")]
    n = new[0]["Event"]
    assert n["notificationType"] == "Bounce" and n["mail"]["messageId"] == mid
    assert n["bounce"]["bouncedRecipients"][0]["emailAddress"] == "bounce@simulator.amazonses.com"
    ses.set_identity_notification_topic(Identity="notify.test", NotificationType="Bounce")
    assert "BounceTopic" not in ses.get_identity_notification_attributes(
        Identities=["notify.test"])["NotificationAttributes"]["notify.test"]


def test_limits_and_bad_input(server, ses):
    msg = {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}
    many = [f"r{i}@example.org" for i in range(51)]
    assert code_of(ses.send_email, Source="sender@example.com",
                   Destination={"ToAddresses": many}, Message=msg) == "InvalidParameterValue"
    assert code_of(ses.send_email, Source="sender@example.com",
                   Destination={"ToAddresses": ["not-an-address"]}, Message=msg) == \
        "InvalidParameterValue"
    big = b"From: sender@example.com\r\nTo: a@example.org\r\nSubject: big\r\n\r\n" + \
        b"x" * (10 * 1024 * 1024 + 1)
    assert code_of(ses.send_raw_email, RawMessage={"Data": big}) == "MessageRejected"
    # A missing required parameter is the protocol's error, not a 500.
    r = server.session.post(server.api + "/", data={"Action": "SendEmail", "Version": "2010-12-01"},
                            headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x/20240101/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=0"},
                            timeout=10)
    assert r.status_code == 400, r.text
    assert "<Code>MissingParameter</Code>" in r.text or "InvalidParameterValue" in r.text, r.text
    # Account-level sending switch.
    ses.update_account_sending_enabled(Enabled=False)
    assert ses.get_account_sending_enabled()["Enabled"] is False
    assert code_of(ses.send_email, Source="sender@example.com",
                   Destination={"ToAddresses": ["a@example.org"]}, Message=msg) == \
        "AccountSendingPausedException"
    ses.update_account_sending_enabled(Enabled=True)
    # Operations Nimbus leaves out answer 501 naming themselves.
    with pytest.raises(ClientError) as e:
        ses.list_receipt_rule_sets()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


def test_sesv2(server, sesv2):
    r = sesv2.create_email_identity(EmailIdentity="v2@example.com")
    assert r["IdentityType"] == "EMAIL_ADDRESS" and r["VerifiedForSendingStatus"] is True
    assert sesv2.create_email_identity(EmailIdentity="v2.example")["IdentityType"] == "DOMAIN"
    assert code_of(sesv2.create_email_identity, EmailIdentity="v2@example.com") == \
        "AlreadyExistsException"
    got = sesv2.get_email_identity(EmailIdentity="v2@example.com")
    assert got["VerifiedForSendingStatus"] is True and got["VerificationStatus"] == "SUCCESS"
    assert code_of(sesv2.get_email_identity, EmailIdentity="nobody@example.com") == \
        "NotFoundException"
    names = {i["IdentityName"] for i in sesv2.list_email_identities()["EmailIdentities"]}
    assert {"v2@example.com", "v2.example"} <= names
    acct = sesv2.get_account()
    assert acct["SendingEnabled"] is True and acct["SendQuota"]["Max24HourSend"] == 200.0
    simple = sesv2.send_email(
        FromEmailAddress="v2@example.com",
        Destination={"ToAddresses": ["ann@example.org"]},
        Content={"Simple": {"Subject": {"Data": "v2 simple"},
                            "Body": {"Html": {"Data": "<i>hi</i>"}}}})["MessageId"]
    assert outbox(server, simple)["Html"].strip() == "<i>hi</i>"
    raw = EmailMessage()
    raw["From"] = "news@v2.example"
    raw["To"] = "bob@example.org"
    raw["Subject"] = "v2 raw"
    raw.set_content("raw body")
    raw.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="data.csv")
    rid = sesv2.send_email(Content={"Raw": {"Data": raw.as_bytes()}})["MessageId"]
    m = outbox(server, rid)
    assert m["Destinations"] == ["bob@example.org"] and m["Subject"] == "v2 raw"
    assert base64.b64decode(m["Attachments"][0]["ContentBase64"]) == b"a,b\n1,2\n"
    sesv2.create_email_template(TemplateName="v2t", TemplateContent={
        "Subject": "Order {{id}}", "Text": "Order {{id}} shipped"})
    assert sesv2.get_email_template(TemplateName="v2t")["TemplateContent"]["Subject"] == "Order {{id}}"
    assert "v2t" in [t["TemplateName"] for t in sesv2.list_email_templates()["TemplatesMetadata"]]
    tid = sesv2.send_email(
        FromEmailAddress="v2@example.com", Destination={"ToAddresses": ["c@example.org"]},
        Content={"Template": {"TemplateName": "v2t", "TemplateData": '{"id": "A-1"}'}})["MessageId"]
    assert outbox(server, tid)["Subject"] == "Order A-1"
    assert "Order A-1" in sesv2.test_render_email_template(
        TemplateName="v2t", TemplateData='{"id": "A-1"}')["RenderedTemplate"]
    bulk = sesv2.send_bulk_email(
        FromEmailAddress="v2@example.com",
        DefaultContent={"Template": {"TemplateName": "v2t", "TemplateData": '{"id": "D"}'}},
        BulkEmailEntries=[
            {"Destination": {"ToAddresses": ["d1@example.org"]}},
            {"Destination": {"ToAddresses": ["d2@example.org"]},
             "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": '{"id": "R"}'}}},
        ])["BulkEmailEntryResults"]
    assert [b["Status"] for b in bulk] == ["SUCCESS", "SUCCESS"]
    assert [outbox(server, b["MessageId"])["Subject"] for b in bulk] == ["Order D", "Order R"]
    sesv2.update_email_template(TemplateName="v2t", TemplateContent={"Subject": "S {{id}}", "Text": "t"})
    sesv2.delete_email_template(TemplateName="v2t")
    assert code_of(sesv2.get_email_template, TemplateName="v2t") == "NotFoundException"
    assert code_of(sesv2.send_email, FromEmailAddress="nobody@else.org",
                   Destination={"ToAddresses": ["c@example.org"]},
                   Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}}) \
        == "MessageRejected"
    # Configuration sets with an EventBridge destination.
    bus = "arn:aws:events:us-east-1:123456789012:event-bus/default"
    sesv2.create_configuration_set(ConfigurationSetName="v2cs")
    sesv2.create_configuration_set_event_destination(
        ConfigurationSetName="v2cs", EventDestinationName="eb",
        EventDestination={"Enabled": True, "MatchingEventTypes": ["SEND", "BOUNCE"],
                          "EventBridgeDestination": {"EventBusArn": bus}})
    dests = sesv2.get_configuration_set_event_destinations(ConfigurationSetName="v2cs")["EventDestinations"]
    assert dests[0]["EventBridgeDestination"]["EventBusArn"] == bus
    assert "v2cs" in sesv2.list_configuration_sets()["ConfigurationSets"]
    before = {e["Id"] for e in events(server)}
    sesv2.send_email(FromEmailAddress="v2@example.com", ConfigurationSetName="v2cs",
                     Destination={"ToAddresses": ["bounce@simulator.amazonses.com"]},
                     Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}})
    new = sorted(e["EventType"] for e in events(server) if e["Id"] not in before)
    assert new == ["Bounce", "Send"]
    sesv2.delete_configuration_set_event_destination(ConfigurationSetName="v2cs",
                                                     EventDestinationName="eb")
    sesv2.delete_configuration_set(ConfigurationSetName="v2cs")
    assert code_of(sesv2.get_configuration_set, ConfigurationSetName="v2cs") == "NotFoundException"
    sesv2.delete_email_identity(EmailIdentity="v2.example")
    assert code_of(sesv2.delete_email_identity, EmailIdentity="v2.example") == "NotFoundException"


def test_aws_cli(server):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")

    def aws(*args):
        out = subprocess.run([str(AWS), "--endpoint-url", server.api, *args, "--output", "json"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    aws("ses", "verify-email-identity", "--email-address", "cli@example.com")
    mid = aws("ses", "send-email", "--from", "cli@example.com", "--to", "ann@example.org",
              "--subject", "from the cli", "--text", "cli body")["MessageId"]
    assert outbox(server, mid)["Subject"] == "from the cli"
    ids = aws("sesv2", "list-email-identities")["EmailIdentities"]
    assert "cli@example.com" in [i["IdentityName"] for i in ids]


JS = r"""
const v1 = require("@aws-sdk/client-ses");
const v2 = require("@aws-sdk/client-sesv2");
const cfg = {endpoint: process.argv[1], region: "us-east-1",
  credentials: {accessKeyId: "x", secretAccessKey: "y"}};
(async () => {
  const a = new v1.SESClient(cfg), b = new v2.SESv2Client(cfg);
  await a.send(new v1.VerifyEmailIdentityCommand({EmailAddress: "js@example.com"}));
  const s1 = await a.send(new v1.SendEmailCommand({Source: "js@example.com",
    Destination: {ToAddresses: ["ann@example.org"]},
    Message: {Subject: {Data: "js v1"}, Body: {Text: {Data: "hello"}}}}));
  const s2 = await b.send(new v2.SendEmailCommand({FromEmailAddress: "js@example.com",
    Destination: {ToAddresses: ["ann@example.org"]},
    Content: {Simple: {Subject: {Data: "js v2"}, Body: {Text: {Data: "hello"}}}}}));
  const ids = await b.send(new v2.ListEmailIdentitiesCommand({}));
  let err = null;
  try { await a.send(new v1.SendEmailCommand({Source: "nobody@else.org",
    Destination: {ToAddresses: ["a@b.org"]},
    Message: {Subject: {Data: "x"}, Body: {Text: {Data: "x"}}}})); }
  catch (e) { err = e.name; }
  console.log(JSON.stringify({v1: s1.MessageId, v2: s2.MessageId, err,
    ids: ids.EmailIdentities.map(i => i.IdentityName)}));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_js_sdk_v3(server):
    if not (NODE_MODULES / "@aws-sdk" / "client-sesv2").is_dir():
        pytest.skip("sdk/node_modules not installed (scripts/test installs it)")
    out = subprocess.run(["node", "-e", JS, server.api], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, NODE_PATH=str(NODE_MODULES)))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["err"] == "MessageRejected"
    assert "js@example.com" in got["ids"]
    assert outbox(server, got["v1"])["Subject"] == "js v1"
    assert outbox(server, got["v2"])["Subject"] == "js v2"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_relay_to_a_real_smtp_server(server_factory):
    # Pinned in tests/requirements.txt, which scripts/test installs.
    from aiosmtpd.controller import Controller
    received = []

    class Handler:
        async def handle_DATA(self, srv, session, envelope):
            received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    port = free_port()
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        s = server_factory("--smtp-relay", f"smtp://127.0.0.1:{port}")
        ses = client(s, "ses")
        ses.verify_email_identity(EmailAddress="relay@example.com")
        mid = ses.send_email(
            Source="relay@example.com",
            Destination={"ToAddresses": ["ann@example.org"], "BccAddresses": ["hidden@example.org"]},
            Message={"Subject": {"Data": "relayed"}, "Body": {"Text": {"Data": "over smtp"}}})["MessageId"]
        wait_for(lambda: received, timeout=30, what="the SMTP server to receive the mail")
        mail_from, rcpts, content = received[0]
        assert mail_from == "relay@example.com"
        assert sorted(rcpts) == ["ann@example.org", "hidden@example.org"]
        assert b"Subject: relayed" in content and b"over smtp" in content
        wait_for(lambda: outbox(s, mid)["Relay"]["Status"] == "sent", timeout=30,
                 what="the outbox to record the relay")
        # Simulator addresses are never relayed.
        ses.send_email(Source="relay@example.com",
                       Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
                       Message={"Subject": {"Data": "sim"}, "Body": {"Text": {"Data": "t"}}})
    finally:
        smtp.stop()
    # With the SMTP server gone, the failure is recorded on the message.
    mid = ses.send_email(Source="relay@example.com", Destination={"ToAddresses": ["bob@example.org"]},
                         Message={"Subject": {"Data": "lost"}, "Body": {"Text": {"Data": "t"}}})["MessageId"]
    wait_for(lambda: outbox(s, mid)["Relay"]["Error"], timeout=30, what="a relay failure")
    m = outbox(s, mid)
    assert m["Relay"]["Status"] in ("retrying", "failed") and m["Relay"]["Attempts"] >= 1
    assert len(received) == 1


def test_accepted_mail_survives_kill_9(server_factory, data_dir):
    s = server_factory()
    ses = client(s, "ses")
    ses.verify_email_identity(EmailAddress="durable@example.com")
    ids = [ses.send_email(Source="durable@example.com", Destination={"ToAddresses": [f"r{i}@example.org"]},
                          Message={"Subject": {"Data": f"m{i}"}, "Body": {"Text": {"Data": "t"}}})["MessageId"]
           for i in range(5)]
    s.kill()
    s2 = server_factory(data=data_dir)
    for i, mid in enumerate(ids):
        assert outbox(s2, mid)["Subject"] == f"m{i}"
    # Identities survive too: the sender can still send.
    client(s2, "ses").send_email(Source="durable@example.com", Destination={"ToAddresses": ["x@example.org"]},
                                 Message={"Subject": {"Data": "after"}, "Body": {"Text": {"Data": "t"}}})


def test_metrics_parse_and_count(server, ses):
    from prometheus_client.parser import text_string_to_metric_families
    ses.send_email(Source="sender@example.com", Destination={"ToAddresses": ["m@example.org"]},
                   Message={"Subject": {"Data": "m"}, "Body": {"Text": {"Data": "t"}}})
    text = server.session.get(f"{server.api}/metrics", timeout=10).text
    fams = list(text_string_to_metric_families(text))
    samples = {s.name: s.value for f in fams for s in f.samples}
    types = {f.name: f.type for f in fams}
    assert types["nimbus_ses_messages_accepted"] == "counter"
    assert samples["nimbus_ses_messages_accepted_total"] >= 1
    assert samples["nimbus_ses_messages_rejected_total"] >= 1
