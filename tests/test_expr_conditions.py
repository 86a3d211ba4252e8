"""ConditionExpression semantics: comparisons, functions, precedence, literal checks."""

import pytest

from shardserver.errors import ValidationException
from shardserver.shard.expressions import ExpressionContext, evaluate_condition, parse_condition

ITEM = {
    "p": {"S": "key"},
    "n": {"N": "5"}, "two": {"N": "2"}, "s": {"S": "hello"}, "b": {"B": "aGkgdGhlcmU="},   # b"hi there"
    "ss": {"SS": ["cat", "dog"]}, "ns": {"NS": ["1", "2", "3"]}, "bs": {"BS": ["eHl6"]},
    "l": {"L": [{"S": "hi"}, {"NS": ["1", "2"]}, {"L": [{"N": "3"}]}]},
    "m": {"M": {"x": {"N": "1"}, "y": {"L": [{"N": "-1"}, {"N": "2"}]}}},
    "t": {"BOOL": True}, "z": {"NULL": True}, "e": {"S": "é"},
}

VALUES = {
    ":five": {"N": "5.0"}, ":two": {"N": "2"}, ":seven": {"N": "7"}, ":hello": {"S": "hello"},
    ":hell": {"S": "hell"}, ":ell": {"S": "ell"}, ":dog": {"S": "dog"}, ":hi": {"B": "aGk="},
    ":here": {"B": "aGVyZQ=="}, ":ss": {"SS": ["dog", "cat"]}, ":one": {"N": "1"}, ":three": {"N": "3"},
    ":set12": {"NS": ["2", "1"]}, ":list": {"L": [{"N": "1"}]}, ":S": {"S": "S"}, ":SS": {"S": "SS"},
    ":M": {"S": "M"}, ":true": {"BOOL": True}, ":null": {"NULL": True}, ":minus": {"N": "-1"},
}


def check(text, item=ITEM, values=VALUES, names=None):
    ctx = ExpressionContext(names, dict(values))
    return evaluate_condition(parse_condition(text), item, ctx)


@pytest.mark.parametrize("text,expected", [
    ("n = :five", True), ("n <> :five", False), ("n = :hello", False), ("n <> :hello", True),
    ("absent = :five", False), ("absent <> :five", True), ("absent = nope", False), ("q <> z2", True),
    ("ss = :ss", True), ("ns = :set12", False), ("t = :true", True), ("z = :null", True),
    ("n > :two", True), ("n < :two", False), ("n >= :five", True), ("n <= :five", True),
    ("s < :hell", False), ("s > :hell", True), ("s < :five", False), ("absent < :five", False),
    ("b > :hi", True), ("e > :hello", True),
    ("n BETWEEN :two AND :seven", True), ("n BETWEEN :two AND :two", False), ("s BETWEEN :hell AND :hello", True),
    ("n BETWEEN two AND :seven", True), ("n BETWEEN :two AND s", False), ("absent BETWEEN :two AND :five", False),
    ("n IN (:two, :hello, :five)", True), ("n IN (:two)", False), ("absent IN (:two)", False),
    ("attribute_exists(n)", True), ("attribute_exists(m.y[1])", True), ("attribute_exists(m.y[2])", False),
    ("attribute_not_exists(m.x.q)", True), ("attribute_not_exists(l[0])", False),
    ("attribute_type(ss, :SS)", True), ("attribute_type(s, :S)", True), ("attribute_type(m, :M)", True),
    ("attribute_type(s, :SS)", False), ("attribute_type(absent, :S)", False),
    ("begins_with(s, :hell)", True), ("begins_with(s, :ell)", False), ("begins_with(b, :hi)", True),
    ("begins_with(n, :hell)", False), ("begins_with(s, :hi)", False),
    ("contains(s, :ell)", True), ("contains(b, :here)", True), ("contains(ss, :dog)", True),
    ("contains(ns, :three)", True), ("contains(ns, :dog)", False), ("contains(l, :set12)", True),
    ("contains(l, :list)", False), ("contains(n, :five)", False), ("contains(absent, :dog)", False),
    ("size(s) = :five", True), ("size(b) = :five", False), ("size(ss) = :two", True), ("size(l) > :two", True),
    ("size(m) = :two", True), ("size(e) = :one", True), ("size(e) = :two", False),   # UTF-16 units, not bytes
    ("size(n) = :one", False), ("size(t) >= :one", False),
    ("size(s) = n", True), ("size(s) = :hello", False),
    ("m.x < m.y[1]", True), ("m.x < m.y[0]", False), ("m.q < m.y[100]", False),
    ("n = :five AND s = :hello", True), ("n = :two OR s = :hello", True), ("NOT n = :two", True),
    ("NOT NOT NOT NOT n = :five", True),
    # precedence: NOT > AND > OR
    ("n = :five OR n = :two AND n = :seven", True),
    ("(n = :five OR n = :two) AND n = :seven", False),
    ("NOT n = :five AND n = :two", False),
    ("NOT (n = :five AND n = :two)", True),
    ("n BETWEEN :two AND :seven AND s = :hello", True),
    (":two < :five", True), (":hello = :hello", True),
])
def test_condition_semantics(text, expected):
    assert check(text) is expected


