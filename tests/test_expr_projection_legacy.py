"""ProjectionExpression, KeyConditionExpression and the legacy parameters."""

import pytest

from shardserver.errors import ValidationException
from shardserver.shard.expressions import (
    ExpressionContext, apply_attribute_updates, attributes_to_get_projection, check_legacy_mix,
    evaluate_condition, expected_to_condition, filter_from_legacy, key_condition_parts, key_conditions_parts,
    parse_key_condition, parse_projection, project)

ITEM = {"p": {"S": "k"}, "a": {"M": {"b": {"L": [{"N": "2"}, {"N": "4"}, {"M": {"x": {"S": "hi"}, "y": {"S": "yo"}}}]},
                                      "c": {"N": "5"}}},
        "b": {"S": "hello"}}


def proj(text, names=None):
    ctx = ExpressionContext(names, None)
    out = project(ITEM, parse_projection(text), ctx)
    ctx.check_all_used()
    return out


def test_projection_paths():
    a = ITEM["a"]["M"]
    assert proj("a") == {"a": ITEM["a"]}
    assert proj("a.b") == {"a": {"M": {"b": a["b"]}}}
    assert proj("a.b[0]") == {"a": {"M": {"b": {"L": [{"N": "2"}]}}}}
    assert proj("a.b[2].y") == {"a": {"M": {"b": {"L": [{"M": {"y": {"S": "yo"}}}]}}}}
    assert proj("a.b[2], a.b[0]") == {"a": {"M": {"b": {"L": [{"N": "2"}, a["b"]["L"][2]]}}}}
    assert proj("a.c, b") == {"a": {"M": {"c": {"N": "5"}}}, "b": {"S": "hello"}}
    assert proj(" #n1.#n2 ", {"#n1": "a", "#n2": "c"}) == {"a": {"M": {"c": {"N": "5"}}}}
    for nothing in ("x", "a.b[3]", "a.x", "a.x.y", "a.b[3].x", "a.b.x", "a[0]", "a.b[0].x", "a.b[0][0]"):
        assert proj(nothing) == {}, nothing
    assert proj("a.x, a.b[0], x, a.b[3].x") == {"a": {"M": {"b": {"L": [{"N": "2"}]}}}}


@pytest.mark.parametrize("text,word", [
    ("a, a", "overlap"), ("a.b, a.b[2]", "overlap"), ("a, a.b[2].c", "overlap"), ("a.b.d.e, a.b", "overlap"),
    ("a.b, a[1]", "conflict"),
])
def test_projection_overlap(text, word):
    with pytest.raises(ValidationException, match=f"Invalid ProjectionExpression: Two document paths {word}"):
        proj(text)


def test_projection_non_overlaps_are_fine():
    for text in ("a, b", "a.b, a.c", "a.b.d, a.b.e", "a[1], a[2]", "a.b, a.c[2]"):
        proj(text)


def test_attributes_to_get():
    assert project(ITEM, attributes_to_get_projection(["b", "zz"])) == {"b": {"S": "hello"}}
    with pytest.raises(ValidationException, match="Duplicate"):
        attributes_to_get_projection(["b", "b"])


def kc(text, values, names=None, types=None):
    ctx = ExpressionContext(names, values)
    parts = key_condition_parts(parse_key_condition(text), ctx, "p", "c", types or {"p": "S", "c": "N"})
    ctx.check_all_used()
    return parts


def test_key_conditions():
    p, three, seven = {"S": "k"}, {"N": "3"}, {"N": "7"}
    assert kc("p = :p", {":p": p}) == (p, None, [])
    assert kc("p=:p AND c<:c", {":p": p, ":c": three}) == (p, "<", [three])
    assert kc(":c<c AND :p=p", {":p": p, ":c": three}) == (p, ">", [three])
    assert kc("((c=:c) AND (p=:p))", {":p": p, ":c": three}) == (p, "=", [three])
    assert kc("#a = :p AND c BETWEEN :x AND :y", {":p": p, ":x": three, ":y": seven}, {"#a": "p"}) == \
        (p, "BETWEEN", [three, seven])
    assert kc("p = :p AND begins_with(c, :s)", {":p": p, ":s": {"S": "ab"}}, types={"p": "S", "c": "S"}) == \
        (p, "begins_with", [{"S": "ab"}])


