"""The parse tree of DynamoDB's PartiQL statements: plain frozen dataclasses, no behaviour.

Values are trees too (``Param`` nodes stand for ``?``), so one parsed
statement binds to any list of Parameters.
"""

from __future__ import annotations

from dataclasses import dataclass


# ------------------------------------------------------------------ values and paths

@dataclass(frozen=True, slots=True)
class Path:
    steps: tuple            # first a name, then names (map keys) and ints (list indexes)


@dataclass(frozen=True, slots=True)
class Scalar:
    av: dict                # an AttributeValue: S, N, BOOL or NULL


@dataclass(frozen=True, slots=True)
class Missing:
    pass


@dataclass(frozen=True, slots=True)
class Param:
    index: int              # 0-based position among the statement's ``?``


@dataclass(frozen=True, slots=True)
class Tuple:
    pairs: tuple            # ((name, value node), ...): a map


@dataclass(frozen=True, slots=True)
class List:
    items: tuple


@dataclass(frozen=True, slots=True)
class Bag:
    items: tuple            # a string, number or binary set


VALUE_NODES = (Scalar, Param, Tuple, List, Bag)


# ------------------------------------------------------------------ expressions

@dataclass(frozen=True, slots=True)
class Compare:
    op: str                 # =, <>, <, <=, >, >=
    left: object
    right: object


@dataclass(frozen=True, slots=True)
class Between:
    operand: object
    low: object
    high: object


@dataclass(frozen=True, slots=True)
class In:
    operand: object
    items: tuple


@dataclass(frozen=True, slots=True)
class Is:
    operand: object
    type_name: str          # MISSING, NULL, STRING, NUMERIC, BOOLEAN, BLOB, LIST, STRUCT, TUPLE
    negated: bool


@dataclass(frozen=True, slots=True)
class Not:
    operand: object


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple


@dataclass(frozen=True, slots=True)
class Call:
    name: str               # lower case
    args: tuple


@dataclass(frozen=True, slots=True)
class Arith:
    op: str                 # + or -
    left: object
    right: object


# ------------------------------------------------------------------ statements

@dataclass(frozen=True, slots=True)
class Select:
    table: str
    index: str | None
    projection: tuple | None        # None for *, else Paths
    where: object | None
    order_by: tuple = ()            # ((Path, descending), ...)


@dataclass(frozen=True, slots=True)
class Insert:
    table: str
    item: object                    # a value node; must be a Tuple


@dataclass(frozen=True, slots=True)
class Update:
    table: str
    actions: tuple                  # ("SET", Path, value expr) | ("REMOVE", Path)
    where: object | None
    returning: str | None           # ALL_OLD, UPDATED_OLD, ALL_NEW, UPDATED_NEW


@dataclass(frozen=True, slots=True)
class Delete:
    table: str
    where: object | None
    returning: str | None           # ALL_OLD


@dataclass(frozen=True, slots=True)
class Exists:
    select: Select                  # EXISTS(SELECT ...): a condition check in a transaction


@dataclass(frozen=True, slots=True)
class Statement:
    body: object                    # Select, Insert, Update, Delete or Exists
    parameter_count: int
