"""DynamoDB's pre-expression parameters: Expected, QueryFilter/ScanFilter,
AttributeUpdates, AttributesToGet, ConditionalOperator.

Owns their translation into the same bound objects the expression code
produces (BoundCondition, BoundProjection, an updated item), with the legacy
operators' own semantics (NE and NULL are true for a missing attribute,
NOT_CONTAINS is false for one, IN/CONTAINS/ordering accept only scalar
arguments) and the rule that legacy and expression parameters may not be
mixed in one request.  Values are validated with values.validate_value
before use; nothing here formats wire JSON.
"""

from __future__ import annotations

from shardserver.errors import ValidationException
from shardserver.shard.expressions.compare import (
    SET_TYPES, add_numbers, av_equal, begins_with, compare_scalars, contains, kind_of, set_difference, set_union)
from shardserver.shard.expressions.conditions import BoundCondition
from shardserver.shard.expressions.projection import BoundProjection
from shardserver.shard.values import MAX_ITEM_SIZE, check_attribute_name_length, item_size, validate_value

_INVALID = "One or more parameter values were invalid: "
_TYPE_MISMATCH = "Type mismatch for attribute to update"
_ARGUMENTS = {"EQ": 1, "NE": 1, "LE": 1, "LT": 1, "GE": 1, "GT": 1, "NOT_NULL": 0, "NULL": 0,
              "CONTAINS": 1, "NOT_CONTAINS": 1, "BEGINS_WITH": 1, "IN": None, "BETWEEN": 2}
_ORDER = {"LT": (-1,), "LE": (-1, 0), "GT": (1,), "GE": (1, 0)}
_SCALAR_ONLY = frozenset(("LE", "LT", "GE", "GT", "CONTAINS", "NOT_CONTAINS", "BEGINS_WITH", "IN", "BETWEEN"))
# DynamoDB lists the ComparisonOperator enum in this order in its messages.
_OPERATOR_ENUM = "[IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]"

NON_EXPRESSION = ("AttributesToGet", "AttributeUpdates", "ConditionalOperator", "Expected",
                  "KeyConditions", "QueryFilter", "ScanFilter")
EXPRESSION = ("ConditionExpression", "FilterExpression", "KeyConditionExpression",
              "ProjectionExpression", "UpdateExpression")

# Per operation, the expression and non-expression parameters DynamoDB
# checks, in the order its messages list them.
_PARAMETERS = {
    "PutItem": (("ConditionExpression",), ("Expected", "ConditionalOperator")),
    "DeleteItem": (("ConditionExpression",), ("Expected", "ConditionalOperator")),
    "UpdateItem": (("UpdateExpression", "ConditionExpression"), ("AttributeUpdates", "Expected", "ConditionalOperator")),
    "GetItem": (("ProjectionExpression",), ("AttributesToGet",)),
    "Query": (("ProjectionExpression", "FilterExpression", "KeyConditionExpression"),
              ("AttributesToGet", "QueryFilter", "ConditionalOperator", "KeyConditions")),
    "Scan": (("ProjectionExpression", "FilterExpression"), ("AttributesToGet", "ScanFilter", "ConditionalOperator")),
}


def check_legacy_mix(request: dict, op: str = "") -> None:
    """Rejects requests mixing legacy and expression parameters, and
    placeholder maps given without any expression."""
    expression, non_expression = _PARAMETERS.get(op, (EXPRESSION, NON_EXPRESSION))
    modern = [p for p in expression if request.get(p) is not None]
    if modern:
        if request.get("KeyConditions") is not None and request.get("KeyConditionExpression") is None:
            # DynamoDB lets legacy KeyConditions go with a FilterExpression or ProjectionExpression.
            non_expression = tuple(p for p in non_expression if p != "KeyConditions")
        legacy = [p for p in non_expression if request.get(p) is not None]
        if legacy:
            raise ValidationException(
                "Can not use both expression and non-expression parameters in the same request: "
                "Non-expression parameters: {" + ", ".join(legacy) + "} "
                "Expression parameters: {" + ", ".join(modern) + "}")
    elif request.get("ExpressionAttributeNames") is not None:
        raise ValidationException("ExpressionAttributeNames can only be specified when using expressions")
    value_expressions = [p for p in expression if p != "ProjectionExpression"]
    if (value_expressions and request.get("ExpressionAttributeValues") is not None
            and all(request.get(p) is None for p in value_expressions)):
        raise ValidationException("ExpressionAttributeValues can only be specified when using expressions: "
                                  + " and ".join(value_expressions)
                                  + (" are null" if len(value_expressions) > 1 else " is null"))


def _validated(values: list) -> list:
    for av in values:
        validate_value(av)
    return values


def check_operator_enum(operator, member: str, name: str) -> None:
    """DynamoDB's request validation of a Condition's ComparisonOperator: it
    must be present and one of the enum's names (case-sensitive); `member`
    is the request parameter holding the condition ("queryFilter"...)."""
    if operator is None:
        raise ValidationException(f"1 validation error detected: Value null at '{member}.{name}.member."
                                  "comparisonOperator' failed to satisfy constraint: Member must not be null")
    if operator not in _ARGUMENTS:
        raise ValidationException(f"1 validation error detected: Value '{operator}' at '{member}.{name}.member."
                                  "comparisonOperator' failed to satisfy constraint: Member must satisfy enum "
                                  f"value set: {_OPERATOR_ENUM}")


