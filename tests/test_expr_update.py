"""UpdateExpression semantics: SET/REMOVE/ADD/DELETE, nested paths, errors, ReturnValues."""

import copy
import time

import pytest

from shardserver.errors import ValidationException
from shardserver.shard.expressions import (
    ExpressionContext, apply_update, parse_update, updated_values)

KEYS = {"p"}


def N(x):
    return {"N": str(x)}


def S(x):
    return {"S": x}


def L(*xs):
    return {"L": list(xs)}


def M(**kw):
    return {"M": kw}


def update(text, item, values=None, names=None, keys=KEYS):
    ctx = ExpressionContext(names, values)
    before = copy.deepcopy(item)
    new, touched = apply_update(parse_update(text), item, ctx, keys)
    assert item == before, "apply_update must not mutate its input"
    ctx.check_all_used()
    return new, touched


def error(text, item, values=None, names=None, keys=KEYS):
    with pytest.raises(ValidationException) as info:
        update(text, item, values, names, keys)
    return info.value.message


def test_set_arithmetic_and_touched():
    new, touched = update("SET a = a + :one, b = :seven - a", {"p": S("k"), "a": N(2)}, {":one": N(1), ":seven": N(7)})
    assert new == {"p": S("k"), "a": N(3), "b": N(5)}
    assert touched == {"a", "b"}


def test_right_hand_sides_read_the_old_item():
    assert error("SET x = :v, y = x", {"p": S("k")}, {":v": N(4)}) == (
        "The provided expression refers to an attribute that does not exist in the item")
    new, _ = update("REMOVE a SET b = a", {"p": S("k"), "a": S("hello")})
    assert new == {"p": S("k"), "b": S("hello")}


def test_upsert_on_missing_item():
    new, _ = update("SET a = :v ADD n :one, s :s", None, {":v": S("x"), ":one": N(1), ":s": {"SS": ["a"]}})
    assert new == {"a": S("x"), "n": N(1), "s": {"SS": ["a"]}}


def test_number_precision_and_overflow():
    new, _ = update("SET a = a + :tiny", {"a": N("1" + "0" * 37)}, {":tiny": N(1)})
    assert new["a"] == N("1" + "0" * 36 + "1")
    # DynamoDB does not round an inexact sum; it rejects it with its overflow message.
    assert "Number overflow" in error("SET a = a + :tiny", {"a": N("1" + "0" * 37)}, {":tiny": N("0.1")})
    assert "Number overflow" in error("SET a = :big + :one", None, {":big": N("1E50"), ":one": N(1)})
    assert "underflow" in error("SET a = :x - :y", None, {":x": N("1E-130"), ":y": N("0.9E-130")})
    assert "overflow" in error("SET a = a + :big", {"a": N("9.9E125")}, {":big": N("9.9E125")})


