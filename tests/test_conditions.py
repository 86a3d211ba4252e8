"""ConditionExpression on PutItem, UpdateItem and DeleteItem through boto3:
every operator and function, nested paths, ConditionalCheckFailedException
with ReturnValuesOnConditionCheckFailure, and DynamoDB's validation errors."""

import re

import pytest
from botocore.exceptions import ClientError

from conftest import create_table

N = lambda v: {"N": str(v)}  # noqa: E731
S = lambda v: {"S": v}  # noqa: E731
KEY = {"pk": S("c")}
ITEM = {
    "pk": S("c"), "n": N(10), "s": S("hello"), "b": {"B": b"\x01\x02\x03"}, "t": {"BOOL": True},
    "z": {"NULL": True}, "ss": {"SS": ["x", "y"]}, "ns": {"NS": ["1", "2"]},
    "l": {"L": [N(1), S("two"), {"M": {"deep": S("d")}}]}, "m": {"M": {"k": S("v"), "deepmap": {"M": {"n": N(3)}}}},
}
VALUES = {":n5": N(5), ":n10": N(10), ":n20": N(20), ":he": S("he"), ":ell": S("ell"), ":x": S("x"),
          ":two": S("two"), ":S": S("S"), ":NS": S("NS"), ":v": S("v"), ":three": N(3), ":d": S("d"),
          ":b12": {"B": b"\x01\x02"}}


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def hash_table(ddb):
    # One table for the module (creating one per test costs more than the tests); tests use their own keys
    # or reset the item they share.
    name = create_table(ddb, "conditions")
    yield name
    ddb.delete_table(TableName=name)


@pytest.fixture
def item(ddb, hash_table):
    ddb.put_item(TableName=hash_table, Item=ITEM)
    return hash_table


def get(ddb, table):
    return ddb.get_item(TableName=table, Key=KEY, ConsistentRead=True).get("Item")


def used_values(expression):
    return {k: VALUES[k] for k in re.findall(r":\w+", expression)}


TRUE = [
    "n = :n10", "n <> :n5", "n > :n5", "n >= :n10", "n < :n20", "n <= :n10", "n BETWEEN :n5 AND :n20",
    "n IN (:n5, :n10)", "s IN (:he, :x) OR n IN (:n10)", "attribute_exists(s)", "attribute_not_exists(nope)",
    "attribute_type(s, :S)", "attribute_type(ns, :NS)", "begins_with(s, :he)", "begins_with(b, :b12)",
    "contains(s, :ell)", "contains(ss, :x)", "contains(l, :two)", "size(s) = :n5", "size(l) = :three",
    "size(m.deepmap) < :n5", "size(b) = :three", "m.deepmap.n = :three", "l[2].deep = :d", "attribute_exists(l[2].deep)",
    "m.k = :v AND NOT n = :n5", "NOT (n = :n5 OR n = :n20)", "n = :n5 OR n = :n10 AND s = :he OR s = :x OR attribute_exists(t)",
    "(n = :n10)", "s > :he", "attribute_exists(z)", "size(s) = size(s)",
]
FALSE = [
    "n = :n5", "n <> :n10", "n < :n5", "n BETWEEN :n20 AND :n20", "n IN (:n5, :n20)", "attribute_exists(nope)",
    "attribute_not_exists(s)", "attribute_type(s, :NS)", "begins_with(s, :ell)", "contains(ss, :two)",
    "size(s) = :n10", "l[5] = :two", "l[2].nope = :d", "m.k.x = :v", "n = :he", "n < :he",
    "(n = :n10 OR n = :n5) AND s = :x", "NOT attribute_exists(n)"
]


@pytest.mark.parametrize("condition", TRUE)
def test_true_conditions_let_the_update_through(ddb, item, condition):
    values = dict(used_values(condition), **{":one": N(1)})
    ddb.update_item(TableName=item, Key=KEY, UpdateExpression="ADD hits :one", ConditionExpression=condition,
                    ExpressionAttributeValues=values)
    assert get(ddb, item)["hits"] == N(1)


@pytest.mark.parametrize("condition", FALSE)
def test_false_conditions_fail_and_return_old_item(ddb, item, condition):
    values = dict(used_values(condition), **{":one": N(1)})
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=item, Key=KEY, UpdateExpression="ADD hits :one", ConditionExpression=condition,
                        ExpressionAttributeValues=values, ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert error_of(e) == ("ConditionalCheckFailedException", "The conditional request failed")
    assert e.value.response["Item"] == ITEM
    assert get(ddb, item) == ITEM


