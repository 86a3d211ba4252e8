"""Parser and context tests: syntax errors, reserved words, limits, placeholders."""

import pytest

from shardserver.errors import ValidationException
from shardserver.shard.expressions import (
    ExpressionContext, RESERVED_WORDS, cache_info, evaluate_condition, parse_condition, parse_projection,
    parse_update)


def error_of(fn):
    with pytest.raises(ValidationException) as info:
        fn()
    return info.value.message


@pytest.mark.parametrize("text,token,near", [
    ("SET _123 = :v", "_", "SET _123"),
    ("ADD hits : incr", ":", "hits : incr"),
    ("SET a = :v1 + :v2 + :v3", "+", ":v2 + :v3"),
    ("INVALID SYNTAX HERE", "INVALID", "INVALID SYNTAX"),
    ("SET # = :v", "#", "SET # ="),
    ("SET a = ", "<EOF>", "="),
    ("SET a[:i] = :v", ":i", "[:i]"),
    ("SET :a = :b", ":a", "SET :a ="),
    ("SET c = if_not_exists(c, :v1+:v2)", "+", ":v1+:v2"),
    ("SET a = (:v1 + :v2) + :v3", "+", ") + :v3"),      # parentheses do not chain operators
    ("SET a = :v1 - (:v2 + :v3)", "(", "- (:v2"),
    ("SET a = ()", ")", "()"),
])
def test_update_syntax_errors(text, token, near):
    assert error_of(lambda: parse_update(text)) == \
        f'Invalid UpdateExpression: Syntax error; token: "{token}", near: "{near}"'


@pytest.mark.parametrize("text", ["a", ":a", "a IN ()", "a = ", "a == b", "a BETWEEN :x", "NOT", "(a = b",
                                  "a != :b", "a = :b AND", "attribute_exists(a) b"])
def test_condition_syntax_errors(text):
    assert "Invalid ConditionExpression: Syntax error; token: " in error_of(lambda: parse_condition(text))


def test_kind_named_in_errors():
    assert error_of(lambda: parse_condition("a =", "FilterExpression")).startswith("Invalid FilterExpression: ")
    assert error_of(lambda: parse_projection("a,")).startswith("Invalid ProjectionExpression: Syntax error")
    assert error_of(lambda: parse_projection(",a")).startswith("Invalid ProjectionExpression: Syntax error")


def test_empty_and_oversized():
    assert error_of(lambda: parse_update("")) == "Invalid UpdateExpression: The expression can not be empty;"
    assert error_of(lambda: parse_condition("  ")) == "Invalid ConditionExpression: The expression can not be empty;"
    big = "a = :v OR " * 410 + "a = :v"
    assert error_of(lambda: parse_condition(big)) == (
        "Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; "
        f"expression size: {len(big)}")


def test_reserved_words():
    assert len(RESERVED_WORDS) == 573
    assert error_of(lambda: parse_condition("status = :v")) == (
        "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status")
    assert "reserved keyword: Size" in error_of(lambda: parse_update("SET a.Size = :v"))
    parse_condition("#status = :v")              # placeholders bypass the list
    parse_condition("size(a) > :v")              # function names are not attribute names


def test_case_rules():
    parse_update("sEt a = :v rEmOvE b")
    parse_condition("a between :x and :y aNd NOT b In (:z)")
    ctx = ExpressionContext(None, {":a": {"L": []}, ":b": {"L": []}})
    with pytest.raises(ValidationException, match="Invalid function name; function: LIST_APPEND"):
        from shardserver.shard.expressions import apply_update
        apply_update(parse_update("SET a = LIST_APPEND(:a, :b)"), None, ctx, set())


def test_clause_once():
    assert error_of(lambda: parse_update("SET a = :v SET b = :v")) == (
        'Invalid UpdateExpression: The "SET" section can only be used once in an update expression;')
    assert "REMOVE" in error_of(lambda: parse_update("REMOVE a SET b = :v REMOVE c"))


def test_in_and_nesting_limits():
    ok = "a IN (" + ",".join(f":v{i}" for i in range(100)) + ")"
    parse_condition(ok)
    too_many = "a IN (" + ",".join(f":v{i}" for i in range(101)) + ")"
    assert error_of(lambda: parse_condition(too_many)) == (
        "Invalid ConditionExpression: The IN operator is provided with too many operands; number of operands: 101")
    parse_projection(".".join(["a"] * 32))
    assert "nesting levels: 33" in error_of(lambda: parse_projection(".".join(["a"] * 33)))


