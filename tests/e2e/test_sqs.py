"""SQS on the real binary with real clients: boto3 (awsJson 1.0), the legacy awsQuery
protocol (signed form posts, XML answers), the aws CLI and the AWS SDK for
JavaScript v3 (@aws-sdk/client-sqs, which checks the MD5 digests itself).

Covers queues (create/idempotent create/get URL/list with pagination/attributes/
tags/delete/purge's 60 s rule), messages (send, batch, receive, delete, visibility,
delays), MD5 digests as AWS computes them, FIFO order and deduplication, redrive to
a dead-letter queue after maxReceiveCount and a message move task back, long
polling woken by a send, bad input answered with SQS's errors, the admin surface and
metrics, and kill -9 with no acknowledged message lost."""

import hashlib
import json
import os
import struct
import subprocess
import threading
import xml.etree.ElementTree as ET

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import ROOT, wait_for

ACCOUNT = "123456789012"
NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"


def client(server):
    return boto3.client(
        "sqs",
        endpoint_url=server.api,
        region_name="us-east-1",
        aws_access_key_id="AKIDSQSTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def sqs(server):
    return client(server)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def md5_of_attributes(attrs):
    """AWS's MD5OfMessageAttributes, written independently of the server."""
    h = hashlib.md5()
    for name in sorted(attrs):
        a = attrs[name]
        for part in (name.encode(), a["DataType"].encode()):
            h.update(struct.pack(">I", len(part)) + part)
        if "BinaryValue" in a:
            v = a["BinaryValue"]
            h.update(b"\x02" + struct.pack(">I", len(v)) + v)
        else:
            v = a["StringValue"].encode()
            h.update(b"\x01" + struct.pack(">I", len(v)) + v)
    return h.hexdigest()


# -- queues ---------------------------------------------------------------------------

def test_queue_lifecycle(server, sqs):
    port = server.api.rsplit(":", 1)[1]
    url = sqs.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "45"},
                           tags={"team": "core"})["QueueUrl"]
    assert url == f"http://127.0.0.1:{port}/{ACCOUNT}/life"
    # Same attributes: the same queue; different: QueueAlreadyExists.
    assert sqs.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "46"})
    assert error_code(e) == "QueueAlreadyExists"
    assert sqs.get_queue_url(QueueName="life")["QueueUrl"] == url
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "45"
    assert attrs["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:life"
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["MaximumMessageSize"] == "262144"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "2"})
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"]
    assert got == {"DelaySeconds": "2"}
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(ClientError) as e:
        sqs.get_queue_url(QueueName="life")
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"


def test_list_queues_with_prefix_and_pages(sqs):
    for i in range(5):
        sqs.create_queue(QueueName=f"page-{i}")
    urls = sqs.list_queues(QueueNamePrefix="page-")["QueueUrls"]
    assert [u.rsplit("/", 1)[1] for u in urls] == [f"page-{i}" for i in range(5)]
    seen = []
    kw = {"QueueNamePrefix": "page-", "MaxResults": 2}
    while True:
        r = sqs.list_queues(**kw)
        seen += [u.rsplit("/", 1)[1] for u in r["QueueUrls"]]
        if "NextToken" not in r:
            break
        kw["NextToken"] = r["NextToken"]
    assert seen == [f"page-{i}" for i in range(5)]
    paginated = [u for p in sqs.get_paginator("list_queues").paginate(QueueNamePrefix="page-",
                                                                      PaginationConfig={"PageSize": 3})
                 for u in p.get("QueueUrls", [])]
    assert len(paginated) == 5


# -- messages -------------------------------------------------------------------------

