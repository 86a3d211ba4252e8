"""Primary keys of requests and items, checked against a table's key schema.

Turns a request's ``Key`` (or an item) into the partition- and sort-key
AttributeValues, with DynamoDB's validation messages, and into the
storage key the engine sorts by.  Pure functions; no storage, no routing.
"""

from __future__ import annotations

from shardserver.errors import ValidationException
from shardserver.shard.values import (MAX_HASH_KEY_BYTES, MAX_RANGE_KEY_BYTES, key_component_bytes,
                                      normalize_number, validate_value)

KEY_MISMATCH = "The provided key element does not match the schema"

# A UTF-8 character is at most 4 bytes: a string key value of at most this many characters is never too large.
_HASH_KEY_CHARS_ALWAYS_SHORT = MAX_HASH_KEY_BYTES // 4


class EmptyKeyValue(ValidationException):
    """An empty string or binary key value: refused by DynamoDB's input validation, before any
    transaction could make it one action's cancellation reason."""


def empty_key_error(name: str, kind: str) -> ValidationException:
    kind_word = "string" if kind == "S" else "binary"
    return EmptyKeyValue(
        "One or more parameter values are not valid. The AttributeValue for a key attribute "
        f"cannot contain an empty {kind_word} value. Key: {name}")


def _check_key_value(name: str, av: dict, expected_type: str, *, is_range: bool, in_item: bool) -> None:
    if not isinstance(av, dict) or len(av) != 1:
        validate_value(av)
    if expected_type == "S":
        value = av.get("S")
        # The common case, a non-empty string of a legal size, in one look.
        if type(value) is str and 0 < len(value) and len(value) * 4 <= (
                MAX_RANGE_KEY_BYTES if is_range else MAX_HASH_KEY_BYTES):
            return
    elif expected_type == "N":
        value = av.get("N")
        if type(value) is str:
            # All validate_value does to a number, and all a number key needs (no size limit).
            av["N"] = normalize_number(value)
            return
    (kind, value), = av.items()
    if kind != expected_type:
        if in_item:
            raise ValidationException(
                "One or more parameter values were invalid: Type mismatch for key "
                f"{name} expected: {expected_type} actual: {kind}")
        raise ValidationException(KEY_MISMATCH)
    validate_value(av)
    if value == "":
        raise empty_key_error(name, kind)
    size = len(key_component_bytes(av)) if kind != "N" else 0
    if not is_range and size > MAX_HASH_KEY_BYTES:
        raise ValidationException("One or more parameter values were invalid: Size of hashkey has "
                                  "exceeded the maximum size limit of2048 bytes")
    if is_range and size > MAX_RANGE_KEY_BYTES:
        raise ValidationException("One or more parameter values were invalid: Aggregated size of all "
                                  "range keys has exceeded the size limit of 1024 bytes")


def key_of_request(schema, key) -> tuple[dict, dict | None]:
    """(partition key AV, sort key AV or None) of a request's ``Key``."""
    if not isinstance(key, dict):
        raise ValidationException(KEY_MISMATCH)
    expected = 2 if schema.range_key else 1
    if len(key) != expected:
        raise ValidationException(KEY_MISMATCH)
    pk = key.get(schema.hash_key)
    if pk is None:
        raise ValidationException(KEY_MISMATCH)
    # _check_key_value's common case, a non-empty string of a legal size, without its call.
    value = pk.get("S") if pk.__class__ is dict and len(pk) == 1 else None
    if value.__class__ is not str or not 0 < len(value) <= _HASH_KEY_CHARS_ALWAYS_SHORT or schema.hash_type != "S":
        _check_key_value(schema.hash_key, pk, schema.hash_type, is_range=False, in_item=False)
    sk = None
    if schema.range_key:
        sk = key.get(schema.range_key)
        if sk is None:
            raise ValidationException(KEY_MISMATCH)
        _check_key_value(schema.range_key, sk, schema.range_type, is_range=True, in_item=False)
    return pk, sk


def key_of_item(schema, item, type_detail: bool = True) -> tuple[dict, dict | None]:
    """(partition key AV, sort key AV or None) of a whole item (PutItem).

    ``type_detail``: a missing or wrong-typed key says which key (and types) (PutItem),
    or only that the key does not match the schema (BatchWriteItem)."""
    if not isinstance(item, dict):
        raise ValidationException("One or more parameter values were invalid: Item must be a map")
    pk = item.get(schema.hash_key)
    if pk is None:
        raise ValidationException(
            f"One or more parameter values were invalid: Missing the key {schema.hash_key} in the item"
            if type_detail else KEY_MISMATCH)
    # _check_key_value's common case, a non-empty string of a legal size, without its call.
    value = pk.get("S") if pk.__class__ is dict and len(pk) == 1 else None
    if value.__class__ is not str or not 0 < len(value) <= _HASH_KEY_CHARS_ALWAYS_SHORT or schema.hash_type != "S":
        _check_key_value(schema.hash_key, pk, schema.hash_type, is_range=False, in_item=type_detail)
    sk = None
    if schema.range_key:
        sk = item.get(schema.range_key)
        if sk is None:
            raise ValidationException(
                f"One or more parameter values were invalid: Missing the key {schema.range_key} in the item"
                if type_detail else KEY_MISMATCH)
        _check_key_value(schema.range_key, sk, schema.range_type, is_range=True, in_item=type_detail)
    return pk, sk


def key_attributes(schema, item: dict) -> dict:
    """The primary-key attributes of a stored item (LastEvaluatedKey, UnprocessedKeys)."""
    key = {schema.hash_key: item[schema.hash_key]}
    if schema.range_key:
        key[schema.range_key] = item[schema.range_key]
    return key
