"""PutItem, GetItem and DeleteItem through boto3: the type system, keys and limits."""

import threading
from decimal import Decimal

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from conftest import create_table


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def test_user_story(server, table_name):
    ddb = server.resource()
    t = ddb.create_table(TableName=table_name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
    t.wait_until_exists()
    t.put_item(Item={"id": "u1", "age": 42, "tags": {"a", "b"}})
    assert t.get_item(Key={"id": "u1"})["Item"] == {"id": "u1", "age": Decimal(42), "tags": {"a", "b"}}
    t.delete()


def test_every_type_round_trips(ddb, hash_table):
    item = {
        "pk": {"S": "all"}, "s": {"S": "héllo ✓"}, "n": {"N": "-12.50"}, "b": {"B": b"\x00\x01\xff"},
        "t": {"BOOL": True}, "f": {"BOOL": False}, "z": {"NULL": True},
        "ss": {"SS": ["x", "y"]}, "ns": {"NS": ["1", "2.5", "-3"]}, "bs": {"BS": [b"a", b"b"]},
        "l": {"L": [{"S": "a"}, {"N": "1"}, {"L": []}, {"M": {}}]},
        "m": {"M": {"inner": {"M": {"deep": {"L": [{"NULL": True}]}}}}},
        "empty_s": {"S": ""}, "empty_b": {"B": b""},
    }
    ddb.put_item(TableName=hash_table, Item=item)
    got = ddb.get_item(TableName=hash_table, Key={"pk": {"S": "all"}}, ConsistentRead=True)["Item"]
    assert got["n"] == {"N": "-12.5"}
    assert sorted(got["ns"]["NS"]) == ["-3", "1", "2.5"]
    assert set(got["bs"]["BS"]) == {b"a", b"b"}
    for name in ("s", "b", "t", "f", "z", "l", "m", "empty_s", "empty_b"):
        assert got[name] == item[name], name


@pytest.mark.parametrize("text, normalized", [
    ("1.0", "1"), ("0001.2300", "1.23"), ("1e3", "1000"), ("-0.000", "0"), ("1E-5", "0.00001"),
    ("12345678901234567890123456789012345678", "12345678901234567890123456789012345678"),
    ("9.9999999999999999999999999999999999999E+125", "99999999999999999999999999999999999999" + "0" * 88),
    ("1E-130", "0." + "0" * 129 + "1"),
])
def test_numbers_are_normalized(ddb, hash_table, text, normalized):
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": "n"}, "v": {"N": text}})
    assert ddb.get_item(TableName=hash_table, Key={"pk": {"S": "n"}})["Item"]["v"]["N"] == normalized


@pytest.mark.parametrize("text, fragment", [
    ("1e126", "Number overflow"), ("1e-131", "Number underflow"),
    ("123456789012345678901234567890123456789", "38 significant digits"),
    ("abc", "cannot be converted"), ("NaN", "cannot be converted"), ("", "cannot be converted"),
])
def test_bad_numbers(ddb, hash_table, text, fragment):
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "n"}, "v": {"N": text}})
    code, message = error_of(e)
    assert code == "ValidationException" and fragment in message


def test_set_rules(ddb, hash_table):
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "s"}, "v": {"SS": []}})
    assert "may not be empty" in error_of(e)[1]
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "s"}, "v": {"SS": ["a", "a"]}})
    assert "contains duplicates" in error_of(e)[1]
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "s"}, "v": {"NS": ["1", "1.0"]}})
    assert "contains duplicates" in error_of(e)[1]


def test_sets_come_back_in_their_elements_order(ddb, hash_table):
    # DynamoDB keeps no order in a set; this server answers one in its elements' order (strings by
    # code point, numbers by value, binaries by bytes), as DynamoDB Local does, whatever order the
    # writes gave, and so does a set an update makes.
    key = {"pk": {"S": "order"}}
    ddb.put_item(TableName=hash_table, Item={**key, "ss": {"SS": ["pig", "cat", "Dog", "ant"]},
                                             "ns": {"NS": ["10", "-2.50", "3", "1e2"]},
                                             "bs": {"BS": [b"\x02", b"\x01", b"\xff"]}})
    item = ddb.get_item(TableName=hash_table, Key=key)["Item"]
    assert item["ss"] == {"SS": ["Dog", "ant", "cat", "pig"]}
    assert item["ns"] == {"NS": ["-2.5", "3", "10", "100"]}
    assert item["bs"] == {"BS": [b"\x01", b"\x02", b"\xff"]}
    new = ddb.update_item(TableName=hash_table, Key=key, UpdateExpression="ADD ss :more, ns :n DELETE bs :b",
                          ExpressionAttributeValues={":more": {"SS": ["bee", "zebra", "aardvark"]},
                                                     ":n": {"NS": ["4", "-7"]}, ":b": {"BS": [b"\x02"]}},
                          ReturnValues="ALL_NEW")["Attributes"]
    assert new["ss"] == {"SS": ["Dog", "aardvark", "ant", "bee", "cat", "pig", "zebra"]}
    assert new["ns"] == {"NS": ["-7", "-2.5", "3", "4", "10", "100"]}
    assert new["bs"] == {"BS": [b"\x01", b"\xff"]}


