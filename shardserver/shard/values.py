"""DynamoDB's AttributeValue type system: validation, numbers, sizes, key encoding.

An item is the DynamoDB JSON dict exactly as on the wire
(``{"id": {"S": "u1"}, "n": {"N": "42"}}``); binary values stay base64 text.
This module validates such values, normalizes numbers to DynamoDB's form,
computes item sizes by DynamoDB's rules, and turns primary keys into the
order-preserving byte strings the storage engine sorts by.  It never does
I/O and never knows about shards or HTTP.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import re
import struct

import mmh3

from shardserver.errors import SerializationException, ValidationException

MAX_ITEM_SIZE = 400 * 1024
MAX_NESTING_DEPTH = 32
MAX_HASH_KEY_BYTES = 2048
MAX_RANGE_KEY_BYTES = 1024

NUMBER_CONTEXT = decimal.Context(
    prec=38, rounding=decimal.ROUND_HALF_EVEN, Emax=125, Emin=-130,
    traps=[decimal.Overflow, decimal.Underflow, decimal.InvalidOperation, decimal.Inexact,
           decimal.Subnormal, decimal.Clamped])

_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")

SCALAR_TYPES = ("S", "N", "B")
ALL_TYPES = frozenset(("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"))
_SET_NAMES = {"SS": "string", "NS": "number", "BS": "binary"}

NOT_A_NUMBER = "The parameter cannot be converted to a numeric value"


def not_a_number(text) -> ValidationException:
    """DynamoDB's error for the text of a number that is none: it quotes the text."""
    return ValidationException(f"{NOT_A_NUMBER}: {text}" if isinstance(text, str) and text else NOT_A_NUMBER)
NESTING_TOO_DEEP = ("Nesting Levels have exceeded supported limits: "
                    "Attributes in the item have nested levels beyond supported limit")
TOO_MANY_DIGITS = "Attempting to store more than 38 significant digits in a Number"
OVERFLOW = "Number overflow. Attempting to store a number with magnitude larger than supported range"
UNDERFLOW = "Number underflow. Attempting to store a number with magnitude smaller than supported range"


# ---------------------------------------------------------------- numbers

def _digits_exponent(text: str) -> tuple[int, str, int]:
    """(sign, significant digits without leading/trailing zeros, exponent of last digit)."""
    if not isinstance(text, str) or not _NUMBER_RE.match(text):
        raise not_a_number(text)
    try:
        sign, digits, exponent = decimal.Decimal(text).as_tuple()
    except decimal.InvalidOperation:
        # an exponent past what decimal can hold (~1e18): far outside DynamoDB's range
        mantissa, _, power = text.lower().partition("e")
        if not mantissa.strip("+-.0"):
            return 0, "", 0
        raise ValidationException(UNDERFLOW if power.startswith("-") else OVERFLOW) from None
    ds = "".join(map(str, digits)).lstrip("0")
    if not ds:
        return 0, "", 0
    stripped = ds.rstrip("0")
    exponent += len(ds) - len(stripped)
    return sign, stripped, exponent


def _check_magnitude(digits: str, exponent: int) -> None:
    if len(digits) > 38:
        raise ValidationException(TOO_MANY_DIGITS)
    adjusted = exponent + len(digits) - 1
    if adjusted > 125:
        raise ValidationException(OVERFLOW)
    if adjusted < -130:
        raise ValidationException(UNDERFLOW)


def _plain(sign: int, digits: str, exponent: int) -> str:
    if not digits:
        return "0"
    if exponent >= 0:
        body = digits + "0" * exponent
    else:
        point = len(digits) + exponent
        body = (digits[:point] + "." + digits[point:]) if point > 0 else ("0." + "0" * -point + digits)
    return "-" + body if sign else body


def normalize_number(text: str) -> str:
    """DynamoDB's canonical text of a number, or ValidationException."""
    if type(text) is str and text.isdigit() and len(text) <= 38 and text.isascii():
        # The common case, a plain non-negative integer: only leading zeros to drop.
        return text.lstrip("0") or "0"
    if type(text) is str and len(text) <= 39 and text.isascii():
        # The next most common, a plain decimal ("-12.50"): too short for too many digits or a
        # magnitude out of range, so only zeros to drop, as _plain would.
        body = text[1:] if text.startswith("-") else text
        whole, point, fraction = body.partition(".")
        if point and (whole + fraction).isdigit():
            whole, fraction = whole.lstrip("0"), fraction.rstrip("0")
            if not (whole or fraction):
                return "0"
            plain = (whole or "0") + "." + fraction if fraction else whole
            return "-" + plain if body is not text else plain
    sign, digits, exponent = _digits_exponent(text)
    _check_magnitude(digits, exponent)
    return _plain(sign, digits, exponent)