def _comparison(name: str, operator, values, member: str) -> callable:
    """test(item) for one legacy `ComparisonOperator` on attribute `name`."""
    check_operator_enum(operator, member, name)
    values = [] if values is None else values
    if not isinstance(values, list):
        raise ValidationException(f"{_INVALID}AttributeValueList must be a list")
    count = _ARGUMENTS[operator]
    if (count is None and not values) or (count is not None and len(values) != count):
        raise ValidationException(f"{_INVALID}Invalid number of argument(s) for the {operator} ComparisonOperator")
    _validated(values)
    # DynamoDB's order of checks: argument count, one type for all, the type allowed for the operator.
    if len({kind_of(av) for av in values}) > 1:
        raise ValidationException(f"{_INVALID}AttributeValues inside AttributeValueList must be of same type")
    if operator in _SCALAR_ONLY:
        for av in values:
            kind = kind_of(av)
            if kind not in ("S", "N", "B") or (operator == "BEGINS_WITH" and kind == "N"):
                raise ValidationException(f"{_INVALID}ComparisonOperator {operator} is not valid for {kind} "
                                          "AttributeValue type")
    if operator == "BETWEEN" and compare_scalars(values[0], values[1]) > 0:
        raise ValidationException("The BETWEEN condition was provided a range where the lower bound is greater "
                                  "than the upper bound")
    arg = values[0] if values else None
    if operator == "EQ":
        return lambda item: (v := item.get(name)) is not None and av_equal(v, arg)
    if operator == "NE":
        return lambda item: (v := item.get(name)) is None or not av_equal(v, arg)
    if operator == "NULL":
        return lambda item: name not in item
    if operator == "NOT_NULL":
        return lambda item: name in item
    if operator in _ORDER:
        accept = _ORDER[operator]
        return lambda item: (v := item.get(name)) is not None and compare_scalars(v, arg) in accept
    if operator == "CONTAINS":
        return lambda item: (v := item.get(name)) is not None and contains(v, arg)
    if operator == "NOT_CONTAINS":
        return lambda item: (v := item.get(name)) is not None and not contains(v, arg)
    if operator == "BEGINS_WITH":
        return lambda item: (v := item.get(name)) is not None and begins_with(v, arg)
    if operator == "IN":
        return lambda item: (v := item.get(name)) is not None and any(av_equal(v, o) for o in values)
    low, high = values

    def between(item):
        v = item.get(name)
        if v is None:
            return False
        c1, c2 = compare_scalars(low, v), compare_scalars(v, high)
        return c1 is not None and c2 is not None and c1 <= 0 and c2 <= 0
    return between


def _expected_entry(name: str, spec) -> callable:
    if not isinstance(spec, dict):
        raise ValidationException(f"{_INVALID}Expected must map attribute names to ExpectedAttributeValue objects")
    has_value = "Value" in spec
    has_list = "AttributeValueList" in spec
    operator = spec.get("ComparisonOperator")
    if has_value and has_list:
        raise ValidationException(f"{_INVALID}Value and AttributeValueList cannot be used together for "
                                  f"Attribute: {name}")
    if (operator in _ARGUMENTS and _ARGUMENTS[operator] != 0 and not has_value and not has_list
            and "Exists" not in spec):
        # An operand-taking operator given no operand at all; an empty list is a count error instead.
        raise ValidationException(f"{_INVALID}Value or AttributeValueList must be used with ComparisonOperator: "
                                  f"{operator} for Attribute: {name}")
    if "Exists" in spec:
        exists = spec["Exists"]
        if operator is not None:
            raise ValidationException(f"{_INVALID}Exists and ComparisonOperator cannot be used together for "
                                      f"Attribute: {name}")
        if exists is False:
            if has_value:
                raise ValidationException(f"{_INVALID}Value cannot be used when Exists is false for "
                                          f"Attribute: {name}")
            return lambda item: name not in item
        if not has_value:
            raise ValidationException(f"{_INVALID}Value must be provided when Exists is true for "
                                      f"Attribute: {name}")
        return _comparison(name, "EQ", [spec["Value"]], "expected")
    if operator is None:
        if has_value:
            return _comparison(name, "EQ", [spec["Value"]], "expected")
        raise ValidationException(f"{_INVALID}Value must be provided when Exists is null for Attribute: {name}")
    if has_value:
        return _comparison(name, operator, [spec["Value"]], "expected")
    return _comparison(name, operator, spec.get("AttributeValueList"), "expected")


def _combine(tests: list, conditional_operator) -> BoundCondition:
    if conditional_operator is not None and conditional_operator not in ("AND", "OR"):
        raise ValidationException("1 validation error detected: Value '%s' at 'conditionalOperator' failed to "
                                  "satisfy constraint: Member must satisfy enum value set: [AND, OR]"
                                  % (conditional_operator,))
    if conditional_operator == "OR":
        return BoundCondition(lambda item: any(t(item) for t in tests))
    return BoundCondition(lambda item: all(t(item) for t in tests))


