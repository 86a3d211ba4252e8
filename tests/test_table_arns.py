"""Tables named by their ARN: every TableName (and the RequestItems of batches, the items of
transactions) takes the table's name or its ARN, and per-table answers are keyed the way the
request named the table."""

import pytest
from botocore.exceptions import ClientError

from conftest import create_table
from test_query import error_of


def S(value):
    return {"S": value}


def arn_of(ddb, name):
    return ddb.describe_table(TableName=name)["Table"]["TableArn"]


def test_item_operations_by_arn(ddb, range_table):
    arn = arn_of(ddb, range_table)
    # Enough partition keys that some are owned by the shard that did not accept the request.
    for i in range(8):
        ddb.put_item(TableName=arn, Item={"pk": S(f"p{i}"), "sk": S("a"), "v": S(str(i))})
    for i in range(8):
        assert ddb.get_item(TableName=arn, Key={"pk": S(f"p{i}"), "sk": S("a")})["Item"]["v"] == S(str(i))
    ddb.update_item(TableName=arn, Key={"pk": S("p0"), "sk": S("a")}, UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": S("new")})
    got = ddb.query(TableName=arn, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": S("p0")})
    assert got["Items"] == [{"pk": S("p0"), "sk": S("a"), "v": S("new")}]
    assert ddb.scan(TableName=arn, Select="COUNT", ConsistentRead=True)["Count"] == 8
    ddb.delete_item(TableName=arn, Key={"pk": S("p1"), "sk": S("a")})
    assert "Item" not in ddb.get_item(TableName=range_table, Key={"pk": S("p1"), "sk": S("a")})
    assert ddb.describe_table(TableName=arn)["Table"]["TableName"] == range_table
    assert ddb.describe_time_to_live(TableName=arn)["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"


@pytest.fixture
def other_table(ddb, table_name):
    name = create_table(ddb, table_name + "_other", range_key=("sk", "S"))
    yield name
    ddb.delete_table(TableName=name)


def test_batches_answer_under_the_arn_given(ddb, hash_table, other_table):
    range_table = other_table
    arn = arn_of(ddb, hash_table)
    written = ddb.batch_write_item(RequestItems={
        arn: [{"PutRequest": {"Item": {"pk": S(f"k{i}")}}} for i in range(6)],
        range_table: [{"PutRequest": {"Item": {"pk": S("x"), "sk": S("y")}}}]})
    assert written["UnprocessedItems"] == {}
    got = ddb.batch_get_item(RequestItems={arn: {"Keys": [{"pk": S(f"k{i}")} for i in range(6)]},
                                           range_table: {"Keys": [{"pk": S("x"), "sk": S("y")}]}})
    assert set(got["Responses"]) == {arn, range_table}
    assert sorted(i["pk"]["S"] for i in got["Responses"][arn]) == [f"k{i}" for i in range(6)]
    with pytest.raises(ClientError) as excinfo:
        ddb.batch_get_item(RequestItems={arn: {"Keys": [{"pk": S("k0")}]}, hash_table: {"Keys": [{"pk": S("k1")}]}})
    assert error_of(excinfo)[0] == "ValidationException"


def test_transactions_by_arn(ddb, hash_table):
    arn = arn_of(ddb, hash_table)
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": arn, "Item": {"pk": S(f"t{i}")}}}
                                            for i in range(4)])
    got = ddb.transact_get_items(TransactItems=[{"Get": {"TableName": arn, "Key": {"pk": S(f"t{i}")}}}
                                                for i in range(4)])
    assert [r["Item"]["pk"]["S"] for r in got["Responses"]] == [f"t{i}" for i in range(4)]
    with pytest.raises(ClientError) as excinfo:
        ddb.transact_write_items(TransactItems=[{"ConditionCheck": {
            "TableName": arn, "Key": {"pk": S("t0")}, "ConditionExpression": "attribute_not_exists(pk)"}}])
    assert error_of(excinfo)[0] == "TransactionCanceledException"


def test_bad_and_unknown_table_arns(ddb, hash_table):
    arn = arn_of(ddb, hash_table)
    missing = arn.rsplit("/", 1)[0] + "/no_such_table"
    with pytest.raises(ClientError) as excinfo:
        ddb.get_item(TableName=missing, Key={"pk": S("a")})
    assert error_of(excinfo) == ("ResourceNotFoundException", "Requested resource not found")
    with pytest.raises(ClientError) as excinfo:
        ddb.describe_table(TableName=missing)
    assert error_of(excinfo) == ("ResourceNotFoundException",
                                 "Requested resource not found: Table: no_such_table not found")
    with pytest.raises(ClientError) as excinfo:
        ddb.put_item(TableName=arn.replace(":dynamodb:", ":s3:"), Item={"pk": S("a")})
    assert error_of(excinfo)[0] == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        ddb.batch_write_item(RequestItems={arn + "/index/x": [{"PutRequest": {"Item": {"pk": S("a")}}}]})
    assert error_of(excinfo)[0] == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        ddb.create_table(TableName=arn.rsplit("/", 1)[0] + "/new_one", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    assert error_of(excinfo)[0] == "ValidationException"


def test_values_nested_too_deep_get_the_same_error_by_arn(server, ddb, hash_table):
    # Deeper than orjson re-encodes: the request with names for ARNs cannot be re-encoded
    # for the owner shard, which must still refuse it as a request by name is refused.
    from test_request_shapes import call
    arn = arn_of(ddb, hash_table)
    deep = S("x")
    for _ in range(130):
        deep = {"L": [deep]}
    for i in range(8):
        for op, body in (("PutItem", {"Item": {"pk": S(f"d{i}"), "d": deep}}),
                         ("UpdateItem", {"Key": {"pk": S(f"d{i}")}, "UpdateExpression": "SET d = :d",
                                         "ExpressionAttributeValues": {":d": deep}}),
                         ("BatchWriteItem", {"RequestItems": {
                             hash_table: [{"PutRequest": {"Item": {"pk": S(f"d{i}"), "d": deep}}}]}})):
            by_name = call(server, op, dict(body, TableName=hash_table) if op != "BatchWriteItem" else body)
            if op == "BatchWriteItem":
                body = {"RequestItems": {arn: body["RequestItems"][hash_table]}}
            else:
                body = dict(body, TableName=arn)
            assert by_name[0] == 400, (op, by_name)
            assert call(server, op, body) == by_name, op