@pytest.mark.parametrize("text,values,message", [
    ("p = :p AND p = :p", {":p": {"S": "k"}}, "KeyConditionExpressions must only contain one condition per key"),
    ("p < :p", {":p": {"S": "k"}}, "Query key condition not supported"),
    ("c = :c", {":c": {"N": "1"}}, "Query condition missed key schema element: p"),
    ("p = :p AND a < :a", {":p": {"S": "k"}, ":a": {"N": "1"}}, "Query condition missed key schema element: c"),
    ("c = :c OR p = :p", {":p": {"S": "k"}, ":c": {"N": "1"}},
     "Invalid operator used in KeyConditionExpression: OR"),
    ("p = :p AND c <> :c", {":p": {"S": "k"}, ":c": {"N": "1"}},
     "Invalid operator used in KeyConditionExpression: <>"),
    ("p = :p AND c IN (:c)", {":p": {"S": "k"}, ":c": {"N": "1"}},
     "Invalid operator used in KeyConditionExpression: IN"),
    ("p = :p AND dog(c, :c)", {":p": {"S": "k"}, ":c": {"N": "1"}},
     "Invalid KeyConditionExpression: Invalid function name; function: dog"),
    ("p = :p AND begins_with(c, :c)", {":p": {"S": "k"}, ":c": {"N": "1"}},
     "Invalid KeyConditionExpression: Incorrect operand type for operator or function; "
     "operator or function: begins_with, operand type: N"),
    ("p = :n", {":n": {"N": "1"}},
     "One or more parameter values were invalid: Condition parameter type does not match schema type"),
    ("p = :p AND c < :c AND a < :a", {":p": {"S": "k"}, ":c": {"N": "1"}, ":a": {"N": "1"}},
     "Invalid KeyConditionExpression: Conditions can be of length 1 or 2 only"),
])
def test_key_condition_errors(text, values, message):
    with pytest.raises(ValidationException) as info:
        kc(text, values)
    assert info.value.message == message


def test_partition_only_key_condition():
    # One partition is checked by a shortcut; every way to fail it keeps the general path's error.
    mismatch = "One or more parameter values were invalid: Condition parameter type does not match schema type"
    empty = ("One or more parameter values are not valid. The AttributeValue for a key attribute cannot "
             "contain an empty string value. Key: p")
    assert kc("p = :p", {":p": {"S": "k"}}) == ({"S": "k"}, None, [])
    assert kc("p = :p", {":p": {"N": "1"}}, types={"p": "N"}) == ({"N": "1"}, None, [])
    for types, value, message in (({"p": "S"}, {"N": "1"}, mismatch), ({"p": "S"}, {"S": ""}, empty),
                                  ({"p": "S"}, {"BOOL": True}, mismatch), ({"c": "N"}, {"BOOL": True}, mismatch),
                                  ({"p": "B"}, {"S": "k"}, mismatch)):
        with pytest.raises(ValidationException) as info:
            kc("p = :p", {":p": value}, types=types)
        assert info.value.message == message, (types, value)
    assert kc("p = :p", {":p": {"S": "k"}}, types={"c": "N"}) == ({"S": "k"}, None, [])   # p's type unknown
    with pytest.raises(ValidationException) as info:
        key_conditions_parts({"p": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": ""}]}}, "p", None,
                             {"p": "S"})
    assert info.value.message == empty


def test_legacy_key_conditions():
    p = {"S": "k"}
    assert key_conditions_parts({"p": {"ComparisonOperator": "EQ", "AttributeValueList": [p]},
                                 "c": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "1"}]}},
                                "p", "c") == (p, ">", [{"N": "1"}])
    with pytest.raises(ValidationException, match="not an indexable operation"):
        key_conditions_parts({"p": {"ComparisonOperator": "NE", "AttributeValueList": [p]}}, "p", None)


ITEM2 = {"a": {"N": "1"}, "s": {"S": "hello"}, "ss": {"SS": ["x", "y"]}, "l": {"L": [{"S": "x"}]}}


