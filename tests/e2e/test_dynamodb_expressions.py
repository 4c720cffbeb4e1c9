"""A table of expression cases — valid ones with the answer they must give, invalid
ones with DynamoDB's exact ValidationException message — run with boto3 against
the real binary."""

import re

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ITEM = {
    "pk": {"S": "k"}, "n": {"N": "5"}, "s": {"S": "hello"}, "l": {"L": [{"N": "1"}, {"S": "a"}]},
    "m": {"M": {"x": {"M": {"y": {"N": "1"}}}}}, "ss": {"SS": ["a", "b"]}, "flag": {"BOOL": True},
    "nul": {"NULL": True}, "status": {"S": "on"},
}
V = {
    ":one": {"N": "1"}, ":five": {"N": "5"}, ":six": {"N": "6"}, ":hello": {"S": "hello"}, ":x": {"S": "x"},
    ":he": {"S": "he"}, ":ell": {"S": "ell"}, ":a": {"S": "a"}, ":SS": {"S": "SS"}, ":on": {"S": "on"},
    ":bad": {"S": "X"}, ":t": {"BOOL": True}, ":NULL": {"S": "NULL"},
}

# (filter expression, names, does the item match)
FILTERS = [
    ("n = :five", None, True),
    ("n <> :five", None, False),
    ("n < :six", None, True),
    ("n <= :five", None, True),
    ("n > :five", None, False),
    ("n >= :five", None, True),
    ("n BETWEEN :one AND :six", None, True),
    ("n IN (:one, :five)", None, True),
    ("n IN (:one, :six)", None, False),
    ("s = :hello AND n = :five", None, True),
    ("s = :x OR n = :five", None, True),
    ("NOT n = :five", None, False),
    ("NOT (n = :one OR s = :x)", None, True),
    # AND binds tighter than OR: n = 5 OR (n = 1 AND s = x).
    ("n = :five OR n = :one AND s = :x", None, True),
    ("(n = :five OR n = :one) AND s = :x", None, False),
    ("attribute_exists(m.x.y)", None, True),
    ("attribute_exists(m.x.z)", None, False),
    ("attribute_not_exists(nope)", None, True),
    ("attribute_type(ss, :SS)", None, True),
    ("attribute_type(nul, :NULL)", None, True),
    ("begins_with(s, :he)", None, True),
    ("contains(ss, :a)", None, True),
    ("contains(s, :ell)", None, True),
    ("contains(l, :one)", None, True),
    ("size(s) = :five", None, True),
    ("size(l) > :one", None, True),
    ("size(ss) BETWEEN :one AND :five", None, True),
    ("l[1] = :a", None, True),
    ("l[0] = :one", None, True),
    ("m.x.y = :one", None, True),
    ("#st = :on", {"#st": "status"}, True),
    ("#m.#x.y = :one", {"#m": "m", "#x": "x"}, True),
    ("flag = :t", None, True),
    ("n > :hello", None, False),  # different types never compare
    ("nope <> :five", None, True),
    ("nope = :five", None, False),
]

# (filter expression, names, values, message)
INVALID_FILTERS = [
    ("status = :on", None, None,
     "Invalid FilterExpression: Attribute name is a reserved keyword; reserved keyword: status"),
    ("n = :undefined", None, None,
     "Invalid FilterExpression: An expression attribute value used in expression is not defined; attribute value: :undefined"),
    ("#nope = :five", None, None,
     "Invalid FilterExpression: An expression attribute name used in the document path is not defined; attribute name: #nope"),
    ("n =", None, None, 'Invalid FilterExpression: Syntax error; token: "<EOF>", near: "="'),
    ("n == :five", None, None, 'Invalid FilterExpression: Syntax error; token: "=", near: "== :five"'),
    ("foo(n)", None, None, "Invalid FilterExpression: Invalid function name; function: foo"),
    ("begins_with(s, :five)", None, None,
     "Invalid FilterExpression: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"),
    ("attribute_type(n, :bad)", None, None,
     "Invalid FilterExpression: Invalid attribute type name found; type: X, valid types: { B,NULL,SS,BOOL,L,BS,N,NS,S,M }"),
    ("n BETWEEN :six AND :one", None, None,
     "Invalid FilterExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound; "
     "lower bound operand: AttributeValue: {N:6}, upper bound operand: AttributeValue: {N:1}"),
    ("n = n", None, None,
     "Invalid FilterExpression: The first operand must be distinct from the remaining operands for this operator or "
     "function; operator: =, first operand: [n]"),
    ("n = :five", None, {":five": {"N": "5"}, ":extra": {"N": "1"}},
     "Value provided in ExpressionAttributeValues unused in expressions: keys: {:extra}"),
    ("n = :five", {"#unused": "x"}, None,
     "Value provided in ExpressionAttributeNames unused in expressions: keys: {#unused}"),
    ("", None, None, "Invalid FilterExpression: The expression can not be empty;"),
]

