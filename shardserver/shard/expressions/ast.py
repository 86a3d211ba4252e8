"""Parsed expressions: immutable syntax trees shared through the parse cache.

Owns the node types the parser builds.  Nodes keep placeholders (#n, :v)
unresolved, because one parsed tree serves every request with the same text;
resolving them against a request's ExpressionAttributeNames/Values is the
binder's job (conditions.py, update.py, projection.py).  Nodes must never be
mutated after parsing: the LRU cache hands the same objects to all requests.
"""

from __future__ import annotations


class Path:
    """A document path.  elements: str names (bare, or "#ref" placeholders,
    which are told apart by the leading '#') and int list indexes."""

    __slots__ = ("elements",)

    def __init__(self, elements: tuple):
        self.elements = elements

    def __repr__(self) -> str:
        return f"Path({self.elements!r})"


class ValueRef:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"ValueRef({self.name!r})"


class Call:
    """A function call; which functions exist is checked when binding."""

    __slots__ = ("name", "args")

    def __init__(self, name: str, args: tuple):
        self.name = name
        self.args = args

    def __repr__(self) -> str:
        return f"Call({self.name!r}, {self.args!r})"


class Arith:
    """SET's `operand + operand` / `operand - operand`."""

    __slots__ = ("op", "left", "right")

    def __init__(self, op: str, left, right):
        self.op = op
        self.left = left
        self.right = right


# ------------------------------------------------------------ conditions

class Compare:
    __slots__ = ("op", "left", "right")

    def __init__(self, op: str, left, right):
        self.op = op
        self.left = left
        self.right = right


class Between:
    __slots__ = ("operand", "low", "high")

    def __init__(self, operand, low, high):
        self.operand = operand
        self.low = low
        self.high = high


class In:
    __slots__ = ("operand", "options")

    def __init__(self, operand, options: tuple):
        self.operand = operand
        self.options = options


class FunctionCondition:
    """A function call used as a whole condition (attribute_exists(a) ...)."""

    __slots__ = ("call",)

    def __init__(self, call: Call):
        self.call = call


class And:
    __slots__ = ("left", "right")

    def __init__(self, left, right):
        self.left = left
        self.right = right


class Or:
    __slots__ = ("left", "right")

    def __init__(self, left, right):
        self.left = left
        self.right = right


class Not:
    __slots__ = ("operand",)

    def __init__(self, operand):
        self.operand = operand


class Condition:
    """A parsed ConditionExpression / FilterExpression / KeyConditionExpression."""

    __slots__ = ("kind", "text", "root")

    def __init__(self, kind: str, text: str, root):
        self.kind = kind
        self.text = text
        self.root = root

    def __repr__(self) -> str:
        return f"Condition({self.kind}, {self.text!r})"


class UpdateExpr:
    """A parsed UpdateExpression, actions grouped by clause in text order."""

    __slots__ = ("text", "sets", "removes", "adds", "deletes")

    def __init__(self, text: str, sets: tuple, removes: tuple, adds: tuple, deletes: tuple):
        self.text = text
        self.sets = sets          # ((Path, value-node), ...)
        self.removes = removes    # (Path, ...)
        self.adds = adds          # ((Path, ValueRef), ...)
        self.deletes = deletes    # ((Path, ValueRef), ...)

    def __repr__(self) -> str:
        return f"UpdateExpr({self.text!r})"


class ProjectionExpr(tuple):
    """A parsed ProjectionExpression: a tuple of Paths."""

    __slots__ = ()
