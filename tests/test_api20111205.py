"""The previous low-level API, 2011-12-05 (``DynamoDB_20111205.`` targets), which
DynamoDB still answers and the JavaScript SDK v2 speaks with ``apiVersion:
'2011-12-05'``.  boto3 has no model of it, so these post its JSON directly."""

import json
import urllib.error
import urllib.request

import pytest

from conftest import create_table


def call(server, op, body, version="20111205"):
    request = urllib.request.Request(
        server.endpoint, data=json.dumps(body).encode(), method="POST",
        headers={"X-Amz-Target": f"DynamoDB_{version}.{op}", "Content-Type": "application/x-amz-json-1.0"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ok(server, op, body):
    status, answer = call(server, op, body)
    assert status == 200, answer
    return answer


def hk(h, r=None):
    key = {"HashKeyElement": {"S": h}}
    if r is not None:
        key["RangeKeyElement"] = {"N": str(r)}
    return key


@pytest.fixture
def table(server, table_name):
    """A hash-and-range table made through the 2011-12-05 CreateTable."""
    answer = ok(server, "CreateTable", {
        "TableName": table_name,
        "KeySchema": {"HashKeyElement": {"AttributeName": "h", "AttributeType": "S"},
                      "RangeKeyElement": {"AttributeName": "r", "AttributeType": "N"}},
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}})
    description = answer["TableDescription"]
    assert description["KeySchema"] == {"HashKeyElement": {"AttributeName": "h", "AttributeType": "S"},
                                        "RangeKeyElement": {"AttributeName": "r", "AttributeType": "N"}}
    assert description["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert "AttributeDefinitions" not in description and "TableArn" not in description
    for r in range(5):
        ok(server, "PutItem", {"TableName": table_name,
                               "Item": {"h": {"S": "a"}, "r": {"N": str(r)}, "v": {"S": f"x{r}"}}})
    yield table_name
    call(server, "DeleteTable", {"TableName": table_name})


def test_table_operations(server, ddb, table):
    table_description = ok(server, "DescribeTable", {"TableName": table})["Table"]
    assert table_description["TableName"] == table
    assert table_description["TableStatus"] == "ACTIVE"
    assert table_description["KeySchema"]["HashKeyElement"] == {"AttributeName": "h", "AttributeType": "S"}
    assert {"CreationDateTime", "TableSizeBytes", "ItemCount"} <= set(table_description)
    # the same table, seen through the current API
    assert ddb.describe_table(TableName=table)["Table"]["KeySchema"] == [
        {"AttributeName": "h", "KeyType": "HASH"}, {"AttributeName": "r", "KeyType": "RANGE"}]
    assert table in ok(server, "ListTables", {})["TableNames"]
    updated = ok(server, "UpdateTable", {"TableName": table,
                                         "ProvisionedThroughput": {"ReadCapacityUnits": 7, "WriteCapacityUnits": 7}})
    assert updated["TableDescription"]["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    deleted = ok(server, "DeleteTable", {"TableName": table})["TableDescription"]
    assert deleted["TableName"] == table and deleted["TableStatus"] == "DELETING"


def test_items_by_positional_key(server, table):
    got = ok(server, "GetItem", {"TableName": table, "Key": hk("a", 1), "AttributesToGet": ["v"],
                                 "ConsistentRead": True})
    assert got["Item"] == {"v": {"S": "x1"}}
    assert got["ConsumedCapacityUnits"] > 0
    updated = ok(server, "UpdateItem", {
        "TableName": table, "Key": hk("a", 1), "ReturnValues": "ALL_NEW",
        "AttributeUpdates": {"v": {"Value": {"S": "z"}, "Action": "PUT"}, "c": {"Value": {"N": "3"}, "Action": "ADD"}},
        "Expected": {"v": {"Value": {"S": "x1"}}}})
    assert updated["Attributes"] == {"h": {"S": "a"}, "r": {"N": "1"}, "v": {"S": "z"}, "c": {"N": "3"}}
    status, error = call(server, "PutItem", {"TableName": table, "Item": {"h": {"S": "a"}, "r": {"N": "1"}},
                                             "Expected": {"h": {"Exists": False}}})
    assert status == 400
    assert error["__type"] == "com.amazonaws.dynamodb.v20111205#ConditionalCheckFailedException"
    deleted = ok(server, "DeleteItem", {"TableName": table, "Key": hk("a", 1), "ReturnValues": "ALL_OLD"})
    assert deleted["Attributes"]["v"] == {"S": "z"}
    assert "Item" not in ok(server, "GetItem", {"TableName": table, "Key": hk("a", 1)})


def test_key_errors(server, table):
    status, error = call(server, "GetItem", {"TableName": table, "Key": hk("a")})
    assert status == 400
    assert error["message"] == "The provided key element does not match the schema"
    status, error = call(server, "GetItem", {"TableName": table + "_nope", "Key": hk("a")})
    assert status == 400
    assert error["__type"] == "com.amazonaws.dynamodb.v20111205#ResourceNotFoundException"
    status, error = call(server, "DescribeTable", {"TableName": table + "_nope"})
    assert error["__type"] == "com.amazonaws.dynamodb.v20111205#ResourceNotFoundException"
    status, error = call(server, "DescribeTables", {})     # no such operation in either version
    assert error["__type"] == "com.amazon.coral.service#UnknownOperationException"


def test_query_and_scan_pages(server, table):
    first = ok(server, "Query", {"TableName": table, "HashKeyValue": {"S": "a"}, "Limit": 2,
                                 "RangeKeyCondition": {"AttributeValueList": [{"N": "1"}], "ComparisonOperator": "GT"},
                                 "ScanIndexForward": False})
    assert [item["r"]["N"] for item in first["Items"]] == ["4", "3"]
    assert first["Count"] == 2 and "ScannedCount" not in first
    assert first["LastEvaluatedKey"] == hk("a", 3)
    rest = ok(server, "Query", {"TableName": table, "HashKeyValue": {"S": "a"}, "ScanIndexForward": False,
                                "RangeKeyCondition": {"AttributeValueList": [{"N": "1"}], "ComparisonOperator": "GT"},
                                "ExclusiveStartKey": first["LastEvaluatedKey"]})
    assert [item["r"]["N"] for item in rest["Items"]] == ["2"]
    assert "LastEvaluatedKey" not in rest
    counted = ok(server, "Query", {"TableName": table, "HashKeyValue": {"S": "a"}, "Count": True})
    assert counted["Count"] == 5 and "Items" not in counted
    scanned = ok(server, "Scan", {"TableName": table, "Limit": 3,
                                  "ScanFilter": {"v": {"AttributeValueList": [{"S": "x"}],
                                                       "ComparisonOperator": "BEGINS_WITH"}}})
    assert scanned["ScannedCount"] == 3
    assert set(scanned["LastEvaluatedKey"]) == {"HashKeyElement", "RangeKeyElement"}
    more = ok(server, "Scan", {"TableName": table, "ExclusiveStartKey": scanned["LastEvaluatedKey"]})
    assert scanned["Count"] + more["Count"] == 5
    assert ok(server, "Scan", {"TableName": table, "Count": True})["Count"] == 5


def test_batches(server, table):
    written = ok(server, "BatchWriteItem", {"RequestItems": {table: [
        {"PutRequest": {"Item": {"h": {"S": "b"}, "r": {"N": "1"}}}},
        {"DeleteRequest": {"Key": hk("a", 0)}}]}})
    assert written["UnprocessedItems"] == {}
    assert written["Responses"][table]["ConsumedCapacityUnits"] > 0
    read = ok(server, "BatchGetItem", {"RequestItems": {table: {
        "Keys": [hk("b", 1), hk("a", 0), hk("a", 2)], "AttributesToGet": ["h", "r"]}}})
    assert sorted((i["h"]["S"], i["r"]["N"]) for i in read["Responses"][table]["Items"]) == [("a", "2"), ("b", "1")]
    assert read["Responses"][table]["ConsumedCapacityUnits"] > 0
    assert read["UnprocessedKeys"] == {}


def test_a_table_made_by_the_current_api(server, ddb, table_name):
    create_table(ddb, table_name)
    try:
        ok(server, "PutItem", {"TableName": table_name, "Item": {"pk": {"S": "k"}, "n": {"N": "1"}}})
        assert ok(server, "GetItem", {"TableName": table_name, "Key": {"HashKeyElement": {"S": "k"}}})["Item"] == \
            {"pk": {"S": "k"}, "n": {"N": "1"}}
        assert ok(server, "DescribeTable", {"TableName": table_name})["Table"]["KeySchema"] == \
            {"HashKeyElement": {"AttributeName": "pk", "AttributeType": "S"}}
        status, error = call(server, "GetItem", {"TableName": table_name, "Key": hk("k", 1)})
        assert status == 400 and error["message"] == "The provided key element does not match the schema"
    finally:
        ddb.delete_table(TableName=table_name)
