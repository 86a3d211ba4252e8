"""ReturnConsumedCapacity: DynamoDB's capacity-unit arithmetic.

Write units are 1 KB each, read units 4 KB each (rounded up, at least one),
and an eventually consistent read costs half.  Pure arithmetic.
"""

from __future__ import annotations

import math

from shardserver.errors import ValidationException

MODES = ("INDEXES", "TOTAL", "NONE")


def requested_mode(request: dict) -> str:
    mode = request.get("ReturnConsumedCapacity", "NONE")
    if mode not in MODES:
        raise ValidationException(
            f"1 validation error detected: Value '{mode}' at 'returnConsumedCapacity' failed to satisfy "
            "constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]")
    return mode


def write_units(size: int) -> float:
    return float(max(1, math.ceil(size / 1024)))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


def consumed(mode: str, table: str, units: float, *, read: bool | None = None) -> dict | None:
    """The ConsumedCapacity object for one table, or None when not requested.

    ``read`` (True/False) adds the ReadCapacityUnits/WriteCapacityUnits split, which
    DynamoDB reports for transactions only; other operations give CapacityUnits alone."""
    if mode == "NONE":
        return None
    result = {"TableName": table, "CapacityUnits": units}
    if read is not None:
        result["ReadCapacityUnits" if read else "WriteCapacityUnits"] = units
    if mode == "INDEXES":
        result["Table"] = {"CapacityUnits": units}
        if read is not None:
            result["Table"]["ReadCapacityUnits" if read else "WriteCapacityUnits"] = units
    return result
