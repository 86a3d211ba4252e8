"""Requests of the wrong shape: DynamoDB's deserializer errors, never a 500.

Raw HTTP, because boto3 checks member types before sending.  The cases are
the ones a fuzzing run found answering 500 (or hanging a shard) before the
request model was checked; each must now get a 4xx of DynamoDB's type, and
the server must go on serving.
"""

import base64
import json
import time

import pytest

from shardserver.errors import SerializationException
from shardserver.protocol import shapes
from test_protocol import post, raw, split_responses

ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/"


def call(server, op: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    (status, _, reply), = split_responses(raw(server, post("DynamoDB_20120810." + op, data), timeout=30))
    return status, json.loads(reply)


def error_type(reply: dict) -> str:
    return reply.get("__type", "").rsplit("#", 1)[-1]


def nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


# ------------------------------------------------------------------ the checker alone

@pytest.mark.parametrize("op, request_, message", [
    ("GetItem", {"TableName": 5}, "TruncatingBigNumber can not be converted to an String"),
    ("GetItem", {"TableName": True}, "class java.lang.Boolean can not be converted to an String"),
    ("GetItem", {"TableName": ["t"]}, "Start of list found where not expected"),
    ("GetItem", {"TableName": {"a": 1}}, "Start of structure or map found where not expected."),
    ("GetItem", {"Key": "k"}, "Expected map or null"),
    ("GetItem", {"Key": []}, "Start of list found where not expected"),
    ("GetItem", {"ConsistentRead": "maybe"}, "'MAYBE' can not be converted to an Boolean"),
    ("Query", {"Limit": "5"}, "class java.lang.String can not be converted to an Integer"),
    ("Query", {"Limit": True}, "class java.lang.Boolean can not be converted to an Integer"),
    ("Query", {"AttributesToGet": "a"}, "Expected list or null"),
    ("Query", {"AttributesToGet": ["a", 5]}, "can not be converted to an String"),
    ("Query", {"KeyConditions": {"pk": "EQ"}}, "Expected null"),
    ("Query", {"KeyConditions": {"pk": {"ComparisonOperator": ["EQ"]}}},
     "Start of list found where not expected"),
    ("CreateTable", {"ProvisionedThroughput": "5"}, "Expected null"),
    ("CreateTable", {"Tags": [{"Key": "k", "Value": 5}]}, "can not be converted to an String"),
    ("BatchWriteItem", {"RequestItems": {"t": {"PutRequest": {}}}},
     "Start of structure or map found where not expected."),
    ("UntagResource", {"TagKeys": [{"a": 1}]}, "Start of structure or map found where not expected."),
    # the one-look members: a map of strings, a map of AttributeValues
    ("Query", {"ExpressionAttributeNames": {"#a": "a", "#b": 5}}, "TruncatingBigNumber can not be converted to an String"),
    ("Query", {"ExpressionAttributeNames": {"#a": "a", "#b": None}}, "Unexpected null value in a map"),
    ("Query", {"ExpressionAttributeNames": ["#a"]}, "Start of list found where not expected"),
    ("PutItem", {"Item": "x"}, "Expected map or null"),
    ("PutItem", {"Item": [{"a": {"S": "x"}}]}, "Start of list found where not expected"),
    ("UpdateItem", {"ExpressionAttributeValues": 5}, "Expected map or null"),
])
def test_wrong_member_types_are_serialization_errors(op, request_, message):
    with pytest.raises(SerializationException) as raised:
        shapes.check(op, request_)
    assert message in raised.value.message


def test_nulls_and_unknown_members_are_dropped_and_spellings_read():
    request = {"TableName": "t", "Limit": 2.7, "ConsistentRead": "true", "ExclusiveStartKey": None,
               "ExpressionAttributeValues": None, "IndexName": None,
               "\u0000prepared": 5, "Deep": nested(300),
               "QueryFilter": {"a": {"ComparisonOperator": "EQ", "Junk": nested(300)}}}
    shapes.check("Query", request)
    assert request == {"TableName": "t", "Limit": 2, "ConsistentRead": True,
                       "QueryFilter": {"a": {"ComparisonOperator": "EQ"}}}


def test_integers_are_floored_and_clamped_to_their_width():
    request = {"Limit": 10 ** 30, "TotalSegments": -10 ** 30, "Segment": 3.9}
    shapes.check("Scan", request)
    assert request == {"Limit": 2 ** 31 - 1, "TotalSegments": -2 ** 31, "Segment": 3}
    request = {"ProvisionedThroughput": {"ReadCapacityUnits": 10 ** 30, "WriteCapacityUnits": 5}}
    shapes.check("CreateTable", request)
    assert request["ProvisionedThroughput"]["ReadCapacityUnits"] == 2 ** 63 - 1


def test_attribute_values_are_left_to_their_own_validation():
    request = {"TableName": "t", "Item": {"a": {"S": 5}, "b": "not even a map"}}
    shapes.check("PutItem", request)
    assert request["Item"] == {"a": {"S": 5}, "b": "not even a map"}


@pytest.mark.parametrize("op, request_", [
    ("GetItem", {"TableName": "t", "Key": {"pk": {"S": "k"}}}),
    ("GetItem", {"TableName": "t", "Key": {"pk": {"S": "k"}}, "ConsistentRead": True}),
    ("UpdateItem", {"TableName": "t", "Key": {"pk": {"S": "k"}}, "UpdateExpression": "SET #c = :v",
                    "ExpressionAttributeNames": {"#c": "c"}, "ExpressionAttributeValues": {":v": {"N": "1"}}}),
    ("Query", {"TableName": "t", "Limit": 5, "AttributesToGet": ["a"],
               "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}}}),
    ("Scan", {"TableName": "t", "Segment": 1, "TotalSegments": 2 ** 31 - 1}),
    ("DescribeLimits", {}),
])
def test_a_request_left_as_parsed_is_reported_so(op, request_):
    before = json.loads(json.dumps(request_))
    assert shapes.check(op, request_) is True
    assert request_ == before


@pytest.mark.parametrize("op, request_", [
    ("GetItem", {"TableName": "t", "ProjectionExpression": None}),          # a null dropped
    ("GetItem", {"TableName": "t", "Junk": 1}),                             # an unknown member dropped
    ("GetItem", {"TableName": "t", "ConsistentRead": "true"}),              # a boolean spelled
    ("Query", {"TableName": "t", "Limit": 5.0}),                            # a float floored
    ("Scan", {"TableName": "t", "TotalSegments": 10 ** 30}),                # an integer clamped
    ("Query", {"KeyConditions": {"pk": {"ComparisonOperator": "EQ", "X": None}}}),     # nested: a map's structure
    ("TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "t", "X": 1}}]}),  # nested: a list's
    ("CreateTable", {"ProvisionedThroughput": {"ReadCapacityUnits": 1.5}}),           # nested: a structure's
    ("BatchGetItem", {"RequestItems": {"t": {"Keys": [], "ConsistentRead": "no"}}}),  # nested: a map's value
])
def test_a_request_the_check_changed_is_reported_so(op, request_):
    assert shapes.check(op, request_) is False
    assert shapes.check(op, request_) is True   # checked once, it is as the model wants it


def test_every_implemented_operation_has_a_model():
    from shardserver.shard.executor import load_all
    assert set(load_all()) <= set(shapes.OPERATIONS)


# ------------------------------------------------------------------ over the wire

@pytest.fixture
def fuzz_table(ddb, table_name):
    ddb.create_table(TableName=table_name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "N"}])
    for i in range(8):
        ddb.put_item(TableName=table_name, Item={"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}})
    yield table_name
    ddb.delete_table(TableName=table_name)


def test_bad_shapes_get_400s_and_the_server_keeps_serving(server, ddb, fuzz_table):
    t = fuzz_table
    keys = [{"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}} for i in range(8)]
    cases = [
        ("Scan", {"TableName": t, "ConditionalOperator": nested(300)}, "SerializationException"),
        ("CreateTable", {"TableName": "shape_pt", "ProvisionedThroughput": "5",
                         "KeySchema": [{"AttributeName": "h", "KeyType": "HASH"}],
                         "AttributeDefinitions": [{"AttributeName": "h", "AttributeType": "S"}]},
         "SerializationException"),
        ("CreateTable", {"TableName": "shape_tags", "BillingMode": "PAY_PER_REQUEST", "Tags": 5,
                         "KeySchema": [{"AttributeName": "h", "KeyType": "HASH"}],
                         "AttributeDefinitions": [{"AttributeName": "h", "AttributeType": "S"}]},
         "SerializationException"),
        ("UntagResource", {"ResourceArn": ARN + t, "TagKeys": [{"a": 1}]}, "SerializationException"),
        ("DeleteItem", {"TableName": t, "Key": keys[0],
                        "Expected": {"a": {"ComparisonOperator": ["EQ"], "AttributeValueList": [{"S": "x"}]}}},
         "SerializationException"),
        ("Query", {"TableName": t, "KeyConditions": {
            "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": 5}]}}}, "SerializationException"),
        ("Query", {"TableName": t, "KeyConditions": {
            "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p1"}]},
            "sk": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "abc"}, {"N": "1"}]}}},
         "ValidationException"),
        ("Query", {"TableName": t, "KeyConditionExpression": "pk = :v",
                   "ExpressionAttributeValues": {":v": {"S": ""}}}, "ValidationException"),
        ("PutItem", {"TableName": t, "Item": {"pk": {"S": "n"}, "sk": {"N": "1"},
                                              "n": {"N": "1e999999999999999999999999999999"}}},
         "ValidationException"),
        ("GetItem", {"TableName": t, "Key": {"pk": {"S": "n"}, "sk": {"N": "1e-99999999999999999999999"}}},
         "ValidationException"),
    ]
    for op, body, expected in cases:
        status, reply = call(server, op, body)
        assert (status, error_type(reply)) == (400, expected), (op, reply)
    # unknown members, however deep, are ignored (never re-encoded), on every shard
    for op, body in [
        ("BatchGetItem", {"RequestItems": {t: {"Keys": keys, "X": nested(300)}}}),
        ("BatchWriteItem", {"RequestItems": {t: [{"PutRequest": {"Item": dict(k, x={"S": "w"}), "X": nested(300)}}
                                                 for k in keys]}}),
        ("TransactGetItems", {"TransactItems": [{"Get": {"TableName": t, "Key": keys[1], "X": nested(300)}}]}),
        ("TransactWriteItems", {"TransactItems": [{"Put": {"TableName": t, "Item": dict(keys[2], y={"S": "t"}),
                                                           "X": nested(300)}}],
                                "ClientRequestToken": "shape-token", "X": nested(300)}),
        ("Query", {"TableName": t, "KeyConditionExpression": "pk = :v", "\u0000prepared": 5,
                   "ExpressionAttributeValues": {":v": {"S": "p3"}}}),
    ]:
        status, reply = call(server, op, body)
        assert status == 200, (op, reply)
    assert ddb.get_item(TableName=t, Key=keys[2])["Item"] == dict(keys[2], y={"S": "t"})   # the Put replaced it
    assert all(ddb.get_item(TableName=t, Key=k)["Item"]["x"] == {"S": "w"} for k in keys if k is not keys[2])


