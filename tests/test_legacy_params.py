"""The pre-expression parameters through boto3: Expected (every
ComparisonOperator, Exists), ConditionalOperator, AttributeUpdates,
AttributesToGet, and DynamoDB's rule against mixing them with expressions."""

import pytest
from botocore.exceptions import ClientError

from conftest import create_table

N = lambda v: {"N": str(v)}  # noqa: E731
S = lambda v: {"S": v}  # noqa: E731
KEY = {"pk": S("legacy")}
ITEM = {"pk": S("legacy"), "n": N(5), "s": S("hello"), "ss": {"SS": ["a", "b"]}, "l": {"L": [S("a")]}}


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def table(ddb):
    name = create_table(ddb, "legacy_params")
    yield name
    ddb.delete_table(TableName=name)


@pytest.fixture
def item(ddb, table):
    ddb.put_item(TableName=table, Item=ITEM)
    return table


def get(ddb, table, key=KEY):
    return ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")


# (attribute, operator, values, holds on ITEM)
CASES = [
    ("n", "EQ", [N(5)], True), ("n", "EQ", [S("5")], False), ("n", "NE", [N(5)], False), ("nope", "NE", [N(5)], True),
    ("n", "LT", [N(6)], True), ("n", "LT", [N(5)], False), ("n", "LE", [N(5)], True), ("n", "GT", [N(4)], True),
    ("n", "GT", [N(5)], False), ("n", "GE", [N(5)], True), ("n", "GE", [N(6)], False),
    ("s", "BEGINS_WITH", [S("he")], True), ("s", "BEGINS_WITH", [S("lo")], False),
    ("s", "CONTAINS", [S("ell")], True), ("ss", "CONTAINS", [S("a")], True), ("ss", "CONTAINS", [S("z")], False),
    ("s", "NOT_CONTAINS", [S("z")], True), ("ss", "NOT_CONTAINS", [S("a")], False),
    ("nope", "NOT_CONTAINS", [S("z")], False),
    ("n", "IN", [N(1), N(5)], True), ("n", "IN", [N(1), N(2)], False),
    ("n", "BETWEEN", [N(1), N(5)], True), ("n", "BETWEEN", [N(6), N(9)], False),
    ("nope", "NULL", [], True), ("n", "NULL", [], False), ("n", "NOT_NULL", [], True), ("nope", "NOT_NULL", [], False),
]


@pytest.mark.parametrize("name, operator, values, holds", CASES)
def test_expected_comparison_operators(ddb, item, name, operator, values, holds):
    expected = {name: {"ComparisonOperator": operator}}
    if values:
        expected[name]["AttributeValueList"] = values
    call = lambda: ddb.update_item(TableName=item, Key=KEY, Expected=expected,  # noqa: E731
                                   AttributeUpdates={"hit": {"Action": "PUT", "Value": S(operator)}})
    if holds:
        call()
        assert get(ddb, item)["hit"] == S(operator)
    else:
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("ConditionalCheckFailedException", "The conditional request failed")
        assert get(ddb, item) == ITEM


def test_exists_and_value(ddb, item):
    ddb.put_item(TableName=item, Item=ITEM, Expected={"n": {"Exists": True, "Value": N(5)}})
    ddb.put_item(TableName=item, Item=ITEM, Expected={"n": {"Value": N(5)}, "nope": {"Exists": False}})
    with pytest.raises(ClientError) as e:
        ddb.delete_item(TableName=item, Key=KEY, Expected={"n": {"Exists": False}}, ReturnValues="ALL_OLD")
    assert error_of(e)[0] == "ConditionalCheckFailedException"
    assert get(ddb, item) == ITEM


def test_conditional_operator(ddb, item):
    either = {"n": {"Value": N(1)}, "s": {"Value": S("hello")}}
    ddb.put_item(TableName=item, Item=ITEM, Expected=either, ConditionalOperator="OR")
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=item, Item=ITEM, Expected=either, ConditionalOperator="AND")
    assert error_of(e)[0] == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=item, Item=ITEM, Expected=either)           # AND is the default
    assert error_of(e)[0] == "ConditionalCheckFailedException"