def to_decimal(text: str) -> decimal.Decimal:
    return decimal.Decimal(text)


def from_decimal(value: decimal.Decimal) -> str:
    """Normalized text of an arithmetic result; DynamoDB's range errors."""
    if not value.is_finite():
        raise ValidationException(OVERFLOW)
    return normalize_number(str(value))


def binary_of(b64: str) -> bytes:
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValidationException("Invalid Binary value: not valid base64") from None


# ---------------------------------------------------------------- validation

def _invalid(message: str) -> ValidationException:
    return ValidationException("One or more parameter values were invalid: " + message)


def _not_a_string(value) -> SerializationException:
    """DynamoDB's deserializer, not its validator, refuses a non-string JSON value
    where S, N or B wants a string (e.g. {"N": 123}): a SerializationException."""
    if isinstance(value, list):
        return SerializationException("Start of list found where not expected")
    if isinstance(value, dict):
        return SerializationException("Start of structure or map found where not expected.")
    source = ("class java.lang.Boolean" if isinstance(value, bool)
              else "class com.amazon.coral.value.json.numbers.TruncatingBigNumber")
    return SerializationException(f"{source} can not be converted to an String")


def validate_value(av, depth: int = 0) -> None:
    """Validates one AttributeValue in place (numbers are normalized in place)."""
    if not isinstance(av, dict):
        raise ValidationException("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")
    if len(av) != 1:
        if not av:
            raise ValidationException("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")
        raise ValidationException("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes")
    (kind, value), = av.items()
    if kind == "S":
        if not isinstance(value, str):
            raise _not_a_string(value) if value is not None else ValidationException(
                "Invalid attribute value type: S must be a string")
    elif kind == "N":
        if not isinstance(value, str):
            raise _not_a_string(value) if value is not None else not_a_number(value)
        av["N"] = normalize_number(value)
    elif kind == "B":
        if not isinstance(value, str):
            raise _not_a_string(value) if value is not None else ValidationException(
                "Invalid attribute value type: B must be base64 text")
        binary_of(value)
    elif kind == "BOOL":
        if not isinstance(value, bool):
            raise ValidationException("Invalid attribute value type: BOOL must be true or false")
    elif kind == "NULL":
        if value is not True:
            raise _invalid("Null attribute value types must have the value of true")
    elif kind == "M":
        if not isinstance(value, dict):
            raise ValidationException("Invalid attribute value type: M must be a map")
        if depth >= MAX_NESTING_DEPTH:
            raise ValidationException(NESTING_TOO_DEEP)
        for name, sub in value.items():
            if len(name) > _NAME_CHARS_ALWAYS_SHORT:     # check_attribute_name_length, inlined
                check_attribute_name_length(name)
            # A plain string, {"S": str}, needs no further check.
            if sub.__class__ is not dict or len(sub) != 1 or sub.get("S").__class__ is not str:
                validate_value(sub, depth + 1)
    elif kind == "L":
        if not isinstance(value, list):
            raise ValidationException("Invalid attribute value type: L must be a list")
        if depth >= MAX_NESTING_DEPTH:
            raise ValidationException(NESTING_TOO_DEEP)
        for sub in value:
            # A plain string, {"S": str}, needs no further check.
            if sub.__class__ is not dict or len(sub) != 1 or sub.get("S").__class__ is not str:
                validate_value(sub, depth + 1)
    elif kind in _SET_NAMES:
        if not isinstance(value, list):
            raise ValidationException(f"Invalid attribute value type: {kind} must be a list")
        if not value:
            raise _invalid(f"An {_SET_NAMES[kind]} set  may not be empty")
        for element in value:
            if not isinstance(element, str):
                raise ValidationException(f"Invalid attribute value type: {kind} elements must be strings")
        # A set keeps no order (DynamoDB's documentation); it is stored, and so answered, in the
        # elements' own order (numbers by value, binaries by their bytes), as DynamoDB Local answers.
        if kind == "NS":
            value = [normalize_number(v) for v in value]
            if len(set(map(decimal.Decimal, value))) != len(value):
                raise _invalid(f"Input collection {_show_list(value)} contains duplicates.")
            av["NS"] = sorted(value, key=decimal.Decimal)
            return
        if kind == "BS":
            canon = [binary_of(v) for v in value]
            if len(set(canon)) != len(canon):
                raise _invalid(f"Input collection {_show_list(value)} contains duplicates.")
            av["BS"] = sorted(value, key=binary_of)
            return
        if len(set(value)) != len(value):
            raise _invalid(f"Input collection {_show_list(value)} contains duplicates.")
        av["SS"] = sorted(value)
    else:
        raise ValidationException(f"Supplied AttributeValue has an unsupported datatype: {kind}"
                                  if isinstance(kind, str) else "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")