def test_key_validation(ddb, table_name):
    create_table(ddb, table_name, hash_key=("h", "S"), range_key=("r", "N"))
    cases = [
        ({"r": {"N": "1"}}, "Missing the key h in the item"),
        ({"h": {"S": "a"}}, "Missing the key r in the item"),
        ({"h": {"N": "1"}, "r": {"N": "1"}}, "Type mismatch for key h expected: S actual: N"),
        ({"h": {"S": ""}, "r": {"N": "1"}}, "cannot contain an empty string value"),
        ({"h": {"S": "x" * 2049}, "r": {"N": "1"}}, "Size of hashkey has exceeded"),
    ]
    for item, fragment in cases:
        with pytest.raises(ClientError) as e:
            ddb.put_item(TableName=table_name, Item=item)
        assert error_of(e)[0] == "ValidationException"
        assert fragment in error_of(e)[1], (item, error_of(e))
    for key in ({"h": {"S": "a"}}, {"h": {"S": "a"}, "r": {"S": "1"}},
                {"h": {"S": "a"}, "r": {"N": "1"}, "x": {"S": "y"}}):
        with pytest.raises(ClientError) as e:
            ddb.get_item(TableName=table_name, Key=key)
        assert error_of(e) == ("ValidationException", "The provided key element does not match the schema")
    ddb.delete_table(TableName=table_name)


def test_item_size_limit(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": "big"}, "v": {"S": "x" * (400 * 1024 - 10)}})
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "big"}, "v": {"S": "x" * (400 * 1024)}})
    assert error_of(e) == ("ValidationException", "Item size has exceeded the maximum allowed size")
    assert len(ddb.get_item(TableName=hash_table, Key={"pk": {"S": "big"}})["Item"]["v"]["S"]) == 400 * 1024 - 10


def test_nesting_limit(ddb, hash_table):
    value = {"S": "leaf"}
    for _ in range(31):
        value = {"L": [value]}
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": "deep"}, "v": value})
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "deep"}, "v": {"M": {"x": {"L": [value]}}}})
    assert error_of(e) == ("ValidationException", "Nesting Levels have exceeded supported limits: "
                           "Attributes in the item have nested levels beyond supported limit")


def test_attribute_names_are_limited_to_65535_bytes(ddb, hash_table):
    longest, too_long = "a" * 65535, "a" * 65536
    ddb.put_item(TableName=hash_table, Item={"pk": {"S": "n"}, longest: {"N": "1"}})
    assert longest in ddb.get_item(TableName=hash_table, Key={"pk": {"S": "n"}})["Item"]
    key = {"pk": {"S": "n"}}
    refused = [
        lambda: ddb.put_item(TableName=hash_table, Item={**key, too_long: {"N": "1"}}),
        lambda: ddb.get_item(TableName=hash_table, Key=key, AttributesToGet=[too_long]),
        lambda: ddb.get_item(TableName=hash_table, Key=key, ProjectionExpression="#n",
                             ExpressionAttributeNames={"#n": too_long}),
        lambda: ddb.update_item(TableName=hash_table, Key=key,
                                AttributeUpdates={too_long: {"Value": {"N": "2"}, "Action": "PUT"}}),
        lambda: ddb.update_item(TableName=hash_table, Key=key, UpdateExpression="SET #n = :v",
                                ExpressionAttributeNames={"#n": too_long},
                                ExpressionAttributeValues={":v": {"N": "2"}}),
        lambda: ddb.update_item(TableName=hash_table, Key=key, UpdateExpression="SET a = :v",
                                ConditionExpression="#n = :v", ExpressionAttributeNames={"#n": too_long},
                                ExpressionAttributeValues={":v": {"N": "2"}}),
        # Multi-byte characters count by their UTF-8 bytes.
        lambda: ddb.put_item(TableName=hash_table, Item={**key, "\u00e9" * 32768: {"N": "1"}}),
        # The keys of maps, at any depth, are attribute names too.
        lambda: ddb.put_item(TableName=hash_table, Item={**key, "m": {"M": {"x": {"M": {too_long: {"N": "1"}}}}}}),
        lambda: ddb.update_item(TableName=hash_table, Key=key, UpdateExpression="SET m = :v",
                                ExpressionAttributeValues={":v": {"M": {too_long: {"N": "1"}}}}),
    ]
    for call in refused:
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("ValidationException", "1 validation error detected: Attribute name is too "
                                                      "large, must be less than 65536 bytes")
    assert longest in ddb.get_item(TableName=hash_table, Key=key)["Item"]
    ddb.put_item(TableName=hash_table, Item={**key, "m": {"M": {longest: {"N": "1"}}}})


