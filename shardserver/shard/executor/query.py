"""Query and Scan: key ranges on one shard, and the whole token ring across shards.

A Query runs on the shard owning its partition: the key condition becomes
one storage-key range, read forwards or backwards.  A Scan walks the shards
in order (shard 0 first), each from its lowest token up; a parallel-scan
segment is a slice of the token ring that every shard serves its part of.
Paging keys are the real primary keys of the last item evaluated, so they
stay valid across restarts.  Filters and projections run on the shard that
reads the items; only the page travels back.
"""

from __future__ import annotations

import orjson

from shardserver.errors import ValidationException
from shardserver.shard import routing, values
from shardserver.shard.executor import capacity, fabric_verb, operation
from shardserver.shard.executor.tables import constraint_error, table_of
from shardserver.shard.keys import key_attributes, key_of_request

PAGE_BYTES = 1024 * 1024
MAX_TOTAL_SEGMENTS = 1_000_000
SCAN_PAGE = b"scan-page"   # fabric verb: one shard's part of a Scan page


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def partition_range(pk: dict, range_op: str | None, operands: list) -> tuple[bytes, bytes | None]:
    """[start, end) of the storage keys a key condition selects inside one partition."""
    prefix = values.partition_prefix(pk)
    end = prefix[:-1] + b"\x02"           # just past the partition's terminator byte
    if range_op is None:
        return prefix, end
    encoded = [prefix + values.encode_sort_component(v) for v in operands]
    if range_op == "EQ":
        return encoded[0], encoded[0] + b"\x00"
    if range_op == "LT":
        return prefix, encoded[0]
    if range_op == "LE":
        return prefix, encoded[0] + b"\x00"
    if range_op == "GT":
        return encoded[0] + b"\x00", end
    if range_op == "GE":
        return encoded[0], end
    if range_op == "BETWEEN":
        return encoded[0], encoded[1] + b"\x00"
    if range_op == "BEGINS_WITH":
        return encoded[0], _successor(encoded[0]) or end
    raise ValidationException(f"Unsupported key condition operator {range_op}")


def _limit_of(request: dict) -> int | None:
    limit = request.get("Limit")
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise constraint_error([f"Value '{limit}' at 'limit' failed to satisfy constraint: "
                                "Member must have value greater than or equal to 1"])
    return limit


