"""BatchWriteItem and BatchGetItem: scatter by owner shard, gather, report what was not done.

The acceptor validates the whole batch, groups its requests by the shard
that owns each key, and sends each owner one sub-batch: owners apply their
writes with a single commit log sync, and answer their reads with the stored
item JSON length-prefixed, which the acceptor splices into the response
without decoding it.  A shard that cannot take its part (it is restarting)
has its requests returned as UnprocessedItems/UnprocessedKeys, never
reported done.
"""

from __future__ import annotations

import asyncio
import struct

import orjson

from shardserver.errors import ServiceUnavailableException, TransactionConflictException, ValidationException
from shardserver.shard import values
from shardserver.shard.executor import capacity, fabric_verb, operation
from shardserver.shard.executor.tables import constraint_error, table_of
from shardserver.shard.itemsem import check_before_table
from shardserver.shard.keys import key_of_item, key_of_request
from shardserver.shard.routing import shard_of_token
from shardserver.shard.transactions import check_write

MAX_WRITES = 25
MAX_GET_KEYS = 100
MAX_BATCH_GET_BYTES = 16 * 1024 * 1024


def _request_items(request: dict, op: str, field: str = "requestItems") -> dict:
    items = request.get("RequestItems")
    if not isinstance(items, dict):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    if not items:
        raise ValidationException(f"The requestItems parameter is required for {op}")
    return items


async def _scatter(svc, op: str, parts: dict[int, dict]) -> dict[int, dict | None]:
    """Sends each owner its sub-request; None for a shard that could not take it."""
    async def one(shard: int, sub: dict):
        if shard == svc.shard_id:
            return orjson.loads(await svc.operations[op].execute(svc, sub))
        try:
            reply = await svc.submit_to_owner(shard, op, orjson.dumps(sub))
        except ServiceUnavailableException:
            return None
        return reply

    shards = list(parts)
    results = await asyncio.gather(*(one(s, parts[s]) for s in shards))
    return dict(zip(shards, results))


# ------------------------------------------------------------------ BatchWriteItem

_AV_FIELDS = (("S", "s"), ("N", "n"), ("B", "b"), (None, "iNT"), (None, "dECIMAL"), (None, "dOUBLE"),
              ("SS", "sS"), ("NS", "nS"), ("BS", "bS"), (None, "iNTSET"), (None, "dECIMALSET"),
              (None, "dOUBLESET"), ("M", "m"), ("L", "l"), ("NULL", "nULL"), ("BOOL", "bOOL"))


def _java_av(av) -> str:
    """An AttributeValue the way DynamoDB's Java model prints it (toString) in constraint messages."""
    if not isinstance(av, dict) or len(av) != 1:
        return str(av)
    (kind, value), = av.items()
    if kind == "M":
        shown = _java_map(value)
    elif kind == "L":
        shown = "[" + ", ".join(map(_java_av, value)) + "]" if isinstance(value, list) else str(value)
    elif kind in ("SS", "NS", "BS"):
        shown = "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
    elif isinstance(value, bool):
        shown = "true" if value else "false"
    else:
        shown = str(value)
    return "AttributeValue(" + ", ".join(f"{field}={shown if member == kind else 'null'}"
                                         for member, field in _AV_FIELDS) + ")"


def _java_map(attributes) -> str:
    if not isinstance(attributes, dict):
        return "null" if attributes is None else str(attributes)
    return "{" + ", ".join(f"{name}={_java_av(av)}" for name, av in attributes.items()) + "}"


def _java_writes(items: dict) -> str:
    def write(w) -> str:
        if not isinstance(w, dict):
            return str(w)
        put, delete = w.get("PutRequest"), w.get("DeleteRequest")
        put = (f"PutRequest(item={_java_map(put.get('Item'))}, workloadProfileName=null)"
               if isinstance(put, dict) else "null")
        delete = (f"DeleteRequest(key={_java_map(delete.get('Key'))}, workloadProfileName=null)"
                  if isinstance(delete, dict) else "null")
        return f"WriteRequest(putRequest={put}, deleteRequest={delete})"
    return "{" + ", ".join(f"{name}=[{', '.join(write(w) for w in requests)}]"
                           if isinstance(requests, list) else f"{name}={requests}"
                           for name, requests in items.items()) + "}"