def _show_list(values) -> str:
    return "[" + ", ".join(values) + "]"


MAX_ATTRIBUTE_NAME_BYTES = 65535


ATTRIBUTE_NAME_TOO_LARGE = ("1 validation error detected: Attribute name is too large, "
                            f"must be less than {MAX_ATTRIBUTE_NAME_BYTES + 1} bytes")


# A UTF-8 character is at most 4 bytes: names of this many characters or fewer are never too large.
_NAME_CHARS_ALWAYS_SHORT = MAX_ATTRIBUTE_NAME_BYTES // 4


def check_attribute_name_length(name: str) -> None:
    """DynamoDB refuses attribute names longer than 64 KB - 1 in UTF-8 wherever they
    appear: items and the keys of their maps at any depth, AttributeUpdates,
    AttributesToGet, ExpressionAttributeNames."""
    # A UTF-8 character is at most 4 bytes: shorter names need no encoding.
    if len(name) * 4 > MAX_ATTRIBUTE_NAME_BYTES and len(name.encode()) > MAX_ATTRIBUTE_NAME_BYTES:
        raise ValidationException(ATTRIBUTE_NAME_TOO_LARGE)


def validate_item(item) -> None:
    if not isinstance(item, dict):
        raise ValidationException("Item must be a map of attribute names to AttributeValues")
    for name, av in item.items():
        if not name:
            raise _invalid("An AttributeName cannot be empty")
        if len(name) > _NAME_CHARS_ALWAYS_SHORT:     # check_attribute_name_length, inlined: once per attribute
            check_attribute_name_length(name)
        if av.__class__ is dict and len(av) == 1:
            # Most attributes are plain strings, {"S": str}, which need no further check
            # (__class__: no call of type), and numbers, which need only normalizing.
            if av.get("S").__class__ is str:
                continue
            number = av.get("N")
            if number.__class__ is str:
                av["N"] = normalize_number(number)
                continue
        validate_value(av)


# ---------------------------------------------------------------- sizes

def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def value_size(av: dict) -> int:
    (kind, value), = av.items()
    if kind == "S":
        return len(value) if value.isascii() else len(value.encode())     # as in item_size
    if kind == "N":
        return _number_size(value)
    if kind == "B":
        return len(value) * 3 // 4 - value[-2:].count("=")
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in value)
    if kind == "NS":
        return sum(_number_size(v) for v in value)
    if kind == "BS":
        return sum(len(v) * 3 // 4 - v[-2:].count("=") for v in value)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in value)
    # M
    return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in value.items())


def item_size(item: dict) -> int:
    """DynamoDB's size of an item: its attribute names' UTF-8 bytes plus value_size of each value.

    Never more than the length of the item's stored JSON (orjson.dumps of it),
    which pages, batch reads and the 400 KB check use as a free upper bound.
    For every value, its JSON is at least value_size + 5 bytes: S is its UTF-8
    bytes plus quotes (escapes only lengthen it) inside {"S":} (8 bytes more);
    N's size is about half its digits, its text is all of them; B's size is
    3/4 of its base64; BOOL and NULL are 1 against 13 or more; a set's
    elements each carry their quotes and comma; an L or M adds 3 plus 1 per
    element (plus the key's bytes in M), where JSON adds {"L":[]} (8 bytes),
    each element's own 5 or more, commas, and a quoted key and colon in M.
    An item then adds a quoted name and a colon per attribute.
    """
    size = 0
    for name, av in item.items():
        # An ASCII string's length is its UTF-8 size, without encoding it (isascii is a flag test).
        size += len(name) if name.isascii() else len(name.encode())
        value = av.get("S")
        if value.__class__ is str:
            size += len(value) if value.isascii() else len(value.encode())
        else:
            size += value_size(av)
    return size


def check_item_size(item: dict) -> int:
    size = item_size(item)
    if size > MAX_ITEM_SIZE:
        raise ValidationException("Item size has exceeded the maximum allowed size")
    return size


# ---------------------------------------------------------------- comparisons

def key_component_bytes(av: dict) -> bytes:
    """Canonical bytes of a key attribute value (S utf-8, B raw, N normalized text)."""
    (kind, value), = av.items()
    if kind == "S":
        return value.encode()
    if kind == "B":
        return binary_of(value)
    return value.encode()


