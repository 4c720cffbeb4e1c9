"""DynamoDB and DynamoDB Streams against the real binary, with boto3 (client and
`resource`/`Table` with `Decimal` and `boto3.dynamodb.conditions`), the aws CLI
and the JS SDK v3 DocumentClient."""

import json
import os
import shutil
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT, wait_for


def ddb(server, service="dynamodb"):
    return boto3.client(
        service, endpoint_url=server.api, region_name="us-east-1",
        aws_access_key_id="k", aws_secret_access_key="s",
        config=Config(retries={"total_max_attempts": 1}),
    )


def resource(server):
    return boto3.resource(
        "dynamodb", endpoint_url=server.api, region_name="us-east-1",
        aws_access_key_id="k", aws_secret_access_key="s",
        config=Config(retries={"total_max_attempts": 1}),
    )


def create(c, name, hash_=("pk", "S"), range_=None, **extra):
    defs = [{"AttributeName": hash_[0], "AttributeType": hash_[1]}]
    ks = [{"AttributeName": hash_[0], "KeyType": "HASH"}]
    if range_:
        defs.append({"AttributeName": range_[0], "AttributeType": range_[1]})
        ks.append({"AttributeName": range_[0], "KeyType": "RANGE"})
    defs += extra.pop("more_defs", [])
    return c.create_table(TableName=name, AttributeDefinitions=defs, KeySchema=ks,
                          BillingMode="PAY_PER_REQUEST", **extra)


