"""Property tests: random expressions and items only ever produce ValidationException.

Expressions are drawn both from a token soup (mostly garbage) and from a
grammar (mostly valid), against random items, so parser, binder and
evaluator all get exercised.  Results must be a bool (conditions) or a
valid item (updates) that leaves the input untouched.
"""

import copy

from hypothesis import HealthCheck, given, settings, strategies as st

from shardserver.errors import ValidationException
from shardserver.shard.expressions import (
    ExpressionContext, apply_update, evaluate_condition, parse_condition, parse_projection, parse_update, project)
from shardserver.shard.values import validate_item

NAMES = ["a", "b", "c", "#n", "#m"]
VALUE_REFS = [":s", ":n", ":l", ":m", ":ss", ":ns", ":b", ":t", ":z", ":e"]
CTX_NAMES = {"#n": "a", "#m": "x.y"}
CTX_VALUES = {":s": {"S": "ab"}, ":n": {"N": "2"}, ":l": {"L": [{"N": "1"}]}, ":m": {"M": {"a": {"N": "1"}}},
              ":ss": {"SS": ["ab", "c"]}, ":ns": {"NS": ["1", "2"]}, ":b": {"B": "YWI="}, ":t": {"BOOL": True},
              ":z": {"NULL": True}, ":e": {"S": ""}}

scalars = st.one_of(
    st.text(max_size=4).map(lambda s: {"S": s}),
    st.integers(-10, 10).map(lambda i: {"N": str(i)}),
    st.sampled_from(["", "YQ==", "YWI="]).map(lambda b: {"B": b}),
    st.booleans().map(lambda v: {"BOOL": v}),
    st.just({"NULL": True}),
    st.lists(st.sampled_from(["ab", "c", "d"]), min_size=1, max_size=3, unique=True).map(lambda v: {"SS": v}),
    st.lists(st.sampled_from(["1", "2", "3"]), min_size=1, max_size=3, unique=True).map(lambda v: {"NS": v}),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3).map(lambda v: {"L": v}),
    st.dictionaries(st.sampled_from(["a", "b", "c", "x.y"]), inner, max_size=3).map(lambda v: {"M": v})),
    max_leaves=8)
items = st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b", "c", "x.y", "p"]), values, max_size=5))

TOKENS = NAMES + VALUE_REFS + ["size", "contains", "begins_with", "attribute_exists", "attribute_type",
                               "if_not_exists", "list_append", "AND", "OR", "NOT", "BETWEEN", "IN", "SET",
                               "REMOVE", "ADD", "DELETE", "=", "<>", "<", "<=", ">", ">=", "(", ")", "[", "]",
                               ",", ".", "+", "-", "0", "1", "7", "status", "#", ":", "!", "_x", " "]
soup = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=14).map(" ".join)


@st.composite
def paths(draw):
    out = draw(st.sampled_from(NAMES))
    for _ in range(draw(st.integers(0, 2))):
        out += draw(st.sampled_from([".a", ".b", "[0]", "[1]", "[5]", ".#n"]))
    return out


operand = st.one_of(paths(), st.sampled_from(VALUE_REFS),
                    paths().map(lambda p: f"size({p})"))


@st.composite
def conditions(draw, depth=0):
    choice = draw(st.integers(0, 7 if depth < 2 else 4))
    if choice == 0:
        return f"{draw(operand)} {draw(st.sampled_from(['=', '<>', '<', '<=', '>', '>=']))} {draw(operand)}"
    if choice == 1:
        return f"{draw(operand)} BETWEEN {draw(operand)} AND {draw(operand)}"
    if choice == 2:
        return f"{draw(operand)} IN ({', '.join(draw(st.lists(operand, min_size=1, max_size=3)))})"
    if choice == 3:
        fn = draw(st.sampled_from(["attribute_exists", "attribute_not_exists"]))
        return f"{fn}({draw(paths())})"
    if choice == 4:
        fn = draw(st.sampled_from(["begins_with", "contains", "attribute_type"]))
        return f"{fn}({draw(operand)}, {draw(operand)})"
    if choice == 5:
        return f"NOT {draw(conditions(depth + 1))}"
    op = "AND" if choice == 6 else "OR"
    return f"({draw(conditions(depth + 1))}) {op} {draw(conditions(depth + 1))}"


plain = st.one_of(paths(), st.sampled_from(VALUE_REFS))
numeric = st.one_of(paths(), st.just(":n"))
listy = st.one_of(paths(), st.just(":l"))
set_value = st.one_of(plain, st.builds(lambda a, op, b: f"{a} {op} {b}", numeric, st.sampled_from("+-"), numeric),
                      st.builds(lambda p, v: f"if_not_exists({p}, {v})", paths(), plain),
                      st.builds(lambda a, b: f"list_append({a}, {b})", listy, listy),
                      st.sampled_from(["size(a)", "a + :s", "list_append(:s, a)", ":n", ":l"]))


@st.composite
def updates(draw):
    clauses = []
    for clause in draw(st.lists(st.sampled_from(["SET", "REMOVE", "ADD", "DELETE"]), min_size=1, max_size=3,
                                unique=True)):
        count = draw(st.integers(1, 2))
        if clause == "SET":
            actions = [f"{draw(paths())} = {draw(set_value)}" for _ in range(count)]
        elif clause == "REMOVE":
            actions = [draw(paths()) for _ in range(count)]
        else:
            refs = [":n", ":ss", ":ns"] if clause == "ADD" else [":ss", ":ns"]
            # mostly well-typed literals, sometimes a wrong one
            refs = draw(st.sampled_from([refs, refs, refs, VALUE_REFS]))
            actions = [f"{draw(paths())} {draw(st.sampled_from(refs))}" for _ in range(count)]
        clauses.append(clause + " " + ", ".join(actions))
    return " ".join(clauses)


def context():
    return ExpressionContext(dict(CTX_NAMES), copy.deepcopy(CTX_VALUES))


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.one_of(soup, conditions()), items)
def test_random_conditions(text, item):
    before = copy.deepcopy(item)
    try:
        result = evaluate_condition(parse_condition(text), item, context())
    except ValidationException as e:
        assert e.message.startswith(("Invalid ConditionExpression: ", "ExpressionAttribute")), e.message
        return
    assert result is True or result is False
    assert item == before


@SETTINGS
@given(st.one_of(soup, updates()), items)
def test_random_updates(text, item):
    before = copy.deepcopy(item)
    try:
        new, touched = apply_update(parse_update(text), item, context(), {"p"})
    except ValidationException:
        assert item == before
        return
    assert item == before
    validate_item(copy.deepcopy(new))
    for name in touched:
        assert name != "p"
    untouched = set(before or {}) - touched
    assert all(new[name] is (item or {})[name] for name in untouched)


@SETTINGS
@given(st.one_of(soup, st.lists(paths(), min_size=1, max_size=4).map(", ".join)), items)
def test_random_projections(text, item):
    try:
        out = project(item or {}, parse_projection(text), context())
    except ValidationException as e:
        assert e.message.startswith(("Invalid ProjectionExpression: ",)), e.message
        return
    assert set(out) <= set(item or {})
    validate_item(copy.deepcopy(out))
