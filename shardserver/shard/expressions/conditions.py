"""Binding and evaluation of ConditionExpression and FilterExpression.

Owns the step that turns a cached parse tree plus one request's
ExpressionContext into a closure `test(item) -> bool`: placeholders are
resolved once, functions and literal operands are checked once (DynamoDB
rejects a wrong-typed *literal* with ValidationException, while a
wrong-typed *item attribute* just makes the condition false), and
evaluation is then plain closure calls with no tree walking.  It never
reads storage and never raises ConditionalCheckFailedException: the
operation decides what a false condition means.
"""

from __future__ import annotations

from shardserver.errors import ValidationException
from shardserver.shard.expressions import ast
from shardserver.shard.expressions.compare import (
    SCALARS, TYPE_NAMES, av_equal, begins_with, compare_scalars, contains, get_path, kind_of, show_value,
    size_of)
from shardserver.shard.expressions.parser import invalid

CONDITION_FUNCTIONS = frozenset(("attribute_exists", "attribute_not_exists", "attribute_type",
                                 "begins_with", "contains"))
UPDATE_FUNCTIONS = frozenset(("if_not_exists", "list_append"))
ALL_FUNCTIONS = CONDITION_FUNCTIONS | UPDATE_FUNCTIONS | {"size"}
ARITY = {"attribute_exists": 1, "attribute_not_exists": 1, "attribute_type": 2, "begins_with": 2,
         "contains": 2, "size": 1, "if_not_exists": 2, "list_append": 2}
_VALID_TYPES = "{ B,NULL,SS,BOOL,L,BS,N,NS,S,M }"


class BoundCondition:
    """A condition ready to evaluate: test(item_dict) -> bool ({} = no item)."""

    __slots__ = ("test",)

    def __init__(self, test):
        self.test = test


class Operand:
    """A bound operand: get(item) -> AttributeValue or None.  const is the
    literal value when the operand is a :placeholder, path the resolved path
    when it is a document path."""

    __slots__ = ("get", "const", "path")

    def __init__(self, get, const=None, path=None):
        self.get = get
        self.const = const
        self.path = path


def path_getter(path: tuple):
    if len(path) == 1:
        name = path[0]
        return lambda item: item.get(name)
    return lambda item: get_path(item, path)


def operand_type_error(kind: str, function: str, av: dict) -> ValidationException:
    return invalid(kind, "Incorrect operand type for operator or function; "
                         f"operator or function: {function}, operand type: {kind_of(av)}")


def check_function(kind: str, call: ast.Call, allowed: frozenset) -> None:
    if call.name not in ALL_FUNCTIONS:
        raise invalid(kind, f"Invalid function name; function: {call.name}")
    if call.name not in allowed:
        raise invalid(kind, "The function is not allowed to be used this way in an expression; "
                            f"function: {call.name}")
    if len(call.args) != ARITY[call.name]:
        raise invalid(kind, "Incorrect number of operands for operator or function; "
                            f"operator or function: {call.name}, number of operands: {len(call.args)}")


def bind_operand(node, ctx, kind: str) -> Operand:
    if node.__class__ is ast.Path:
        path = ctx.resolve_path(node.elements, kind)
        return Operand(path_getter(path), path=path)
    if node.__class__ is ast.ValueRef:
        av = ctx.value(node.name, kind)
        return Operand(lambda item: av, const=av)
    check_function(kind, node, frozenset(("size",)))
    arg = bind_operand(node.args[0], ctx, kind)
    if arg.const is not None:
        n = size_of(arg.const)
        if n is None:
            raise operand_type_error(kind, "size", arg.const)
        const = {"N": str(n)}
        return Operand(lambda item: const, const=const)
    get = arg.get

    def size(item):
        value = get(item)
        if value is None:
            return None
        n = size_of(value)
        return None if n is None else {"N": str(n)}
    return Operand(size)


def _check_ordered_literal(kind: str, op: str, operand: Operand) -> None:
    if operand.const is not None and kind_of(operand.const) not in SCALARS:
        raise operand_type_error(kind, op, operand.const)


def check_distinct(kind: str, op: str, first: Operand, second: Operand) -> None:
    """DynamoDB refuses an operator or function applied to one path twice (``a = a``)."""
    if first.path is not None and first.path == second.path:
        shown = ", ".join(f"[{e}]" if e.__class__ is int else e for e in first.path)
        raise invalid(kind, "The first operand must be distinct from the remaining operands for this "
                            f"operator or function; operator: {op}, first operand: [{shown}]")


def _compare(op: str, left: Operand, right: Operand, kind: str):
    check_distinct(kind, op, left, right)
    lg, rg = left.get, right.get
    if op == "=":
        def test(item):
            a = lg(item)
            if a is None:
                return False
            b = rg(item)
            return b is not None and av_equal(a, b)
        return test
    if op == "<>":
        def test(item):
            a = lg(item)
            if a is None:
                return True
            b = rg(item)
            return b is None or not av_equal(a, b)
        return test
    _check_ordered_literal(kind, op, left)
    _check_ordered_literal(kind, op, right)
    accept = {"<": (-1,), "<=": (-1, 0), ">": (1,), ">=": (1, 0)}[op]

    def test(item):
        a = lg(item)
        if a is None:
            return False
        b = rg(item)
        return b is not None and compare_scalars(a, b) in accept
    return test


