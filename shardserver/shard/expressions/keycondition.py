"""Query's KeyConditionExpression: from a parsed condition to key bounds.

Owns the restrictions DynamoDB puts on a key condition (an AND of at most
two comparisons, equality on the partition key, one of = < <= > >=
BETWEEN begins_with on the sort key, non-empty literal operands of the
key's type; for a GSI's multi-attribute key, equality on every partition key
attribute and a gapless run of sort key attributes, see check_multi_parts)
and their error messages.  It returns the partition key value
and the sort key predicate for the Query executor to turn into a storage
range; it never reads storage itself.
"""

from __future__ import annotations

from shardserver.errors import ValidationException
from shardserver.shard.expressions import ast
from shardserver.shard.expressions.compare import kind_of
from shardserver.shard.expressions.conditions import (ALL_FUNCTIONS, ARITY, CONDITION_FUNCTIONS,
                                                     check_between_literals)
from shardserver.shard.expressions.legacy import check_operator_enum
from shardserver.shard.expressions.parser import invalid
from shardserver.shard.keys import empty_key_error
from shardserver.shard.values import validate_value

KIND = "KeyConditionExpression"
_REVERSED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
TYPE_MISMATCH = "One or more parameter values were invalid: Condition parameter type does not match schema type"


def _flatten(node, out: list) -> None:
    cls = node.__class__
    if cls is ast.And:
        _flatten(node.left, out)
        _flatten(node.right, out)
    elif cls is ast.Or:
        raise ValidationException("Invalid operator used in KeyConditionExpression: OR")
    elif cls is ast.Not:
        raise ValidationException("Invalid operator used in KeyConditionExpression: NOT")
    else:
        out.append(node)


def _key_name(node, ctx) -> str:
    if node.__class__ is not ast.Path:
        raise invalid(KIND, "Invalid condition in KeyConditionExpression: "
                            "a key attribute must be compared with a value")
    path = ctx.resolve_path(node.elements, KIND)
    if len(path) != 1:
        raise ValidationException("KeyConditionExpressions cannot have conditions on nested attributes")
    return path[0]


def _literal(node, ctx) -> dict:
    if node.__class__ is not ast.ValueRef:
        raise invalid(KIND, "Invalid condition in KeyConditionExpression: "
                            "a key attribute must be compared with a value")
    return ctx.value(node.name, KIND)


def _one(node, ctx):
    """(key name, operator, [literal values]) of one primitive condition."""
    cls = node.__class__
    if cls is ast.Compare:
        if node.op == "<>":
            raise ValidationException("Invalid operator used in KeyConditionExpression: <>")
        if node.left.__class__ is ast.ValueRef and node.right.__class__ is ast.Path:
            return _key_name(node.right, ctx), _REVERSED[node.op], [_literal(node.left, ctx)]
        return _key_name(node.left, ctx), node.op, [_literal(node.right, ctx)]
    if cls is ast.In:
        raise ValidationException("Invalid operator used in KeyConditionExpression: IN")
    if cls is ast.Between:
        return _key_name(node.operand, ctx), "BETWEEN", [_literal(node.low, ctx), _literal(node.high, ctx)]
    call = node.call
    if call.name not in ALL_FUNCTIONS:
        raise invalid(KIND, f"Invalid function name; function: {call.name}")
    if call.name in CONDITION_FUNCTIONS and call.name != "begins_with":
        raise ValidationException(f"Invalid operator used in KeyConditionExpression: {call.name}")
    if call.name != "begins_with":
        raise invalid(KIND, "The function is not allowed to be used this way in an expression; "
                            f"function: {call.name}")
    if len(call.args) != ARITY["begins_with"]:
        raise invalid(KIND, "Incorrect number of operands for operator or function; "
                            f"operator or function: begins_with, number of operands: {len(call.args)}")
    return _key_name(call.args[0], ctx), "begins_with", [_literal(call.args[1], ctx)]


def _most_conditions(hash_name, range_name) -> int:
    if isinstance(hash_name, tuple):
        return len(hash_name) + len(range_name)
    return 2


def _check_operands(parts: dict, key_types: dict | None) -> None:
    """The operands' types against the key schema's, and the operators' own operand rules."""
    for name, (op, operands) in parts.items():
        wanted = (key_types or {}).get(name)
        for av in operands:
            kind = kind_of(av)
            if (wanted is not None and kind != wanted) or kind not in ("S", "N", "B"):
                raise ValidationException(TYPE_MISMATCH)
        if op == "begins_with" and kind_of(operands[0]) == "N":
            raise invalid(KIND, "Incorrect operand type for operator or function; "
                                "operator or function: begins_with, operand type: N")
        if op == "BETWEEN":
            check_between_literals(KIND, operands[0], operands[1])


def _check_not_empty(name: str, operands: list) -> None:
    for av in operands:
        # Key values are never empty, so DynamoDB refuses an empty operand too
        # (begins_with(sk, "") included) rather than matching.
        (kind, value), = av.items()
        if value == "":
            raise empty_key_error(name, kind)