def test_attribute_updates(ddb, item):
    out = ddb.update_item(TableName=item, Key=KEY, ReturnValues="ALL_NEW", AttributeUpdates={
        "n": {"Action": "ADD", "Value": N(3)}, "ss": {"Action": "DELETE", "Value": {"SS": ["a"]}},
        "l": {"Action": "ADD", "Value": {"L": [S("b")]}}, "s": {"Action": "DELETE"},
        "fresh": {"Value": S("put is the default")}, "added": {"Action": "ADD", "Value": {"NS": ["7"]}}})
    assert out["Attributes"] == {"pk": KEY["pk"], "n": N(8), "ss": {"SS": ["b"]}, "l": {"L": [S("a"), S("b")]},
                                 "fresh": S("put is the default"), "added": {"NS": ["7"]}}
    out = ddb.update_item(TableName=item, Key=KEY, AttributeUpdates={"n": {"Action": "PUT", "Value": N(1)}},
                          ReturnValues="UPDATED_OLD")
    assert out["Attributes"] == {"n": N(8)}


@pytest.mark.parametrize("request_args, message", [
    ({"AttributeUpdates": {"pk": {"Value": S("x")}}},
     "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"),
    ({"AttributeUpdates": {"n": {"Action": "ADD", "Value": {"SS": ["x"]}}}}, "Type mismatch for attribute to update"),
    ({"AttributeUpdates": {"s": {"Action": "DELETE", "Value": {"SS": ["x"]}}}}, "Type mismatch for attribute to update"),
    ({"AttributeUpdates": {"s": {"Action": "ADD", "Value": S("x")}}},
     "One or more parameter values were invalid: ADD action is not supported for the type S"),
    ({"AttributeUpdates": {"s": {"Action": "DELETE", "Value": S("x")}}},
     "One or more parameter values were invalid: DELETE action with value is not supported for the type S"),
    ({"AttributeUpdates": {"s": {"Action": "PUT"}}},
     "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified"),
    ({"Expected": {"n": {}}},
     "One or more parameter values were invalid: Value must be provided when Exists is null for Attribute: n"),
    ({"Expected": {"n": {"Exists": True}}},
     "One or more parameter values were invalid: Value must be provided when Exists is true for Attribute: n"),
    ({"Expected": {"n": {"Exists": False, "Value": N(1)}}},
     "One or more parameter values were invalid: Value cannot be used when Exists is false for Attribute: n"),
    ({"Expected": {"n": {"ComparisonOperator": "EQ", "AttributeValueList": []}}},
     "One or more parameter values were invalid: Invalid number of argument(s) for the EQ ComparisonOperator"),
    ({"Expected": {"n": {"ComparisonOperator": "EQ"}}}, "One or more parameter values were invalid: Value or "
     "AttributeValueList must be used with ComparisonOperator: EQ for Attribute: n"),
    ({"Expected": {"n": {"ComparisonOperator": "IN", "AttributeValueList": [N(1), S("1")]}}},
     "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type"),
    ({"Expected": {"n": {"ComparisonOperator": "LT", "AttributeValueList": [{"SS": ["a"]}]}}},
     "One or more parameter values were invalid: ComparisonOperator LT is not valid for SS AttributeValue type"),
    ({"Expected": {"n": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [N(9), N(1)]}}},
     "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"),
    ({"ConditionalOperator": "OR"}, "ConditionalOperator cannot be used without Filter or Expected"),
    ({"AttributeUpdates": {"s": {"Value": S("x")}}, "ConditionalOperator": "AND"},
     "ConditionalOperator cannot be used without Filter or Expected"),
    ({"AttributeUpdates": {"s": {"Value": S("x")}}, "Expected": {"n": {"Value": N(5)}}, "ConditionalOperator": "OR"},
     "ConditionalOperator can only be used when Filter or Expected has two or more elements"),
    ({"UpdateExpression": "SET n = :v", "ExpressionAttributeValues": {":v": N(1)}, "ConditionalOperator": "AND"},
     "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: "
     "{ConditionalOperator} Expression parameters: {UpdateExpression}"),
    ({"AttributeUpdates": {"s": {"Value": S("x")}}, "UpdateExpression": "SET n = :v",
      "ExpressionAttributeValues": {":v": N(1)}}, "Can not use both expression and non-expression parameters in the "
     "same request: Non-expression parameters: {AttributeUpdates} Expression parameters: {UpdateExpression}"),
    ({"AttributeUpdates": {"s": {"Value": S("x")}}, "Expected": {"n": {"Value": N(5)}},
      "UpdateExpression": "SET n = :v", "ConditionExpression": "n = :v", "ExpressionAttributeValues": {":v": N(1)}},
     "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: "
     "{AttributeUpdates, Expected} Expression parameters: {UpdateExpression, ConditionExpression}"),
    ({"AttributeUpdates": {"s": {"Value": S("x")}}, "Expected": {"n": {"Value": N(5)}}, "ConditionalOperator": "AND",
      "UpdateExpression": "SET n = :v", "ConditionExpression": "n = :v", "ExpressionAttributeValues": {":v": N(1)}},
     "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: "
     "{AttributeUpdates, Expected, ConditionalOperator} Expression parameters: {UpdateExpression, ConditionExpression}"),
    ({"ExpressionAttributeValues": {":v": N(1)}}, "ExpressionAttributeValues can only be specified when using "
     "expressions: UpdateExpression and ConditionExpression are null"),
    ({"AttributeUpdates": {"": {"Action": "PUT", "Value": S("x")}}},
     "One or more parameter values were invalid: An AttributeName cannot be empty"),
])
def test_invalid_legacy_update_requests(ddb, item, request_args, message):
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=item, Key=KEY, **request_args)
    assert error_of(e) == ("ValidationException", message)
    assert get(ddb, item) == ITEM