def error(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def test_control_plane(server):
    c = ddb(server)
    out = c.create_table(
        TableName="ctl", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 7},
    )
    d = out["TableDescription"]
    assert d["TableName"] == "ctl"
    assert d["TableArn"] == "arn:aws:dynamodb:us-east-1:123456789012:table/ctl"
    assert d["ProvisionedThroughput"]["WriteCapacityUnits"] == 7
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-amz-crc32"].isdigit()
    c.get_waiter("table_exists").wait(TableName="ctl")
    with pytest.raises(ClientError) as e:
        create(c, "ctl", ("id", "S"))
    assert error(e) == ("ResourceInUseException", "Table already exists: ctl")
    assert "ctl" in c.list_tables()["TableNames"]
    c.update_table(TableName="ctl", BillingMode="PAY_PER_REQUEST")
    d = c.describe_table(TableName="ctl")["Table"]
    assert d["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert d["TableStatus"] == "ACTIVE" and d["ItemCount"] == 0
    # Paging through ListTables.
    for i in range(3):
        create(c, f"page{i}")
    first = c.list_tables(Limit=2, ExclusiveStartTableName="ctl")
    assert first["TableNames"] == ["page0", "page1"]
    assert first["LastEvaluatedTableName"] == "page1"
    c.delete_table(TableName="ctl")
    with pytest.raises(ClientError) as e:
        c.describe_table(TableName="ctl")
    assert error(e) == ("ResourceNotFoundException", "Requested resource not found: Table: ctl not found")
    with pytest.raises(ClientError) as e:
        c.get_item(TableName="ctl", Key={"id": {"S": "x"}})
    assert error(e)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        c.create_table(TableName="bad", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                       KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    assert error(e) == ("ValidationException", "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
    assert c.describe_limits()["TableMaxWriteCapacityUnits"] == 40000
    assert c.describe_endpoints()["Endpoints"][0]["CachePeriodInMinutes"] == 1440


def test_items_conditions_and_return_values(server):
    c = ddb(server)
    create(c, "items", ("pk", "S"))
    c.put_item(TableName="items", Item={"pk": {"S": "a"}, "n": {"N": "1"}, "tags": {"SS": ["x", "y"]}})
    got = c.get_item(TableName="items", Key={"pk": {"S": "a"}}, ConsistentRead=True)["Item"]
    assert got["n"] == {"N": "1"} and sorted(got["tags"]["SS"]) == ["x", "y"]
    # Conditional put fails, returning the old item when asked.
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="items", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)",
                   ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert error(e) == ("ConditionalCheckFailedException", "The conditional request failed")
    assert e.value.response["Item"]["n"] == {"N": "1"}
    old = c.put_item(TableName="items", Item={"pk": {"S": "a"}, "n": {"N": "2"}}, ReturnValues="ALL_OLD")
    assert old["Attributes"]["n"] == {"N": "1"}
    # UpdateItem with every clause and return-value kind.
    up = c.update_item(
        TableName="items", Key={"pk": {"S": "a"}},
        UpdateExpression="SET n = n + :one, l = list_append(if_not_exists(l, :empty), :l), m = :m "
                         "ADD s :s",
        ExpressionAttributeValues={":one": {"N": "0.5"}, ":empty": {"L": []}, ":l": {"L": [{"S": "q"}]},
                                   ":m": {"M": {"deep": {"N": "1"}}}, ":s": {"NS": ["3", "4"]}},
        ReturnValues="UPDATED_NEW",
    )["Attributes"]
    assert up["n"] == {"N": "2.5"} and up["l"] == {"L": [{"S": "q"}]}
    up = c.update_item(TableName="items", Key={"pk": {"S": "a"}},
                       UpdateExpression="SET m.deep = m.deep + :one REMOVE l DELETE s :three",
                       ExpressionAttributeValues={":one": {"N": "1"}, ":three": {"NS": ["3"]}},
                       ReturnValues="ALL_NEW")["Attributes"]
    assert up["m"] == {"M": {"deep": {"N": "2"}}} and "l" not in up and up["s"] == {"NS": ["4"]}
    up = c.update_item(TableName="items", Key={"pk": {"S": "a"}}, UpdateExpression="SET m.extra = :v",
                       ExpressionAttributeValues={":v": {"S": "o"}}, ReturnValues="UPDATED_NEW")
    assert up["Attributes"] == {"m": {"M": {"extra": {"S": "o"}}}}, "only the updated nested path"
    up = c.update_item(TableName="items", Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :v",
                       ExpressionAttributeValues={":v": {"N": "9"}}, ReturnValues="UPDATED_OLD")
    assert up["Attributes"] == {"n": {"N": "2.5"}}
    # Updating a key attribute is refused.
    with pytest.raises(ClientError) as e:
        c.update_item(TableName="items", Key={"pk": {"S": "a"}}, UpdateExpression="SET pk = :v",
                      ExpressionAttributeValues={":v": {"S": "b"}})
    assert error(e)[1] == "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"
    # UpdateItem of a missing item creates it (upsert).
    c.update_item(TableName="items", Key={"pk": {"S": "new"}}, UpdateExpression="SET v = :v",
                  ExpressionAttributeValues={":v": {"BOOL": True}})
    assert c.get_item(TableName="items", Key={"pk": {"S": "new"}})["Item"] == {"pk": {"S": "new"}, "v": {"BOOL": True}}
    # DeleteItem with a condition and ALL_OLD.
    with pytest.raises(ClientError) as e:
        c.delete_item(TableName="items", Key={"pk": {"S": "a"}}, ConditionExpression="n = :x",
                      ExpressionAttributeValues={":x": {"N": "1"}})
    assert error(e)[0] == "ConditionalCheckFailedException"
    gone = c.delete_item(TableName="items", Key={"pk": {"S": "a"}}, ReturnValues="ALL_OLD")
    assert gone["Attributes"]["n"] == {"N": "9"}
    assert "Item" not in c.get_item(TableName="items", Key={"pk": {"S": "a"}})
    # Key schema errors.
    with pytest.raises(ClientError) as e:
        c.get_item(TableName="items", Key={"id": {"S": "a"}})
    assert error(e) == ("ValidationException", "The provided key element does not match the schema")
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="items", Item={"pk": {"N": "1"}})
    assert error(e)[1] == "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N"
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="items", Item={"x": {"S": "1"}})
    assert error(e)[1] == "One or more parameter values were invalid: Missing the key pk in the item"
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="items", Item={"pk": {"S": ""}})
    assert error(e)[1] == "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: pk"
    # Projection with nested paths and list indexes.
    c.put_item(TableName="items", Item={"pk": {"S": "p"}, "a": {"M": {"b": {"S": "1"}, "c": {"S": "2"}}},
                                        "l": {"L": [{"S": "x"}, {"S": "y"}, {"S": "z"}]}, "other": {"S": "o"}})
    got = c.get_item(TableName="items", Key={"pk": {"S": "p"}}, ProjectionExpression="a.b, l[2], #o",
                     ExpressionAttributeNames={"#o": "other"})["Item"]
    assert got == {"a": {"M": {"b": {"S": "1"}}}, "l": {"L": [{"S": "z"}]}, "other": {"S": "o"}}
    # Legacy parameters.
    c.put_item(TableName="items", Item={"pk": {"S": "leg"}, "v": {"N": "1"}},
               Expected={"v": {"Exists": False}})
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="items", Item={"pk": {"S": "leg"}}, Expected={"v": {"Exists": False}})
    assert error(e)[0] == "ConditionalCheckFailedException"
    c.update_item(TableName="items", Key={"pk": {"S": "leg"}},
                  AttributeUpdates={"v": {"Action": "ADD", "Value": {"N": "2"}}})
    assert c.get_item(TableName="items", Key={"pk": {"S": "leg"}}, AttributesToGet=["v"])["Item"] == {"v": {"N": "3"}}