def test_requests_the_check_changed_are_checked_again_on_the_owner(server, fuzz_table):
    # The acceptor sends the raw body: on the other shard (about half of these keys),
    # nulls must still count as absent, unknown members be ignored and booleans be read.
    t = fuzz_table
    for i in range(16):
        key = {"pk": {"S": f"fwd{i}"}, "sk": {"N": str(i)}}
        status, reply = call(server, "PutItem", {"TableName": t, "Item": dict(key, v={"S": "x"}),
                                                 "ReturnValues": None, "ConditionExpression": None, "Junk": 1})
        assert (status, reply) == (200, {}), reply
        status, reply = call(server, "GetItem", {"TableName": t, "Key": key, "ConsistentRead": "true",
                                                 "ProjectionExpression": None, "ReturnConsumedCapacity": None})
        assert (status, reply) == (200, {"Item": dict(key, v={"S": "x"})}), reply
        status, reply = call(server, "UpdateItem", {"TableName": t, "Key": key, "UpdateExpression": "SET v = :v",
                                                    "ExpressionAttributeValues": {":v": {"S": "y"}},
                                                    "ReturnValues": None, "Expected": None})
        assert (status, reply) == (200, {}), reply
        status, reply = call(server, "DeleteItem", {"TableName": t, "Key": key, "ReturnValues": "ALL_OLD",
                                                    "ConditionExpression": None, "Junk": None})
        assert (status, reply) == (200, {"Attributes": dict(key, v={"S": "y"})}), reply