def test_put_condition(ddb, hash_table):
    ddb.delete_item(TableName=hash_table, Key=KEY)
    ddb.put_item(TableName=hash_table, Item=ITEM, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=hash_table, Item={"pk": S("c"), "other": S("o")},
                     ConditionExpression="attribute_not_exists(pk)", ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert error_of(e)[0] == "ConditionalCheckFailedException" and e.value.response["Item"] == ITEM
    ddb.put_item(TableName=hash_table, Item={"pk": S("c"), "v": N(2)}, ConditionExpression="n = :n",
                 ExpressionAttributeValues={":n": N(10)})
    assert get(ddb, hash_table) == {"pk": S("c"), "v": N(2)}


def test_delete_condition(ddb, item):
    with pytest.raises(ClientError) as e:
        ddb.delete_item(TableName=item, Key=KEY, ConditionExpression="s = :x", ExpressionAttributeValues={":x": S("x")})
    assert error_of(e)[0] == "ConditionalCheckFailedException" and "Item" not in e.value.response
    assert get(ddb, item) == ITEM
    ddb.delete_item(TableName=item, Key=KEY, ConditionExpression="s = :he", ExpressionAttributeValues={":he": S("hello")})
    assert get(ddb, item) is None


def test_condition_on_missing_item(ddb, hash_table):
    # No item: attribute_not_exists holds, comparisons fail, and ALL_OLD has nothing to return.
    ddb.update_item(TableName=hash_table, Key={"pk": S("m1")}, UpdateExpression="SET a = :v",
                    ConditionExpression="attribute_not_exists(pk)", ExpressionAttributeValues={":v": N(1)})
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=hash_table, Key={"pk": S("m2")}, UpdateExpression="SET a = :v",
                        ConditionExpression="a = :v", ExpressionAttributeValues={":v": N(1)},
                        ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert error_of(e)[0] == "ConditionalCheckFailedException" and "Item" not in e.value.response
    assert ddb.get_item(TableName=hash_table, Key={"pk": S("m2")}).get("Item") is None


@pytest.mark.parametrize("condition, values, message", [
    ("n = = :v", {":v": N(1)}, 'Invalid ConditionExpression: Syntax error; token: "=", near: "= = :v"'),
    ("n BETWEEN :a AND :b", {":a": N(5), ":b": N(1)},
     "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower "
     "bound; lower bound operand: AttributeValue: {N:5}, upper bound operand: AttributeValue: {N:1}"),
    ("nofunc(n)", None, "Invalid ConditionExpression: Invalid function name; function: nofunc"),
    ("attribute_type(n, :t)", {":t": S("XX")},
     "Invalid ConditionExpression: Invalid attribute type name found; type: XX, "
     "valid types: { B,NULL,SS,BOOL,L,BS,N,NS,S,M }"),
    ("size(:v) > :v", {":v": N(1)},
     "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: size, "
     "operand type: N"),
    ("attribute_exists(:v)", {":v": N(1)},
     "Invalid ConditionExpression: Operator or function requires a document path; operator or function: "
     "attribute_exists"),
    ("n IN (" + ", ".join([":v"] * 101) + ")", {":v": N(1)},
     "Invalid ConditionExpression: The IN operator is provided with too many operands; number of operands: 101"),
    ("name = :v", {":v": N(1)}, "Invalid ConditionExpression: Attribute name is a reserved keyword; "
                                "reserved keyword: name"),
    ("n = :nope", {":v": N(1)}, "Invalid ConditionExpression: An expression attribute value used in expression is "
                                "not defined; attribute value: :nope"),
    ("", None, "Invalid ConditionExpression: The expression can not be empty;"),
])
def test_invalid_conditions(ddb, item, condition, values, message):
    for call in (lambda: ddb.put_item(TableName=item, Item={"pk": S("c")}, **args),
                 lambda: ddb.delete_item(TableName=item, Key=KEY, **args),
                 lambda: ddb.update_item(TableName=item, Key=KEY, UpdateExpression="REMOVE s", **args)):
        args = {"ConditionExpression": condition}
        if values is not None:
            args["ExpressionAttributeValues"] = values
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("ValidationException", message)
    assert get(ddb, item) == ITEM


def test_in_takes_one_hundred_values(ddb, item):
    values = {f":v{i}": N(i) for i in range(100)}
    ddb.put_item(TableName=item, Item=ITEM, ConditionExpression="n IN (" + ", ".join(values) + ")",
                 ExpressionAttributeValues=values)


def test_bad_return_values_on_condition_check_failure(ddb, item):
    with pytest.raises(ClientError) as e:
        ddb.delete_item(TableName=item, Key=KEY, ConditionExpression="attribute_exists(n)",
                        ReturnValuesOnConditionCheckFailure="ALL_NEW")
    assert error_of(e) == ("ValidationException", "1 validation error detected: Value 'ALL_NEW' at "
                           "'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy "
                           "enum value set: [ALL_OLD, NONE]")


def test_failure_body_spells_message_as_dynamodb_does(ddb, item):
    # Without the old item the body carries "message"; with it (ALL_OLD), "Message":
    # boto3 exposes the body's modeled members, so only the first shows up as response["message"].
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=item, Item={"pk": S("c")}, ConditionExpression="attribute_not_exists(s)")
    assert e.value.response["message"] == "The conditional request failed" and "Item" not in e.value.response
    for call in (lambda **kw: ddb.put_item(TableName=item, Item={"pk": S("c")}, **kw),
                 lambda **kw: ddb.update_item(TableName=item, Key=KEY, UpdateExpression="SET q = :v",
                                              ExpressionAttributeValues={":v": N(1)}, **kw),
                 lambda **kw: ddb.delete_item(TableName=item, Key=KEY, **kw)):
        with pytest.raises(ClientError) as e:
            call(ConditionExpression="attribute_not_exists(s)", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        assert error_of(e) == ("ConditionalCheckFailedException", "The conditional request failed")
        assert "message" not in e.value.response and e.value.response["Item"] == ITEM
    assert get(ddb, item) == ITEM