def check_multi_parts(parts: dict, hash_names: tuple, range_names: tuple, key_types: dict | None):
    """A key condition on a GSI's multi-attribute key: equality on every partition key attribute,
    then sort key attributes left to right without a gap, all by equality but the last given,
    which may use any key operator.  Answers (partition key values, the values of the sort key
    attributes fixed by equality before the last, its operator or None, its operands)."""
    for name in hash_names:
        if name not in parts:
            raise ValidationException(f"Query condition missed key schema element: {name}")
    given = [name for name in range_names if name in parts]
    for name in parts:
        if name not in hash_names and name not in range_names:
            if not range_names:
                raise ValidationException("Query key condition not supported")
            missing = [n for n in range_names if n not in parts]
            raise ValidationException(f"Query condition missed key schema element: {(missing or range_names)[0]}")
    if given != list(range_names[:len(given)]):
        skipped = next(n for n in range_names if n not in parts)
        raise ValidationException(f"Query condition missed key schema element: {skipped}")
    if any(parts[name][0] != "=" for name in hash_names):
        raise ValidationException("Query key condition not supported")
    for name in given[:-1]:
        if parts[name][0] != "=":
            raise ValidationException(f"Query key condition not supported: only the last sort key attribute a key "
                                      f"condition names ({given[-1]}) may be compared with an operator other than =")
    _check_operands(parts, key_types)
    for name, (_, operands) in parts.items():
        _check_not_empty(name, operands)
    hash_values = [parts[name][1][0] for name in hash_names]
    fixed = [parts[name][1][0] for name in given[:-1]]
    if not given:
        return hash_values, fixed, None, []
    op, operands = parts[given[-1]]
    return hash_values, fixed, op, operands


_KEY_KINDS = frozenset(("S", "N", "B"))


def check_parts(parts: dict, hash_name: str, range_name: str | None, key_types: dict | None):
    if len(parts) == 1 and hash_name.__class__ is str:
        # The common Query, one partition: a non-empty value of the key's type
        # passes every check below; anything else takes them for their error.
        op, operands = parts.get(hash_name, (None, None))
        if op == "=":
            hash_value = operands[0]
            (kind, value), = hash_value.items()
            if kind in _KEY_KINDS and value != "" and (not key_types or key_types.get(hash_name, kind) == kind):
                return hash_value, None, []
    if isinstance(hash_name, tuple):
        return check_multi_parts(parts, hash_name, range_name, key_types)
    if hash_name not in parts:
        raise ValidationException(f"Query condition missed key schema element: {hash_name}")
    for name in parts:
        if name != hash_name and name != range_name:
            if range_name is None:
                raise ValidationException("Query key condition not supported")
            raise ValidationException(f"Query condition missed key schema element: {range_name}")
    op, operands = parts[hash_name]
    if op != "=":
        raise ValidationException("Query key condition not supported")
    _check_operands(parts, key_types)
    hash_value = parts[hash_name][1][0]
    _check_not_empty(hash_name, [hash_value])
    if range_name is not None and range_name in parts:
        op, operands = parts[range_name]
        _check_not_empty(range_name, operands)
        return hash_value, op, operands
    return hash_value, None, []


def key_condition_parts(cond: ast.Condition, ctx, hash_name: str, range_name: str | None,
                        key_types: dict | None = None):
    """(partition key value, sort key operator or None, sort key operand values).

    Operators: "=", "<", "<=", ">", ">=", "BETWEEN" (two operands), "begins_with".
    key_types maps key attribute names to "S"/"N"/"B" for the type check.  For a GSI's
    multi-attribute key, hash_name and range_name are tuples of names: see check_multi_parts."""
    conditions: list = []
    _flatten(cond.root, conditions)
    if len(conditions) > _most_conditions(hash_name, range_name):
        raise invalid(KIND, "Conditions can be of length 1 or 2 only")
    parts: dict = {}
    for node in conditions:
        name, op, operands = _one(node, ctx)
        if name in parts:
            raise ValidationException("KeyConditionExpressions must only contain one condition per key")
        parts[name] = (op, operands)
    return check_parts(parts, hash_name, range_name, key_types)


_LEGACY_KEY_OPS = {"EQ": ("=", 1), "LT": ("<", 1), "LE": ("<=", 1), "GT": (">", 1), "GE": (">=", 1),
                   "BETWEEN": ("BETWEEN", 2), "BEGINS_WITH": ("begins_with", 1)}


def key_conditions_parts(key_conditions: dict, hash_name: str, range_name: str | None,
                         key_types: dict | None = None):
    """The same as key_condition_parts, for the legacy KeyConditions map."""
    if not isinstance(key_conditions, dict):
        raise ValidationException("KeyConditions must be a map")
    if len(key_conditions) > _most_conditions(hash_name, range_name):
        raise ValidationException("Conditions can be of length 1 or 2 only")
    parts = {}
    for name, spec in key_conditions.items():
        if not isinstance(spec, dict):
            raise ValidationException("KeyConditions must map attribute names to Condition objects")
        operator = spec.get("ComparisonOperator")
        check_operator_enum(operator, "keyConditions", name)
        if operator not in _LEGACY_KEY_OPS:
            raise ValidationException("Attempted conditional constraint is not an indexable operation")
        op, count = _LEGACY_KEY_OPS[operator]
        values = spec.get("AttributeValueList") or []
        if not isinstance(values, list) or len(values) != count:
            raise ValidationException("One or more parameter values were invalid: Invalid number of argument(s) "
                                      f"for the {operator} ComparisonOperator")
        for av in values:
            validate_value(av)
        if operator == "BEGINS_WITH" and kind_of(values[0]) == "N":
            raise ValidationException("One or more parameter values were invalid: ComparisonOperator BEGINS_WITH "
                                      "is not valid for N AttributeValue type")
        parts[name] = (op, values)
    return check_parts(parts, hash_name, range_name, key_types)