def test_mixing_on_put_and_delete(ddb, item):
    for call in (lambda **a: ddb.put_item(TableName=item, Item=ITEM, **a),
                 lambda **a: ddb.delete_item(TableName=item, Key=KEY, **a)):
        with pytest.raises(ClientError) as e:
            call(Expected={"n": {"Value": N(5)}}, ConditionExpression="attribute_exists(n)")
        assert error_of(e) == ("ValidationException", "Can not use both expression and non-expression parameters "
                               "in the same request: Non-expression parameters: {Expected} Expression parameters: "
                               "{ConditionExpression}")
        # ConditionalOperator is a legacy parameter too: with a condition that
        # holds, the write must still be refused rather than done.
        with pytest.raises(ClientError) as e:
            call(ConditionalOperator="AND", ConditionExpression="attribute_exists(n)")
        assert error_of(e) == ("ValidationException", "Can not use both expression and non-expression parameters "
                               "in the same request: Non-expression parameters: {ConditionalOperator} Expression "
                               "parameters: {ConditionExpression}")
        for args, message in (({}, "ConditionalOperator cannot be used without Filter or Expected"),
                              ({"Expected": {"n": {"Value": N(5)}}}, "ConditionalOperator can only be used when "
                               "Filter or Expected has two or more elements")):
            with pytest.raises(ClientError) as e:
                call(ConditionalOperator="OR", **args)
            assert error_of(e) == ("ValidationException", message)
        with pytest.raises(ClientError) as e:
            call(ExpressionAttributeValues={":v": N(1)})
        assert error_of(e) == ("ValidationException", "ExpressionAttributeValues can only be specified when using "
                               "expressions: ConditionExpression is null")
    assert get(ddb, item) == ITEM


ENUM = "[IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"