def test_return_values_all_old(ddb, hash_table):
    first = ddb.put_item(TableName=hash_table, Item={"pk": {"S": "r"}, "v": {"N": "1"}}, ReturnValues="ALL_OLD")
    assert "Attributes" not in first
    second = ddb.put_item(TableName=hash_table, Item={"pk": {"S": "r"}, "v": {"N": "2"}}, ReturnValues="ALL_OLD")
    assert second["Attributes"] == {"pk": {"S": "r"}, "v": {"N": "1"}}
    deleted = ddb.delete_item(TableName=hash_table, Key={"pk": {"S": "r"}}, ReturnValues="ALL_OLD")
    assert deleted["Attributes"] == {"pk": {"S": "r"}, "v": {"N": "2"}}
    assert "Item" not in ddb.get_item(TableName=hash_table, Key={"pk": {"S": "r"}})
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "r"}}, ReturnValues="ALL_NEW")
    assert error_of(e)[0] == "ValidationException"


def test_binary_and_number_keys(ddb, table_name):
    create_table(ddb, table_name, hash_key=("h", "B"), range_key=("r", "N"))
    for i in range(20):
        ddb.put_item(TableName=table_name, Item={"h": {"B": bytes([i, 0, 255])}, "r": {"N": str(i - 10)},
                                                 "v": {"N": str(i)}})
    for i in range(20):
        got = ddb.get_item(TableName=table_name, Key={"h": {"B": bytes([i, 0, 255])}, "r": {"N": str(i - 10)}})
        assert got["Item"]["v"] == {"N": str(i)}
    # 1.0 and 1 are the same number key
    ddb.put_item(TableName=table_name, Item={"h": {"B": b"x"}, "r": {"N": "1.0"}, "v": {"S": "a"}})
    assert ddb.get_item(TableName=table_name, Key={"h": {"B": b"x"}, "r": {"N": "1"}})["Item"]["v"] == {"S": "a"}
    ddb.delete_table(TableName=table_name)


def test_many_items_from_threads(server, ddb, hash_table):
    errors = []

    def writer(worker):
        client = server.client()
        try:
            for i in range(150):
                client.put_item(TableName=hash_table,
                                Item={"pk": {"S": f"w{worker}-{i}"}, "v": {"N": str(i)}, "w": {"N": str(worker)}})
        except Exception as exc:     # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    client = server.client()
    for worker in range(8):
        for i in range(150):
            item = client.get_item(TableName=hash_table, Key={"pk": {"S": f"w{worker}-{i}"}})["Item"]
            assert item == {"pk": {"S": f"w{worker}-{i}"}, "v": {"N": str(i)}, "w": {"N": str(worker)}}
    assert ddb.describe_table(TableName=hash_table)["Table"]["ItemCount"] == 1200


def test_consumed_capacity(ddb, hash_table):
    resp = ddb.put_item(TableName=hash_table, Item={"pk": {"S": "c"}, "v": {"S": "x" * 3000}},
                        ReturnConsumedCapacity="TOTAL")
    assert resp["ConsumedCapacity"] == {"TableName": hash_table, "CapacityUnits": 3.0}
    resp = ddb.get_item(TableName=hash_table, Key={"pk": {"S": "c"}}, ReturnConsumedCapacity="TOTAL")
    assert resp["ConsumedCapacity"]["CapacityUnits"] == 0.5
    resp = ddb.get_item(TableName=hash_table, Key={"pk": {"S": "c"}}, ReturnConsumedCapacity="TOTAL",
                        ConsistentRead=True)
    assert resp["ConsumedCapacity"]["CapacityUnits"] == 1.0


