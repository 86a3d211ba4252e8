"""Attribute-value semantics shared by conditions, updates and legacy parameters.

Owns equality of AttributeValues (sets unordered, numbers numeric, binary by
bytes, lists and maps deep), ordering of scalars, size(), contains(),
begins_with(), set union/difference and document-path lookup.  Pure
functions of wire-format values; they never raise for a type mismatch that
comes from an item (that is just "false"), never mutate their arguments, and
never format wire errors.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from shardserver.errors import ValidationException
from shardserver.shard.values import OVERFLOW, UNDERFLOW, binary_of, normalize_number

SCALARS = frozenset(("S", "N", "B"))
SET_TYPES = frozenset(("SS", "NS", "BS"))
TYPE_NAMES = ("S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M")


def kind_of(av: dict) -> str:
    for kind in av:
        return kind
    return ""


def _set_key(kind: str, elements: list) -> frozenset:
    if kind == "NS":
        return frozenset(Decimal(e) for e in elements)
    if kind == "BS":
        return frozenset(binary_of(e) for e in elements)
    return frozenset(elements)


def av_equal(a: dict, b: dict) -> bool:
    (ka, va), = a.items()
    (kb, vb), = b.items()
    if ka != kb:
        return False
    if ka == "S" or ka == "BOOL" or ka == "NULL":
        return va == vb
    if ka == "N":
        return va == vb or Decimal(va) == Decimal(vb)
    if ka == "B":
        return va == vb or binary_of(va) == binary_of(vb)
    if ka in SET_TYPES:
        return len(va) == len(vb) and _set_key(ka, va) == _set_key(ka, vb)
    if ka == "L":
        return len(va) == len(vb) and all(av_equal(x, y) for x, y in zip(va, vb))
    if ka == "M":
        return va.keys() == vb.keys() and all(av_equal(v, vb[k]) for k, v in va.items())
    return False


# Wide enough that any sum of two valid numbers (exponents -130..125, 38
# digits) is exact, so an inexact result can be detected instead of rounded.
_EXACT = decimal.Context(prec=300, Emax=999999, Emin=-999999, traps=[])


def add_numbers(a: str, b: str, subtract: bool = False) -> str:
    """a + b (or a - b) of two normalized numbers, as DynamoDB's SET +/- and
    ADD compute it: exact, or rejected.  A result that needs more than 38
    significant digits is not rounded; DynamoDB reports it (oddly) with its
    overflow message, e.g. 1e50 + 1."""
    if (len(a) < 18 and len(b) < 18 and (a.isdigit() and a.isascii() or is_small_integer(a))
            and (b.isdigit() and b.isascii() or is_small_integer(b))):
        # Counters: integers well inside 38 digits add exactly as ints, and
        # str(int) is already the normalized form.  The inline test takes the
        # common non-negative operands without a call.
        return str(int(a) - int(b) if subtract else int(a) + int(b))
    x, y = Decimal(a), Decimal(b)
    result = _EXACT.subtract(x, y) if subtract else _EXACT.add(x, y)
    if not result:
        return "0"
    result = result.normalize(_EXACT)
    exponent = result.adjusted()
    if exponent > 125 or len(result.as_tuple().digits) > 38:
        raise ValidationException(OVERFLOW)
    if exponent < -130:
        raise ValidationException(UNDERFLOW)
    return normalize_number(str(result))


def is_small_integer(text: str) -> bool:
    digits = text[1:] if text[:1] == "-" else text
    return digits.isascii() and digits.isdigit()


def scalar_key(av: dict):
    """Sort key of an S/N/B value, or None for other types.  Python orders
    str by code point, which is the order of their UTF-8 bytes."""
    (kind, value), = av.items()
    if kind == "S":
        return value
    if kind == "N":
        return Decimal(value)
    if kind == "B":
        return binary_of(value)
    return None


def compare_scalars(a: dict, b: dict):
    """-1/0/1 for two scalars of the same type, None when not comparable."""
    (ka, va), = a.items()
    (kb, vb), = b.items()
    if ka != kb or ka not in SCALARS:
        return None
    x, y = scalar_key(a), scalar_key(b)
    return (x > y) - (x < y)


def size_of(av: dict):
    """DynamoDB's size(): a Python int, or None for types without a size."""
    (kind, value), = av.items()
    if kind == "S":   # UTF-16 code units, as a Java String counts them, not UTF-8 bytes
        return len(value) if value.isascii() else len(value.encode("utf-16-le", "surrogatepass")) // 2
    if kind == "B":
        return len(binary_of(value))
    if kind in SET_TYPES or kind == "L" or kind == "M":
        return len(value)
    return None


def begins_with(a: dict, b: dict) -> bool:
    (ka, va), = a.items()
    (kb, vb), = b.items()
    if ka != kb:
        return False
    if ka == "S":
        return va.startswith(vb)
    if ka == "B":
        return binary_of(va).startswith(binary_of(vb))
    return False


def contains(a: dict, b: dict) -> bool:
    (ka, va), = a.items()
    (kb, vb), = b.items()
    if ka == "S":
        return kb == "S" and vb in va
    if ka == "B":
        return kb == "B" and binary_of(vb) in binary_of(va)
    if ka in SET_TYPES:
        if kb != ka[0]:
            return False
        if ka == "SS":
            return vb in va
        return any(av_equal({kb: e}, b) for e in va)
    if ka == "L":
        return any(av_equal(e, b) for e in va)
    return False


def _element_key(kind: str):
    """The function giving a set element its identity (1 and 1.0 are one number)."""
    if kind == "NS":
        return Decimal
    if kind == "BS":
        return binary_of
    return None


def set_union(kind: str, old: list, new: list) -> list:
    """The elements of old and new, each once, in the elements' order (as values.validate_value
    stores a set)."""
    identity = _element_key(kind)
    seen = set(old if identity is None else map(identity, old))
    out = list(old)
    for element in new:
        key = element if identity is None else identity(element)
        if key not in seen:
            seen.add(key)
            out.append(element)
    out.sort(key=identity)
    return out


def set_difference(kind: str, old: list, remove: list) -> list:
    """The elements of old not in remove, in old's order."""
    identity = _element_key(kind)
    if identity is None:
        gone = set(remove)
        return [e for e in old if e not in gone]
    gone = set(map(identity, remove))
    return [e for e in old if identity(e) not in gone]


def get_path(item: dict, path: tuple):
    """The value at a resolved path (names and int indexes), or None."""
    value = item.get(path[0])
    for element in path[1:]:
        if value is None:
            return None
        if element.__class__ is int:
            inner = value.get("L")
            if inner is None or element >= len(inner):
                return None
            value = inner[element]
        else:
            inner = value.get("M")
            if inner is None:
                return None
            value = inner.get(element)
    return value


def show_value(av: dict) -> str:
    """DynamoDB's rendering of a value inside error messages ({N:2}, {S:dog})."""
    (kind, value), = av.items()
    return "{%s:%s}" % (kind, value)


def show_path(path: tuple) -> str:
    """DynamoDB's rendering of a document path in overlap errors: [a, b, [0]]."""
    return "[" + ", ".join(f"[{e}]" if e.__class__ is int else e for e in path) + "]"
