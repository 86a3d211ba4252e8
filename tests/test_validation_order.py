"""Which error DynamoDB reports first when a request has several: the checks of
its expressions alone (legacy parameters mixed in, placeholders given but never
used) come before anything is checked against the table, its key schema or
whether it exists."""

import pytest
from botocore.exceptions import ClientError

from conftest import create_table

UNUSED_NAME = "Value provided in ExpressionAttributeNames unused in expressions: keys: {#count}"
UNUSED_VALUE = "Value provided in ExpressionAttributeValues unused in expressions: keys: {:spare}"
S = lambda v: {"S": v}  # noqa: E731


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def table(ddb):
    name = create_table(ddb, "validation_order")
    yield name
    ddb.delete_table(TableName=name)


def test_placeholder_map_without_expression_before_key_schema(ddb, table):
    # The key names an attribute the table does not have; the names map is reported first.
    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName=table, Key={"id": S("x")}, ExpressionAttributeNames={"#a": "a"})
    assert error_of(e) == ("ValidationException",
                           "ExpressionAttributeNames can only be specified when using expressions")
    with pytest.raises(ClientError) as e:
        ddb.delete_item(TableName=table, Key={"id": S("x")}, ExpressionAttributeNames={"#a": "a"})
    assert error_of(e) == ("ValidationException",
                           "ExpressionAttributeNames can only be specified when using expressions")


def test_unused_name_before_key_condition_is_checked(ddb, table):
    # "x" is a path, not a value, and #1 names no key of the table: DynamoDB still
    # answers that #count is unused.
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=table, KeyConditionExpression="(#0 = x) AND (begins_with(#1, a))",
                  ExpressionAttributeNames={"#0": "pk", "#1": "sk", "#count": "count"})
    assert error_of(e) == ("ValidationException", UNUSED_NAME)


def test_unused_value_before_key_condition_is_checked(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=table, KeyConditionExpression="nokey = :v",
                  ExpressionAttributeValues={":v": S("a"), ":spare": S("b")})
    assert error_of(e) == ("ValidationException", UNUSED_VALUE)


def test_unused_name_before_key_schema(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table, Key={"id": S("x")}, UpdateExpression="SET a = :v",
                        ExpressionAttributeNames={"#count": "count"}, ExpressionAttributeValues={":v": S("v")})
    assert error_of(e) == ("ValidationException", UNUSED_NAME)


def test_batch_get_unused_name_before_missing_table(ddb):
    with pytest.raises(ClientError) as e:
        ddb.batch_get_item(RequestItems={"no_such_table_here": {
            "Keys": [{"username": S("user0")}], "ProjectionExpression": "#rl",
            "ExpressionAttributeNames": {"#rl": "username", "#count": "count"}}})
    assert error_of(e) == ("ValidationException", UNUSED_NAME)


def test_syntax_error_before_unused_name(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table, Key={"pk": S("x")}, UpdateExpression="SET a = = :v",
                        ExpressionAttributeNames={"#count": "count"}, ExpressionAttributeValues={":v": S("v")})
    assert error_of(e) == ("ValidationException", 'Invalid UpdateExpression: Syntax error; token: "=", near: "= = :v"')


def test_used_placeholders_still_work(ddb, table):
    ddb.put_item(TableName=table, Item={"pk": S("ok"), "count": S("1")})
    got = ddb.query(TableName=table, KeyConditionExpression="#p = :p", ProjectionExpression="#c",
                    ExpressionAttributeNames={"#p": "pk", "#c": "count"}, ExpressionAttributeValues={":p": S("ok")})
    assert got["Items"] == [{"count": S("1")}]