def test_send_receive_delete_with_attributes_and_digests(sqs):
    url = sqs.create_queue(QueueName="basic")["QueueUrl"]
    attrs = {
        "color": {"DataType": "String", "StringValue": "blue"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
    }
    body = "héllo wörld"
    r = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attrs,
                         MessageSystemAttributes={"AWSTraceHeader": {
                             "DataType": "String", "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793"}})
    assert r["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert r["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
    assert "MD5OfMessageSystemAttributes" in r
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"],
                              MaxNumberOfMessages=10)["Messages"]
    assert len(got) == 1
    m = got[0]
    assert m["MessageId"] == r["MessageId"]
    assert m["Body"] == body
    assert m["MD5OfBody"] == r["MD5OfMessageBody"]
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
    assert m["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01\xff"
    assert m["MessageAttributes"]["count"] == {"DataType": "Number", "StringValue": "42"}
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert m["Attributes"]["AWSTraceHeader"].startswith("Root=1-5759e988")
    for k in ("SentTimestamp", "ApproximateFirstReceiveTimestamp", "SenderId"):
        assert k in m["Attributes"]
    # Only the attributes asked for come back, with their own digest.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    m2 = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["color"])["Messages"][0]
    assert list(m2["MessageAttributes"]) == ["color"]
    assert m2["MD5OfMessageAttributes"] == md5_of_attributes({"color": attrs["color"]})
    assert "Attributes" not in m2
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m2["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["ApproximateNumberOfMessages"] == "0"
    assert a["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_batches(sqs):
    url = sqs.create_queue(QueueName="batches")["QueueUrl"]
    r = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": f"e{i}", "MessageBody": f"m{i}"} for i in range(10)
    ] )
    assert sorted(s["Id"] for s in r["Successful"]) == sorted(f"e{i}" for i in range(10))
    assert r.get("Failed", []) == []
    got = []
    while len(got) < 10:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert sorted(m["Body"] for m in got) == sorted(f"m{i}" for i in range(10))
    d = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got[:9])
    ] + [{"Id": "bad", "ReceiptHandle": "not-a-handle"}])
    assert len(d["Successful"]) == 9
    assert d["Failed"][0]["Id"] == "bad"
    assert d["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    assert d["Failed"][0]["SenderFault"] is True
    c = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "v", "ReceiptHandle": got[9]["ReceiptHandle"], "VisibilityTimeout": 0}])
    assert c["Successful"] == [{"Id": "v"}]
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "x", "MessageBody": "a"},
                                                      {"Id": "x", "MessageBody": "b"}])
    assert error_code(e) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": f"e{i}", "MessageBody": "x"} for i in range(11)])
    assert error_code(e) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"


def test_visibility_timeout_expires_and_the_message_returns(sqs):
    url = sqs.create_queue(QueueName="vis")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1, AttributeNames=["All"])["Messages"][0]
    # Invisible now; back after its timeout — the long poll wakes when it expires.
    again = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20, AttributeNames=["All"])["Messages"][0]
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    # The first receive's handle was superseded.
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=5)
    assert error_code(e) == "InvalidParameterValue"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])


def test_long_poll_is_woken_by_a_send(sqs):
    url = sqs.create_queue(QueueName="longpoll")["QueueUrl"]
    result = {}

    def poll():
        result["r"] = client_for(sqs).receive_message(QueueUrl=url, WaitTimeSeconds=20)

    t = threading.Thread(target=poll)
    t.start()
    sqs.send_message(QueueUrl=url, MessageBody="wake up")
    t.join(30)
    assert not t.is_alive()
    assert result["r"]["Messages"][0]["Body"] == "wake up"


def client_for(sqs):
    """A second client (boto3 clients are not shared across threads)."""
    return boto3.client("sqs", endpoint_url=sqs.meta.endpoint_url, region_name="us-east-1",
                        aws_access_key_id="AKIDSQSTEST", aws_secret_access_key="secret")