def _select_of(request: dict, expressions, index_name) -> str:
    select = request.get("Select")
    has_projection = "ProjectionExpression" in request or "AttributesToGet" in request
    if select is None:
        return "SPECIFIC_ATTRIBUTES" if has_projection else "ALL_ATTRIBUTES"
    if select not in ("ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT"):
        raise constraint_error([f"Value '{select}' at 'select' failed to satisfy constraint: Member must satisfy "
                                "enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, "
                                "ALL_PROJECTED_ATTRIBUTES]"])
    if select == "ALL_PROJECTED_ATTRIBUTES" and index_name is None:
        raise ValidationException("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
    if has_projection and select != "SPECIFIC_ATTRIBUTES":
        what = "ProjectionExpression" if "ProjectionExpression" in request else "AttributesToGet"
        raise ValidationException(f"Cannot specify the {what} when choosing to get {select}")
    return select


class PageReader:
    """Evaluates stored items of one page: filter, projection, counting, byte budget."""

    def __init__(self, filter_fn, projection_fn, count_only: bool):
        self.filter_fn = filter_fn
        self.projection_fn = projection_fn
        self.count_only = count_only

    def shape(self, pairs: list[tuple[bytes, bytes]]) -> tuple[list, int, dict | None]:
        """(items as raw JSON bytes or projected dicts, matched count, last evaluated item)."""
        items = []
        count = 0
        last = None
        filter_fn, projection_fn = self.filter_fn, self.projection_fn
        for _, raw in pairs:
            item = None
            if filter_fn is not None:
                item = orjson.loads(raw)
                if not filter_fn(item):
                    continue
            count += 1
            if self.count_only:
                continue
            if projection_fn is not None:
                items.append(projection_fn(item if item is not None else orjson.loads(raw)))
            else:
                items.append(raw)
        if pairs:
            last = orjson.loads(pairs[-1][1])
        return items, count, last


# ------------------------------------------------------------------ Query

def route_query(svc, request: dict) -> int:
    schema = table_of(svc, request)
    prepared = svc.prepare_expressions(request, schema, "Query")
    pk, _, _ = prepared.key_condition
    return svc.owner_of(pk)


@operation("Query", route=route_query)
async def query(svc, request: dict) -> bytes:
    schema = table_of(svc, request)
    index_name = request.get("IndexName")
    prepared = svc.prepare_expressions(request, schema, "Query")
    if index_name is not None:
        return await svc.query_index(request, schema, prepared)
    pk, range_op, operands = prepared.key_condition
    limit = _limit_of(request)
    select = _select_of(request, prepared, index_name)
    mode = capacity.requested_mode(request)
    forward = request.get("ScanIndexForward", True)
    if not isinstance(forward, bool):
        raise ValidationException("ScanIndexForward must be a boolean")
    consistent = request.get("ConsistentRead", False)
    start, end = partition_range(pk, range_op, operands)
    start_exclusive = False
    exclusive = request.get("ExclusiveStartKey")
    if exclusive is not None:
        start_pk, start_sk = key_of_request(schema, exclusive)
        if values.compare_key(start_pk, pk) != 0:
            raise ValidationException("The provided starting key is invalid: The provided key element does not "
                                      "match the schema")
        key = values.encode_key(start_pk, start_sk)
        if forward and key >= start:
            start, start_exclusive = key, True
        elif not forward and (end is None or key < end):
            end = key
    pairs = await svc.storage.scan(schema.table_id, start, end, start_exclusive=start_exclusive,
                                   reverse=not forward, limit=limit or (1 << 62), max_bytes=PAGE_BYTES)
    reader = PageReader(prepared.filter, prepared.projection, select == "COUNT")
    items, count, last = reader.shape(pairs)
    response = {"Count": count, "ScannedCount": len(pairs)}
    if select != "COUNT":
        response["Items"] = [orjson.Fragment(i) if isinstance(i, bytes) else i for i in items]
    read_bytes = sum(len(v) for _, v in pairs)
    if pairs and ((limit is not None and len(pairs) >= limit) or read_bytes >= PAGE_BYTES):
        response["LastEvaluatedKey"] = key_attributes(schema, last)
    if mode != "NONE":
        response["ConsumedCapacity"] = capacity.consumed(
            mode, schema.name, capacity.read_units(read_bytes, bool(consistent)), read=True)
    return orjson.dumps(response)


# ------------------------------------------------------------------ Scan

def _segment_of(request: dict) -> tuple[int, int] | None:
    segment, total = request.get("Segment"), request.get("TotalSegments")
    if segment is None and total is None:
        return None
    if segment is None or total is None:
        missing = "Segment" if segment is None else "TotalSegments"
        present = "TotalSegments" if segment is None else "Segment"
        raise ValidationException(f"The {missing} parameter is required but was not present in the request "
                                  f"when parameter {present} is present")
    if not isinstance(total, int) or isinstance(total, bool) or not 1 <= total <= MAX_TOTAL_SEGMENTS:
        raise constraint_error([f"Value '{total}' at 'totalSegments' failed to satisfy constraint: Member must "
                                f"have value {'less than or equal to 1000000' if isinstance(total, int) and total > 1 else 'greater than or equal to 1'}"])
    if not isinstance(segment, int) or isinstance(segment, bool) or segment < 0:
        raise constraint_error([f"Value '{segment}' at 'segment' failed to satisfy constraint: Member must have "
                                "value greater than or equal to 0"])
    if segment >= total:
        raise ValidationException(f"The Segment parameter is zero-based and must be less than parameter "
                                  f"TotalSegments: Segment: {segment} is not less than TotalSegments: {total}")
    return segment, total


def _token_bounds(segment: tuple[int, int] | None) -> tuple[bytes, bytes | None]:
    if segment is None:
        return b"", None
    low, high = routing.segment_bounds(*segment)
    return low.to_bytes(8, "big"), (high.to_bytes(8, "big") if high < (1 << 64) else None)


@operation("Scan")
async def scan(svc, request: dict) -> bytes:
    schema = table_of(svc, request)
    index_name = request.get("IndexName")
    prepared = svc.prepare_expressions(request, schema, "Scan")
    limit = _limit_of(request)
    select = _select_of(request, prepared, index_name)
    mode = capacity.requested_mode(request)
    segment = _segment_of(request)
    low, high = _token_bounds(segment)
    shard, start, start_exclusive = 0, low, False
    exclusive = request.get("ExclusiveStartKey")
    if exclusive is not None:
        pk, sk = key_of_request(schema, exclusive) if index_name is None else svc.index_start_key(
            request, schema, exclusive)
        key = values.encode_key(pk, sk)
        if key < low or (high is not None and key >= high):
            raise ValidationException("The provided Exclusive start key does not map to the provided segment "
                                      "and total segments")
        shard, start, start_exclusive = svc.owner_of(pk), key, True
    remaining = limit or (1 << 62)
    budget = PAGE_BYTES
    chunks: list[bytes] = []
    count = scanned = read_bytes = 0
    last = None
    stopped_early = False
    while shard < svc.nshards:
        part = {"start": start.hex(), "exclusive": start_exclusive, "end": high.hex() if high is not None else None,
                "limit": remaining, "bytes": budget, "count_only": select == "COUNT",
                "request": {k: request[k] for k in _PAGE_FIELDS if k in request}}
        header, _, joined = (await svc.submit_to(shard, SCAN_PAGE, orjson.dumps(part))).partition(b"\0")
        reply = orjson.loads(header)
        if joined:
            chunks.append(joined)
        count += reply["count"]
        scanned += reply["scanned"]
        read_bytes += reply["bytes"]
        if reply["last"] is not None:
            last = reply["last"]
        remaining -= reply["scanned"]
        budget -= reply["bytes"]
        if remaining <= 0 or budget <= 0:
            stopped_early = True
            break
        shard, start, start_exclusive = shard + 1, low, False
    tail = {"Count": count, "ScannedCount": scanned}
    if stopped_early and last is not None:
        tail["LastEvaluatedKey"] = last
    if mode != "NONE":
        tail["ConsumedCapacity"] = capacity.consumed(
            mode, schema.name, capacity.read_units(read_bytes, bool(request.get("ConsistentRead", False))),
            read=True)
    if select == "COUNT":
        return orjson.dumps(tail)
    # Splice the shards' item JSON into the response without decoding it.
    return b'{"Items":[' + b",".join(chunks) + b"]," + orjson.dumps(tail)[1:]


_PAGE_FIELDS = ("FilterExpression", "ProjectionExpression", "ExpressionAttributeNames",
                "ExpressionAttributeValues", "ScanFilter", "ConditionalOperator", "AttributesToGet", "Select",
                "TableName", "IndexName")


@fabric_verb(SCAN_PAGE)
async def scan_page(svc, src: int, payload: bytes) -> bytes:
    """One shard's part of a Scan page: header JSON, NUL, the matching items' JSON joined by commas."""
    part = orjson.loads(payload)
    request = part["request"]
    schema = table_of(svc, request)
    prepared = svc.prepare_expressions(request, schema, "Scan", check_unused=False)
    end = bytes.fromhex(part["end"]) if part["end"] is not None else None
    if request.get("IndexName") is not None:
        return await svc.scan_index_page(part, schema, prepared)
    pairs = await svc.storage.scan(schema.table_id, bytes.fromhex(part["start"]) or None, end,
                                   start_exclusive=part["exclusive"], limit=part["limit"],
                                   max_bytes=part["bytes"])
    reader = PageReader(prepared.filter, prepared.projection, part["count_only"])
    items, count, last = reader.shape(pairs)
    header = orjson.dumps({
        "count": count, "scanned": len(pairs), "bytes": sum(len(v) for _, v in pairs),
        "last": key_attributes(schema, last) if last is not None else None,
    })
    return header + b"\0" + b",".join(i if isinstance(i, bytes) else orjson.dumps(i) for i in items)