def _parse_write(svc, request: dict):
    """Validated [(shard, table name, schema, kind, payload, storage key, write request)] of a BatchWriteItem."""
    items = _request_items(request, "BatchWriteItem")
    for name, requests in items.items():
        if isinstance(requests, list) and len(requests) > MAX_WRITES:
            raise constraint_error([f"Value '{_java_writes(items)}' at 'requestItems' failed to satisfy constraint: "
                                    "Map value must satisfy constraint: [Member must have length less than or "
                                    "equal to 25, Member must have length greater than or equal to 1]"])
    total = sum(len(v) if isinstance(v, list) else 0 for v in items.values())
    if total > MAX_WRITES:
        raise ValidationException("Too many items requested for the BatchWriteItem call")
    writes = []
    for name, requests in items.items():
        schema = table_of(svc, {"TableName": name})
        if not isinstance(requests, list) or not requests:
            raise constraint_error([f"Value '{requests}' at 'requestItems.{name}.member' failed to satisfy "
                                    "constraint: Member must have length greater than or equal to 1"])
        seen = set()
        for write in requests:
            if not isinstance(write, dict) or len(write) != 1 or not (
                    "PutRequest" in write or "DeleteRequest" in write):
                raise ValidationException("Supplied AttributeValue has more than one datatypes set, must contain "
                                          "exactly one of the supported datatypes"
                                          if isinstance(write, dict) and len(write) > 1 else
                                          "1 validation error detected: WriteRequest must contain exactly one "
                                          "of PutRequest or DeleteRequest")
            if "PutRequest" in write:
                item = (write["PutRequest"] or {}).get("Item") if isinstance(write["PutRequest"], dict) else None
                # unlike PutItem, a batch put does not say which key has the wrong type
                pk, sk = key_of_item(schema, item, type_detail=False)
                values.validate_item(item)
                values.check_item_size(item)
                svc.check_index_keys(schema, item)
                kind, payload = "put", item
            else:
                key = (write["DeleteRequest"] or {}).get("Key") if isinstance(write["DeleteRequest"], dict) else None
                pk, sk = key_of_request(schema, key)
                kind, payload = "delete", key
            storage_key, token = values.storage_key_and_token(pk, sk)
            owner = shard_of_token(token, svc.nshards)
            if storage_key in seen:
                raise ValidationException("Provided list of item keys contains duplicates")
            seen.add(storage_key)
            writes.append((owner, name, schema, kind, payload, storage_key, write))
    return writes