def test_delay_seconds_per_message(sqs):
    url = sqs.create_queue(QueueName="delayed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["ApproximateNumberOfMessagesDelayed"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)["Messages"]
    assert got[0]["Body"] == "later"


# -- FIFO -----------------------------------------------------------------------------

def test_fifo_order_groups_and_deduplication(sqs):
    url = sqs.create_queue(QueueName="orders.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    seqs = []
    for i in range(5):
        r = sqs.send_message(QueueUrl=url, MessageBody=f"a{i}", MessageGroupId="a")
        seqs.append(int(r["SequenceNumber"]))
    assert seqs == sorted(seqs)
    dup = sqs.send_message(QueueUrl=url, MessageBody="a0", MessageGroupId="a")
    assert int(dup["SequenceNumber"]) == seqs[0]
    sqs.send_message(QueueUrl=url, MessageBody="b0", MessageGroupId="b",
                     MessageDeduplicationId="explicit")
    # Explicit id wins over the content.
    sqs.send_message(QueueUrl=url, MessageBody="b0-other", MessageGroupId="b",
                     MessageDeduplicationId="explicit")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, AttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ["a0", "a1", "a2"]
    assert got[0]["Attributes"]["MessageGroupId"] == "a"
    assert "SequenceNumber" in got[0]["Attributes"]
    # Group a is blocked while its messages are in flight.
    nxt = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in nxt] == ["b0"]
    for m in got + nxt:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in rest] == ["a3", "a4"]
    # Still deduplicated after the first copy was deleted.
    again = sqs.send_message(QueueUrl=url, MessageBody="a0", MessageGroupId="a")
    assert again["MessageId"] == dup["MessageId"]
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert error_code(e) == "MissingParameter"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="a", DelaySeconds=3)
    assert error_code(e) == "InvalidParameterValue"
    plain = sqs.create_queue(QueueName="not-fifo")["QueueUrl"]
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=plain, MessageBody="x", MessageDeduplicationId="d")
    assert error_code(e) == "InvalidParameterValue"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true"
    assert attrs["DeduplicationScope"] == "queue"
    assert attrs["FifoThroughputLimit"] == "perQueue"


# -- redrive --------------------------------------------------------------------------

def test_dead_letter_after_max_receive_count_and_a_move_task_back(sqs):
    dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = sqs.create_queue(QueueName="work", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    sqs.send_message(QueueUrl=src, MessageBody="poison")
    for n in ("1", "2"):
        m = sqs.receive_message(QueueUrl=src, VisibilityTimeout=0, AttributeNames=["All"])["Messages"][0]
        assert m["Attributes"]["ApproximateReceiveCount"] == n
    assert "Messages" not in sqs.receive_message(QueueUrl=src, VisibilityTimeout=0)
    dead = sqs.receive_message(QueueUrl=dlq, VisibilityTimeout=0, AttributeNames=["All"])["Messages"][0]
    assert dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"].endswith(":work")
    task = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert task

    def done():
        r = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
        return r and r[0]["Status"] == "COMPLETED"

    wait_for(done, timeout=20, what="the move task")
    r = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
    assert r["ApproximateNumberOfMessagesMoved"] == 1
    back = sqs.receive_message(QueueUrl=src, AttributeNames=["All"])["Messages"][0]
    assert back["Body"] == "poison"
    assert back["Attributes"]["ApproximateReceiveCount"] == "1"
    # A dead-letter queue that allows nobody refuses new sources.
    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={
        "RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"})})
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName="work2", Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})})
    assert error_code(e) == "InvalidParameterValue"


def test_purge_once_a_minute(sqs):
    url = sqs.create_queue(QueueName="purged")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    with pytest.raises(ClientError) as e:
        sqs.purge_queue(QueueUrl=url)
    assert error_code(e) == "AWS.SimpleQueueService.PurgeQueueInProgress"


def test_permissions_edit_the_policy(sqs):
    url = sqs.create_queue(QueueName="perm")["QueueUrl"]
    sqs.add_permission(QueueUrl=url, Label="send", AWSAccountIds=["111122223333"], Actions=["SendMessage"])
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert policy["Statement"][0]["Sid"] == "send"
    assert policy["Statement"][0]["Action"] == ["SQS:SendMessage"]
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=url, Label="send", AWSAccountIds=["1"], Actions=["SendMessage"])
    assert error_code(e) == "InvalidParameterValue"
    sqs.remove_permission(QueueUrl=url, Label="send")
    assert "Policy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


