"""PartiQL values and conditions as DynamoDB expression text: the AttributeValue a value node
stands for, and a ``Builder`` that writes conditions, update values and paths with generated
ExpressionAttributeNames (#n0...) and ExpressionAttributeValues (:v0...).  Sans I/O.
"""

from __future__ import annotations

from shardserver.errors import ValidationException
from shardserver.shard.partiql import ast
from shardserver.shard.partiql.parser import INVALID_IN

BAG_TYPES = "Unsupported data type in Bag. DynamoDB only supports either numbers or strings in bags"
NOT_BOOLEAN = "WHERE clause must contain an expression that resolves to a boolean"
_IS_TYPES = {"NULL": "NULL", "STRING": "S", "NUMERIC": "N", "BOOLEAN": "BOOL", "BLOB": "B", "LIST": "L",
             "STRUCT": "M", "TUPLE": "M"}
_CONDITION_FUNCTIONS = {"begins_with": 2, "contains": 2, "attribute_type": 2, "attribute_exists": 1,
                        "attribute_not_exists": 1}


def attribute_value(node, parameters: list) -> dict:
    """The AttributeValue a value node stands for."""
    if isinstance(node, ast.Scalar):
        return node.av
    if isinstance(node, ast.Param):
        return parameters[node.index]
    if isinstance(node, ast.Tuple):
        return {"M": {name: attribute_value(value, parameters) for name, value in node.pairs}}
    if isinstance(node, ast.List):
        return {"L": [attribute_value(value, parameters) for value in node.items]}
    if isinstance(node, ast.Bag):
        if not node.items:
            raise ValidationException("Empty bags are not supported")
        kinds = {next(iter(item.av)) if isinstance(item, ast.Scalar) else None for item in node.items}
        if len(kinds) != 1 or kinds & {None, "BOOL", "NULL"}:
            raise ValidationException(BAG_TYPES)
        kind = kinds.pop()
        return {kind + "S": [item.av[kind] for item in node.items]}
    if isinstance(node, ast.Missing):
        raise ValidationException("MISSING must be compared using IS operator")
    raise ValidationException(f"Unsupported data type: {type(node).__name__}")


class Builder:
    """Generated ExpressionAttributeNames (#n0...) and ExpressionAttributeValues (:v0...)."""

    def __init__(self, parameters: list):
        self.parameters = parameters
        self.names: dict[str, str] = {}
        self.values: dict[str, dict] = {}

    def name(self, attribute: str) -> str:
        placeholder = self.names.get(attribute)
        if placeholder is None:
            placeholder = self.names[attribute] = f"#n{len(self.names)}"
        return placeholder

    def path(self, path: ast.Path) -> str:
        text = self.name(path.steps[0])
        for step in path.steps[1:]:
            text += f"[{step}]" if isinstance(step, int) else "." + self.name(step)
        return text

    def value(self, node) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = attribute_value(node, self.parameters)
        return placeholder

    def finish(self, request: dict) -> None:
        if self.names:
            request["ExpressionAttributeNames"] = {p: n for n, p in self.names.items()}
        if self.values:
            request["ExpressionAttributeValues"] = self.values

    # ------------------------------------------------------------ conditions

    def condition(self, node) -> str:
        if isinstance(node, ast.Or):
            return " OR ".join(f"({self.condition(o)})" for o in node.operands)
        if isinstance(node, ast.And):
            return " AND ".join(f"({self.condition(o)})" for o in node.operands)
        if isinstance(node, ast.Not):
            return f"NOT ({self.condition(node.operand)})"
        if isinstance(node, ast.Compare):
            if isinstance(node.left, ast.Missing) or isinstance(node.right, ast.Missing):
                raise ValidationException("MISSING must be compared using IS operator")
            return f"{self.operand(node.left)} {node.op} {self.operand(node.right)}"
        if isinstance(node, ast.Between):
            return (f"{self.operand(node.operand)} BETWEEN {self.operand(node.low)} AND "
                    f"{self.operand(node.high)}")
        if isinstance(node, ast.In):
            if not isinstance(node.operand, ast.Path):
                raise ValidationException(INVALID_IN)
            return f"{self.path(node.operand)} IN ({', '.join(self.value(item) for item in node.items)})"
        if isinstance(node, ast.Is):
            return self._is(node)
        if isinstance(node, ast.Call):
            return self._function(node)
        raise ValidationException(NOT_BOOLEAN)

    def _is(self, node: ast.Is) -> str:
        if not isinstance(node.operand, ast.Path):
            raise ValidationException("The left hand side argument to IS must be a Variable Reference, Literal, "
                                      "or Path")
        path = self.path(node.operand)
        if node.type_name == "MISSING":
            return f"attribute_exists({path})" if node.negated else f"attribute_not_exists({path})"
        type_value = self.value(ast.Scalar({"S": _IS_TYPES[node.type_name]}))
        test = f"attribute_type({path}, {type_value})"
        if not node.negated:
            return test
        if node.type_name == "NULL":
            # PartiQL: a missing attribute IS NULL too, so IS NOT NULL needs it present.
            return f"attribute_exists({path}) AND NOT {test}"
        return f"NOT {test}"

    def _function(self, node: ast.Call) -> str:
        arity = _CONDITION_FUNCTIONS.get(node.name)
        if arity is None:
            if node.name == "size":
                raise ValidationException(NOT_BOOLEAN)
            raise ValidationException(f"Unrecognized function: {node.name}")
        if len(node.args) != arity:
            raise ValidationException(f"Incorrect number of operands for function: {node.name}; "
                                      f"expected {arity}, got {len(node.args)}")
        if not isinstance(node.args[0], ast.Path):
            raise ValidationException(f"The first argument of {node.name} must be a path")
        return f"{node.name}({', '.join(self.operand(arg) for arg in node.args)})"

    def operand(self, node) -> str:
        if isinstance(node, ast.Path):
            return self.path(node)
        if isinstance(node, ast.VALUE_NODES):
            return self.value(node)
        if isinstance(node, ast.Call) and node.name == "size":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Path):
                raise ValidationException("size takes one argument, a path")
            return f"size({self.path(node.args[0])})"
        if isinstance(node, ast.Arith):
            raise ValidationException(f"Unsupported operator in Condition Expression. Operator: {node.op}")
        if isinstance(node, ast.Call):
            raise ValidationException(f"Unrecognized function: {node.name}")
        raise ValidationException("Unsupported operand in condition: a condition cannot be compared")

    # ------------------------------------------------------------ update values

    def update_value(self, node) -> str:
        if isinstance(node, ast.Path):
            return self.path(node)
        if isinstance(node, ast.VALUE_NODES):
            return self.value(node)
        if isinstance(node, ast.Arith):
            return f"{self.update_value(node.left)} {node.op} {self.update_value(node.right)}"
        if isinstance(node, ast.Call) and node.name in ("list_append", "if_not_exists"):
            if len(node.args) != 2:
                raise ValidationException(f"Incorrect number of operands for function: {node.name}; "
                                          f"expected 2, got {len(node.args)}")
            return f"{node.name}({', '.join(self.update_value(arg) for arg in node.args)})"
        if isinstance(node, ast.Call):
            raise ValidationException(f"Unrecognized function: {node.name}")
        if isinstance(node, ast.Is):
            raise ValidationException("IS operator is not supported in update expressions")
        raise ValidationException(f"Unsupported operator in Update Expression. Operator: {type(node).__name__}")
