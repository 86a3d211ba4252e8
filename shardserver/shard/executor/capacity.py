"""ReturnConsumedCapacity: DynamoDB's capacity-unit arithmetic.

Write units are 1 KB each, read units 4 KB each (rounded up, at least one),
and an eventually consistent read costs half; a write also costs what it
does to each secondary index (DynamoDB's rules, in ``indexes.write_units``).
"""

from __future__ import annotations

import math

import orjson

from shardserver.errors import ValidationException
from shardserver.shard import values
from shardserver.shard.values import item_size

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


READ_UNIT_BYTES = 4096


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def stored_read_units(stored: bytes | None, consistent: bool) -> float:
    """read_units of one stored item (None: absent).

    An item's size never exceeds the length of its stored JSON (values.item_size), so an
    item whose JSON fits in one 4 KB read unit costs one without being decoded."""
    size = 0
    if stored is not None and len(stored) > READ_UNIT_BYTES:
        size = item_size(orjson.loads(stored))
    return read_units(size, consistent)


def consumed(mode: str, table: str, units: float, *, read: bool | None = None,
             gsis: dict | None = None, lsis: dict | None = None) -> dict | None:
    """The ConsumedCapacity object for one table, or None when not requested.

    ``units`` is what the table itself used; ``gsis``/``lsis`` map index names to what
    each index used (a write's index updates), which the total includes.  ``read``
    (True/False) adds the ReadCapacityUnits/WriteCapacityUnits split, which DynamoDB
    reports for transactions only; other operations give CapacityUnits alone."""
    if mode == "NONE":
        return None
    total = units + sum((gsis or {}).values()) + sum((lsis or {}).values())
    result = {"TableName": table, "CapacityUnits": total}
    if read is not None:
        result["ReadCapacityUnits" if read else "WriteCapacityUnits"] = total
    if mode == "INDEXES":
        result["Table"] = {"CapacityUnits": units}
        if read is not None:
            result["Table"]["ReadCapacityUnits" if read else "WriteCapacityUnits"] = units
        for field, spent in (("GlobalSecondaryIndexes", gsis), ("LocalSecondaryIndexes", lsis)):
            if spent:
                result[field] = {name: {"CapacityUnits": u} for name, u in spent.items()}
    return result


def write_consumed(mode: str, schema, old: dict | None, new: dict | None) -> dict | None:
    """ConsumedCapacity of one write (old -> new item, None = absent) to a table and its indexes."""
    if mode == "NONE":
        return None
    table, gsis, lsis = write_units_of(schema, old, new)
    return consumed(mode, schema.name, table, gsis=gsis, lsis=lsis)


def write_units_of(schema, old: dict | None, new: dict | None) -> tuple[float, dict, dict]:
    """(table units, {GSI: units}, {LSI: units}) of one write: the larger of the two items
    for the table, and DynamoDB's index rules for each index the write touches."""
    table = write_units(max(item_size(old) if old else 0, item_size(new) if new else 0))
    if not (schema.local_indexes or schema.global_indexes):
        return table, {}, {}
    from shardserver.shard import indexes
    return (table,) + indexes.write_units(schema, old, new)


def add_units(into: list, table: float, gsis: dict, lsis: dict, factor: float = 1.0) -> None:
    """Adds one write's (table units, {GSI: units}, {LSI: units}), times factor, into a
    running [table, {GSI: units}, {LSI: units}] total (several writes to one table)."""
    into[0] += factor * table
    for spent, by_index in ((gsis, into[1]), (lsis, into[2])):
        for name, u in spent.items():
            by_index[name] = by_index.get(name, 0.0) + factor * u


COLLECTION_METRICS = ("SIZE", "NONE")


def wants_collection_metrics(request: dict, schema) -> bool:
    """ReturnItemCollectionMetrics=SIZE on a table that has item collections (an LSI)."""
    mode = request.get("ReturnItemCollectionMetrics", "NONE")
    if mode not in COLLECTION_METRICS:
        raise ValidationException(
            f"1 validation error detected: Value '{mode}' at 'returnItemCollectionMetrics' failed to satisfy "
            "constraint: Member must satisfy enum value set: [SIZE, NONE]")
    return mode == "SIZE" and bool(schema.local_indexes)


async def collection_metrics(svc, schema, pk: dict) -> dict:
    """ItemCollectionMetrics of the partition pk (run on its owner): the size of its items
    plus what each LSI holds of them, as DynamoDB gives it, a one-gigabyte range."""
    from shardserver.shard import indexes
    lsis = indexes.plan_of(schema).lsis
    prefix = values.partition_prefix(pk)
    end = values.partition_end(prefix)
    total = 0
    start, exclusive = prefix, False
    while True:
        page = await svc.storage.scan(schema.table_id, start, end, start_exclusive=exclusive,
                                      max_bytes=1 << 20, partition=prefix)
        for _, value in page:
            item = orjson.loads(value)
            total += item_size(item)
            for index in lsis:
                if index.entry(item, b"") is not None:
                    total += item_size(index.project(item))
        if sum(len(value) for _, value in page) < 1 << 20:
            break
        start, exclusive = page[-1][0], True
    low = float(total >> 30)
    return {"ItemCollectionKey": {schema.hash_key: pk}, "SizeEstimateRangeGB": [low, low + 1.0]}