def test_absent_item_is_empty():
    ctx = ExpressionContext(None, {":v": {"N": "1"}})
    assert evaluate_condition(parse_condition("attribute_not_exists(p)"), None, ctx)
    assert not evaluate_condition(parse_condition("a = :v"), None, ctx)
    assert evaluate_condition(parse_condition("a <> :v"), None, ctx)


def test_numbers_compare_numerically():
    values = {":big": {"N": "1E+2"}, ":small": {"N": "99.99999999999999999999999999"}}
    item = {"a": {"N": "100"}}
    assert check("a = :big", item, values)
    assert check("a > :small", item, values)


def test_reserved_word_through_placeholder():
    assert check("#and.#or = :one", {"and": {"M": {"or": {"N": "1"}}}}, {":one": {"N": "1"}},
                 {"#and": "and", "#or": "or"})


@pytest.mark.parametrize("text,values,message", [
    ("a BETWEEN :l AND :h", {":l": {"L": []}, ":h": {"L": []}},
     "Incorrect operand type for operator or function; operator or function: BETWEEN, operand type: L"),
    ("a BETWEEN :l AND :h", {":l": {"N": "2"}, ":h": {"N": "1"}},
     "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; "
     "lower bound operand: AttributeValue: {N:2}, upper bound operand: AttributeValue: {N:1}"),
    ("a BETWEEN :l AND :h", {":l": {"N": "2"}, ":h": {"S": "dog"}},
     "The BETWEEN operator requires same data type for lower and upper bounds; "
     "lower bound operand: AttributeValue: {N:2}, upper bound operand: AttributeValue: {S:dog}"),
    ("a < :l", {":l": {"M": {}}}, "Incorrect operand type for operator or function; operator or function: <, operand type: M"),
    ("attribute_exists(:l)", {":l": {"N": "1"}},
     "Operator or function requires a document path; operator or function: attribute_exists"),
    ("attribute_type(a, :t)", {":t": {"S": "DOG"}},
     "Invalid attribute type name found; type: DOG, valid types: { B,NULL,SS,BOOL,L,BS,N,NS,S,M }"),
    ("begins_with(a, :n)", {":n": {"N": "2"}},
     "Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"),
    ("size(a, a) = :n", {":n": {"N": "2"}},
     "Incorrect number of operands for operator or function; operator or function: size, number of operands: 2"),
    ("size(:n) = :n", {":n": {"N": "2"}}, "Incorrect operand type for operator or function; operator or function: size, operand type: N"),
    ("size(a)", None, "The function is not allowed to be used this way in an expression; function: size"),
    ("attribute_exists(a) < :n", {":n": {"N": "2"}},
     "The function is not allowed to be used this way in an expression; function: attribute_exists"),
    ("if_not_exists(a, a) = :n", {":n": {"N": "2"}}, "The function is not allowed to be used this way in an expression; function: if_not_exists"),
    ("dog(a) = :n", {":n": {"N": "2"}}, "Invalid function name; function: dog"),
])
def test_literal_errors(text, values, message):
    ctx = ExpressionContext(None, values)
    with pytest.raises(ValidationException) as info:
        evaluate_condition(parse_condition(text), {"a": {"N": "1"}}, ctx)
    assert info.value.message == "Invalid ConditionExpression: " + message


def test_item_side_type_mismatch_is_false_not_error():
    item = {"x": {"L": [{"N": "1"}]}, "y": {"L": [{"N": "2"}]}, "a": {"N": "1"}}
    ctx = ExpressionContext(None, None)
    assert evaluate_condition(parse_condition("a BETWEEN x AND y"), item, ctx) is False
    assert evaluate_condition(parse_condition("begins_with(x, y)"), item, ctx) is False


def test_bound_once_per_request():
    cond = parse_condition("a = :v")
    ctx = ExpressionContext(None, {":v": {"N": "1"}})
    assert ctx.bind_condition(cond) is ctx.bind_condition(cond)
    assert evaluate_condition(ctx.bind_condition(cond), {"a": {"N": "1"}})


@pytest.mark.parametrize("text, names, operator, shown", [
    ("contains(#a, #a)", {"#a": "data"}, "contains", "[data]"),
    ("a = a", None, "=", "[a]"),
    ("a.b[0] < a.b[0]", None, "<", "[a, b, [0]]"),
    ("begins_with(x, x)", None, "begins_with", "[x]"),
])
def test_an_operator_on_one_path_twice_is_refused(text, names, operator, shown):
    with pytest.raises(ValidationException) as raised:
        evaluate_condition(parse_condition(text), {}, ExpressionContext(names, None))
    assert raised.value.message == (
        "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for "
        f"this operator or function; operator: {operator}, first operand: {shown}")