@pytest.mark.parametrize("text,values,message", [
    ("SET b = :s + :n", {":s": S("dog"), ":n": N(3)},
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S"),
    ("SET a = list_append(:l)", {":l": L()},
     "Invalid UpdateExpression: Incorrect number of operands for operator or function; "
     "operator or function: list_append, number of operands: 1"),
    ("SET a = list_append(:l, :s)", {":l": L(), ":s": S("hi")},
     "Invalid UpdateExpression: Incorrect operand type for operator or function; "
     "operator or function: list_append, operand type: S"),
    ("SET a = list_append(list_append(:l, :l), :l)", {":l": L()},
     "Invalid UpdateExpression: The function is not allowed to be used this way in an expression; "
     "function: list_append"),
    ("SET a = if_not_exists(:n, :n)", {":n": N(1)},
     "Invalid UpdateExpression: Operator or function requires a document path; operator or function: if_not_exists"),
    ("SET a = f123_hi(b)", None, "Invalid UpdateExpression: Invalid function name; function: f123_hi"),
    ("SET a = size(b)", None,
     "Invalid UpdateExpression: The function is not allowed to be used this way in an expression; function: size"),
    ("ADD a :s", {":s": S("hello")},
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING"),
    ("ADD a :l", {":l": L(N(1))},
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: LIST"),
    ("DELETE a :n", {":n": N(1)},
     "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: NUMBER"),
    ("SET a = :v REMOVE a", {":v": N(1)},
     "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these "
     "paths; path one: [a], path two: [a]"),
    ("SET a.b = :v, a[1] = :v", {":v": N(1)},
     "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of these "
     "paths; path one: [a, b], path two: [a, [1]]"),
    ("SET p = :v", {":v": N(1)},
     "One or more parameter values were invalid: Cannot update attribute p. This attribute is part of the key"),
    ("REMOVE p.x", None,
     "One or more parameter values were invalid: Cannot update attribute p. This attribute is part of the key"),
    ("SET a = if_not_exists(a, :undefined)", {":v": N(1)},
     "Invalid UpdateExpression: An expression attribute value used in expression is not defined; "
     "attribute value: :undefined"),
])
def test_bind_errors(text, values, message):
    assert error(text, {"p": S("k"), "a": N(1)}, values) == message


@pytest.mark.parametrize("expr", [
    "SET a = :v, a.b = :v", "SET a.b = :v, a = :v", "SET a.b = :v, a.b.c = :v", "SET a[1] = :v, a[1][1] = :v",
    "SET a[1][1][1][1] = :v, a[1][1] = :v", "SET #a1 = :v, #a2 = :v", "SET a = :v ADD a :v", "REMOVE a, a",
])
def test_overlaps(expr):
    names = {"#a1": "a", "#a2": "a"} if "#" in expr else None
    assert "overlap" in error(expr, None, {":v": N(1)}, names)


def test_non_overlapping_nested_updates():
    item = {"p": S("k"), "a": M(x=N(3), y=N(4), c=M(y=N(3))), "b": M(x=N(1), y=N(2))}
    new, touched = update("SET a.b = :v1, a.c.d = :v2, b.x = :v3 REMOVE a.x, b.y", item,
                          {":v1": N(10), ":v2": S("dog"), ":v3": N(17)})
    assert new == {"p": S("k"), "a": M(y=N(4), c=M(y=N(3), d=S("dog")), b=N(10)), "b": M(x=N(17))}
    assert touched == {"a", "b"}


def test_list_positions_refer_to_the_old_item():
    item = {"a": L(*map(N, [2, 3, 4, 5, 6, 7]))}
    for text in ("REMOVE a[1] SET a[3] = :v", "SET a[3] = :v REMOVE a[1]"):
        new, _ = update(text, item, {":v": N(17)})
        assert new["a"] == L(*map(N, [2, 4, 17, 6, 7]))
    new, _ = update("REMOVE a[0], a[2], a[17]", item)
    assert new["a"] == L(*map(N, [3, 5, 6, 7]))


def test_set_past_the_end_appends_in_index_order():
    item = {"a": L(S("one"), S("two"), S("three"))}
    new, _ = update("SET a[84] = :v1, a[37] = :v2, a[17] = :v3, a[50] = :v4", item,
                    {":v1": S("a1"), ":v2": S("a2"), ":v3": S("a3"), ":v4": S("a4")})
    assert [v["S"] for v in new["a"]["L"]] == ["one", "two", "three", "a3", "a2", "a4", "a1"]


def test_deep_paths_and_removals():
    item = {"a": M(b=N(3), c=L(S("hi"), M(x=M(y=L(N(3), N(5), N(7))), q=N(2))))}
    new, _ = update("SET a.c[1].#n.y[1] = :v", item, {":v": N(9)}, {"#n": "x"})
    assert new["a"]["M"]["c"]["L"][1]["M"]["x"]["M"]["y"] == L(N(3), N(9), N(7))
    new, _ = update("REMOVE a.c[1].x.y[1], a.c[1].q", item)
    assert new == {"a": M(b=N(3), c=L(S("hi"), M(x=M(y=L(N(3), N(7))))))}
    new, _ = update("REMOVE a.b, a.c[0]", {"a": M(b=N(1), c=L(N(1)))})
    assert new == {"a": M(c=L())}


@pytest.mark.parametrize("text,item", [
    ("SET a.c = :v", {"a": S("hello")}), ("SET b.c = :v", {"b": L(S("hi"))}), ("SET c.c = :v", {}),
    ("REMOVE a.c", {"a": S("hello")}), ("REMOVE c.c", {"x": N(1)}), ("SET a[0] = :v", {"a": S("hello")}),
    ("SET b[0] = :v", {}), ("SET c.c = :v", None), ("SET a.b.c = :v", {"a": M()}),
])
def test_invalid_document_paths(text, item):
    values = {":v": N(7)} if "SET" in text else None
    assert error(text, item, values) == "The document path provided in the update expression is invalid for update"


def test_remove_missing_things_is_fine():
    item = {"a": M(x=N(3)), "b": L(S("hi"))}
    new, _ = update("REMOVE a.y, b[7], c", item)
    assert new == item
    for text in ("REMOVE x.y", "REMOVE x[0]"):       # DynamoDB ignores these on an absent item
        assert update(text, None)[0] == {}


def test_if_not_exists_and_list_append():
    item = {"a": N(2), "l": L(N(1))}
    assert update("SET a = if_not_exists(a, :v), b = if_not_exists(c, :v)", item, {":v": N(3)})[0]["b"] == N(3)
    new, _ = update("SET l = list_append(l, :l), m = list_append(:l, l), n = list_append(if_not_exists(q, :empty), :l)",
                    item, {":l": L(S("x")), ":empty": L()})
    assert new["l"] == L(N(1), S("x")) and new["m"] == L(S("x"), N(1)) and new["n"] == L(S("x"))
    assert error("SET a = list_append(b, :l)", item, {":l": L()}) == (
        "The provided expression refers to an attribute that does not exist in the item")
    assert error("SET x = list_append(a, :l)", item, {":l": L()}) == (
        "An operand in the update expression has an incorrect data type")
    assert update("SET b = if_not_exists(b, :v) + :v", item, {":v": N(3)})[0]["b"] == N(6)


def test_counter_idiom():
    # if_not_exists(path, :literal) and path +/- :literal have their own closures: every case of the general ones.
    text = "SET c = if_not_exists(c, :zero) + :one, d = if_not_exists(m.d, :zero) - :one, e = c - :one"
    values = {":zero": N(0), ":one": N(1)}
    new, _ = update(text, {"c": N(41), "m": M(d=N("-2.5"))}, values)
    assert (new["c"], new["d"], new["e"]) == (N(42), N("-3.5"), N(40))
    new, _ = update(text, {"c": N(-1), "m": M()}, values)
    assert (new["c"], new["d"], new["e"]) == (N(0), N(-1), N(-2))
    assert update("SET c = if_not_exists(c, :s)", {}, {":s": S("x")})[0] == {"c": S("x")}
    assert error("SET c = if_not_exists(c, :zero) + :one", {"c": S("41")}, values) == (
        "An operand in the update expression has an incorrect data type")
    assert error("SET c = if_not_exists(c, :s) + :one", {}, {":s": S("x"), ":one": N(1)}) == (
        "An operand in the update expression has an incorrect data type")
    assert error("SET e = c - :one", {}, {":one": N(1)}) == (
        "The provided expression refers to an attribute that does not exist in the item")
    for digits in (17, 18, 37):     # small integers add as ints, longer ones as decimals
        assert update("SET c = c + :one", {"c": N("9" * digits)}, {":one": N(1)})[0]["c"] == N("1" + "0" * digits)
    assert "Number overflow" in error("SET c = c + :half", {"c": N("1" * 38)}, {":half": N("0.5")})


def test_add_and_delete():
    item = {"n": N(3), "s": {"SS": ["dog", "cat"]}, "ns": {"NS": ["1", "2"]}, "str": S("x"),
            "m": M(deep={"SS": ["a"]})}
    new, _ = update("ADD n :one, s :pig, ns :ns, newer :one, m.deep :pig", item,
                    {":one": N(4), ":pig": {"SS": ["pig", "cat"]}, ":ns": {"NS": ["2.0", "3"]}})
    assert new["n"] == N(7) and new["newer"] == N(4)
    assert new["s"] == {"SS": ["cat", "dog", "pig"]}     # a union is in the elements' order
    assert new["ns"] == {"NS": ["1", "2", "3"]}
    assert new["m"] == M(deep={"SS": ["a", "cat", "pig"]})
    assert error("ADD str :one", item, {":one": N(1)}) == "An operand in the update expression has an incorrect data type"
    assert error("ADD s :ns", item, {":ns": {"NS": ["1"]}}) == "An operand in the update expression has an incorrect data type"
    new, _ = update("DELETE s :d, absent :d, m.deep :a", item, {":d": {"SS": ["cat", "mouse"]}, ":a": {"SS": ["a"]}})
    assert new["s"] == {"SS": ["dog"]} and "absent" not in new and new["m"] == M()
    new, _ = update("DELETE s :all", item, {":all": {"SS": ["dog", "cat"]}})
    assert "s" not in new
    assert error("DELETE n :d", item, {":d": {"NS": ["3"]}}) == "An operand in the update expression has an incorrect data type"


def test_item_size_limit():
    item = {"p": S("k"), "a": S("x" * 300_000)}
    assert error("SET b = a", item) == "Item size to update has exceeded the maximum allowed size"


def test_updated_values():
    old = {"p": S("k"), "a": M(b=N(1), c=N(2)), "n": N(1), "gone": S("x"), "keep": S("y")}
    text = "SET a.b = :v ADD n :v REMOVE gone"
    ctx = ExpressionContext(None, {":v": N(5)})
    upd = parse_update(text)
    new, _ = apply_update(upd, old, ctx, KEYS)
    assert updated_values(old, new, upd, ctx, "UPDATED_OLD") == {"a": M(b=N(1)), "n": N(1), "gone": S("x")}
    assert updated_values(old, new, upd, ctx, "UPDATED_NEW") == {"a": M(b=N(5)), "n": N(6)}
    assert updated_values(None, new, upd, ctx, "UPDATED_OLD") == {}


def test_untouched_attributes_are_shared_not_copied():
    big = L(*[N(i) for i in range(100)])
    item = {"p": S("k"), "big": big, "n": N(1)}
    new, _ = update("SET n = n + :one", item, {":one": N(1)})
    assert new["big"] is big


def test_simple_increment_is_cheap():
    item = {"p": S("k"), "a": N(41), "payload": S("x" * 200)}
    upd = parse_update("SET a = a + :one")
    start = time.perf_counter()
    rounds = 2000
    for _ in range(rounds):
        ctx = ExpressionContext(None, {":one": N(1)})
        apply_update(upd, item, ctx, KEYS)
        ctx.check_all_used()
    per_call = (time.perf_counter() - start) / rounds
    assert per_call < 200e-6, f"SET a = a + :one took {per_call * 1e6:.1f} us"