def check_between_literals(kind: str, low: dict, high: dict) -> None:
    if kind_of(low) != kind_of(high):
        raise invalid(kind, "The BETWEEN operator requires same data type for lower and upper bounds; "
                            f"lower bound operand: AttributeValue: {show_value(low)}, "
                            f"upper bound operand: AttributeValue: {show_value(high)}")
    if compare_scalars(low, high) > 0:
        raise invalid(kind, "The BETWEEN operator requires upper bound to be greater than or equal to lower "
                            f"bound; lower bound operand: AttributeValue: {show_value(low)}, "
                            f"upper bound operand: AttributeValue: {show_value(high)}")


def _between(node: ast.Between, ctx, kind: str):
    x, low, high = (bind_operand(n, ctx, kind) for n in (node.operand, node.low, node.high))
    for operand in (x, low, high):
        _check_ordered_literal(kind, "BETWEEN", operand)
    if low.const is not None and high.const is not None:
        check_between_literals(kind, low.const, high.const)
    xg, lowg, highg = x.get, low.get, high.get

    def test(item):
        v = xg(item)
        lo = lowg(item)
        hi = highg(item)
        if v is None or lo is None or hi is None:
            return False
        c1 = compare_scalars(lo, v)
        c2 = compare_scalars(v, hi)
        return c1 is not None and c2 is not None and c1 <= 0 and c2 <= 0
    return test


def _in(node: ast.In, ctx, kind: str):
    xg = bind_operand(node.operand, ctx, kind).get
    getters = [bind_operand(n, ctx, kind).get for n in node.options]

    def test(item):
        v = xg(item)
        if v is None:
            return False
        for g in getters:
            option = g(item)
            if option is not None and av_equal(v, option):
                return True
        return False
    return test


def _function(call: ast.Call, ctx, kind: str):
    check_function(kind, call, CONDITION_FUNCTIONS)
    name = call.name
    if name in ("attribute_exists", "attribute_not_exists"):
        if call.args[0].__class__ is not ast.Path:
            raise invalid(kind, "Operator or function requires a document path; "
                                f"operator or function: {name}")
        get = bind_operand(call.args[0], ctx, kind).get
        if name == "attribute_exists":
            return lambda item: get(item) is not None
        return lambda item: get(item) is None
    args = [bind_operand(a, ctx, kind) for a in call.args]
    first, second = args
    check_distinct(kind, name, first, second)
    fg, sg = first.get, second.get
    if name == "attribute_type":
        if second.const is None:
            raise invalid(kind, "Operator or function requires an expression attribute value; "
                                f"operator or function: {name}")
        if kind_of(second.const) != "S":
            raise operand_type_error(kind, name, second.const)
        wanted = second.const["S"]
        if wanted not in TYPE_NAMES:
            raise invalid(kind, f"Invalid attribute type name found; type: {wanted}, valid types: {_VALID_TYPES}")

        def test(item):
            v = fg(item)
            return v is not None and wanted in v
        return test
    if name == "begins_with":
        for operand in args:
            if operand.const is not None and kind_of(operand.const) not in ("S", "B"):
                raise operand_type_error(kind, name, operand.const)
        predicate = begins_with
    else:
        predicate = contains

    def test(item):
        a = fg(item)
        if a is None:
            return False
        b = sg(item)
        return b is not None and predicate(a, b)
    return test


def compile_condition(node, ctx, kind: str):
    cls = node.__class__
    if cls is ast.Compare:
        return _compare(node.op, bind_operand(node.left, ctx, kind), bind_operand(node.right, ctx, kind), kind)
    if cls is ast.And:
        left, right = compile_condition(node.left, ctx, kind), compile_condition(node.right, ctx, kind)
        return lambda item: left(item) and right(item)
    if cls is ast.Or:
        left, right = compile_condition(node.left, ctx, kind), compile_condition(node.right, ctx, kind)
        return lambda item: left(item) or right(item)
    if cls is ast.Not:
        inner = compile_condition(node.operand, ctx, kind)
        return lambda item: not inner(item)
    if cls is ast.Between:
        return _between(node, ctx, kind)
    if cls is ast.In:
        return _in(node, ctx, kind)
    return _function(node.call, ctx, kind)


def bind_condition(cond: ast.Condition, ctx) -> BoundCondition:
    return BoundCondition(compile_condition(cond.root, ctx, cond.kind))


def evaluate_condition(cond, item: dict | None, ctx=None) -> bool:
    """True when `item` (None: the item does not exist) satisfies `cond`.

    cond is a parsed Condition (bound against ctx once per request) or an
    already BoundCondition (e.g. from the legacy Expected translation)."""
    bound = cond if cond.__class__ is BoundCondition else ctx.bound(cond, bind_condition)
    return bound.test(item if item is not None else {})