def _check_operator_use(entries: dict, conditional_operator, what: str) -> None:
    if conditional_operator is not None and len(entries) < 2:
        raise ValidationException("ConditionalOperator can only be used when Filter or Expected "
                                  "has two or more elements")


def expected_to_condition(expected: dict, conditional_operator: str | None = None) -> BoundCondition:
    """The legacy Expected map as a condition for evaluate_condition()."""
    if not isinstance(expected, dict):
        raise ValidationException(f"{_INVALID}Expected must be a map")
    _check_operator_use(expected, conditional_operator, "Expected")
    return _combine([_expected_entry(n, s) for n, s in expected.items()], conditional_operator)


def filter_from_legacy(filters: dict, conditional_operator: str | None = None,
                       member: str = "queryFilter") -> BoundCondition:
    """QueryFilter / ScanFilter (member "queryFilter" / "scanFilter", as
    DynamoDB's messages spell it) as a condition for evaluate_condition()."""
    if not isinstance(filters, dict):
        raise ValidationException(f"{_INVALID}Filter must be a map")
    _check_operator_use(filters, conditional_operator, "Filter")
    tests = []
    for name, spec in filters.items():
        if not isinstance(spec, dict):
            raise ValidationException(f"{_INVALID}Filter must map attribute names to Condition objects")
        tests.append(_comparison(name, spec.get("ComparisonOperator"), spec.get("AttributeValueList"), member))
    return _combine(tests, conditional_operator)


def attributes_to_get_projection(names: list) -> BoundProjection:
    """AttributesToGet as a projection for project()."""
    if not isinstance(names, list) or not names:
        raise ValidationException("1 validation error detected: Value at 'attributesToGet' failed to satisfy "
                                  "constraint: Member must have length greater than or equal to 1")
    seen = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValidationException(f"{_INVALID}AttributesToGet must contain attribute names")
        check_attribute_name_length(name)
        if name in seen:
            raise ValidationException(f"{_INVALID}Duplicate value in attribute name: {name}")
        seen.add(name)
    return BoundProjection([(name,) for name in names])


def apply_attribute_updates(attribute_updates: dict, item: dict | None, key_names) -> tuple[dict, set]:
    """The legacy AttributeUpdates map applied to item (None: absent).
    Returns (new item, touched top-level names); never mutates item."""
    if not isinstance(attribute_updates, dict):
        raise ValidationException(f"{_INVALID}AttributeUpdates must be a map")
    old = item if item is not None else {}
    new = dict(old)
    for name, spec in attribute_updates.items():
        if not isinstance(spec, dict):
            raise ValidationException(f"{_INVALID}AttributeUpdates must map names to AttributeValueUpdate objects")
        check_attribute_name_length(name)
        action = spec.get("Action", "PUT")
        value = spec.get("Value")
        if action not in ("PUT", "ADD", "DELETE"):
            raise ValidationException("1 validation error detected: Value '%s' at 'attributeUpdates.%s.member.action'"
                                      " failed to satisfy constraint: Member must satisfy enum value set: "
                                      "[ADD, PUT, DELETE]" % (action, name))
        if name in key_names:
            raise ValidationException(f"{_INVALID}Cannot update attribute {name}. This attribute is part of the key")
        if not name:
            raise ValidationException(f"{_INVALID}An AttributeName cannot be empty")
        if value is not None:
            validate_value(value)
        elif action != "DELETE":
            raise ValidationException(f"{_INVALID}Only DELETE action is allowed when no attribute value is specified")
        current = old.get(name)
        kind = kind_of(value) if value is not None else None
        if action == "PUT":
            new[name] = value
        elif action == "DELETE":
            if value is None:
                new.pop(name, None)
            elif kind not in SET_TYPES:
                raise ValidationException(f"{_INVALID}DELETE action with value is not supported for the type {kind}")
            elif current is not None:
                if kind_of(current) != kind:
                    raise ValidationException(_TYPE_MISMATCH)
                rest = set_difference(kind, current[kind], value[kind])
                if rest:
                    new[name] = {kind: rest}
                else:
                    new.pop(name, None)
        else:
            if kind not in SET_TYPES and kind not in ("N", "L"):
                raise ValidationException(f"{_INVALID}ADD action is not supported for the type {kind}")
            if current is None:
                new[name] = value
            elif kind_of(current) != kind:
                raise ValidationException(_TYPE_MISMATCH)
            elif kind == "N":
                new[name] = {"N": add_numbers(current["N"], value["N"])}
            elif kind == "L":
                new[name] = {"L": current["L"] + value["L"]}
            else:
                new[name] = {kind: set_union(kind, current[kind], value[kind])}
    if item_size(new) > MAX_ITEM_SIZE:
        raise ValidationException("Item size to update has exceeded the maximum allowed size")
    return new, set(attribute_updates)