@pytest.mark.parametrize("expression", [
    "(" * 300 + "attribute_exists(pk)" + ")" * 300,
    "((attribute_exists(pk)))",
    "NOT ((attribute_exists(pk)))",
])
def test_redundant_or_absurdly_nested_parentheses(server, fuzz_table, expression):
    status, reply = call(server, "DeleteItem", {"TableName": fuzz_table, "ConditionExpression": expression,
                                                "Key": {"pk": {"S": "p0"}, "sk": {"N": "0"}}})
    assert status == 400 and error_type(reply) == "ValidationException"
    assert reply["message"] == "Invalid ConditionExpression: The expression has redundant parentheses;"


def test_deep_but_meaningful_nesting_is_accepted(ddb, fuzz_table):
    # 149 groups, each adding an OR and a comparison: 298 operators, under the 300 limit
    expression = "attribute_exists(pk)"
    for i in range(149):
        expression = f"(a{i} = pk OR {expression})"
    ddb.delete_item(TableName=fuzz_table, Key={"pk": {"S": "p0"}, "sk": {"N": "0"}},
                    ConditionExpression=expression)
    assert "Item" not in ddb.get_item(TableName=fuzz_table, Key={"pk": {"S": "p0"}, "sk": {"N": "0"}})


def test_tags_constraints(ddb, fuzz_table):
    arn = ARN + fuzz_table
    with pytest.raises(ddb.exceptions.ClientError) as raised:
        ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "k" * 129, "Value": "v"}])
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert raised.value.response["Error"]["Message"] == "The Tag Key provided is invalid, Key: " + "k" * 129
    with pytest.raises(ddb.exceptions.ClientError):
        ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v" * 257}])
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "a", "Value": ""}, {"Key": "b", "Value": "2"}])
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "b", "Value": "3"}])
    ddb.untag_resource(ResourceArn=arn, TagKeys=["a"])
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "3"}]