def test_numbers_sets_and_limits(server):
    c = ddb(server)
    create(c, "nums", ("pk", "S"))
    big = "1234567890123456789012345678901234567.8"  # 38 significant digits
    c.put_item(TableName="nums", Item={"pk": {"S": "a"}, "n": {"N": big}, "f": {"N": "0.1"}})
    c.update_item(TableName="nums", Key={"pk": {"S": "a"}}, UpdateExpression="SET f = f + :x",
                  ExpressionAttributeValues={":x": {"N": "0.2"}})
    got = c.get_item(TableName="nums", Key={"pk": {"S": "a"}})["Item"]
    assert got["n"] == {"N": big}
    assert got["f"] == {"N": "0.3"}, "exact decimal arithmetic, not binary floating point"
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="nums", Item={"pk": {"S": "b"}, "n": {"N": "1" * 39}})
    assert error(e) == ("ValidationException", "Attempting to store more than 38 significant digits in a Number")
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="nums", Item={"pk": {"S": "b"}, "n": {"N": "1e126"}})
    assert "Number overflow" in error(e)[1]
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="nums", Item={"pk": {"S": "b"}, "n": {"N": "abc"}})
    assert error(e)[1] == "The parameter cannot be converted to a numeric value: abc"
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="nums", Item={"pk": {"S": "b"}, "s": {"SS": []}})
    assert error(e)[1] == "One or more parameter values were invalid: An string set  may not be empty"
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="nums", Item={"pk": {"S": "b"}, "s": {"SS": ["x", "x"]}})
    assert error(e)[1] == "One or more parameter values were invalid: Input collection [x, x] contains duplicates."
    with pytest.raises(ClientError) as e:
        c.put_item(TableName="nums", Item={"pk": {"S": "b"}, "blob": {"S": "x" * (400 * 1024)}})
    assert error(e)[1] == "Item size has exceeded the maximum allowed size"
    c.put_item(TableName="nums", Item={"pk": {"S": "b"}, "blob": {"S": "x" * (399 * 1024)}})