def test_parse_cache_returns_same_tree():
    first = parse_update("SET cached = cached + :one")
    hits = cache_info()["update"].hits
    assert parse_update("SET cached = cached + :one") is first
    assert cache_info()["update"].hits == hits + 1


def test_context_validation():
    assert error_of(lambda: ExpressionContext({}, None)) == "ExpressionAttributeNames must not be empty"
    assert error_of(lambda: ExpressionContext(None, {})) == "ExpressionAttributeValues must not be empty"
    assert error_of(lambda: ExpressionContext({"n": "a"}, None)) == (
        'ExpressionAttributeNames contains invalid key: Syntax error; key: "n"')
    assert error_of(lambda: ExpressionContext(None, {":v-1": {"S": "x"}})) == (
        'ExpressionAttributeValues contains invalid key: Syntax error; key: ":v-1"')
    message = error_of(lambda: ExpressionContext(None, {":v": {"SS": []}}))
    assert message.startswith("ExpressionAttributeValues contains invalid value: ") and message.endswith("for key :v")
    # numbers are normalized in place, so comparisons see canonical text
    values = {":v": {"N": "007.50"}}
    ExpressionContext(None, values)
    assert values[":v"] == {"N": "7.5"}


def test_undefined_and_unused_placeholders():
    cond = parse_condition("#a = :b")
    assert error_of(lambda: evaluate_condition(cond, {}, ExpressionContext(None, {":b": {"N": "1"}}))) == (
        "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; "
        "attribute name: #a")
    assert error_of(lambda: evaluate_condition(cond, {}, ExpressionContext({"#a": "x"}, None))) == (
        "Invalid ConditionExpression: An expression attribute value used in expression is not defined; "
        "attribute value: :b")
    ctx = ExpressionContext({"#a": "x", "#c": "y"}, {":b": {"N": "1"}, ":d": {"N": "2"}})
    evaluate_condition(cond, {}, ctx)
    assert error_of(ctx.check_all_used) == (
        "Value provided in ExpressionAttributeNames unused in expressions: keys: {#c}")
    ctx.used_names.add("#c")
    assert error_of(ctx.check_all_used) == (
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:d}")


def test_placeholders_in_paths_are_single_names():
    ctx = ExpressionContext({"#n": "a.b"}, {":v": {"N": "1"}})
    item = {"a.b": {"N": "1"}, "a": {"M": {"b": {"N": "2"}}}}
    assert evaluate_condition(parse_condition("#n = :v"), item, ctx)
    ctx2 = ExpressionContext(None, {":v": {"N": "2"}})
    assert evaluate_condition(parse_condition("a.b = :v"), item, ctx2)


@pytest.mark.parametrize("text", [
    "(a = b)", "(a = b) AND (c = d)", "((a = b) AND (c = d))", "((a = b AND c = d) AND e = f)",
    "a = b OR (c = d AND e = f)", "NOT (a = b)", "(NOT (a = b))", "((a = b) OR c = d) AND e = f",
])
def test_parentheses_that_group_something_are_accepted(text):
    parse_condition(text)


@pytest.mark.parametrize("text", [
    "((a = b))", "((a = b AND c = d))", "(((a = b)))", "NOT ((a = b))", "a = b AND ((c = d))",
    "(" * 2000 + "a = b" + ")" * 2000,
])
def test_redundant_parentheses_are_refused(text):
    with pytest.raises(ValidationException) as raised:
        parse_condition(text, "FilterExpression")
    assert raised.value.message == "Invalid FilterExpression: The expression has redundant parentheses;"


def test_what_boto3s_condition_builder_writes_is_accepted():
    from boto3.dynamodb.conditions import Attr, ConditionExpressionBuilder
    a, b, c, d = Attr("a").eq(1), Attr("b").eq(2), Attr("c").eq(3), Attr("d").eq(4)
    builder = ConditionExpressionBuilder()
    for condition in [a & b & c, (a & b) | (c & d), ~(a & b), ~a, a | (b & c) | d, ~(~a),
                      (a | b) & ~(c | d), a & (b | (c & (d | a)))]:
        parse_condition(builder.build_expression(condition).condition_expression)
