"""SES Handlebars templates (v1 and v2: blocks, loops, nested data, escaping,
TestRenderTemplate / TestRenderEmailTemplate and their errors) and configuration
set event destinations delivered for real: SES → SNS topic → SQS subscriber, and
SES v2 → EventBridge bus → rule → SQS, for the mailbox simulator's events."""

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import wait_for


def client(server, service):
    return boto3.client(
        service, endpoint_url=server.api, region_name="us-east-1",
        aws_access_key_id="AKIDNIMBUS", aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture(scope="module")
def ses(server):
    c = client(server, "ses")
    c.verify_email_identity(EmailAddress="shop@example.com")
    return c


def error_of(fn, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    return e.value.response["Error"]["Code"], e.value.response["Error"].get("Message", "")


ORDER = {
    "name": "Ann <&> Co",
    "vip": True,
    "items": [{"sku": "A-1", "qty": 2, "price": "9.50"}, {"sku": "<B-2>", "qty": 1, "price": "3"}],
    "address": {"city": "Oslo", "lines": ["Storgata 1", "0155"]},
    "coupons": [],
}


def test_v1_handlebars_templates_render_blocks_loops_and_escape(server, ses):
    ses.create_template(Template={
        "TemplateName": "order",
        "SubjectPart": "{{#if vip}}VIP order{{else}}Order{{/if}} for {{name}}",
        "TextPart": "{{#each items}}{{@index}}. {{sku}} x{{qty}} @ {{price}}\n{{/each}}"
                    "Ship to {{address.city}}: {{#each address.lines}}[{{this}}]{{/each}}\n"
                    "{{#each coupons}}{{this}}{{else}}no coupons{{/each}}"
                    "{{#unless gift}} (not a gift){{/unless}}",
        "HtmlPart": "<p>{{name}}</p><ul>{{#each items}}<li>{{sku}}</li>{{/each}}</ul>{{{banner}}}",
    })
    data = dict(ORDER, banner="<hr>")
    rendered = ses.test_render_template(TemplateName="order",
                                        TemplateData=json.dumps(data))["RenderedTemplate"]
    assert "Subject: VIP order for Ann <&> Co" in rendered, rendered
    assert "0. A-1 x2 @ 9.50" in rendered and "1. <B-2> x1 @ 3" in rendered
    assert "Ship to Oslo: [Storgata 1][0155]" in rendered
    assert "no coupons (not a gift)" in rendered
    assert "<p>Ann &lt;&amp;&gt; Co</p>" in rendered
    assert "<li>&lt;B-2&gt;</li>" in rendered and "<hr>" in rendered
    # Sending renders the same way; the outbox holds each part.
    mid = ses.send_templated_email(Source="shop@example.com",
                                   Destination={"ToAddresses": ["ann@example.org"]},
                                   Template="order", TemplateData=json.dumps(dict(data, vip=False)))["MessageId"]
    m = server.session.get(f"{server.api}/_nimbus/services/mail/messages/{mid}").json()
    assert m["Subject"] == "Order for Ann <&> Co"
    assert "1. <B-2> x1 @ 3" in m["Text"]
    assert m["Html"].startswith("<p>Ann &lt;&amp;&gt; Co</p><ul><li>A-1</li>")


def test_v1_rendering_errors(server, ses):
    # A variable missing from the data, at the top level or inside a loop.
    code, msg = error_of(ses.test_render_template, TemplateName="order",
                         TemplateData=json.dumps({k: v for k, v in ORDER.items() if k != "name"}))
    assert code == "MissingRenderingAttribute" and "name" in msg, msg
    bad_items = dict(ORDER, items=[{"sku": "x", "qty": 1}])
    code, msg = error_of(ses.test_render_template, TemplateName="order",
                         TemplateData=json.dumps(bad_items))
    assert code == "MissingRenderingAttribute" and "price" in msg, msg
    assert error_of(ses.test_render_template, TemplateName="order",
                    TemplateData="{not json")[0] == "InvalidRenderingParameter"
    assert error_of(ses.test_render_template, TemplateName="nope",
                    TemplateData="{}")[0] == "TemplateDoesNotExist"
    # Broken Handlebars is refused when the template is stored.
    assert error_of(ses.create_template, Template={
        "TemplateName": "broken", "SubjectPart": "{{#if x}}unclosed"})[0] == "InvalidTemplate"
    assert error_of(ses.update_template, Template={
        "TemplateName": "order", "SubjectPart": "s", "HtmlPart": "{{#each a}}{{/if}}"})[0] == \
        "InvalidTemplate"
    assert "broken" not in [t["Name"] for t in ses.list_templates()["TemplatesMetadata"]]


def test_v2_test_render_email_template(server):
    v2 = client(server, "sesv2")
    v2.create_email_template(TemplateName="v2order", TemplateContent={
        "Subject": "{{#if vip}}VIP {{/if}}#{{id}}",
        "Text": "{{#each items}}{{sku}};{{/each}}",
        "Html": "<b>{{name}}</b>"})
    out = v2.test_render_email_template(
        TemplateName="v2order",
        TemplateData=json.dumps({"vip": True, "id": 7, "items": ORDER["items"], "name": "<x>"}))
    r = out["RenderedTemplate"]
    assert "Subject: VIP #7" in r and "A-1;<B-2>;" in r and "<b>&lt;x&gt;</b>" in r, r
    code, msg = error_of(v2.test_render_email_template, TemplateName="v2order",
                         TemplateData=json.dumps({"id": 7, "items": []}))
    assert code == "BadRequestException" and "name" in msg, msg
    assert error_of(v2.create_email_template, TemplateName="v2bad",
                    TemplateContent={"Subject": "{{/if}}"})[0] == "BadRequestException"


def queue(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def drain(sqs, url, want, unwrap):
    got = []

    def enough():
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                     WaitTimeSeconds=1).get("Messages", []):
            got.append(unwrap(json.loads(m["Body"])))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(got) >= want

    wait_for(enough, timeout=30, what=f"{want} SES events")
    return got


def test_v1_event_destination_to_a_real_sns_topic(server, ses):
    sns, sqs = client(server, "sns"), client(server, "sqs")
    topic = sns.create_topic(Name="ses-events")["TopicArn"]
    url, arn = queue(sqs, "ses-events-sub")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    ses.create_configuration_set(ConfigurationSet={"Name": "to-topic"})
    ses.create_configuration_set_event_destination(
        ConfigurationSetName="to-topic",
        EventDestination={"Name": "sns", "Enabled": True,
                          "MatchingEventTypes": ["send", "delivery", "bounce", "complaint"],
                          "SNSDestination": {"TopicARN": topic}})
    mid = ses.send_email(
        Source="shop@example.com", ConfigurationSetName="to-topic",
        Destination={"ToAddresses": ["success@simulator.amazonses.com",
                                     "bounce@simulator.amazonses.com",
                                     "complaint@simulator.amazonses.com"]},
        Message={"Subject": {"Data": "sim"}, "Body": {"Text": {"Data": "t"}}},
        Tags=[{"Name": "campaign", "Value": "spring"}])["MessageId"]
    envelopes = drain(sqs, url, 4, lambda b: b)
    assert all(e["Type"] == "Notification" and e["TopicArn"] == topic for e in envelopes)
    events = {}
    for e in envelopes:
        ev = json.loads(e["Message"])
        events[ev["eventType"]] = ev
    assert sorted(events) == ["Bounce", "Complaint", "Delivery", "Send"]
    for ev in events.values():
        assert ev["mail"]["messageId"] == mid
        assert ev["mail"]["source"] == "shop@example.com"
        assert ev["mail"]["tags"]["campaign"] == ["spring"]
        assert ev["mail"]["tags"]["ses:configuration-set"] == ["to-topic"]
    b = events["Bounce"]["bounce"]
    assert (b["bounceType"], b["bounceSubType"]) == ("Permanent", "General")
    assert [r["emailAddress"] for r in b["bouncedRecipients"]] == ["bounce@simulator.amazonses.com"]
    c = events["Complaint"]["complaint"]
    assert [r["emailAddress"] for r in c["complainedRecipients"]] == ["complaint@simulator.amazonses.com"]
    assert "bounce@simulator.amazonses.com" not in events["Delivery"]["delivery"]["recipients"]
    assert "success@simulator.amazonses.com" in events["Delivery"]["delivery"]["recipients"]


def test_v2_event_destination_to_an_eventbridge_bus(server, ses):
    v2, ev, sqs = client(server, "sesv2"), client(server, "events"), client(server, "sqs")
    url, arn = queue(sqs, "ses-bus-target")
    bus = ev.describe_event_bus(Name="default")["Arn"]
    ev.put_rule(Name="ses-bounces", EventPattern=json.dumps(
        {"source": ["aws.ses"], "detail-type": ["Email Bounced", "Email Complaint Received"]}))
    ev.put_targets(Rule="ses-bounces", Targets=[{"Id": "q", "Arn": arn}])
    v2.create_configuration_set(ConfigurationSetName="to-bus")
    v2.create_configuration_set_event_destination(
        ConfigurationSetName="to-bus", EventDestinationName="bus",
        EventDestination={"Enabled": True, "MatchingEventTypes": ["SEND", "BOUNCE", "COMPLAINT"],
                          "EventBridgeDestination": {"EventBusArn": bus}})
    mid = v2.send_email(
        FromEmailAddress="shop@example.com", ConfigurationSetName="to-bus",
        Destination={"ToAddresses": ["bounce@simulator.amazonses.com",
                                     "complaint@simulator.amazonses.com"]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}})["MessageId"]
    got = drain(sqs, url, 2, lambda b: b)
    # Only the rule's detail types reach the queue (the Send event does not).
    assert sorted(e["detail-type"] for e in got) == ["Email Bounced", "Email Complaint Received"]
    for e in got:
        assert e["source"] == "aws.ses"
        assert e["detail"]["mail"]["messageId"] == mid
    bounced = next(e for e in got if e["detail-type"] == "Email Bounced")
    assert bounced["detail"]["eventType"] == "Bounce"
    assert bounced["detail"]["bounce"]["bouncedRecipients"][0]["emailAddress"] == \
        "bounce@simulator.amazonses.com"