def test_resource_table_with_decimal_and_conditions(server):
    r = resource(server)
    t = r.create_table(
        TableName="orders", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "customer", "AttributeType": "S"},
                              {"AttributeName": "seq", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "customer", "KeyType": "HASH"},
                   {"AttributeName": "seq", "KeyType": "RANGE"}],
    )
    t.wait_until_exists()
    with t.batch_writer() as bw:
        for i in range(30):
            bw.put_item(Item={"customer": "c1", "seq": i - 10, "total": Decimal("10.25") * i,
                              "status": "open" if i % 2 else "closed", "tags": {"a", "b"}})
    bw_items = t.query(KeyConditionExpression=Key("customer").eq("c1"))["Items"]
    assert [i["seq"] for i in bw_items] == list(range(-10, 20)), "numeric range keys sort numerically"
    assert isinstance(bw_items[0]["total"], Decimal) and bw_items[3]["total"] == Decimal("30.75")
    assert bw_items[0]["tags"] == {"a", "b"}
    got = t.query(KeyConditionExpression=Key("customer").eq("c1") & Key("seq").between(-2, 3),
                  FilterExpression=Attr("status").eq("open"), ScanIndexForward=False)
    assert [i["seq"] for i in got["Items"]] == [3, 1, -1]
    assert got["Count"] == 3 and got["ScannedCount"] == 6
    got = t.query(KeyConditionExpression=Key("customer").eq("c1") & Key("seq").lt(0), Select="COUNT")
    assert got["Count"] == 10 and "Items" not in got
    # Paginate with Limit / LastEvaluatedKey.
    seen, start = [], None
    while True:
        kw = {"ExclusiveStartKey": start} if start else {}
        page = t.query(KeyConditionExpression=Key("customer").eq("c1") & Key("seq").gte(5), Limit=4, **kw)
        seen += [i["seq"] for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert seen == list(range(5, 20))
    t.update_item(Key={"customer": "c1", "seq": 0}, UpdateExpression="SET #t = #t - :d", ExpressionAttributeNames={"#t": "total"},
                  ConditionExpression=Attr("total").gt(Decimal("100")) & Attr("tags").contains("a"),
                  ExpressionAttributeValues={":d": Decimal("0.25")})
    assert t.get_item(Key={"customer": "c1", "seq": 0})["Item"]["total"] == Decimal("102.25")
    scanned = t.scan(FilterExpression=Attr("seq").is_in([1, 2, 3]) | Attr("seq").lt(-9))["Items"]
    assert sorted(i["seq"] for i in scanned) == [-10, 1, 2, 3]


def test_query_key_conditions_and_parallel_scan(server):
    c = ddb(server)
    create(c, "qkeys", ("pk", "S"), ("sk", "S"))
    words = ["apple", "apricot", "banana", "blueberry", "cherry", "ap"]
    for w in words:
        c.put_item(TableName="qkeys", Item={"pk": {"S": "h"}, "sk": {"S": w}})
    def q(expr, values):
        vals = {":h": {"S": "h"}, **{k: {"S": v} for k, v in values.items()}}
        return [i["sk"]["S"] for i in c.query(TableName="qkeys", KeyConditionExpression=expr,
                                               ExpressionAttributeValues=vals)["Items"]]
    assert q("pk = :h AND begins_with(sk, :p)", {":p": "ap"}) == ["ap", "apple", "apricot"]
    assert q("pk = :h AND sk > :a", {":a": "banana"}) == ["blueberry", "cherry"]
    assert q("pk = :h AND sk >= :a", {":a": "banana"}) == ["banana", "blueberry", "cherry"]
    assert q("pk = :h AND sk < :a", {":a": "apple"}) == ["ap"]
    assert q("pk = :h AND sk <= :a", {":a": "apple"}) == ["ap", "apple"]
    assert q("pk = :h AND sk = :a", {":a": "cherry"}) == ["cherry"]
    assert q("pk = :h AND sk BETWEEN :a AND :b", {":a": "b", ":b": "c"}) == ["banana", "blueberry"]
    with pytest.raises(ClientError) as e:
        q("sk = :h", {})
    assert error(e)[1] == "Query condition missed key schema element: pk"
    with pytest.raises(ClientError) as e:
        q("pk = :h AND sk <> :a", {":a": "x"})
    assert error(e)[1] == "Invalid KeyConditionExpression: Syntax error; token: \"<>\", near: \"sk <> :a\"" or \
        error(e)[1] == "Query key condition not supported"
    # Parallel scan: the segments partition the table.
    for i in range(50):
        c.put_item(TableName="qkeys", Item={"pk": {"S": f"p{i}"}, "sk": {"S": "x"}})
    total = len(words) + 50
    parts = [c.scan(TableName="qkeys", Segment=s, TotalSegments=4)["Items"] for s in range(4)]
    keys = [(i["pk"]["S"], i["sk"]["S"]) for p in parts for i in p]
    assert len(keys) == total and len(set(keys)) == total
    with pytest.raises(ClientError) as e:
        c.scan(TableName="qkeys", Segment=4, TotalSegments=4)
    assert "Segment: 4 is not less than TotalSegments: 4" in error(e)[1]
    # Scan pagination visits everything once.
    seen, start = [], None
    while True:
        kw = {"ExclusiveStartKey": start} if start else {}
        page = c.scan(TableName="qkeys", Limit=7, **kw)
        seen += [(i["pk"]["S"], i["sk"]["S"]) for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert sorted(seen) == sorted(keys)


def test_one_megabyte_pages(server):
    c = ddb(server)
    create(c, "big", ("pk", "S"), ("sk", "N"))
    blob = "x" * (100 * 1024)
    for i in range(15):
        c.put_item(TableName="big", Item={"pk": {"S": "h"}, "sk": {"N": str(i)}, "b": {"S": blob}})
    page = c.query(TableName="big", KeyConditionExpression="pk = :h", ExpressionAttributeValues={":h": {"S": "h"}})
    assert 9 <= page["Count"] <= 11 and "LastEvaluatedKey" in page
    rest = c.query(TableName="big", KeyConditionExpression="pk = :h", ExpressionAttributeValues={":h": {"S": "h"}},
                   ExclusiveStartKey=page["LastEvaluatedKey"])
    assert page["Count"] + rest["Count"] == 15 and "LastEvaluatedKey" not in rest


def test_batch_get_past_16_mb_returns_unprocessed_keys(server):
    """50 items of ~390 KB (about 19 MB) in one BatchGetItem: DynamoDB answers at
    most 16 MB and hands back the rest as UnprocessedKeys; asking again for those
    gets every item exactly once."""
    c = ddb(server)
    create(c, "huge", ("id", "S"))
    blob = "y" * (390 * 1024)
    for i in range(50):
        c.put_item(TableName="huge", Item={"id": {"S": f"k{i:02}"}, "b": {"S": blob}})
    keys = [{"id": {"S": f"k{i:02}"}} for i in range(50)]
    got = c.batch_get_item(RequestItems={"huge": {"Keys": keys}})
    first = [i["id"]["S"] for i in got["Responses"]["huge"]]
    size = sum(len(i["b"]["S"]) + len(i["id"]["S"]) + 3 for i in got["Responses"]["huge"])
    assert size <= 16 * 1024 * 1024
    left = got["UnprocessedKeys"]["huge"]["Keys"]
    assert left and len(first) + len(left) == 50
    again = c.batch_get_item(RequestItems=got["UnprocessedKeys"])
    assert again["UnprocessedKeys"] == {}
    seen = first + [i["id"]["S"] for i in again["Responses"]["huge"]]
    assert sorted(seen) == [f"k{i:02}" for i in range(50)]
    # ProjectionExpression counts what is returned: small projections all fit.
    small = c.batch_get_item(RequestItems={"huge": {"Keys": keys, "ProjectionExpression": "id"}})
    assert len(small["Responses"]["huge"]) == 50 and small["UnprocessedKeys"] == {}
    c.delete_table(TableName="huge")


def test_batches_and_transactions(server):
    c = ddb(server)
    create(c, "acct", ("id", "S"))
    c.batch_write_item(RequestItems={"acct": [
        {"PutRequest": {"Item": {"id": {"S": f"a{i}"}, "bal": {"N": "100"}}}} for i in range(5)
    ]})
    got = c.batch_get_item(RequestItems={"acct": {"Keys": [{"id": {"S": "a0"}}, {"id": {"S": "a4"}},
                                                          {"id": {"S": "missing"}}]}})
    assert sorted(i["id"]["S"] for i in got["Responses"]["acct"]) == ["a0", "a4"]
    assert got["UnprocessedKeys"] == {}
    with pytest.raises(ClientError) as e:
        c.batch_get_item(RequestItems={"acct": {"Keys": [{"id": {"S": "a0"}}, {"id": {"S": "a0"}}]}})
    assert error(e)[1] == "Provided list of item keys contains duplicates"
    c.batch_write_item(RequestItems={"acct": [{"DeleteRequest": {"Key": {"id": {"S": "a4"}}}}]})
    # A transfer: all or nothing.
    transfer = lambda amt, token=None: c.transact_write_items(
        TransactItems=[
            {"Update": {"TableName": "acct", "Key": {"id": {"S": "a0"}}, "UpdateExpression": "SET bal = bal - :a",
                        "ConditionExpression": "bal >= :a", "ExpressionAttributeValues": {":a": {"N": str(amt)}}}},
            {"Update": {"TableName": "acct", "Key": {"id": {"S": "a1"}}, "UpdateExpression": "SET bal = bal + :a",
                        "ExpressionAttributeValues": {":a": {"N": str(amt)}}}},
            {"ConditionCheck": {"TableName": "acct", "Key": {"id": {"S": "a2"}},
                                "ConditionExpression": "attribute_exists(id)"}},
        ], **({"ClientRequestToken": token} if token else {}))
    transfer(30, token="tok-1")
    transfer(30, token="tok-1")  # idempotent: applied once
    bal = lambda k: c.get_item(TableName="acct", Key={"id": {"S": k}})["Item"]["bal"]["N"]
    assert (bal("a0"), bal("a1")) == ("70", "130")
    with pytest.raises(ClientError) as e:
        transfer(31, token="tok-1")
    assert error(e)[0] == "IdempotentParameterMismatchException"
    with pytest.raises(ClientError) as e:
        transfer(1000)
    code, msg = error(e)
    assert code == "TransactionCanceledException"
    assert msg == "Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed, None, None]"
    reasons = e.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["ConditionalCheckFailed", "None", "None"]
    assert (bal("a0"), bal("a1")) == ("70", "130"), "a cancelled transaction changes nothing"
    with pytest.raises(ClientError) as e:
        c.transact_write_items(TransactItems=[
            {"Put": {"TableName": "acct", "Item": {"id": {"S": "a3"}}}},
            {"Delete": {"TableName": "acct", "Key": {"id": {"S": "a3"}}}},
        ])
    assert error(e)[1] == "Transaction request cannot include multiple operations on one item"
    got = c.transact_get_items(TransactItems=[
        {"Get": {"TableName": "acct", "Key": {"id": {"S": "a0"}}, "ProjectionExpression": "bal"}},
        {"Get": {"TableName": "acct", "Key": {"id": {"S": "nope"}}}},
    ])["Responses"]
    assert got[0]["Item"] == {"bal": {"N": "70"}} and got[1] == {}


def test_secondary_indexes(server):
    c = ddb(server)
    c.create_table(
        TableName="users", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                              {"AttributeName": "ts", "AttributeType": "N"},
                              {"AttributeName": "email", "AttributeType": "S"},
                              {"AttributeName": "score", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "ts", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-email", "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        LocalSecondaryIndexes=[{"IndexName": "by-score", "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"},
                                                                      {"AttributeName": "score", "KeyType": "RANGE"}],
                                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["name"]}}],
    )
    for i in range(6):
        item = {"id": {"S": "u"}, "ts": {"N": str(i)}, "score": {"N": str(10 - i)}, "name": {"S": f"n{i}"},
                "extra": {"S": "e"}}
        if i % 2 == 0:
            item["email"] = {"S": "even@x"}
        c.put_item(TableName="users", Item=item)
    got = c.query(TableName="users", IndexName="by-email", KeyConditionExpression="email = :e",
                  ExpressionAttributeValues={":e": {"S": "even@x"}})["Items"]
    assert sorted(int(i["ts"]["N"]) for i in got) == [0, 2, 4]
    assert all(set(i) == {"id", "ts", "email"} for i in got), "KEYS_ONLY projection"
    got = c.query(TableName="users", IndexName="by-score", KeyConditionExpression="id = :u AND score > :s",
                  ExpressionAttributeValues={":u": {"S": "u"}, ":s": {"N": "6"}})["Items"]
    assert [int(i["score"]["N"]) for i in got] == [7, 8, 9, 10]
    assert set(got[0]) == {"id", "ts", "score", "name"}, "INCLUDE projection"
    got = c.query(TableName="users", IndexName="by-score", KeyConditionExpression="id = :u AND score > :s",
                  Select="ALL_ATTRIBUTES",
                  ExpressionAttributeValues={":u": {"S": "u"}, ":s": {"N": "9"}})["Items"]
    assert got[0]["extra"] == {"S": "e"}, "a local index fetches unprojected attributes from the table"
    with pytest.raises(ClientError) as e:
        c.query(TableName="users", IndexName="by-email", KeyConditionExpression="email = :e",
                Select="ALL_ATTRIBUTES", ExpressionAttributeValues={":e": {"S": "even@x"}})
    assert "Select type ALL_ATTRIBUTES is not supported for global secondary index by-email" in error(e)[1]
    with pytest.raises(ClientError) as e:
        c.query(TableName="users", IndexName="by-email", KeyConditionExpression="email = :e", ConsistentRead=True,
                ExpressionAttributeValues={":e": {"S": "even@x"}})
    assert error(e)[1] == "Consistent reads are not supported on global secondary indexes"
    # A GSI added later is backfilled; removing it drops it.
    c.update_table(TableName="users", AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
                   GlobalSecondaryIndexUpdates=[{"Create": {"IndexName": "by-name",
                                                            "KeySchema": [{"AttributeName": "name", "KeyType": "HASH"}],
                                                            "Projection": {"ProjectionType": "ALL"}}}])
    got = c.query(TableName="users", IndexName="by-name", KeyConditionExpression="#n = :n",
                  ExpressionAttributeNames={"#n": "name"}, ExpressionAttributeValues={":n": {"S": "n3"}})["Items"]
    assert len(got) == 1 and got[0]["extra"] == {"S": "e"}
    desc = c.describe_table(TableName="users")["Table"]
    assert {g["IndexName"] for g in desc["GlobalSecondaryIndexes"]} == {"by-email", "by-name"}
    c.update_table(TableName="users", GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-name"}}])
    with pytest.raises(ClientError) as e:
        c.query(TableName="users", IndexName="by-name", KeyConditionExpression="#n = :n",
                ExpressionAttributeNames={"#n": "name"}, ExpressionAttributeValues={":n": {"S": "n3"}})
    assert error(e)[1] == "The table does not have the specified index: by-name"


def stream_records(server, arn):
    s = ddb(server, "dynamodbstreams")
    shard = s.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = s.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    while it:
        page = s.get_records(ShardIterator=it)
        out += page["Records"]
        if not page["Records"]:
            break
        it = page.get("NextShardIterator")
    return out


def test_streams_api(server):
    c = ddb(server)
    arn = create(c, "evt", ("pk", "S"), StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
                 )["TableDescription"]["LatestStreamArn"]
    c.put_item(TableName="evt", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    c.put_item(TableName="evt", Item={"pk": {"S": "a"}, "v": {"N": "1"}})  # no-op: no record
    c.update_item(TableName="evt", Key={"pk": {"S": "a"}}, UpdateExpression="SET v = :v",
                  ExpressionAttributeValues={":v": {"N": "2"}})
    c.delete_item(TableName="evt", Key={"pk": {"S": "a"}})
    c.delete_item(TableName="evt", Key={"pk": {"S": "a"}})  # no-op
    with pytest.raises(ClientError):
        c.put_item(TableName="evt", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_exists(pk)")
    s = ddb(server, "dynamodbstreams")
    listed = s.list_streams(TableName="evt")["Streams"]
    assert listed == [{"StreamArn": arn, "TableName": "evt", "StreamLabel": arn.split("/stream/")[1]}]
    desc = s.describe_stream(StreamArn=arn)["StreamDescription"]
    assert desc["StreamStatus"] == "ENABLED" and desc["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    recs = stream_records(server, arn)
    assert [r["eventName"] for r in recs] == ["INSERT", "MODIFY", "REMOVE"]
    assert recs[1]["dynamodb"]["OldImage"]["v"] == {"N": "1"} and recs[1]["dynamodb"]["NewImage"]["v"] == {"N": "2"}
    assert recs[0]["dynamodb"]["Keys"] == {"pk": {"S": "a"}}
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in recs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    shard = desc["Shards"][0]["ShardId"]
    it = s.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                              SequenceNumber=recs[0]["dynamodb"]["SequenceNumber"])["ShardIterator"]
    assert [r["eventName"] for r in s.get_records(ShardIterator=it)["Records"]] == ["MODIFY", "REMOVE"]
    it = s.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    c.put_item(TableName="evt", Item={"pk": {"S": "z"}})
    assert [r["eventName"] for r in s.get_records(ShardIterator=it)["Records"]] == ["INSERT"]
    with pytest.raises(ClientError) as e:
        s.get_shard_iterator(StreamArn=arn + "x", ShardId=shard, ShardIteratorType="LATEST")
    assert error(e)[0] == "ResourceNotFoundException"
    # Disabling closes the shard.
    c.update_table(TableName="evt", StreamSpecification={"StreamEnabled": False})
    desc = s.describe_stream(StreamArn=arn)["StreamDescription"]
    assert desc["StreamStatus"] == "DISABLED" and "EndingSequenceNumber" in desc["Shards"][0]["SequenceNumberRange"]


def test_ttl_expiry_is_a_service_remove(server):
    c = ddb(server)
    arn = create(c, "ttl", ("pk", "S"), StreamSpecification={"StreamEnabled": True, "StreamViewType": "OLD_IMAGE"}
                 )["TableDescription"]["LatestStreamArn"]
    c.put_item(TableName="ttl", Item={"pk": {"S": "old"}, "exp": {"N": str(int(time.time()) - 10)}})
    c.put_item(TableName="ttl", Item={"pk": {"S": "fresh"}, "exp": {"N": str(int(time.time()) + 3600)}})
    c.update_time_to_live(TableName="ttl", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    assert c.describe_time_to_live(TableName="ttl")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}
    wait_for(lambda: "Item" not in c.get_item(TableName="ttl", Key={"pk": {"S": "old"}}), timeout=30,
             what="expired item swept")
    assert "Item" in c.get_item(TableName="ttl", Key={"pk": {"S": "fresh"}})
    removes = [r for r in stream_records(server, arn) if r["eventName"] == "REMOVE"]
    assert len(removes) == 1
    assert removes[0]["userIdentity"] == {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
    assert removes[0]["dynamodb"]["OldImage"]["pk"] == {"S": "old"}


def test_tags(server):
    c = ddb(server)
    arn = create(c, "tagged", ("pk", "S"), Tags=[{"Key": "team", "Value": "a"}])["TableDescription"]["TableArn"]
    c.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "dev"}])
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "dev"},
                                                                {"Key": "team", "Value": "a"}]
    c.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert c.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "dev"}]


