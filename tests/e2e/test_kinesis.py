"""Kinesis Data Streams end to end: boto3, the aws CLI and the JS SDK v3 against the
real binary — streams, puts hashed to shards, every iterator type, reads across a
split and a merge, resharding, retention, tags, consumers, AWS's errors, and
acknowledged records surviving kill -9."""

import base64
import hashlib
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent.parent
NODE_MODULES = ROOT / "sdk" / "node_modules"
AWS = ROOT / ".venv" / "bin" / "aws"


def kinesis(server):
    return boto3.client(
        "kinesis", endpoint_url=server.api, region_name="us-east-1",
        aws_access_key_id="AKIDNIMBUS", aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture(scope="module")
def k(server):
    return kinesis(server)


def read_all(k, stream, shard_id, iterator_type="TRIM_HORIZON", **kw):
    it = k.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                              ShardIteratorType=iterator_type, **kw)["ShardIterator"]
    out = []
    while it:
        r = k.get_records(ShardIterator=it, Limit=1000)
        out.extend(r["Records"])
        if not r["Records"]:
            # An open shard never ends; a closed one ends with no next iterator.
            return out, r
        it = r.get("NextShardIterator")
    return out, r


def test_create_describe_list_and_waiter(k):
    k.create_stream(StreamName="basic", ShardCount=3)
    k.get_waiter("stream_exists").wait(StreamName="basic", WaiterConfig={"Delay": 1})
    d = k.describe_stream(StreamName="basic")["StreamDescription"]
    assert d["StreamStatus"] == "ACTIVE"
    assert d["StreamARN"] == "arn:aws:kinesis:us-east-1:123456789012:stream/basic"
    assert d["RetentionPeriodHours"] == 24
    assert [s["ShardId"] for s in d["Shards"]] == [
        "shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    # The hash-key space split evenly, as Kinesis splits it.
    ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
              for s in d["Shards"]]
    assert ranges[0][0] == 0 and ranges[-1][1] == 2**128 - 1
    assert ranges[1][0] == 2**128 // 3
    assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:]))
    s = k.describe_stream_summary(StreamName="basic")["StreamDescriptionSummary"]
    assert s["OpenShardCount"] == 3 and s["StreamModeDetails"]["StreamMode"] == "PROVISIONED"
    names = k.list_streams()["StreamNames"]
    assert "basic" in names
    shards = k.list_shards(StreamName="basic", MaxResults=2)
    assert len(shards["Shards"]) == 2 and "NextToken" in shards
    rest = k.list_shards(NextToken=shards["NextToken"])
    assert [s["ShardId"] for s in rest["Shards"]] == ["shardId-000000000002"]
    # On-demand streams take no shard count and get four shards.
    k.create_stream(StreamName="ondemand", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    od = k.describe_stream_summary(StreamName="ondemand")["StreamDescriptionSummary"]
    assert od["StreamModeDetails"]["StreamMode"] == "ON_DEMAND" and od["OpenShardCount"] == 4


def test_puts_hash_partition_keys_by_md5_and_keep_order_per_shard(k):
    k.create_stream(StreamName="hashing", ShardCount=4)
    shards = k.describe_stream(StreamName="hashing")["StreamDescription"]["Shards"]

    def owner(h):
        for s in shards:
            if int(s["HashKeyRange"]["StartingHashKey"]) <= h <= int(s["HashKeyRange"]["EndingHashKey"]):
                return s["ShardId"]

    seqs = {}
    for i in range(40):
        pk = f"key-{i}"
        r = k.put_record(StreamName="hashing", Data=f"v{i}".encode(), PartitionKey=pk)
        assert r["ShardId"] == owner(int(hashlib.md5(pk.encode()).hexdigest(), 16)), pk
        seqs.setdefault(r["ShardId"], []).append(int(r["SequenceNumber"]))
    for shard, got in seqs.items():
        assert got == sorted(got), shard
    # ExplicitHashKey overrides the partition key's hash.
    r = k.put_record(StreamName="hashing", Data=b"x", PartitionKey="any",
                     ExplicitHashKey=str(2**128 - 1))
    assert r["ShardId"] == shards[-1]["ShardId"]
    batch = k.put_records(StreamName="hashing", Records=[
        {"Data": b"a", "PartitionKey": "p", "ExplicitHashKey": "0"},
        {"Data": b"b", "PartitionKey": "p", "ExplicitHashKey": str(2**127)},
        {"Data": b"c", "PartitionKey": "p"},
    ])
    assert batch["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in batch["Records"][:2]] == [shards[0]["ShardId"], shards[2]["ShardId"]]
    # Everything written to a shard reads back in order, once.
    total = 0
    for s in shards:
        recs, _ = read_all(k, "hashing", s["ShardId"])
        nums = [int(r["SequenceNumber"]) for r in recs]
        assert nums == sorted(nums) and len(set(nums)) == len(nums)
        total += len(recs)
    assert total == 44


def test_iterator_types(k):
    k.create_stream(StreamName="iters", ShardCount=1)
    shard = "shardId-000000000000"
    first = [k.put_record(StreamName="iters", Data=f"{i}".encode(), PartitionKey="k")["SequenceNumber"]
             for i in range(5)]
    latest = k.get_shard_iterator(StreamName="iters", ShardId=shard,
                                  ShardIteratorType="LATEST")["ShardIterator"]
    assert k.get_records(ShardIterator=latest)["Records"] == []
    recs, _ = read_all(k, "iters", shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=first[2])
    assert [r["Data"] for r in recs] == [b"2", b"3", b"4"]
    recs, _ = read_all(k, "iters", shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=first[2])
    assert [r["Data"] for r in recs] == [b"3", b"4"]
    # AT_TIMESTAMP: the records that arrived at or after a time. botocore sends
    # whole seconds, so the exact boundary is tested with a raw request's float.
    all_recs, _ = read_all(k, "iters", shard)
    recs, _ = read_all(k, "iters", shard, "AT_TIMESTAMP", Timestamp=datetime(2000, 1, 1))
    assert [r["Data"] for r in recs] == [b"0", b"1", b"2", b"3", b"4"]
    ts = all_recs[3]["ApproximateArrivalTimestamp"].timestamp()
    r = requests.post(k.meta.endpoint_url, json={
        "StreamName": "iters", "ShardId": shard, "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": ts}, headers={"X-Amz-Target": "Kinesis_20131202.GetShardIterator",
                                   "Content-Type": "application/x-amz-json-1.1"})
    assert r.status_code == 200, r.text
    got = k.get_records(ShardIterator=r.json()["ShardIterator"])["Records"]
    assert [x["Data"] for x in got][-2:] == [b"3", b"4"]
    assert all(x["ApproximateArrivalTimestamp"].timestamp() >= ts - 0.0005 for x in got)
    future = k.get_shard_iterator(StreamName="iters", ShardId=shard, ShardIteratorType="AT_TIMESTAMP",
                                  Timestamp=datetime(2999, 1, 1))["ShardIterator"]
    assert k.get_records(ShardIterator=future)["Records"] == []
    # The LATEST iterator taken before sees what is put after it.
    k.put_record(StreamName="iters", Data=b"new", PartitionKey="k")
    r = k.get_records(ShardIterator=latest)
    assert [x["Data"] for x in r["Records"]] == [b"new"]
    assert r["MillisBehindLatest"] == 0
    # Limit pages, and MillisBehindLatest says there is more.
    it = k.get_shard_iterator(StreamName="iters", ShardId=shard,
                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    r = k.get_records(ShardIterator=it, Limit=2)
    assert [x["Data"] for x in r["Records"]] == [b"0", b"1"]
    r = k.get_records(ShardIterator=r["NextShardIterator"], Limit=2)
    assert [x["Data"] for x in r["Records"]] == [b"2", b"3"]


def test_reads_across_a_split_and_a_merge(k):
    k.create_stream(StreamName="resharded", ShardCount=1)
    parent = "shardId-000000000000"
    before = [k.put_record(StreamName="resharded", Data=f"b{i}".encode(), PartitionKey=f"k{i}")
              for i in range(10)]
    assert {r["ShardId"] for r in before} == {parent}
    k.split_shard(StreamName="resharded", ShardToSplit=parent, NewStartingHashKey=str(2**127))
    d = k.describe_stream(StreamName="resharded")["StreamDescription"]
    by_id = {s["ShardId"]: s for s in d["Shards"]}
    assert "EndingSequenceNumber" in by_id[parent]["SequenceNumberRange"]
    low, high = "shardId-000000000001", "shardId-000000000002"
    assert by_id[low]["ParentShardId"] == parent and by_id[high]["ParentShardId"] == parent
    assert by_id[high]["HashKeyRange"]["StartingHashKey"] == str(2**127)
    after = [k.put_record(StreamName="resharded", Data=f"a{i}".encode(), PartitionKey=f"k{i}")
             for i in range(10)]
    assert {r["ShardId"] for r in after} <= {low, high}
    # The parent reads to its end, then names its children.
    recs, last = read_all(k, "resharded", parent)
    assert [r["Data"] for r in recs] == [f"b{i}".encode() for i in range(10)]
    assert "NextShardIterator" not in last or last["NextShardIterator"] is None
    assert sorted(c["ShardId"] for c in last["ChildShards"]) == [low, high]
    # Children's sequence numbers all follow the parent's.
    parent_max = max(int(r["SequenceNumber"]) for r in recs)
    child = []
    for sid in (low, high):
        got, _ = read_all(k, "resharded", sid)
        assert all(int(r["SequenceNumber"]) > parent_max for r in got)
        child.extend(got)
    assert sorted(r["Data"] for r in child) == sorted(f"a{i}".encode() for i in range(10))
    # Merge the children back; the merged shard records both parents.
    k.merge_shards(StreamName="resharded", ShardToMerge=low, AdjacentShardToMerge=high)
    shards = k.list_shards(StreamName="resharded",
                           ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert len(shards) == 1
    assert shards[0]["ParentShardId"] == low and shards[0]["AdjacentParentShardId"] == high
    with pytest.raises(ClientError) as e:
        k.split_shard(StreamName="resharded", ShardToSplit=parent, NewStartingHashKey="5")
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    # UpdateShardCount reshards uniformly with lineage.
    r = k.update_shard_count(StreamName="resharded", TargetShardCount=2,
                             ScalingType="UNIFORM_SCALING")
    assert r["CurrentShardCount"] == 1 and r["TargetShardCount"] == 2
    open_now = k.list_shards(StreamName="resharded", ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert len(open_now) == 2
    assert all(s["ParentShardId"] == shards[0]["ShardId"] for s in open_now)


def test_retention_tags_and_consumers(k):
    k.create_stream(StreamName="misc", ShardCount=1, Tags={"team": "a"})
    k.increase_stream_retention_period(StreamName="misc", RetentionPeriodHours=48)
    with pytest.raises(ClientError) as e:
        k.increase_stream_retention_period(StreamName="misc", RetentionPeriodHours=30)
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    k.decrease_stream_retention_period(StreamName="misc", RetentionPeriodHours=24)
    assert k.describe_stream_summary(StreamName="misc")["StreamDescriptionSummary"][
        "RetentionPeriodHours"] == 24
    with pytest.raises(ClientError) as e:
        k.decrease_stream_retention_period(StreamName="misc", RetentionPeriodHours=12)
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    k.add_tags_to_stream(StreamName="misc", Tags={"env": "dev"})
    k.remove_tags_from_stream(StreamName="misc", TagKeys=["team"])
    assert k.list_tags_for_stream(StreamName="misc")["Tags"] == [{"Key": "env", "Value": "dev"}]
    arn = k.describe_stream_summary(StreamName="misc")["StreamDescriptionSummary"]["StreamARN"]
    c = k.register_stream_consumer(StreamARN=arn, ConsumerName="app")["Consumer"]
    assert c["ConsumerARN"].startswith(arn + "/consumer/app:")
    assert [x["ConsumerName"] for x in k.list_stream_consumers(StreamARN=arn)["Consumers"]] == ["app"]
    desc = k.describe_stream_consumer(ConsumerARN=c["ConsumerARN"])["ConsumerDescription"]
    assert desc["StreamARN"] == arn and desc["ConsumerStatus"] == "ACTIVE"
    with pytest.raises(ClientError) as e:
        k.register_stream_consumer(StreamARN=arn, ConsumerName="app")
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    # A stream with consumers is deleted only when asked to.
    with pytest.raises(ClientError) as e:
        k.delete_stream(StreamName="misc")
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    k.deregister_stream_consumer(StreamARN=arn, ConsumerName="app")
    # StreamARN works wherever StreamName does.
    k.put_record(StreamARN=arn, Data=b"by-arn", PartitionKey="k")
    k.delete_stream(StreamARN=arn)
    with pytest.raises(ClientError) as e:
        k.describe_stream(StreamName="misc")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_bad_input_gets_kinesis_errors(k):
    k.create_stream(StreamName="errors", ShardCount=1)

    def code(fn, **kw):
        with pytest.raises(ClientError) as e:
            fn(**kw)
        return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]

    assert code(k.create_stream, StreamName="errors", ShardCount=1) == ("ResourceInUseException", 400)
    assert code(k.describe_stream, StreamName="nope") == ("ResourceNotFoundException", 400)
    assert code(k.put_record, StreamName="nope", Data=b"x", PartitionKey="k")[0] == \
        "ResourceNotFoundException"
    # Records up to 1 MiB are taken; larger ones are refused.
    k.put_record(StreamName="errors", Data=b"x" * (1024 * 1024), PartitionKey="big")
    assert code(k.put_record, StreamName="errors", Data=b"x" * (1024 * 1024 + 1),
                PartitionKey="k") == ("ValidationException", 400)
    assert code(k.get_shard_iterator, StreamName="errors", ShardId="shardId-000000000009",
                ShardIteratorType="TRIM_HORIZON")[0] == "ResourceNotFoundException"
    assert code(k.get_shard_iterator, StreamName="errors", ShardId="shardId-000000000000",
                ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber="123")[0] == \
        "InvalidArgumentException"
    assert code(k.get_records, ShardIterator="not-an-iterator")[0] == "InvalidArgumentException"
    assert code(k.put_record, StreamName="errors", Data=b"x", PartitionKey="k",
                ExplicitHashKey=str(2**128))[0] == "InvalidArgumentException"
    # A body that is not JSON is the protocol's SerializationException.
    r = requests.post(k.meta.endpoint_url, data=b"{not json",
                      headers={"X-Amz-Target": "Kinesis_20131202.PutRecord",
                               "Content-Type": "application/x-amz-json-1.1"})
    assert r.status_code == 400 and "SerializationException" in r.text, r.text
    # An operation Nimbus leaves out answers 501 naming itself.
    assert code(k.get_resource_policy, ResourceARN="arn:aws:kinesis:us-east-1:123456789012:stream/errors") \
        == ("NotImplemented", 501)


def test_aws_cli(server):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="")

    def aws(*args):
        out = subprocess.run([str(AWS), "--endpoint-url", server.api, "kinesis", *args,
                              "--output", "json"], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    aws("create-stream", "--stream-name", "cli", "--shard-count", "2")
    # aws CLI v1 base64-encodes a blob argument itself.
    put = aws("put-record", "--stream-name", "cli", "--partition-key", "pk",
              "--data", "from the cli")
    it = aws("get-shard-iterator", "--stream-name", "cli", "--shard-id", put["ShardId"],
             "--shard-iterator-type", "TRIM_HORIZON")["ShardIterator"]
    got = aws("get-records", "--shard-iterator", it)
    assert [base64.b64decode(r["Data"]) for r in got["Records"]] == [b"from the cli"]
    assert aws("describe-stream-summary", "--stream-name", "cli")[
        "StreamDescriptionSummary"]["OpenShardCount"] == 2


JS = r"""
const k = require("@aws-sdk/client-kinesis");
const c = new k.KinesisClient({endpoint: process.argv[1], region: "us-east-1",
  credentials: {accessKeyId: "x", secretAccessKey: "y"}});
(async () => {
  await c.send(new k.CreateStreamCommand({StreamName: "js", ShardCount: 1}));
  const put = await c.send(new k.PutRecordsCommand({StreamName: "js", Records: [
    {Data: Buffer.from("one"), PartitionKey: "a"}, {Data: Buffer.from("two"), PartitionKey: "b"}]}));
  const it = await c.send(new k.GetShardIteratorCommand({StreamName: "js",
    ShardId: "shardId-000000000000", ShardIteratorType: "TRIM_HORIZON"}));
  const got = await c.send(new k.GetRecordsCommand({ShardIterator: it.ShardIterator}));
  let err = null;
  try { await c.send(new k.DescribeStreamCommand({StreamName: "missing"})); }
  catch (e) { err = e.name; }
  console.log(JSON.stringify({failed: put.FailedRecordCount,
    data: got.Records.map(r => Buffer.from(r.Data).toString()),
    ts: got.Records[0].ApproximateArrivalTimestamp instanceof Date, err}));
  c.destroy();
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_js_sdk_v3_over_its_default_http2_handler(server):
    """@aws-sdk/client-kinesis uses NodeHttp2Handler by default: h2c prior
    knowledge against an http:// endpoint, which the edge listener speaks."""
    if not (NODE_MODULES / "@aws-sdk" / "client-kinesis").is_dir():
        pytest.skip("sdk/node_modules not installed (scripts/test installs it)")
    out = subprocess.run(["node", "-e", JS, server.api], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, NODE_PATH=str(NODE_MODULES)))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"failed": 0, "data": ["one", "two"], "ts": True,
                   "err": "ResourceNotFoundException"}, got


def test_acknowledged_records_survive_kill_9(server_factory, data_dir):
    s = server_factory()
    k = kinesis(s)
    k.create_stream(StreamName="durable", ShardCount=2)
    k.split_shard(StreamName="durable", ShardToSplit="shardId-000000000000",
                  NewStartingHashKey=str(2**126))
    acked = []
    for i in range(30):
        r = k.put_record(StreamName="durable", Data=f"r{i}".encode(), PartitionKey=f"p{i}")
        acked.append((r["ShardId"], r["SequenceNumber"], f"r{i}".encode()))
    s.kill()
    s2 = server_factory(data=data_dir)
    k2 = kinesis(s2)
    shards = k2.describe_stream(StreamName="durable")["StreamDescription"]["Shards"]
    assert len(shards) == 4
    got = []
    for sh in shards:
        recs, _ = read_all(k2, "durable", sh["ShardId"])
        got.extend((sh["ShardId"], r["SequenceNumber"], r["Data"]) for r in recs)
    assert sorted(got) == sorted(acked)
    # New records keep ascending after the restart.
    r = k2.put_record(StreamName="durable", Data=b"after", PartitionKey="p0")
    same = [a for a in acked if a[0] == r["ShardId"]]
    assert all(int(r["SequenceNumber"]) > int(a[1]) for a in same)
