"""ProjectionExpression and AttributesToGet on GetItem through boto3: nested
paths, list indexes, placeholders, missing paths, and DynamoDB's errors."""

import pytest
from botocore.exceptions import ClientError

from conftest import create_table

N = lambda v: {"N": str(v)}  # noqa: E731
S = lambda v: {"S": v}  # noqa: E731
KEY = {"pk": S("p")}
ITEM = {"pk": S("p"), "a": {"M": {"b": {"L": [N(2), N(4), {"M": {"x": S("hi"), "y": S("yo")}}]}, "c": N(5)}},
        "b": S("hello"), "a.b": S("dotted"), "l": {"L": [{"L": [N(0), N(1)]}, {"L": [N(2), N(3)]}]}}


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def table(ddb):
    name = create_table(ddb, "projections")
    ddb.put_item(TableName=name, Item=ITEM)
    yield name
    ddb.delete_table(TableName=name)


@pytest.mark.parametrize("projection, names, expected", [
    ("a", None, {"a": ITEM["a"]}),
    ("a.b", None, {"a": {"M": {"b": ITEM["a"]["M"]["b"]}}}),
    ("a.b[0]", None, {"a": {"M": {"b": {"L": [N(2)]}}}}),
    ("a.b[2].y", None, {"a": {"M": {"b": {"L": [{"M": {"y": S("yo")}}]}}}}),
    ("a.b[0], a.b[2].x, a.c", None, {"a": {"M": {"b": {"L": [N(2), {"M": {"x": S("hi")}}]}, "c": N(5)}}}),
    ("l[1][0], b", None, {"l": {"L": [{"L": [N(2)]}]}, "b": S("hello")}),
    ("#ab", {"#ab": "a.b"}, {"a.b": S("dotted")}),
    ("#a.#b[1]", {"#a": "a", "#b": "b"}, {"a": {"M": {"b": {"L": [N(4)]}}}}),
    ("pk, b", None, {"pk": S("p"), "b": S("hello")}),
    ("x", None, {}), ("a.b[3]", None, {}), ("a.x.y", None, {}), ("a.b.x", None, {}), ("a[0]", None, {}),
    ("b[0]", None, {}), ("a.b[0].x", None, {}),
])
def test_get_item_projection(ddb, table, projection, names, expected):
    args = {"ProjectionExpression": projection}
    if names:
        args["ExpressionAttributeNames"] = names
    assert ddb.get_item(TableName=table, Key=KEY, ConsistentRead=True, **args)["Item"] == expected


def test_attributes_to_get(ddb, table):
    got = ddb.get_item(TableName=table, Key=KEY, AttributesToGet=["b", "a.b", "missing"])["Item"]
    assert got == {"b": S("hello"), "a.b": S("dotted")}     # names are literal: no path syntax


def test_projection_of_missing_item(ddb, table):
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": S("none")}, ProjectionExpression="a")


@pytest.mark.parametrize("args, message", [
    ({"ProjectionExpression": "a, a"}, "Invalid ProjectionExpression: Two document paths overlap with each other; "
     "must remove or rewrite one of these paths; path one: [a], path two: [a]"),
    ({"ProjectionExpression": "a.b, a"}, "Invalid ProjectionExpression: Two document paths overlap with each other; "
     "must remove or rewrite one of these paths; path one: [a, b], path two: [a]"),
    ({"ProjectionExpression": "a.b, a[1]"}, "Invalid ProjectionExpression: Two document paths conflict with each "
     "other; must remove or rewrite one of these paths; path one: [a, b], path two: [a, [1]]"),
    ({"ProjectionExpression": "a,"}, 'Invalid ProjectionExpression: Syntax error; token: "<EOF>", near: ","'),
    ({"ProjectionExpression": ""}, "Invalid ProjectionExpression: The expression can not be empty;"),
    ({"ProjectionExpression": "size"}, "Invalid ProjectionExpression: Attribute name is a reserved keyword; "
     "reserved keyword: size"),
    ({"ProjectionExpression": "#n"}, "Invalid ProjectionExpression: An expression attribute name used in the "
     "document path is not defined; attribute name: #n"),
    ({"ProjectionExpression": "a", "ExpressionAttributeNames": {"#n": "n"}},
     "Value provided in ExpressionAttributeNames unused in expressions: keys: {#n}"),
    ({"ProjectionExpression": "a", "AttributesToGet": ["a"]}, "Can not use both expression and non-expression "
     "parameters in the same request: Non-expression parameters: {AttributesToGet} Expression parameters: "
     "{ProjectionExpression}"),
    ({"ExpressionAttributeNames": {"#n": "n"}}, "ExpressionAttributeNames can only be specified when using "
                                                "expressions"),
])
def test_invalid_projection(ddb, table, args, message):
    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName=table, Key=KEY, **args)
    assert error_of(e) == ("ValidationException", message)