@pytest.mark.parametrize("expected,result", [
    ({"a": {"Value": {"N": "1"}}}, True),
    ({"a": {"Value": {"N": "1"}, "Exists": True}}, True),
    ({"q": {"Exists": False}}, True),
    ({"a": {"Exists": False}}, False),
    ({"q": {"ComparisonOperator": "NE", "AttributeValueList": [{"N": "1"}]}}, True),
    ({"q": {"ComparisonOperator": "NULL"}}, True),
    ({"a": {"ComparisonOperator": "NOT_NULL"}}, True),
    ({"a": {"ComparisonOperator": "LT", "AttributeValueList": [{"N": "2"}]}}, True),
    ({"s": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"S": "he"}]}}, True),
    ({"ss": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [{"S": "x"}]}}, True),
    ({"l": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [{"S": "x"}]}}, True),
    ({"q": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [{"S": "x"}]}}, False),
    ({"s": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [{"S": "z"}]}}, True),
    ({"a": {"ComparisonOperator": "IN", "AttributeValueList": [{"N": "3"}, {"N": "1"}]}}, True),
    ({"a": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "0"}, {"N": "1"}]}}, True),
    ({"a": {"ComparisonOperator": "GT", "AttributeValueList": [{"S": "0"}]}}, False),
])
def test_expected(expected, result):
    assert evaluate_condition(expected_to_condition(expected), ITEM2) is result


def test_expected_operators_and_errors():
    both = {"a": {"Value": {"N": "2"}}, "s": {"Value": {"S": "hello"}}}
    assert not evaluate_condition(expected_to_condition(both, "AND"), ITEM2)
    assert evaluate_condition(expected_to_condition(both, "OR"), ITEM2)
    for bad, text in [
        ({"a": {"Exists": True}}, "Value must be provided when Exists is true for Attribute: a"),
        ({"a": {"Exists": False, "Value": {"N": "1"}}}, "Value cannot be used when Exists is false for Attribute: a"),
        ({"a": {"ComparisonOperator": "EQ"}},
         "Value or AttributeValueList must be used with ComparisonOperator: EQ for Attribute: a"),
        ({"a": {"ComparisonOperator": "EQ", "AttributeValueList": []}},
         "Invalid number of argument(s) for the EQ ComparisonOperator"),
        ({"a": {"ComparisonOperator": "LT", "AttributeValueList": [{"SS": ["x"]}]}},
         "ComparisonOperator LT is not valid for SS AttributeValue type"),
    ]:
        with pytest.raises(ValidationException) as info:
            expected_to_condition(bad)
        assert info.value.message == "One or more parameter values were invalid: " + text
    with pytest.raises(ValidationException, match="two or more elements"):
        expected_to_condition({"a": {"Value": {"N": "1"}}}, "OR")


def test_filter_from_legacy():
    cond = filter_from_legacy({"a": {"ComparisonOperator": "GE", "AttributeValueList": [{"N": "1"}]}})
    assert evaluate_condition(cond, ITEM2)


def test_attribute_updates():
    item = {"p": {"S": "k"}, "n": {"N": "1"}, "ss": {"SS": ["x", "y"]}, "l": {"L": [{"N": "1"}]}, "gone": {"S": "x"}}
    new, touched = apply_attribute_updates({
        "n": {"Action": "ADD", "Value": {"N": "2"}},
        "ss": {"Action": "DELETE", "Value": {"SS": ["x"]}},
        "l": {"Action": "ADD", "Value": {"L": [{"N": "2"}]}},
        "gone": {"Action": "DELETE"},
        "a.b": {"Value": {"S": "dotted"}},
    }, item, {"p"})
    assert new == {"p": {"S": "k"}, "n": {"N": "3"}, "ss": {"SS": ["y"]}, "l": {"L": [{"N": "1"}, {"N": "2"}]},
                   "a.b": {"S": "dotted"}}
    assert touched == {"n", "ss", "l", "gone", "a.b"}
    assert item["n"] == {"N": "1"}
    with pytest.raises(ValidationException, match="Cannot update attribute p. This attribute is part of the key"):
        apply_attribute_updates({"p": {"Value": {"S": "x"}}}, item, {"p"})
    with pytest.raises(ValidationException, match="Only DELETE action is allowed"):
        apply_attribute_updates({"a": {"Action": "PUT"}}, item, {"p"})


def test_legacy_mix():
    with pytest.raises(ValidationException) as info:
        check_legacy_mix({"AttributeUpdates": {}, "ConditionExpression": "a = :v"}, "UpdateItem")
    assert info.value.message == ("Can not use both expression and non-expression parameters in the same request: "
                                  "Non-expression parameters: {AttributeUpdates} "
                                  "Expression parameters: {ConditionExpression}")
    with pytest.raises(ValidationException, match="ExpressionAttributeValues can only be specified when using"):
        check_legacy_mix({"Expected": {}, "ExpressionAttributeValues": {":v": {"N": "1"}}})
    check_legacy_mix({"UpdateExpression": "SET a = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}})
