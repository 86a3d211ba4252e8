"""ReturnValues of every kind and ReturnConsumedCapacity (TOTAL, INDEXES)
through boto3, plus the same item API through the AWS CLI when installed."""

import json
import os
import shutil
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import create_table

N = lambda v: {"N": str(v)}  # noqa: E731
S = lambda v: {"S": v}  # noqa: E731
KEY = {"pk": S("rv")}
ITEM = {"pk": S("rv"), "a": N(1), "m": {"M": {"x": N(1), "y": N(2)}}, "l": {"L": [N(0), N(1), N(2)]}, "keep": S("k")}


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def table(ddb):
    name = create_table(ddb, "return_values")
    yield name
    ddb.delete_table(TableName=name)


@pytest.fixture
def item(ddb, table):
    ddb.put_item(TableName=table, Item=ITEM)
    return table


UPDATE = "SET a = a + :one, m.x = :nine, l[1] = :nine, fresh = :nine REMOVE m.y"
VALUES = {":one": N(1), ":nine": N(9)}
NEW = {"pk": S("rv"), "a": N(2), "m": {"M": {"x": N(9)}}, "l": {"L": [N(0), N(9), N(2)]}, "keep": S("k"),
       "fresh": N(9)}


@pytest.mark.parametrize("kind, expected", [
    ("NONE", None),
    ("ALL_OLD", ITEM),
    ("ALL_NEW", NEW),
    # Only the updated paths, in the item's shape; a path that did not exist before has no old value.
    ("UPDATED_OLD", {"a": N(1), "m": {"M": {"x": N(1), "y": N(2)}}, "l": {"L": [N(1)]}}),
    ("UPDATED_NEW", {"a": N(2), "m": {"M": {"x": N(9)}}, "l": {"L": [N(9)]}, "fresh": N(9)}),
])
def test_update_item_return_values(ddb, item, kind, expected):
    out = ddb.update_item(TableName=item, Key=KEY, UpdateExpression=UPDATE, ExpressionAttributeValues=VALUES,
                          ReturnValues=kind)
    assert out.get("Attributes") == expected
    assert ddb.get_item(TableName=item, Key=KEY, ConsistentRead=True)["Item"] == NEW


def test_return_values_of_new_item(ddb, table):
    key = {"pk": S("rv-new")}
    out = ddb.update_item(TableName=table, Key=key, UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": N(1)},
                          ReturnValues="ALL_OLD")
    assert "Attributes" not in out
    out = ddb.update_item(TableName=table, Key=key, UpdateExpression="SET b = :v", ExpressionAttributeValues={":v": N(2)},
                          ReturnValues="UPDATED_OLD")
    assert "Attributes" not in out


def test_put_and_delete_all_old(ddb, item):
    out = ddb.put_item(TableName=item, Item={"pk": S("rv"), "z": S("z")}, ReturnValues="ALL_OLD")
    assert out["Attributes"] == ITEM
    out = ddb.delete_item(TableName=item, Key=KEY, ReturnValues="ALL_OLD")
    assert out["Attributes"] == {"pk": S("rv"), "z": S("z")}
    assert "Attributes" not in ddb.delete_item(TableName=item, Key=KEY, ReturnValues="ALL_OLD")
    assert "Attributes" not in ddb.put_item(TableName=item, Item=ITEM, ReturnValues="ALL_OLD")


@pytest.mark.parametrize("kind", ["ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"])
def test_put_and_delete_reject_other_kinds(ddb, item, kind):
    for call in (lambda: ddb.put_item(TableName=item, Item=ITEM, ReturnValues=kind),
                 lambda: ddb.delete_item(TableName=item, Key=KEY, ReturnValues=kind)):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("ValidationException", "ReturnValues can only be ALL_OLD or NONE")
    assert ddb.get_item(TableName=item, Key=KEY, ConsistentRead=True)["Item"] == ITEM