def test_read_units_near_four_kilobytes(ddb, hash_table):
    # Read units count the item's DynamoDB size, which its JSON (a free upper bound) may exceed.
    cases = [({"v": {"S": "x" * (4096 - 5)}}, 1.0),                          # size 4096 exactly
             ({"v": {"S": "x" * (4096 - 4)}}, 2.0),                          # size 4097
             ({f"a{i}": {"N": "1"} for i in range(400)}, 1.0)]               # JSON 6.6 KB, size 2.6 KB
    for n, (attributes, units) in enumerate(cases):
        item = {"pk": {"S": f"r{n}"}, **attributes}
        ddb.put_item(TableName=hash_table, Item=item)
        resp = ddb.get_item(TableName=hash_table, Key={"pk": {"S": f"r{n}"}}, ConsistentRead=True,
                            ReturnConsumedCapacity="TOTAL")
        assert resp["Item"] == item
        assert resp["ConsumedCapacity"] == {"TableName": hash_table, "CapacityUnits": units}


KEY_X = {"pk": {"S": "x"}}


@pytest.mark.parametrize("call, bad, good", [
    ("put_item", {"Item": KEY_X, "ConditionExpression": "a ="}, {"Item": KEY_X}),
    ("update_item", {"Key": KEY_X, "UpdateExpression": "SET a = :v, a = :w",
                     "ExpressionAttributeValues": {":v": {"N": "1"}, ":w": {"N": "2"}}}, {"Key": KEY_X}),
    ("get_item", {"Key": KEY_X, "ProjectionExpression": "a,,b"}, {"Key": KEY_X}),
])
def test_a_bad_expression_is_reported_before_a_missing_table(ddb, call, bad, good):
    """As DynamoDB does: the expressions are checked before the table is looked for."""
    with pytest.raises(ClientError) as e:
        getattr(ddb, call)(TableName="no_such_table_here", **bad)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as e:
        getattr(ddb, call)(TableName="no_such_table_here", **good)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_json_number_where_a_string_belongs_is_a_serialization_error(server, hash_table):
    # {"N": 123} fails DynamoDB's deserializer (N holds a string), before any validation.
    # boto3 would refuse these client-side; the server must answer them itself.
    unchecked = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                             aws_access_key_id="x", aws_secret_access_key="y",
                             config=BotoConfig(parameter_validation=False, retries={"max_attempts": 0}))
    for item in ({"pk": {"S": "j"}, "n": {"N": 123}}, {"pk": {"S": "j"}, "s": {"S": 5}}):
        with pytest.raises(ClientError) as e:
            unchecked.put_item(TableName=hash_table, Item=item)
        assert error_of(e)[0] == "SerializationException"
    with pytest.raises(ClientError) as e:
        unchecked.update_item(TableName=hash_table, Key={"pk": {"S": "j"}}, UpdateExpression="SET a = :v",
                              ConditionExpression="a < :bad",
                              ExpressionAttributeValues={":v": {"N": "1"}, ":bad": {"N": 123}})
    assert error_of(e)[0] == "SerializationException"


def test_a_missing_key_or_item_is_a_request_validation_error(server, hash_table):
    unchecked = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                             aws_access_key_id="x", aws_secret_access_key="y",
                             config=BotoConfig(parameter_validation=False, retries={"max_attempts": 0}))
    calls = [(unchecked.get_item, {}, "key"), (unchecked.delete_item, {}, "key"),
             (unchecked.update_item, {"UpdateExpression": "SET a = :v",
                                      "ExpressionAttributeValues": {":v": {"N": "1"}}}, "key"),
             (unchecked.put_item, {}, "item")]
    for table in (hash_table, "no_such_table"):      # checked before the table is looked up
        for call, extra, member in calls:
            with pytest.raises(ClientError) as e:
                call(TableName=table, **extra)
            assert error_of(e) == ("ValidationException", f"1 validation error detected: Value null at "
                                   f"'{member}' failed to satisfy constraint: Member must not be null")


def test_a_number_that_is_none_is_quoted_in_the_error(ddb, hash_table):
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "n"}, "n": {"N": "12e"}})
    assert e.value.response["Error"]["Message"] == "The parameter cannot be converted to a numeric value: 12e"
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": "n"}, "ns": {"NS": ["1", "x1"]}})
    assert e.value.response["Error"]["Message"] == "The parameter cannot be converted to a numeric value: x1"


def test_an_empty_table_name_fails_only_its_minimum_length(server):
    # Item operations take a table name or ARN, at least 1 character long.
    unchecked = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                             aws_access_key_id="x", aws_secret_access_key="y",
                             config=BotoConfig(parameter_validation=False, retries={"max_attempts": 0}))
    with pytest.raises(ClientError) as e:
        unchecked.put_item(TableName="", Item={"pk": {"S": "k"}})
    assert error_of(e) == ("ValidationException", "1 validation error detected: Value '' at 'tableName' failed to "
                           "satisfy constraint: Member must have length greater than or equal to 1")

