"""The JSON types of a request's members, checked as DynamoDB's deserializer does.

DynamoDB reads a request into its API model before any validation: a member
of the wrong JSON type (a number where a string belongs, a list where a map
does) is a ``SerializationException`` naming the mismatch, and a member that
is JSON ``null`` counts as absent.  ``check(op, request)`` does the same for
every operation the server implements, against the member types of
``shapes_model`` (generated from the API model), so the handlers only ever
see the types they expect.

It removes null members (so ``request.get(name, default)`` sees the default)
and members the model does not know (DynamoDB ignores them; here they are
dropped, so no handler or re-encoding ever meets one).  It floors floats
given for integers, clamps integers to their 32 or 64 bits, and reads
DynamoDB's boolean spellings ("true", "yes", "1"...).  AttributeValues are
left to ``shardserver.shard.values``, whose ValidationExceptions carry
DynamoDB's wording for them.  It answers whether the request was left
exactly as parsed, so a shard given the same body need not check it again.
"""

from __future__ import annotations

import math

from shardserver.errors import SerializationException
from shardserver.protocol.shapes_model import OPERATIONS, SHAPES

_NUMBER = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber"
_BOOLEAN_WORDS = {"TRUE": True, "YES": True, "1": True, "FALSE": False, "NO": False, "0": False}

# Changes made to requests so far, counted where they are made: check compares
# it before and after, with no flag to carry up through the nested checks.
_edits = 0


def check(op: str, request: dict) -> bool:
    """Raise SerializationException unless every known member has its model type.

    True if the request was left exactly as parsed: nothing dropped or fixed.
    """
    members = _OPERATION_MEMBERS.get(op)
    if members is None:
        return True
    edits = _edits
    _check_structure(request, members)
    return edits == _edits


def _check_structure(value: dict, members: dict) -> None:
    global _edits
    dropped = None
    for name, member in value.items():
        spec = members.get(name)
        # most members, one look each: a string, a map whose AttributeValues
        # shardserver.shard.values checks (Key, Item, ExpressionAttributeValues),
        # a map of strings, a boolean
        if spec is _string:
            if type(member) is str:
                continue
        elif spec is _values_map:
            if type(member) is dict:
                continue
        elif spec is _strings_map:
            if type(member) is dict and _all_strings(member):
                continue        # ExpressionAttributeNames: all strings, no call per entry
        elif spec is _boolean:
            if type(member) is bool:
                continue
        if spec is None or member is None:
            # absent, or unknown: never seen by a handler, never re-encoded
            if dropped is None:
                dropped = [name]
            else:
                dropped.append(name)
            continue
        fixed = spec(member)
        if fixed is not member:
            value[name] = fixed
            _edits += 1
    if dropped is not None:
        _edits += 1
        for name in dropped:
            del value[name]


def _mismatch(value, target: str) -> SerializationException:
    """The deserializer's complaint about value where a ``target`` belongs."""
    kind = type(value)
    if kind is list:
        return SerializationException("Start of list found where not expected")
    if kind is dict:
        return SerializationException("Start of structure or map found where not expected.")
    if kind is bool:
        source = "class java.lang.Boolean"
    elif kind is str:
        source = "class java.lang.String"
    else:
        source = _NUMBER
    return SerializationException(f"{source} can not be converted to {target}")


def _string(value):
    if type(value) is str:
        return value
    raise _mismatch(value, "an String")


def _blob(value):
    if type(value) is str:
        return value
    raise _mismatch(value, "a Blob")


def _timestamp(value):
    if type(value) in (int, float):
        return value
    raise _mismatch(value, "milliseconds since epoch")


def _boolean(value):
    if type(value) is bool:
        return value
    if type(value) is str:
        word = value.upper()
        if word in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[word]
        raise SerializationException(f"'{word}' can not be converted to an Boolean")
    raise _mismatch(value, "an Boolean")


def _number(kind: str, whole: bool, bits: int = 0):
    # Past its range an Integer or Long is clamped, as DynamoDB's reader does.
    high = (1 << (bits - 1)) - 1 if bits else None
    low = -(1 << (bits - 1)) if bits else None

    def check_number(value):
        t = type(value)
        if t is float:
            if not math.isfinite(value):
                raise SerializationException(f"{_NUMBER} can not be converted to an {kind}")
            if not whole:
                return value
            value, t = math.floor(value), int
        if t is int:
            if high is not None and not low <= value <= high:
                return high if value > high else low
            return value
        raise _mismatch(value, "an " + kind)
    return check_number


def _any(value):
    return value


def _check_elements(container, places, member, what: str) -> None:
    global _edits
    for place, element in places:
        if element is None:
            raise SerializationException(f"Unexpected null {what}")
        fixed = member(element)
        if fixed is not element:
            container[place] = fixed    # replaces a present entry: iteration goes on safely
            _edits += 1


def _list_of(member):
    def check_list(value):
        if type(value) is not list:
            if type(value) is dict:
                raise SerializationException("Start of structure or map found where not expected.")
            raise SerializationException("Expected list or null")
        if member is not _any:
            _check_elements(value, enumerate(value), member, "element in a list")
        return value
    return check_list


def _all_strings(mapping: dict) -> bool:
    for element in mapping.values():
        if type(element) is not str:
            return False
    return True


def _map_of(member):
    def check_map(value):
        if type(value) is not dict:
            if type(value) is list:
                raise SerializationException("Start of list found where not expected")
            raise SerializationException("Expected map or null")
        if member is _string and _all_strings(value):
            return value        # ExpressionAttributeNames: all strings, no call per entry
        if member is not _any:
            _check_elements(value, value.items(), member, "value in a map")
        return value
    return check_map


def _structure_of(members: dict):
    def check_nested(value):
        if type(value) is not dict:
            if type(value) is list:
                raise SerializationException("Start of list found where not expected")
            raise SerializationException("Expected null")
        _check_structure(value, members)
        return value
    return check_nested


_SCALARS = {"s": _string, "b": _boolean, "i": _number("Integer", True, 32), "l": _number("Long", True, 64),
            "d": _number("Double", False), "t": _timestamp, "x": _blob, "v": _any}
_STRUCTURES: dict[str, dict] = {name: {} for name in SHAPES}


_values_map = _map_of(_any)     # one function for every map of AttributeValues: _check_structure knows it
_strings_map = _map_of(_string)     # ... and for every map of strings


def _compile(spec):
    if isinstance(spec, tuple):
        kind, member = spec
        if spec == ("M", "v"):
            return _values_map
        if spec == ("M", "s"):
            return _strings_map
        return (_list_of if kind == "L" else _map_of)(_compile(member))
    if spec in _SCALARS:
        return _SCALARS[spec]
    return _structure_of(_STRUCTURES[spec])     # filled below: shapes may refer to each other


for _name, _members in SHAPES.items():
    _STRUCTURES[_name].update({member: _compile(spec) for member, spec in _members.items()})
_OPERATION_MEMBERS = {op: _STRUCTURES[shape] for op, shape in OPERATIONS.items()}