@operation("BatchWriteItem")
async def batch_write_item(svc, request: dict) -> bytes:
    writes = _parse_write(svc, request)
    mode = capacity.requested_mode(request)
    mine = [w for w in writes if w[0] == svc.shard_id]
    others: dict[int, dict] = {}
    for shard, name, _, _, _, _, write in writes:
        if shard != svc.shard_id:
            others.setdefault(shard, {}).setdefault(name, []).append(write)
    unprocessed: dict[str, list] = {}
    # Units per table of the writes done, each owner counting its own: like a PutItem or
    # DeleteItem, a write costs the larger of the old and the new item.
    units = {name: [0.0, {}, {}] for name in _table_names(writes)}   # table, GSIs, LSIs
    metrics = {w[1]: w[2] for w in writes if capacity.wants_collection_metrics(request, w[2])}
    collections: dict[str, list] = {}
    if others:
        sub = {"ReturnConsumedCapacity": "INDEXES"} if mode != "NONE" else {}
        if metrics:
            sub["ReturnItemCollectionMetrics"] = "SIZE"
        results = await _scatter(svc, "BatchWriteItem",
                                 {s: dict(sub, RequestItems=r) for s, r in others.items()})
        for shard, result in results.items():
            if result is None:
                for name, requests in others[shard].items():
                    unprocessed.setdefault(name, []).extend(requests)
                continue
            for name, requests in result.get("UnprocessedItems", {}).items():
                unprocessed.setdefault(name, []).extend(requests)
            for name, entries in result.get("ItemCollectionMetrics", {}).items():
                collections.setdefault(name, []).extend(entries)
            for used in result.get("ConsumedCapacity", ()):
                capacity.add_units(units[used["TableName"]], used["Table"]["CapacityUnits"],
                                   *({name: u["CapacityUnits"] for name, u in used.get(field, {}).items()}
                                     for field in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")))
    if mine:
        for _, name, schema, kind, payload, key, write in mine:
            stored = None
            if svc.needs_old_image(schema) or mode != "NONE":
                raw = await svc.storage.get(schema.table_id, key)
                stored = orjson.loads(raw) if raw is not None else None
            try:
                check_write(svc, schema.table_id, key)
            except TransactionConflictException:
                # A transaction holds the item: hand the request back for a retry.
                unprocessed.setdefault(name, []).append(write)
                continue
            if kind == "put":
                svc.storage.put(schema.table_id, key, orjson.dumps(payload))
                svc.after_write(schema, key, stored, payload)
            else:
                svc.storage.delete(schema.table_id, key)
                svc.after_write(schema, key, stored, None)
            if mode != "NONE":
                capacity.add_units(units[name], *capacity.write_units_of(schema, stored,
                                                                         payload if kind == "put" else None))
        await svc.storage.sync()
        # one entry per item collection written to (a put's item and a delete's key both hold it)
        written = {(w[1], orjson.dumps(w[4][w[2].hash_key])): (w[1], w[4][w[2].hash_key])
                   for w in mine if w[1] in metrics}
        for name, pk in written.values():
            collections.setdefault(name, []).append(await capacity.collection_metrics(svc, metrics[name], pk))
    response = {"UnprocessedItems": unprocessed}
    if collections:
        response["ItemCollectionMetrics"] = collections
    if mode != "NONE":
        response["ConsumedCapacity"] = [capacity.consumed(mode, name, table, gsis=gsis, lsis=lsis)
                                        for name, (table, gsis, lsis) in units.items()]
    return orjson.dumps(response)


def _table_names(entries) -> list[str]:
    return list(dict.fromkeys(e[1] for e in entries))


# ------------------------------------------------------------------ BatchGetItem

def _parse_get(svc, request: dict):
    items = _request_items(request, "BatchGetItem")
    total = 0
    reads = []
    _check_projection_kinds_agree(items)
    for name, spec in items.items():
        if isinstance(spec, dict):
            check_before_table(spec, "BatchGetItem")
        schema = table_of(svc, {"TableName": name})
        if not isinstance(spec, dict) or not isinstance(spec.get("Keys"), list):
            raise constraint_error([f"Value null at 'requestItems.{name}.member.keys' failed to satisfy "
                                    "constraint: Member must not be null"])
        keys = spec["Keys"]
        if not keys:
            raise constraint_error([f"Value '[]' at 'requestItems.{name}.member.keys' failed to satisfy "
                                    "constraint: Member must have length greater than or equal to 1"])
        if len(keys) > MAX_GET_KEYS:
            raise constraint_error([f"Value at 'RequestItems.{name}.member.Keys' failed to "
                                    "satisfy constraint: Member must have length less than or equal to 100"])
        total += len(keys)
        if total > MAX_GET_KEYS:
            raise ValidationException("Too many items requested for the BatchGetItem call")
        consistent = spec.get("ConsistentRead", False)
        if not isinstance(consistent, bool):
            raise ValidationException(f"1 validation error detected: Value at 'requestItems.{name}.member."
                                      "consistentRead' failed to satisfy constraint: Member must be a boolean")
        projection = svc.prepare_expressions(spec, schema, "BatchGetItem").projection
        seen = set()
        nshards = svc.nshards
        for key in keys:
            pk, sk = key_of_request(schema, key)
            storage_key, token = values.storage_key_and_token(pk, sk)
            owner = shard_of_token(token, nshards)
            if storage_key in seen:
                raise ValidationException("Provided list of item keys contains duplicates")
            seen.add(storage_key)
            reads.append((owner, name, schema, key, storage_key, projection, consistent))
    return reads


def _check_projection_kinds_agree(items: dict) -> None:
    """DynamoDB refuses a batch that projects one table with an expression and another
    with AttributesToGet, though each table's entry alone would be legal."""
    given = {field for spec in items.values() if isinstance(spec, dict)
             for field in ("ProjectionExpression", "AttributesToGet") if spec.get(field) is not None}
    if len(given) == 2:
        raise ValidationException("Can not use both expression and non-expression parameters in the same request: "
                                  "Non-expression parameters: {AttributesToGet} "
                                  "Expression parameters: {ProjectionExpression}")


@operation("BatchGetItem")
async def batch_get_item(svc, request: dict) -> bytes:
    reads = _parse_get(svc, request)
    mode = capacity.requested_mode(request)
    specs = request["RequestItems"]
    others: dict[int, dict] = {}
    for shard, name, _, key, _, _, _ in reads:
        if shard != svc.shard_id:
            sub = others.setdefault(shard, {})
            if name not in sub:
                sub[name] = {k: v for k, v in specs[name].items() if k != "Keys"}
                sub[name]["Keys"] = []
            sub[name]["Keys"].append(key)
    # Every shard answers at most its share of the 16 MB, so the gathered page stays under it
    # without the acceptor having to decode what the owners send back.
    share = MAX_BATCH_GET_BYTES // svc.nshards
    pending = None
    if others:
        pending = asyncio.ensure_future(asyncio.gather(*(
            _read_part(svc, shard, {"RequestItems": sub, "ReturnConsumedCapacity": mode, "share": share})
            for shard, sub in others.items())))
    responses: dict[str, list] = {name: [] for name in _table_names(reads)}
    units: dict[str, float] = {name: 0.0 for name in responses}
    unprocessed: dict[str, dict] = {}
    await _read_owned(svc, [r for r in reads if r[0] == svc.shard_id], specs, mode, share,
                      responses, unprocessed, units)
    if pending is not None:
        for (shard, sub), part in zip(others.items(), await pending):
            if part is None:          # the owner is restarting: its keys are unprocessed
                for name, spec in sub.items():
                    for key in spec["Keys"]:
                        _add_unprocessed(unprocessed, specs, name, key)
                continue
            _merge_part(part, specs, responses, unprocessed, units)
    response = {"Responses": responses, "UnprocessedKeys": unprocessed}
    if mode != "NONE":
        response["ConsumedCapacity"] = [capacity.consumed(mode, name, u) for name, u in units.items()]
    return orjson.dumps(response)


async def _read_owned(svc, reads, specs: dict, mode: str, share: int,
                      responses: dict, unprocessed: dict, units: dict) -> None:
    """Reads this shard's keys of a batch into responses: orjson fragments of the stored
    JSON, or projected items (dicts).  The share is of the items' DynamoDB size, measured
    by their stored JSON (never shorter) until that would pass it."""
    stored_total = 0
    size_total = None        # the DynamoDB size of what was read, once the JSON passed the share
    read: list[bytes] = []   # the stored JSON read, until then
    for _, name, schema, key, storage_key, projection, consistent in reads:
        if (size_total if size_total is not None else stored_total) >= share:
            _add_unprocessed(unprocessed, specs, name, key)
            continue
        stored = await svc.storage.get(schema.table_id, storage_key)
        size = 0
        if stored is not None:
            if stored_total + len(stored) > share and size_total is None:
                size_total = sum([values.item_size(orjson.loads(raw)) for raw in read])
            if size_total is not None:
                size = values.item_size(orjson.loads(stored))
                if stored_total and size_total + size > share:
                    _add_unprocessed(unprocessed, specs, name, key)
                    continue
                size_total += size
            else:
                read.append(stored)
            stored_total += len(stored)
            if projection is None:
                responses.setdefault(name, []).append(orjson.Fragment(stored))   # spliced as stored
            else:
                responses.setdefault(name, []).append(projection(orjson.loads(stored)))
            if mode != "NONE" and not size:
                size = values.item_size(orjson.loads(stored))
        units[name] = units.get(name, 0.0) + capacity.read_units(size, consistent)


BATCH_GET_PART = b"batch-get"   # fabric verb: one owner's keys of a BatchGetItem
_ITEM_LENGTH = struct.Struct("<I")


async def _read_part(svc, shard: int, part: dict):
    """An owner's answer for its keys, or None if that shard cannot answer (restarting)."""
    try:
        return await svc.submit_to(shard, BATCH_GET_PART, orjson.dumps(part))
    except ServiceUnavailableException:
        return None


@fabric_verb(BATCH_GET_PART)
async def batch_get_part(svc, src: int, payload: bytes) -> bytes:
    """Reads the keys the acceptor sent; replies header JSON, NUL, then each item's JSON
    length-prefixed (u32 little-endian), so the acceptor splices them without decoding."""
    part = orjson.loads(payload)
    reads = _parse_get(svc, part)
    specs = part["RequestItems"]
    responses: dict[str, list] = {}
    unprocessed: dict[str, dict] = {}
    units: dict[str, float] = {}
    await _read_owned(svc, reads, specs, part["ReturnConsumedCapacity"], part["share"],
                      responses, unprocessed, units)
    chunks = []
    counts = []
    for name, items in responses.items():
        counts.append((name, len(items)))
        for item in items:
            # A fragment serializes to the stored bytes as they are.
            raw = orjson.dumps(item)
            chunks.append(_ITEM_LENGTH.pack(len(raw)))
            chunks.append(raw)
    header = orjson.dumps({"counts": counts, "unprocessed": unprocessed, "units": units})
    return header + b"\0" + b"".join(chunks)


def _merge_part(reply: bytes, specs: dict, responses: dict, unprocessed: dict, units: dict) -> None:
    end = reply.index(b"\0")
    header = orjson.loads(reply[:end])
    view = memoryview(reply)
    pos = end + 1
    for name, count in header["counts"]:
        items = responses.setdefault(name, [])
        for _ in range(count):
            length = _ITEM_LENGTH.unpack_from(reply, pos)[0]
            pos += 4
            items.append(orjson.Fragment(bytes(view[pos:pos + length])))
            pos += length
    for name, sub in header["unprocessed"].items():
        for key in sub["Keys"]:
            _add_unprocessed(unprocessed, specs, name, key)
    for name, used in header["units"].items():
        units[name] = units.get(name, 0.0) + used


def _add_unprocessed(unprocessed: dict, specs: dict, name: str, key: dict) -> None:
    if name not in unprocessed:
        unprocessed[name] = {k: v for k, v in specs[name].items() if k != "Keys"}
        unprocessed[name]["Keys"] = []
    unprocessed[name]["Keys"].append(key)