def test_unknown_return_values(ddb, item):
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=item, Key=KEY, UpdateExpression="REMOVE a", ReturnValues="SOME")
    assert error_of(e) == ("ValidationException", "1 validation error detected: Value 'SOME' at 'returnValues' failed "
                           "to satisfy constraint: Member must satisfy enum value set: "
                           "[ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]")
    assert ddb.get_item(TableName=item, Key=KEY, ConsistentRead=True)["Item"] == ITEM


def test_consumed_capacity(ddb, table):
    key = {"pk": S("cap")}
    big = {"pk": S("cap"), "v": S("x" * 5000)}                 # ~5 KB: 5 write units, 2 read units
    out = ddb.put_item(TableName=table, Item=big, ReturnConsumedCapacity="TOTAL")
    assert out["ConsumedCapacity"] == {"TableName": table, "CapacityUnits": 5.0}
    strong = ddb.get_item(TableName=table, Key=key, ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    assert strong["ConsumedCapacity"]["CapacityUnits"] == 2.0
    eventual = ddb.get_item(TableName=table, Key=key, ReturnConsumedCapacity="INDEXES")
    assert eventual["ConsumedCapacity"]["CapacityUnits"] == 1.0
    assert eventual["ConsumedCapacity"]["Table"]["CapacityUnits"] == 1.0
    # An update is charged for the larger of the old and new item.
    out = ddb.update_item(TableName=table, Key=key, UpdateExpression="REMOVE v", ReturnConsumedCapacity="INDEXES")
    assert out["ConsumedCapacity"]["CapacityUnits"] == 5.0
    assert out["ConsumedCapacity"]["Table"]["CapacityUnits"] == 5.0
    out = ddb.delete_item(TableName=table, Key=key, ReturnConsumedCapacity="TOTAL")
    assert out["ConsumedCapacity"]["CapacityUnits"] == 1.0
    missing = ddb.get_item(TableName=table, Key=key, ReturnConsumedCapacity="TOTAL")
    assert "Item" not in missing and missing["ConsumedCapacity"]["CapacityUnits"] == 0.5
    assert "ConsumedCapacity" not in ddb.get_item(TableName=table, Key=key, ReturnConsumedCapacity="NONE")


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_aws_cli_item_api(server, table):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)

    def aws(*args):
        done = subprocess.run(["aws", "dynamodb", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                              capture_output=True, text=True, env=env, timeout=60)
        return done.returncode, done.stdout, done.stderr

    code, out, err = aws("update-item", "--table-name", table, "--key", '{"pk": {"S": "cli"}}',
                         "--update-expression", "SET doc = :d, n = if_not_exists(n, :z) + :one",
                         "--expression-attribute-values", '{":d": {"M": {"l": {"L": [{"S": "a"}]}}}, '
                                                          '":z": {"N": "0"}, ":one": {"N": "1"}}',
                         "--return-values", "ALL_NEW")
    assert code == 0, err
    assert json.loads(out)["Attributes"]["n"] == {"N": "1"}
    code, out, err = aws("update-item", "--table-name", table, "--key", '{"pk": {"S": "cli"}}',
                         "--update-expression", "SET doc.l[1] = :b", "--condition-expression", "n = :one",
                         "--expression-attribute-values", '{":b": {"S": "b"}, ":one": {"N": "1"}}',
                         "--return-values", "UPDATED_NEW")
    assert code == 0, err
    assert json.loads(out)["Attributes"] == {"doc": {"M": {"l": {"L": [{"S": "b"}]}}}}
    code, out, err = aws("delete-item", "--table-name", table, "--key", '{"pk": {"S": "cli"}}',
                         "--condition-expression", "n = :two", "--expression-attribute-values", '{":two": {"N": "2"}}')
    assert code != 0 and "ConditionalCheckFailedException" in err
    code, out, err = aws("get-item", "--table-name", table, "--key", '{"pk": {"S": "cli"}}',
                         "--projection-expression", "doc.l[0], n")
    assert code == 0, err
    assert json.loads(out)["Item"] == {"doc": {"M": {"l": {"L": [{"S": "a"}]}}}, "n": {"N": "1"}}