# -- bad input ------------------------------------------------------------------------

def test_bad_input_gets_sqs_errors(sqs):
    url = sqs.create_queue(QueueName="strict")["QueueUrl"]
    cases = [
        (lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * 262145), "InvalidParameterValue"),
        (lambda: sqs.send_message(QueueUrl=url, MessageBody="bad \x01 char"), "InvalidMessageContents"),
        (lambda: sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes={
            "a": {"DataType": "String", "StringValue": ""}}), "InvalidParameterValue"),
        (lambda: sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes={
            "a": {"DataType": "Weird", "StringValue": "v"}}), "InvalidParameterValue"),
        (lambda: sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=901), "InvalidParameterValue"),
        (lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage"), "ReceiptHandleIsInvalid"),
        (lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11), "InvalidParameterValue"),
        (lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=21), "InvalidParameterValue"),
        (lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes={"Nope": "1"}), "InvalidAttributeName"),
        (lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "-1"}),
         "InvalidAttributeValue"),
        (lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"]), "InvalidAttributeName"),
        (lambda: sqs.create_queue(QueueName="has space"), "InvalidParameterValue"),
        (lambda: sqs.create_queue(QueueName="x.fifo"), "InvalidParameterValue"),
        (lambda: sqs.send_message(QueueUrl=url.replace("strict", "missing"), MessageBody="x"),
         "AWS.SimpleQueueService.NonExistentQueue"),
    ]
    for call, code in cases:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == code, e.value.response
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# -- awsQuery -------------------------------------------------------------------------

def query(server, params, path="/"):
    """A signed awsQuery form post, as older SDKs send it."""
    body = "&".join(f"{k}={requests.utils.quote(str(v), safe='')}" for k, v in params.items())
    req = AWSRequest(method="POST", url=server.api + path, data=body.encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials("AKIDSQSTEST", "secret"), "sqs", "us-east-1").add_auth(req)
    return requests.post(server.api + path, data=body.encode(), headers=dict(req.headers), timeout=30)


