"""Time to Live: UpdateTimeToLive, DescribeTimeToLive, and the per-shard expiry scanner.

The TTL setting is part of the table's catalog entry (``ttl_attribute``).
Every shard runs one background task that, for each table with TTL on,
walks its own part of the table in small slices (yielding to the event loop
between them) every ``ttl_scan_interval_in_s`` seconds and deletes items
whose TTL attribute is a number of epoch seconds in the past, through the
same steps as DeleteItem (transaction check, storage delete, index hooks).

It never deletes an item whose TTL attribute is not a Number, is in the
future, or lies more than five years in the past (DynamoDB's rule), and never
holds the loop for more than one slice.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from shardserver.errors import ResourceNotFoundException, ValidationException
from shardserver.shard import transactions
from shardserver.shard.executor import operation
from shardserver.shard.executor.tables import check_table_name, constraint_error, existing_table

log = logging.getLogger("shardserver.ttl")

SLICE_ITEMS = 128
FIVE_YEARS = 5 * 365 * 24 * 3600


@operation("DescribeTimeToLive")
async def describe_time_to_live(svc, request: dict) -> bytes:
    schema = existing_table(svc, request)
    if schema.ttl_attribute:
        return orjson.dumps({"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED",
                                                        "AttributeName": schema.ttl_attribute}})
    return orjson.dumps({"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}})


@operation("UpdateTimeToLive")
async def update_time_to_live(svc, request: dict) -> bytes:
    check_table_name(request.get("TableName"))
    spec = request.get("TimeToLiveSpecification")
    if not isinstance(spec, dict):
        raise constraint_error(["Value null at 'timeToLiveSpecification' failed to satisfy constraint: "
                                "Member must not be null"])
    enabled, name = spec.get("Enabled"), spec.get("AttributeName")
    errors = []
    if not isinstance(name, str):
        errors.append("Value null at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: "
                      "Member must not be null")
    elif not 1 <= len(name) <= 255:
        errors.append(f"Value '{name}' at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: "
                      + ("Member must have length greater than or equal to 1" if not name else
                         "Member must have length less than or equal to 255"))
    if not isinstance(enabled, bool):
        errors.append("Value null at 'timeToLiveSpecification.enabled' failed to satisfy constraint: "
                      "Member must not be null")
    if errors:
        raise constraint_error(errors)      # before the table is looked for, as DynamoDB's model validation is
    schema = existing_table(svc, request)
    current = schema.ttl_attribute
    if current and current != name:
        raise ValidationException(f"TimeToLive is active on a different AttributeName: "
                                  f"current AttributeName is {current}")
    if enabled and current:
        raise ValidationException("TimeToLive is already enabled")
    if not enabled and not current:
        raise ValidationException("TimeToLive is already disabled")
    await svc.change_catalog(b"ttl", orjson.dumps({"name": schema.name, "expected": current,
                                                   "attribute": name if enabled else None}))
    return orjson.dumps({"TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": name}})


# ------------------------------------------------------------------ expiry

def expired(item: dict, attribute: str, now: float) -> bool:
    value = item.get(attribute)
    if not isinstance(value, dict) or "N" not in value:
        return False
    try:
        seconds = float(value["N"])
    except (TypeError, ValueError):
        return False
    return now - FIVE_YEARS <= seconds <= now


class ExpiryScanner:
    """One shard's background TTL task."""

    def __init__(self, svc, interval: float):
        self.svc = svc
        self.interval = interval
        self.task: asyncio.Task | None = None
        self.expired_total = 0
        self.scans_total = 0

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
            self.task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for schema in list(self.svc.catalog.tables.values()):
                if not schema.ttl_attribute:
                    continue
                try:
                    await self.scan_table(schema)
                except ResourceNotFoundException:
                    pass      # dropped while we scanned it
                except Exception:
                    log.exception("ttl: expiry scan of %s failed", schema.name)
            self.scans_total += 1

    async def scan_table(self, schema) -> int:
        """Deletes this shard's expired items of one table; the number deleted."""
        storage = self.svc.storage
        attribute = schema.ttl_attribute
        # Items without the attribute's JSON name anywhere are skipped without being decoded.
        needle = orjson.dumps(attribute)
        start = None
        deleted = 0
        while True:
            pairs = await storage.scan(schema.table_id, start, None, start_exclusive=start is not None,
                                       limit=SLICE_ITEMS)
            if not pairs:
                break
            start = pairs[-1][0]
            now = time.time()
            candidates = [key for key, value in pairs
                          if needle in value and expired(orjson.loads(value), attribute, now)]
            for key in candidates:
                if self._delete_if_expired(schema, key, await storage.get(schema.table_id, key), attribute):
                    deleted += 1
            if candidates:
                await storage.sync()
            if len(pairs) < SLICE_ITEMS:
                break
            await asyncio.sleep(0)
        self.expired_total += deleted
        return deleted

    def _delete_if_expired(self, schema, key: bytes, stored: bytes | None, attribute: str) -> bool:
        # Decided on the value current now (the scan's copy may be stale), with no await before the delete.
        current = self.svc.catalog.tables.get(schema.name)
        if (stored is None or current is None or current.table_id != schema.table_id
                or current.ttl_attribute != attribute):
            return False
        old = orjson.loads(stored)
        if not expired(old, attribute, time.time()):
            return False
        try:
            transactions.check_write(self.svc, schema.table_id, key)
        except Exception:
            return False      # a transaction owns the item now; the next scan will see it again
        self.svc.storage.delete(schema.table_id, key)
        self.svc.after_write(schema, key, old, None, by_ttl=True)
        return True
