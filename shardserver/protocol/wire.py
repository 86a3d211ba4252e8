"""The DynamoDB JSON envelope: request targets, error bodies, response bodies.

Functions of bytes and dicts only.  Handlers raise ``shardserver.errors``
exceptions; this module is the one place that turns them into DynamoDB's
``{"__type": ..., "message": ...}`` body with the right HTTP status.
"""

from __future__ import annotations

import orjson
from orjson import JSONDecodeError, loads as _loads

from shardserver.errors import (DynamoDBError, InternalServerError, SerializationException,
                                UnknownOperationException)
from shardserver.protocol import api20111205

TARGET_PREFIX = "DynamoDB_20120810."
STREAMS_TARGET_PREFIX = "DynamoDBStreams_20120810."


def operation_of(target: str | None) -> str:
    """Operation name from an ``X-Amz-Target`` header."""
    if target and target.startswith(TARGET_PREFIX):
        op = target[len(TARGET_PREFIX):]
        if "." in op:       # "Streams.<Op>" are reached only through the Streams prefix
            raise UnknownOperationException("")
        return op
    if target and target.startswith(STREAMS_TARGET_PREFIX):
        return "Streams." + target[len(STREAMS_TARGET_PREFIX):]
    if target and target.startswith(api20111205.TARGET_PREFIX):
        op = target[len(api20111205.TARGET_PREFIX):]
        if op in api20111205.OPERATIONS:
            return api20111205.OP_PREFIX + op
    raise UnknownOperationException("")


def parse_body(body: bytes) -> dict:
    """The request's JSON object, or SerializationException."""
    try:
        request = _loads(body)
    except JSONDecodeError:
        if not body:
            return {}       # an empty body is an empty request (orjson refuses it: looked at only then)
        raise SerializationException("Start of structure or map found where not expected.") from None
    if request.__class__ is not dict:
        raise SerializationException("Start of structure or map found where not expected.")
    return request


def error_body(error: DynamoDBError) -> bytes:
    body = {"__type": error.wire_type, error.message_key: error.message}
    body.update(error.extra_fields())
    return orjson.dumps(body)


def error_response(error: BaseException) -> tuple[int, bytes]:
    if not isinstance(error, DynamoDBError):
        error = InternalServerError("Internal server error")
    return error.status, error_body(error)


def dumps(value) -> bytes:
    return orjson.dumps(value)