def compare_key(a: dict, b: dict) -> int:
    (ka, va), = a.items()
    (_, vb), = b.items()
    if ka == "N":
        x, y = decimal.Decimal(va), decimal.Decimal(vb)
    elif ka == "S":
        x, y = va.encode(), vb.encode()
    else:
        x, y = binary_of(va), binary_of(vb)
    return (x > y) - (x < y)


# ---------------------------------------------------------------- tokens and storage keys

_TOKEN = struct.Struct(">Q")
TOKEN_BIAS = 1 << 63


def token_of(pk: dict) -> int:
    """Signed 64-bit token: first half of MurmurHash3 x64_128 of the key's bytes."""
    value = pk.get("S")
    return mmh3.hash64(value.encode() if value.__class__ is str else key_component_bytes(pk), signed=True)[0]


def token_prefix(token: int) -> bytes:
    """8 bytes that sort as the token does (biased to unsigned, big-endian)."""
    return _TOKEN.pack(token + TOKEN_BIAS)


def escape_component(raw: bytes) -> bytes:
    """Self-delimiting and order-preserving: 0x00 -> 0x00 0xff, then the terminator
    0x00 0x01, which sorts below any continuation."""
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def encode_number_ordered(text: str) -> bytes:
    """Bytes whose bytewise order is the numeric order of the numbers."""
    if type(text) is str and text.isdigit() and text.isascii():
        # The common sort key, a non-negative integer: what _digits_exponent would find, without
        # its regular expression and Decimal.
        significant = text.lstrip("0")
        if not significant:
            return b"\x80"
        digits = significant.rstrip("0")
        return b"\x81" + (len(significant) + 199).to_bytes(2, "big") + digits.encode()
    sign, digits, exponent = _digits_exponent(text)
    if not digits:
        return b"\x80"
    adjusted = exponent + len(digits) - 1 + 200        # 70 .. 325, fits two bytes
    if not sign:
        return b"\x81" + adjusted.to_bytes(2, "big") + digits.encode()
    inverted = digits.translate(_INVERT_DIGITS)
    return b"\x7f" + (0xFFFF - adjusted).to_bytes(2, "big") + inverted.encode() + b"\xff"


_INVERT_DIGITS = str.maketrans("0123456789", "9876543210")


def encode_sort_component(av: dict) -> bytes:
    (kind, value), = av.items()
    if kind == "S":
        return value.encode()
    if kind == "B":
        return binary_of(value)
    return encode_number_ordered(value)


def composite_key(avs: list[dict]) -> dict:
    """The one partition key value a multi-attribute GSI partition key stands for: a B value
    holding each attribute's sort encoding, escaped and terminated, so equal tuples and only
    they give equal values (and so equal tokens)."""
    return {"B": base64.b64encode(sort_components(avs)).decode()}


def sort_components(avs: list[dict]) -> bytes:
    """Key values one after another, each escaped and terminated: ordered as the tuple of values."""
    return b"".join(escape_component(encode_sort_component(av)) for av in avs)


def partition_prefix(pk: dict, token: int | None = None) -> bytes:
    """Storage-key prefix shared by every item of one partition."""
    # Every Query's: the string key's bytes, its token and its escape without a call each.
    value = pk.get("S")
    raw = value.encode() if value.__class__ is str else key_component_bytes(pk)
    if token is None:
        token = mmh3.hash64(raw, signed=True)[0]
    return _TOKEN.pack(token + TOKEN_BIAS) + raw.replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def partition_end(prefix: bytes) -> bytes:
    """Just past every storage key of the partition whose prefix (ending in the
    0x00 0x01 terminator) is ``prefix``."""
    return prefix[:-1] + b"\x02"


def encode_key(pk: dict, sk: dict | None = None, token: int | None = None) -> bytes:
    """Order-preserving storage key of (token, partition key, sort key)."""
    prefix = partition_prefix(pk, token)
    return prefix if sk is None else prefix + encode_sort_component(sk)


def storage_key_and_token(pk: dict, sk: dict | None = None) -> tuple[bytes, int]:
    """(encode_key(pk, sk), token_of(pk)), the partition key's bytes made once.

    On every single-item request's path: key_component_bytes and
    escape_component are written out here, a call each less."""
    value = pk.get("S")
    raw = value.encode() if value.__class__ is str else key_component_bytes(pk)
    token = mmh3.hash64(raw, signed=True)[0]
    key = _TOKEN.pack(token + TOKEN_BIAS) + raw.replace(b"\x00", b"\x00\xff") + b"\x00\x01"
    return (key if sk is None else key + encode_sort_component(sk)), token


def token_of_storage_key(key: bytes) -> int:
    return _TOKEN.unpack_from(key)[0] - TOKEN_BIAS