def test_comparison_operator_outside_the_enum(ddb, table_name):
    # ComparisonOperator is an enum (case-sensitive) that DynamoDB checks
    # before anything else, naming where in the request the bad value sits.
    create_table(ddb, table_name, range_key=("c", "N"))
    key = {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [S("a")]}}
    cases = [
        (ddb.query, dict(KeyConditions={"pk": {"ComparisonOperator": "eq", "AttributeValueList": [S("a")]}}),
         "keyConditions.pk", "eq"),
        (ddb.query, dict(KeyConditions={**key, "c": {"ComparisonOperator": "DOG", "AttributeValueList": [N(1)]}}),
         "keyConditions.c", "DOG"),
        (ddb.query, dict(KeyConditions=key, QueryFilter={"x": {"ComparisonOperator": "eq",
                                                               "AttributeValueList": [N(1)]}}),
         "queryFilter.x", "eq"),
        (ddb.scan, dict(ScanFilter={"x": {"ComparisonOperator": "DOG", "AttributeValueList": [N(1)]}}),
         "scanFilter.x", "DOG"),
        (ddb.delete_item, dict(Key={"pk": S("a"), "c": N(1)},
                               Expected={"x": {"ComparisonOperator": "ne", "AttributeValueList": [N(1)]}}),
         "expected.x", "ne"),
    ]
    try:
        for call, args, where, operator in cases:
            with pytest.raises(ClientError) as e:
                call(TableName=table_name, **args)
            assert error_of(e) == ("ValidationException", f"1 validation error detected: Value '{operator}' at "
                                   f"'{where}.member.comparisonOperator' failed to satisfy constraint: Member must "
                                   f"satisfy enum value set: {ENUM}"), args
        # A known operator that is not one of the key operators.
        with pytest.raises(ClientError) as e:
            ddb.query(TableName=table_name, KeyConditions={**key, "c": {"ComparisonOperator": "NE",
                                                                         "AttributeValueList": [N(1)]}})
        assert error_of(e) == ("ValidationException", "Attempted conditional constraint is not an indexable operation")
        # BEGINS_WITH on a number key is named in the legacy parameters' own words.
        with pytest.raises(ClientError) as e:
            ddb.query(TableName=table_name, KeyConditions={**key, "c": {"ComparisonOperator": "BEGINS_WITH",
                                                                         "AttributeValueList": [N(1)]}})
        assert error_of(e) == ("ValidationException", "One or more parameter values were invalid: ComparisonOperator "
                               "BEGINS_WITH is not valid for N AttributeValue type")
    finally:
        ddb.delete_table(TableName=table_name)


def test_conditional_operator_needs_a_condition_map(ddb, item):
    # Query and Scan refuse it as the writes do, before the key condition is looked at;
    # an empty map counts as no map.
    eq = {"ComparisonOperator": "EQ", "AttributeValueList": [S("legacy")]}
    without = "ConditionalOperator cannot be used without Filter or Expected"
    for call, args in ((ddb.scan, {}), (ddb.scan, {"ScanFilter": {}}), (ddb.scan, {"AttributesToGet": ["s"]}),
                       (ddb.query, {}), (ddb.query, {"KeyConditions": {"pk": eq}}),
                       (ddb.put_item, {"Item": ITEM, "Expected": {}})):
        with pytest.raises(ClientError) as e:
            call(TableName=item, ConditionalOperator="AND", **args)
        assert error_of(e) == ("ValidationException", without)
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=item, KeyConditions={"pk": eq}, QueryFilter={"s": {"ComparisonOperator": "NOT_NULL"}},
                  ConditionalOperator="OR")
    assert error_of(e) == ("ValidationException",
                           "ConditionalOperator can only be used when Filter or Expected has two or more elements")
    both = {"s": {"ComparisonOperator": "NOT_NULL"}, "n": {"ComparisonOperator": "NULL"}}
    assert ITEM in ddb.scan(TableName=item, ScanFilter=both, ConditionalOperator="OR")["Items"]