def test_admin_and_metrics(server):
    c = ddb(server)
    create(c, "adm", ("pk", "S"))
    c.put_item(TableName="adm", Item={"pk": {"S": "a"}})
    tables = server.session.get(server.api + "/_nimbus/services/dynamodb/tables").json()["tables"]
    adm = [t for t in tables if t["name"] == "adm"][0]
    assert adm["items"] == 1
    metrics = server.session.get(server.api + "/metrics").text
    assert 'nimbus_dynamodb_requests_total{operation="PutItem"}' in metrics


def test_aws_cli(server):
    aws = ROOT / ".venv" / "bin" / "aws"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_DEFAULT_REGION="us-east-1")
    def run(*args):
        p = subprocess.run([str(aws), "--endpoint-url", server.api, "dynamodb", *args, "--output", "json"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout) if p.stdout.strip() else {}
    run("create-table", "--table-name", "cli", "--attribute-definitions", "AttributeName=id,AttributeType=S",
        "--key-schema", "AttributeName=id,KeyType=HASH", "--billing-mode", "PAY_PER_REQUEST")
    run("put-item", "--table-name", "cli", "--item", '{"id": {"S": "1"}, "n": {"N": "42"}}')
    got = run("get-item", "--table-name", "cli", "--key", '{"id": {"S": "1"}}')
    assert got["Item"]["n"] == {"N": "42"}
    assert run("scan", "--table-name", "cli")["Count"] == 1


NODE_SCRIPT = r"""
const { DynamoDBClient, CreateTableCommand } = require("@aws-sdk/client-dynamodb");
const { DynamoDBDocumentClient, PutCommand, GetCommand, QueryCommand, UpdateCommand } = require("@aws-sdk/lib-dynamodb");
(async () => {
  const client = new DynamoDBClient({ endpoint: process.env.EP, region: "us-east-1",
    credentials: { accessKeyId: "k", secretAccessKey: "s" } });
  const doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true,
    convertClassInstanceToMap: true } });
  await client.send(new CreateTableCommand({ TableName: "jsdoc", BillingMode: "PAY_PER_REQUEST",
    AttributeDefinitions: [{ AttributeName: "pk", AttributeType: "S" }, { AttributeName: "sk", AttributeType: "N" }],
    KeySchema: [{ AttributeName: "pk", KeyType: "HASH" }, { AttributeName: "sk", KeyType: "RANGE" }] }));
  for (let i = 0; i < 3; i++) {
    await doc.send(new PutCommand({ TableName: "jsdoc", Item: { pk: "p", sk: i, tags: new Set(["a", "b"]),
      nums: new Set([1, 2]), nested: { list: [1, "two", null] }, gone: undefined } }));
  }
  await doc.send(new UpdateCommand({ TableName: "jsdoc", Key: { pk: "p", sk: 0 },
    UpdateExpression: "ADD tags :t SET #c = if_not_exists(#c, :zero) + :one",
    ExpressionAttributeNames: { "#c": "count" },
    ExpressionAttributeValues: { ":t": new Set(["c"]), ":zero": 0, ":one": 1 } }));
  const got = (await doc.send(new GetCommand({ TableName: "jsdoc", Key: { pk: "p", sk: 0 } }))).Item;
  const q = await doc.send(new QueryCommand({ TableName: "jsdoc", KeyConditionExpression: "pk = :p AND sk > :s",
    ExpressionAttributeValues: { ":p": "p", ":s": 0 }, ScanIndexForward: false }));
  console.log(JSON.stringify({ tags: [...got.tags].sort(), nums: [...got.nums].sort(), count: got.count,
    nested: got.nested, hasGone: "gone" in got, order: q.Items.map(i => i.sk) }));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_js_sdk_document_client(server, tmp_path):
    node_modules = ROOT / "sdk" / "node_modules"
    if not (node_modules / "@aws-sdk" / "lib-dynamodb").exists():
        pytest.fail(f"{node_modules}/@aws-sdk/lib-dynamodb missing: run scripts/test's SDK setup")
    script = tmp_path / "doc.js"
    script.write_text(NODE_SCRIPT)
    p = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NODE_PATH=str(node_modules), EP=server.api))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out == {"tags": ["a", "b", "c"], "nums": [1, 2], "count": 1,
                   "nested": {"list": [1, "two", None]}, "hasGone": False, "order": [2, 1]}


def test_kill_9_mid_transaction_is_all_or_nothing(server_factory):
    srv = server_factory()
    c = ddb(srv)
    arn = create(c, "atomic", ("pk", "S"), StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
                 )["TableDescription"]["LatestStreamArn"]
    acked = []
    stop = threading.Event()

    def writer():
        n = 0
        while not stop.is_set():
            try:
                c.transact_write_items(TransactItems=[
                    {"Put": {"TableName": "atomic", "Item": {"pk": {"S": f"t{n}-{i}"}, "tx": {"N": str(n)}}}}
                    for i in range(25)])
                acked.append(n)
            except Exception:
                return
            n += 1

    th = threading.Thread(target=writer)
    th.start()
    wait_for(lambda: len(acked) >= 5, timeout=60, what="some transactions acknowledged")
    srv.kill()
    stop.set()
    th.join(timeout=30)
    data = srv.data_dir
    srv2 = server_factory(data=data)
    c2 = ddb(srv2)
    items, start = [], None
    while True:
        kw = {"ExclusiveStartKey": start} if start else {}
        page = c2.scan(TableName="atomic", **kw)
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    per_tx = {}
    for it in items:
        per_tx[int(it["tx"]["N"])] = per_tx.get(int(it["tx"]["N"]), 0) + 1
    assert all(n == 25 for n in per_tx.values()), per_tx
    assert set(acked) <= set(per_tx), "every acknowledged transaction survived"
    recs = stream_records(srv2, arn)
    assert len(recs) == len(items), "one stream record per committed item, none for what was not committed"
    assert {r["dynamodb"]["Keys"]["pk"]["S"] for r in recs} == {i["pk"]["S"] for i in items}


def test_partiql(server):
    c = ddb(server)
    create(c, "pql", ("pk", "S"), ("sk", "N"))
    c.execute_statement(Statement="INSERT INTO \"pql\" VALUE {'pk': 'a', 'sk': 1, 'tags': <<'x', 'y'>>, 'n': 10}")
    c.execute_statement(Statement="INSERT INTO pql VALUE {'pk': ?, 'sk': ?, 'n': ?}",
                        Parameters=[{"S": "a"}, {"N": "2"}, {"N": "20"}])
    with pytest.raises(ClientError) as e:
        c.execute_statement(Statement="INSERT INTO pql VALUE {'pk': 'a', 'sk': 1}")
    assert error(e)[0] == "ConditionalCheckFailedException", "INSERT never overwrites"
    got = c.execute_statement(Statement="SELECT * FROM pql WHERE pk = ? AND sk > ?",
                              Parameters=[{"S": "a"}, {"N": "1"}])["Items"]
    assert [i["sk"]["N"] for i in got] == ["2"]
    got = c.execute_statement(Statement="SELECT sk, n FROM pql WHERE n BETWEEN 5 AND 15")["Items"]
    assert got == [{"sk": {"N": "1"}, "n": {"N": "10"}}]
    c.execute_statement(Statement="UPDATE pql SET n = n + 5 SET extra = 'e' WHERE pk = 'a' AND sk = 1")
    item = c.get_item(TableName="pql", Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]
    assert item["n"] == {"N": "15"} and item["extra"] == {"S": "e"}
    got = c.execute_statement(Statement="SELECT * FROM pql WHERE extra IS NOT MISSING")["Items"]
    assert len(got) == 1
    c.execute_statement(Statement="DELETE FROM pql WHERE pk = 'a' AND sk = 2")
    assert c.execute_statement(Statement="SELECT * FROM pql WHERE pk = 'a'")["Items"][0]["sk"] == {"N": "1"}
    out = c.batch_execute_statement(Statements=[
        {"Statement": "INSERT INTO pql VALUE {'pk': 'b', 'sk': 1}"},
        {"Statement": "INSERT INTO pql VALUE {'pk': 'a', 'sk': 1}"},
    ])["Responses"]
    assert "Error" not in out[0] and out[1]["Error"]["Code"] == "ConditionalCheckFailed"
    c.execute_transaction(TransactStatements=[
        {"Statement": "UPDATE pql SET n = 1 WHERE pk = 'b' AND sk = 1"},
        {"Statement": "INSERT INTO pql VALUE {'pk': 'c', 'sk': 1}"},
    ])
    got = c.execute_transaction(TransactStatements=[
        {"Statement": "SELECT * FROM pql WHERE pk = 'b' AND sk = 1"},
        {"Statement": "SELECT * FROM pql WHERE pk = 'c' AND sk = 1"},
    ])["Responses"]
    assert got[0]["Item"]["n"] == {"N": "1"} and got[1]["Item"]["pk"] == {"S": "c"}
    with pytest.raises(ClientError) as e:
        c.execute_statement(Statement="SELEC * FROM pql")
    assert error(e)[0] == "ValidationException"