def test_missing_members_are_named(server, fuzz_table):
    for op, body, member in (
            ("ListTagsOfResource", {}, "resourceArn"),
            ("TagResource", {"Tags": [{"Key": "k", "Value": "v"}]}, "resourceArn"),
            ("TransactWriteItems", {"TransactItems": [{"Put": {"TableName": fuzz_table}}]},
             "transactItems.1.member.put.item"),
            ("TransactWriteItems", {"TransactItems": [{"Delete": {"TableName": fuzz_table}}]},
             "transactItems.1.member.delete.key")):
        status, reply = call(server, op, body)
        assert status == 400 and error_type(reply) == "ValidationException"
        assert f"Value null at '{member}' failed to satisfy constraint: Member must not be null" in reply["message"]


def test_bad_index_names_are_reported_together_gsis_first(server):
    key = {"AttributeName": "p", "KeyType": "HASH"}
    status, reply = call(server, "CreateTable", {
        "TableName": "bad_index_names", "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [key, {"AttributeName": "c", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("p", "c", "x")],
        "LocalSecondaryIndexes": [{"IndexName": "l1", "Projection": {"ProjectionType": "ALL"},
                                   "KeySchema": [key, {"AttributeName": "x", "KeyType": "RANGE"}]}],
        "GlobalSecondaryIndexes": [{"IndexName": "g1", "Projection": {"ProjectionType": "ALL"},
                                    "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}]}]})
    assert status == 400 and error_type(reply) == "ValidationException"
    assert reply["message"] == (
        "2 validation errors detected: Value 'g1' at 'globalSecondaryIndexes.1.member.indexName' failed to "
        "satisfy constraint: Member must have length greater than or equal to 3; Value 'l1' at "
        "'localSecondaryIndexes.1.member.indexName' failed to satisfy constraint: Member must have length "
        "greater than or equal to 3")


def test_index_member_constraints_are_reported_together_at_most_ten(server):
    key = [{"AttributeName": "p", "KeyType": "HASH"}, {"AttributeName": "c", "KeyType": "RANGE"}]
    body = {"TableName": "index_members", "KeySchema": key,
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("p", "c")],
            "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}
    rule = "failed to satisfy constraint: Member must"
    status, reply = call(server, "CreateTable", dict(body, GlobalSecondaryIndexes=[
        {"IndexName": "gix", "KeySchema": [], "Projection": {"ProjectionType": "abc", "NonKeyAttributes": []},
         "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 1}}]))
    assert status == 400 and error_type(reply) == "ValidationException"
    assert reply["message"] == "4 validation errors detected: " + "; ".join([
        f"Value '[]' at 'globalSecondaryIndexes.1.member.keySchema' {rule} have length greater than or equal to 1",
        f"Value 'abc' at 'globalSecondaryIndexes.1.member.projection.projectionType' {rule} satisfy enum value "
        "set: [ALL, INCLUDE, KEYS_ONLY]",
        f"Value '[]' at 'globalSecondaryIndexes.1.member.projection.nonKeyAttributes' {rule} have length greater "
        "than or equal to 1",
        f"Value '0' at 'globalSecondaryIndexes.1.member.provisionedThroughput.readCapacityUnits' {rule} have value "
        "greater than or equal to 1"])
    # Nine empty indexes break 27 constraints: the answer names the first ten.
    status, reply = call(server, "CreateTable", dict(body, LocalSecondaryIndexes=[{}] * 9))
    null = [f"Value null at 'localSecondaryIndexes.{i}.member.{member}' {rule} not be null"
            for i in range(1, 10) for member in ("keySchema", "projection", "indexName")]
    assert reply["message"] == "10 validation errors detected: " + "; ".join(null[:10])


def test_adding_a_large_set_to_a_large_set_does_not_stall_the_shard(server, ddb, fuzz_table):
    key = {"pk": {"S": "sets"}, "sk": {"N": "1"}}
    ddb.put_item(TableName=fuzz_table, Item=dict(key, ss={"SS": [f"a{i:05d}" for i in range(15000)]},
                                                 bs={"BS": [base64.b64encode(b"x%d" % i).decode()
                                                            for i in range(3000)]}))
    started = time.monotonic()
    status, reply = call(server, "UpdateItem", {
        "TableName": fuzz_table, "Key": key, "UpdateExpression": "ADD ss :s, bs :b",
        "ExpressionAttributeValues": {":s": {"SS": [f"b{i:05d}" for i in range(15000)] + ["a00001"]},
                                      ":b": {"BS": [base64.b64encode(b"y%d" % i).decode() for i in range(3000)]}}})
    elapsed = time.monotonic() - started
    assert status == 200, reply
    item = ddb.get_item(TableName=fuzz_table, Key=key)["Item"]
    assert len(item["ss"]["SS"]) == 30000 and len(item["bs"]["BS"]) == 6000
    # quadratic set union took ~7 s for this; a generous bound that cannot flake
    assert elapsed < 5, elapsed