def test_the_query_protocol_answers_in_xml(server):
    r = query(server, {"Action": "CreateQueue", "Version": "2012-11-05", "QueueName": "legacy",
                       "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "40",
                       "Tag.1.Key": "k", "Tag.1.Value": "v"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/xml"
    url = ET.fromstring(r.text).find(f"{NS}CreateQueueResult/{NS}QueueUrl").text
    assert url.endswith(f"/{ACCOUNT}/legacy")
    path = "/" + url.split("/", 3)[3]
    r = query(server, {"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": "<xml> & more",
                       "MessageAttribute.1.Name": "color", "MessageAttribute.1.Value.DataType": "String",
                       "MessageAttribute.1.Value.StringValue": "red"}, path=path)
    assert r.status_code == 200, r.text
    res = ET.fromstring(r.text).find(f"{NS}SendMessageResult")
    assert res.find(f"{NS}MD5OfMessageBody").text == hashlib.md5(b"<xml> & more").hexdigest()
    assert res.find(f"{NS}MD5OfMessageAttributes").text == md5_of_attributes(
        {"color": {"DataType": "String", "StringValue": "red"}})
    r = query(server, {"Action": "ReceiveMessage", "Version": "2012-11-05", "QueueUrl": url,
                       "AttributeName.1": "All", "MessageAttributeName.1": "All",
                       "MaxNumberOfMessages": "5"})
    assert r.status_code == 200, r.text
    msg = ET.fromstring(r.text).find(f"{NS}ReceiveMessageResult/{NS}Message")
    assert msg.find(f"{NS}Body").text == "<xml> & more"
    attrs = {a.find(f"{NS}Name").text: a.find(f"{NS}Value").text for a in msg.findall(f"{NS}Attribute")}
    assert attrs["ApproximateReceiveCount"] == "1"
    ma = msg.find(f"{NS}MessageAttribute")
    assert ma.find(f"{NS}Name").text == "color"
    assert ma.find(f"{NS}Value/{NS}StringValue").text == "red"
    handle = msg.find(f"{NS}ReceiptHandle").text
    r = query(server, {"Action": "GetQueueAttributes", "Version": "2012-11-05", "QueueUrl": url,
                       "AttributeName.1": "ApproximateNumberOfMessagesNotVisible",
                       "AttributeName.2": "VisibilityTimeout"})
    got = {a.find(f"{NS}Name").text: a.find(f"{NS}Value").text
           for a in ET.fromstring(r.text).iter(f"{NS}Attribute")}
    assert got == {"ApproximateNumberOfMessagesNotVisible": "1", "VisibilityTimeout": "40"}
    r = query(server, {"Action": "DeleteMessageBatch", "Version": "2012-11-05", "QueueUrl": url,
                       "DeleteMessageBatchRequestEntry.1.Id": "a",
                       "DeleteMessageBatchRequestEntry.1.ReceiptHandle": handle})
    assert r.status_code == 200, r.text
    ok = ET.fromstring(r.text).find(f"{NS}DeleteMessageBatchResult/{NS}DeleteMessageBatchResultEntry")
    assert ok.find(f"{NS}Id").text == "a"
    r = query(server, {"Action": "ListQueueTags", "Version": "2012-11-05", "QueueUrl": url})
    tag = ET.fromstring(r.text).find(f"{NS}ListQueueTagsResult/{NS}Tag")
    assert (tag.find(f"{NS}Key").text, tag.find(f"{NS}Value").text) == ("k", "v")
    r = query(server, {"Action": "ListQueues", "Version": "2012-11-05", "QueueNamePrefix": "leg"})
    urls = [u.text for u in ET.fromstring(r.text).iter(f"{NS}QueueUrl")]
    assert urls == [url]
    # Errors: the query code, as XML.
    r = query(server, {"Action": "GetQueueUrl", "Version": "2012-11-05", "QueueName": "nope"})
    assert r.status_code == 400
    err = ET.fromstring(r.text).find(f"{NS}Error")
    assert err.find(f"{NS}Code").text == "AWS.SimpleQueueService.NonExistentQueue"
    assert err.find(f"{NS}Type").text == "Sender"
    r = query(server, {"Action": "SendMessage", "Version": "2012-11-05", "QueueUrl": url})
    assert r.status_code == 400
    assert ET.fromstring(r.text).find(f"{NS}Error/{NS}Code").text == "MissingParameter"
    r = query(server, {"Action": "DeleteQueue", "Version": "2012-11-05"}, path=path)
    assert r.status_code == 200, r.text


def test_json_errors_carry_the_query_code_header(server):
    req = AWSRequest(method="POST", url=server.api + "/", data=json.dumps({"QueueName": "nope"}).encode(),
                     headers={"Content-Type": "application/x-amz-json-1.0",
                              "X-Amz-Target": "AmazonSQS.GetQueueUrl"})
    SigV4Auth(Credentials("AKIDSQSTEST", "secret"), "sqs", "us-east-1").add_auth(req)
    r = requests.post(server.api + "/", data=req.body, headers=dict(req.headers), timeout=10)
    assert r.status_code == 400
    assert r.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    assert r.json()["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"


# -- other clients --------------------------------------------------------------------

def aws_cli(server, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDSQSTEST", AWS_SECRET_ACCESS_KEY="secret",
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")
    aws = ROOT / ".venv" / "bin" / "aws"
    if not aws.exists():
        pytest.fail(f"{aws} missing: install tests/requirements.txt into .venv")
    r = subprocess.run([str(aws), "sqs", *args, "--endpoint-url", server.api, "--output", "json"],
                       capture_output=True, text=True, env=env, timeout=60)
    return r


def test_the_aws_cli(server):
    r = aws_cli(server, "create-queue", "--queue-name", "cli-queue")
    assert r.returncode == 0, r.stderr
    url = json.loads(r.stdout)["QueueUrl"]
    r = aws_cli(server, "send-message", "--queue-url", url, "--message-body", "from the cli")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["MD5OfMessageBody"] == hashlib.md5(b"from the cli").hexdigest()
    r = aws_cli(server, "receive-message", "--queue-url", url, "--wait-time-seconds", "5")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["Messages"][0]
    assert m["Body"] == "from the cli"
    r = aws_cli(server, "delete-message", "--queue-url", url, "--receipt-handle", m["ReceiptHandle"])
    assert r.returncode == 0, r.stderr
    r = aws_cli(server, "get-queue-url", "--queue-name", "no-such-queue")
    assert r.returncode != 0
    assert "NonExistentQueue" in r.stderr or "QueueDoesNotExist" in r.stderr, r.stderr


JS = r"""
const { SQSClient, CreateQueueCommand, SendMessageCommand, SendMessageBatchCommand,
        ReceiveMessageCommand, DeleteMessageCommand, GetQueueUrlCommand } = require("@aws-sdk/client-sqs");
(async () => {
  const c = new SQSClient({ endpoint: process.env.ENDPOINT, region: "us-east-1",
    credentials: { accessKeyId: "AKIDSQSTEST", secretAccessKey: "secret" } });
  const { QueueUrl } = await c.send(new CreateQueueCommand({ QueueName: "js-queue.fifo",
    Attributes: { FifoQueue: "true", ContentBasedDeduplication: "true" } }));
  await c.send(new SendMessageCommand({ QueueUrl, MessageBody: "one", MessageGroupId: "g",
    MessageAttributes: { n: { DataType: "Number", StringValue: "1" } } }));
  await c.send(new SendMessageBatchCommand({ QueueUrl, Entries: [
    { Id: "a", MessageBody: "two", MessageGroupId: "g" },
    { Id: "b", MessageBody: "three", MessageGroupId: "g" }] }));
  const r = await c.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10,
    MessageAttributeNames: ["All"], MessageSystemAttributeNames: ["All"] }));
  for (const m of r.Messages) {
    await c.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: m.ReceiptHandle }));
  }
  let missing = "";
  try { await c.send(new GetQueueUrlCommand({ QueueName: "nope" })); }
  catch (e) { missing = e.name + "|" + (e.Code || ""); }
  console.log(JSON.stringify({ QueueUrl, bodies: r.Messages.map(m => m.Body),
    attr: r.Messages[0].MessageAttributes.n.StringValue, missing }));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_the_js_sdk_v3(server, tmp_path):
    node_modules = ROOT / "sdk" / "node_modules"
    if not (node_modules / "@aws-sdk" / "client-sqs").exists():
        pytest.fail(f"{node_modules}/@aws-sdk/client-sqs missing: install the SDKs (scripts/test)")
    script = tmp_path / "sqs.js"
    script.write_text(JS)
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NODE_PATH=str(node_modules), ENDPOINT=server.api))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["bodies"] == ["one", "two", "three"]
    assert out["attr"] == "1"
    assert out["QueueUrl"].endswith("/js-queue.fifo")
    assert "QueueDoesNotExist" in out["missing"] or "NonExistentQueue" in out["missing"], out


# -- introspection --------------------------------------------------------------------

def test_admin_surface_and_metrics(server, sqs):
    url = sqs.create_queue(QueueName="observed")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"b{i}"} for i in range(3)])
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    r = requests.get(server.api + "/_nimbus/services/sqs/queues/observed", timeout=10)
    assert r.status_code == 200, r.text
    q = r.json()
    assert (q["visible"], q["in_flight"], q["delayed"]) == (2, 1, 0)
    assert q["sends"] == 3 and q["receives"] == 1
    r = requests.get(server.api + "/_nimbus/services/sqs/queues/observed/messages?max=10", timeout=10)
    assert [m["body"] for m in r.json()["Messages"]] == ["b0", "b1", "b2"]
    names = [q["name"] for q in requests.get(server.api + "/_nimbus/services/sqs/queues", timeout=10).json()["Queues"]]
    assert "observed" in names
    assert requests.get(server.api + "/_nimbus/services/sqs/queues/nope", timeout=10).status_code == 404
    metrics = requests.get(server.api + "/metrics", timeout=10).text
    assert 'nimbus_sqs_messages{queue="observed",state="visible"} 2' in metrics
    assert 'nimbus_sqs_messages{queue="observed",state="in_flight"} 1' in metrics
    assert 'nimbus_sqs_sent_messages_total{queue="observed"} 3' in metrics
    # The SQS families parse as OpenMetrics (counter families named without _total).
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    sqs_lines = "\n".join(l for l in metrics.splitlines() if "nimbus_sqs_" in l) + "\n# EOF\n"
    families = {f.name: f for f in text_string_to_metric_families(sqs_lines)}
    assert families["nimbus_sqs_sent_messages"].type == "counter"
    assert families["nimbus_sqs_messages"].type == "gauge"


# -- durability -----------------------------------------------------------------------

def test_kill_9_loses_no_acknowledged_message(server_factory, data_dir):
    s = server_factory()
    c = client(s)
    url = c.create_queue(QueueName="durable")["QueueUrl"]
    # One message deleted (acknowledged) and one in flight before the storm.
    c.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "pre-a"},
                                                {"Id": "b", "MessageBody": "pre-b"}])
    got = c.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=1)["Messages"]
    assert len(got) == 2
    deleted = got[0]["Body"]
    c.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    acked = {got[1]["Body"]}
    lock = threading.Lock()

    def sender(k):
        cl = client(s)
        for i in range(100_000):
            body = f"t{k}-{i}"
            try:
                cl.send_message(QueueUrl=url, MessageBody=body)
            except Exception:  # noqa: BLE001 - the server dies mid-request
                return
            with lock:
                acked.add(body)

    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    # Kill -9 while the senders are still sending.
    wait_for(lambda: len(acked) >= 200, timeout=60, what="acknowledged sends")
    s.kill()
    for t in threads:
        t.join(30)
    s2 = server_factory(data=data_dir)
    c2 = client(s2)
    url2 = c2.get_queue_url(QueueName="durable")["QueueUrl"]
    seen = []
    while True:
        r = c2.receive_message(QueueUrl=url2, MaxNumberOfMessages=10, WaitTimeSeconds=2)
        if "Messages" not in r:
            break
        for m in r["Messages"]:
            seen.append(m["Body"])
            c2.delete_message(QueueUrl=url2, ReceiptHandle=m["ReceiptHandle"])
    assert deleted not in seen
    # Every acknowledged send is there; a send cut off before its answer may be too.
    assert acked <= set(seen), sorted(acked - set(seen))[:10]
    assert len(seen) == len(set(seen))


def test_a_move_task_survives_kill_9_and_resumes(server_factory, data_dir):
    """StartMessageMoveTask at one message a second; the server is killed -9
    after the first moved; the next server lists the same task, finishes it, and
    every message is back in its source exactly once."""
    s = server_factory()
    c = client(s)
    dlq = c.create_queue(QueueName="moves-dlq")["QueueUrl"]
    dlq_arn = c.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = c.create_queue(QueueName="moves-src", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})})["QueueUrl"]
    src_arn = c.get_queue_attributes(QueueUrl=src, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bodies = {f"m{i}" for i in range(10)}
    c.send_message_batch(QueueUrl=dlq, Entries=[{"Id": b, "MessageBody": b} for b in sorted(bodies)])
    handle = c.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=src_arn, MaxNumberOfMessagesPerSecond=1
    )["TaskHandle"]

    def moved():
        return c.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]["ApproximateNumberOfMessagesMoved"]

    wait_for(lambda: moved() >= 1, timeout=30, what="the first message moved")
    r = c.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
    # One a second: ten take nine seconds, so the task is still running here.
    assert r["Status"] == "RUNNING" and r["TaskHandle"] == handle
    with pytest.raises(ClientError) as e:
        c.start_message_move_task(SourceArn=dlq_arn)
    assert error_code(e) == "AWS.SimpleQueueService.UnsupportedOperation"
    s.kill()

    s2 = server_factory(data=data_dir)
    c2 = client(s2)

    def task():
        return c2.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]

    assert task()["MaxNumberOfMessagesPerSecond"] == 1
    assert task()["ApproximateNumberOfMessagesToMove"] == 10
    wait_for(lambda: task()["Status"] == "COMPLETED", timeout=60, what="the resumed task")
    assert task()["ApproximateNumberOfMessagesMoved"] == 10
    src2 = c2.get_queue_url(QueueName="moves-src")["QueueUrl"]
    seen = []
    while True:
        got = c2.receive_message(QueueUrl=src2, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if "Messages" not in got:
            break
        for m in got["Messages"]:
            seen.append(m["Body"])
            c2.delete_message(QueueUrl=src2, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(seen) == sorted(bodies)
    dlq2 = c2.get_queue_url(QueueName="moves-dlq")["QueueUrl"]
    assert "Messages" not in c2.receive_message(QueueUrl=dlq2, WaitTimeSeconds=0)


def test_a_cancelled_move_task_stays_cancelled_across_a_restart(server_factory, data_dir):
    s = server_factory()
    c = client(s)
    dlq = c.create_queue(QueueName="cancel-dlq")["QueueUrl"]
    dlq_arn = c.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = c.create_queue(QueueName="cancel-src", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})})["QueueUrl"]
    src_arn = c.get_queue_attributes(QueueUrl=src, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    c.send_message_batch(QueueUrl=dlq, Entries=[{"Id": f"m{i}", "MessageBody": f"m{i}"} for i in range(10)])
    handle = c.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=src_arn, MaxNumberOfMessagesPerSecond=1
    )["TaskHandle"]
    c.cancel_message_move_task(TaskHandle=handle)
    s.kill()
    s2 = server_factory(data=data_dir)
    c2 = client(s2)
    wait_for(
        lambda: c2.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]["Status"] == "CANCELLED",
        timeout=30,
        what="the cancelled task",
    )
    moved = c2.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]["ApproximateNumberOfMessagesMoved"]
    assert moved < 10
    dlq2 = c2.get_queue_url(QueueName="cancel-dlq")["QueueUrl"]
    left = c2.get_queue_attributes(QueueUrl=dlq2, AttributeNames=["ApproximateNumberOfMessages"])
    assert int(left["Attributes"]["ApproximateNumberOfMessages"]) == 10 - moved


def test_the_nimbus_queues_cli(server, sqs):
    url = sqs.create_queue(QueueName="cli-shown")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="peek at me")
    r = server.cli("queues")
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("cli-shown "))
    assert line.split()[1:4] == ["1", "0", "0"], line
    r = server.cli("queues", "peek", "cli-shown")
    assert r.returncode == 0, r.stderr
    assert "visible" in r.stdout and "peek at me" in r.stdout, r.stdout
    r = server.cli("queues", "redrive", "cli-shown")
    assert r.returncode != 0
    assert "Dead Letter Queue" in r.stderr, r.stderr


def test_the_sqs_localhost_host_form(server):
    """A client addressing `sqs.<region>.localhost:<port>` gets queue URLs on that host
    (the Host header is what counts; this box need not resolve *.localhost)."""
    port = server.api.rsplit(":", 1)[1]
    host = f"sqs.us-east-1.localhost:{port}"

    def call(op, body):
        return requests.post(server.api + "/", data=json.dumps(body), timeout=10, headers={
            "Host": host, "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AmazonSQS.{op}"})

    r = call("CreateQueue", {"QueueName": "by-host"})
    assert r.status_code == 200, r.text
    url = r.json()["QueueUrl"]
    assert url == f"http://{host}/{ACCOUNT}/by-host"
    r = call("SendMessage", {"QueueUrl": url, "MessageBody": "via host"})
    assert r.status_code == 200, r.text
    r = call("ReceiveMessage", {"QueueUrl": url})
    assert r.json()["Messages"][0]["Body"] == "via host"