# (update expression, names, values, message)
INVALID_UPDATES = [
    ("SET a = :v, a = :v", None, {":v": {"N": "1"}},
     "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; "
     "path one: [a], path two: [a]"),
    ("SET a = :v REMOVE a.b", None, {":v": {"N": "1"}},
     "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; "
     "path one: [a], path two: [a, b]"),
    ("SET a = :v SET b = :v", None, {":v": {"N": "1"}},
     'Invalid UpdateExpression: The "SET" section can only be used once in an update expression;'),
    ("SET l2 = list_append(n, :v)", None, {":v": {"L": []}},
     "An operand in the update expression has an incorrect data type"),
    ("SET n = n + :v", None, {":v": {"S": "x"}},
     "An operand in the update expression has an incorrect data type"),
    ("ADD s2 :v", None, {":v": {"S": "x"}},
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: S"),
    ("SET nested.deep.x = :v", None, {":v": {"N": "1"}},
     "The document path provided in the update expression is invalid for update"),
    ("SET x = nowhere", None, None,
     "The provided expression refers to an attribute that does not exist in the item"),
    ("SET #date = :v", None, {":v": {"N": "1"}},
     "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; attribute name: #date"),
    ("SET date = :v", None, {":v": {"N": "1"}},
     "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: date"),
    ("SET a = if_exists(b, :v)", None, {":v": {"N": "1"}},
     "Invalid UpdateExpression: Invalid function name; function: if_exists"),
]


# (update expression, names, values, {attribute: value after the update, None = removed})
UPDATES = [
    ("SET n = n + :one", None, {":one": {"N": "1"}}, {"n": {"N": "6"}}),
    ("SET n = :one - n", None, {":one": {"N": "1"}}, {"n": {"N": "-4"}}),
    ("SET l[0] = :a", None, {":a": {"S": "a"}}, {"l": {"L": [{"S": "a"}, {"S": "a"}]}}),
    ("SET l[9] = :a", None, {":a": {"S": "z"}}, {"l": {"L": [{"N": "1"}, {"S": "a"}, {"S": "z"}]}}),
    ("SET l = list_append(:a, l)", None, {":a": {"L": [{"S": "first"}]}},
     {"l": {"L": [{"S": "first"}, {"N": "1"}, {"S": "a"}]}}),
    ("SET m.x.y = :a, m.w = :a", None, {":a": {"S": "v"}},
     {"m": {"M": {"x": {"M": {"y": {"S": "v"}}}, "w": {"S": "v"}}}}),
    ("SET c = if_not_exists(c, :zero) + :one", None, {":zero": {"N": "0"}, ":one": {"N": "1"}}, {"c": {"N": "1"}}),
    ("SET n = if_not_exists(n, :zero)", None, {":zero": {"N": "0"}}, {"n": {"N": "5"}}),
    ("SET #s = :v", {"#s": "status"}, {":v": {"S": "off"}}, {"status": {"S": "off"}}),
    ("REMOVE l[0], m.x", None, None, {"l": {"L": [{"S": "a"}]}, "m": {"M": {}}}),
    ("REMOVE s, flag", None, None, {"s": None, "flag": None}),
    ("ADD n :v", None, {":v": {"N": "-5.5"}}, {"n": {"N": "-0.5"}}),
    ("ADD newnum :v", None, {":v": {"N": "3"}}, {"newnum": {"N": "3"}}),
    ("ADD ss :v", None, {":v": {"SS": ["c"]}}, {"ss": {"SS": ["a", "b", "c"]}}),
    ("DELETE ss :v", None, {":v": {"SS": ["a"]}}, {"ss": {"SS": ["b"]}}),
    ("DELETE ss :v", None, {":v": {"SS": ["a", "b"]}}, {"ss": None}),
    ("SET a = :v REMOVE s ADD c :one DELETE ss :d", None,
     {":v": {"BOOL": False}, ":one": {"N": "1"}, ":d": {"SS": ["b"]}},
     {"a": {"BOOL": False}, "s": None, "c": {"N": "1"}, "ss": {"SS": ["a"]}}),
    ("set zed = :v", None, {":v": {"S": "keywords are case-insensitive"}},
     {"zed": {"S": "keywords are case-insensitive"}}),
]


@pytest.fixture(scope="module")
def table(server):
    c = boto3.client("dynamodb", endpoint_url=server.api, region_name="us-east-1",
                     aws_access_key_id="k", aws_secret_access_key="s",
                     config=Config(retries={"total_max_attempts": 1}))
    c.create_table(TableName="expr", BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    c.put_item(TableName="expr", Item=ITEM)
    return c


def used_values(expr):
    return {k: V[k] for k in re.findall(r":[A-Za-z0-9_]+", expr) if k in V}


@pytest.mark.parametrize("expr,names,matches", FILTERS)
def test_filter_cases(table, expr, names, matches):
    kw = {"FilterExpression": expr}
    vals = used_values(expr)
    if vals:
        kw["ExpressionAttributeValues"] = vals
    if names:
        kw["ExpressionAttributeNames"] = names
    assert table.scan(TableName="expr", **kw)["Count"] == (1 if matches else 0)
    # The same expression as a write condition agrees.
    try:
        table.put_item(TableName="expr", Item=ITEM, ConditionExpression=expr, **{
            k: v for k, v in kw.items() if k != "FilterExpression"})
        held = True
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ConditionalCheckFailedException"
        held = False
    assert held == matches


@pytest.mark.parametrize("expr,names,values,message", INVALID_FILTERS)
def test_invalid_filters(table, expr, names, values, message):
    kw = {"FilterExpression": expr}
    vals = values if values is not None else used_values(expr)
    if vals:
        kw["ExpressionAttributeValues"] = vals
    if names:
        kw["ExpressionAttributeNames"] = names
    with pytest.raises(ClientError) as e:
        table.scan(TableName="expr", **kw)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"] == message


@pytest.mark.parametrize("expr,names,values,message", INVALID_UPDATES)
def test_invalid_updates(table, expr, names, values, message):
    kw = {"UpdateExpression": expr}
    if values:
        kw["ExpressionAttributeValues"] = values
    if names:
        kw["ExpressionAttributeNames"] = names
    with pytest.raises(ClientError) as e:
        table.update_item(TableName="expr", Key={"pk": {"S": "k"}}, **kw)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"] == message
    # A refused update changes nothing.
    assert table.get_item(TableName="expr", Key={"pk": {"S": "k"}})["Item"] == ITEM


def test_invalid_projection(table):
    with pytest.raises(ClientError) as e:
        table.get_item(TableName="expr", Key={"pk": {"S": "k"}}, ProjectionExpression="n, m.x, m")
    assert e.value.response["Error"]["Message"] == (
        "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of "
        "these paths; path one: [m, x], path two: [m]")


@pytest.mark.parametrize("expr,names,values,changes", UPDATES)
def test_update_cases(table, expr, names, values, changes):
    key = {"pk": {"S": "upd"}}
    table.put_item(TableName="expr", Item={**ITEM, **key})
    kw = {"UpdateExpression": expr, "ReturnValues": "ALL_NEW"}
    if values:
        kw["ExpressionAttributeValues"] = values
    if names:
        kw["ExpressionAttributeNames"] = names
    got = table.update_item(TableName="expr", Key=key, **kw)["Attributes"]
    want = {**ITEM, **key}
    for k, v in changes.items():
        if v is None:
            want.pop(k, None)
        else:
            want[k] = v
    def norm(item):
        return {k: ({"SS": sorted(v["SS"])} if "SS" in v else v) for k, v in item.items()}
    assert norm(got) == want
    assert norm(table.get_item(TableName="expr", Key=key, ConsistentRead=True)["Item"]) == want


def test_names_or_values_without_expressions(table):
    with pytest.raises(ClientError) as e:
        table.get_item(TableName="expr", Key={"pk": {"S": "k"}}, ExpressionAttributeNames={"#a": "a"})
    assert e.value.response["Error"]["Message"] == (
        "ExpressionAttributeNames can only be specified when using expressions")
