"""Query and Scan: key ranges on one shard, and the whole token ring across shards.

A Query runs on the shard owning its partition: the key condition becomes
one storage-key range, read forwards or backwards.  A Scan walks the shards
one after the other, each from its lowest token up; a parallel-scan segment
is a slice of the token ring that every shard serves its part of, and
segment s starts at shard s mod N so that concurrent segments start on
different shards.  Paging keys are the real primary keys of the last item
evaluated, so they stay valid across restarts, and a scan resumed from one
visits exactly the keys after it in that stable order.  A page ends at 1 MB
of the items' DynamoDB size (pages.read_page); a Scan page's parts measure
it by their JSON until one reaches the budget, and the page is read again
with every size counted if an earlier part was measured only so.  Filters and
projections run on the shard that reads the items; only the page travels
back, and items nobody needs to look at are spliced as the stored JSON.
It never writes, and never decodes an item it does not have to.
"""

from __future__ import annotations

import orjson

from shardserver.errors import DynamoDBError, ValidationException
from shardserver.shard import routing, values
from shardserver.shard.pages import PAGE_BYTES, UNBOUNDED, read_page
from shardserver.shard.executor import capacity, fabric_verb, operation
from shardserver.shard.executor.tables import constraint_error, table_of
from shardserver.shard.keys import KEY_MISMATCH, key_attributes, key_of_request

MAX_TOTAL_SEGMENTS = 1_000_000
SCAN_PAGE = b"scan-page"   # fabric verb: one shard's part of a Scan page

# route() looks the table up, prepares the expressions and hashes the partition key
# to find the owner; a local execute() reuses all three (schema, prepared, partition prefix).
_PREPARED = "\0prepared"

INVALID_START_KEY = "The provided starting key is invalid: "
OUTSIDE_QUERY = "The provided starting key is outside query boundaries based on provided conditions"
OUTSIDE_RANGE = "The provided starting key does not match the range key predicate"
OUTSIDE_SEGMENT = "The provided Exclusive start key does not map to the provided segment and total segments"


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def partition_range(pk: dict, range_op: str | None, operands: list,
                    prefix: bytes | None = None) -> tuple[bytes, bytes]:
    """[start, end) of the storage keys a key condition selects inside one partition."""
    if prefix is None:
        prefix = values.partition_prefix(pk)
    end = values.partition_end(prefix)
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
        return encoded[0], min(_successor(encoded[0]) or end, end)
    raise ValidationException(f"Unsupported key condition operator {range_op}")


def start_key_of(schema, exclusive, op: str = "Scan") -> tuple[dict, dict | None]:
    """(partition key, sort key) of an ExclusiveStartKey, with DynamoDB's messages.

    A key naming the wrong attributes gets the bare sentence from Query and
    the sentence with the schema-mismatch detail from Scan."""
    names = {schema.hash_key} if not schema.range_key else {schema.hash_key, schema.range_key}
    if not isinstance(exclusive, dict) or set(exclusive) != names:
        raise ValidationException(INVALID_START_KEY.rstrip(": ") if op == "Query" else INVALID_START_KEY + KEY_MISMATCH)
    for av in exclusive.values():
        try:
            values.validate_value(av)
        except ValidationException as error:
            raise ValidationException(INVALID_START_KEY + error.message) from None
    return key_of_request(schema, exclusive)


def limit_of(request: dict, op: str = "Scan") -> int | None:
    limit = request.get("Limit")
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        if op == "Query":   # Query's validator names the member without echoing the value
            raise constraint_error(["Value at 'Limit' failed to satisfy constraint: "
                                    "Member must have value greater than or equal to 1"])
        raise constraint_error([f"Value '{limit}' at 'limit' failed to satisfy constraint: "
                                "Member must have value greater than or equal to 1"])
    return limit


# How DynamoDB's "Cannot specify ... when choosing to get ..." names each Select.
_SELECTION = {"ALL_ATTRIBUTES": "ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES": "ALL_PROJECTED_ATTRIBUTES",
              "COUNT": "only the Count"}


def select_of(request: dict, op: str, default: str = "ALL_ATTRIBUTES") -> str:
    """A Query's or Scan's Select, checked against its projection; ``default`` is what an
    absent Select means without a projection (ALL_PROJECTED_ATTRIBUTES on an index)."""
    select = request.get("Select")
    has_projection = request.get("ProjectionExpression") is not None or request.get("AttributesToGet") is not None
    if select is None:
        return "SPECIFIC_ATTRIBUTES" if has_projection else default
    if select not in ("ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT"):
        raise constraint_error([f"Value '{select}' at 'select' failed to satisfy constraint: Member must satisfy "
                                "enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, "
                                "ALL_PROJECTED_ATTRIBUTES]"])
    # Query's validator words these as a model error; Scan's does not.
    prefix = "1 validation error detected: " if op == "Query" else ""
    if select == "ALL_PROJECTED_ATTRIBUTES" and request.get("IndexName") is None:
        # DynamoDB says "Querying" on a Scan too
        raise ValidationException(prefix + "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
    if select == "SPECIFIC_ATTRIBUTES" and not has_projection:
        raise ValidationException(prefix + "Must specify the AttributesToGet or ProjectionExpression when choosing "
                                  "to get SPECIFIC_ATTRIBUTES")
    if has_projection and select != "SPECIFIC_ATTRIBUTES":
        what = "ProjectionExpression" if request.get("ProjectionExpression") is not None else "AttributesToGet"
        raise ValidationException(f"{prefix}Cannot specify the {what} when choosing to get {_SELECTION[select]}")
    return select


def _consistent_of(request: dict) -> bool:
    consistent = request.get("ConsistentRead", False)
    if not isinstance(consistent, bool):
        raise ValidationException("1 validation error detected: Value at 'consistentRead' failed to satisfy "
                                  "constraint: Member must be a boolean")
    return consistent


def shape_page(pairs: list[tuple[bytes, bytes]], filter_fn, projection_fn, count_only: bool) -> tuple[list, int]:
    """(items as JSON bytes, matched count) of the stored pairs one page read.

    Without a filter or projection the stored JSON is the answer: no decode."""
    if filter_fn is None:
        if count_only:
            return [], len(pairs)
        if projection_fn is None:
            return [raw for _, raw in pairs], len(pairs)
        return [orjson.dumps(projection_fn(orjson.loads(raw))) for _, raw in pairs], len(pairs)
    items = []
    count = 0
    for _, raw in pairs:
        item = orjson.loads(raw)
        if not filter_fn(item):
            continue
        count += 1
        if not count_only:
            items.append(raw if projection_fn is None else orjson.dumps(projection_fn(item)))
    return items, count


def _items_response(items: list[bytes], tail: dict, count_only: bool) -> bytes:
    if count_only:
        return orjson.dumps(tail)
    # Splice the stored item JSON into the response without decoding it, in
    # one join: chained + would copy the page once per piece.
    return b"".join((b'{"Items":[', b",".join(items), b"],", orjson.dumps(tail)[1:]))


# ------------------------------------------------------------------ Query

def route_query(svc, request: dict) -> int:
    schema = table_of(svc, request)
    prepared = svc.prepare_expressions(request, schema, "Query")
    prefix, token = values.storage_key_and_token(prepared.key_condition[0])
    request[_PREPARED] = (schema, prepared, prefix)
    return routing.shard_of_token(token, svc.nshards)


@operation("Query", route=route_query)
async def query(svc, request: dict) -> bytes:
    routed = request.pop(_PREPARED, None)
    if routed is not None:
        schema, prepared, prefix = routed
    else:
        schema = table_of(svc, request)
        prepared, prefix = svc.prepare_expressions(request, schema, "Query"), None
    limit = limit_of(request, "Query")
    select = select_of(request, "Query")
    mode = capacity.requested_mode(request)
    consistent = _consistent_of(request)
    forward = request.get("ScanIndexForward", True)
    if not isinstance(forward, bool):
        raise ValidationException("1 validation error detected: Value at 'scanIndexForward' failed to satisfy "
                                  "constraint: Member must be a boolean")
    if request.get("IndexName") is not None:
        return await svc.query_index(request, schema, prepared)
    pk, range_op, operands = prepared.key_condition
    if prefix is None:
        prefix = values.partition_prefix(pk)
    start, end = partition_range(pk, range_op, operands, prefix)
    start_exclusive = False
    exclusive = request.get("ExclusiveStartKey")
    if exclusive is not None:
        start_pk, start_sk = start_key_of(schema, exclusive, "Query")
        if values.compare_key(start_pk, pk) != 0:
            raise ValidationException(OUTSIDE_QUERY)
        key = values.encode_key(start_pk, start_sk)
        if range_op is not None and not start <= key < end:
            raise ValidationException(OUTSIDE_RANGE)
        if forward:
            start, start_exclusive = key, True
        else:
            end = key
    page = await read_page(svc.storage, schema.table_id, start, end, start_exclusive=start_exclusive,
                           reverse=not forward, limit=limit or UNBOUNDED, partition=prefix)
    pairs = page.pairs
    count_only = select == "COUNT"
    items, count = shape_page(pairs, prepared.filter, prepared.projection, count_only)
    tail = {"Count": count, "ScannedCount": len(pairs)}
    if pairs and ((limit is not None and len(pairs) >= limit) or page.full):
        tail["LastEvaluatedKey"] = key_attributes(schema, orjson.loads(pairs[-1][1]))
    if mode != "NONE":
        tail["ConsumedCapacity"] = capacity.consumed(
            mode, schema.name, capacity.read_units(page.size(), consistent))
    return _items_response(items, tail, count_only)


# ------------------------------------------------------------------ Scan

def _segment_of(request: dict) -> tuple[int, int] | None:
    segment, total = request.get("Segment"), request.get("TotalSegments")
    if segment is None and total is None:
        return None
    errors = []
    if total is not None and (not isinstance(total, int) or isinstance(total, bool)
                              or not 1 <= total <= MAX_TOTAL_SEGMENTS):
        bound = ("less than or equal to 1000000" if isinstance(total, int) and total > 1
                 else "greater than or equal to 1")
        errors.append(f"Value '{total}' at 'totalSegments' failed to satisfy constraint: Member must have "
                      f"value {bound}")
    if segment is not None and (not isinstance(segment, int) or isinstance(segment, bool)
                                or not 0 <= segment <= MAX_TOTAL_SEGMENTS - 1):
        bound = "less than or equal to 999999" if isinstance(segment, int) and segment > 0 else \
            "greater than or equal to 0"
        errors.append(f"Value '{segment}' at 'segment' failed to satisfy constraint: Member must have "
                      f"value {bound}")
    if errors:
        raise constraint_error(errors)
    if segment is None:
        raise ValidationException("The Segment parameter is required but was not present in the request when "
                                  "parameter TotalSegments is present")
    if total is None:
        raise ValidationException("The TotalSegments parameter is required but was not present in the request "
                                  "when Segment parameter is present")
    if segment >= total:
        raise ValidationException(f"The Segment parameter is zero-based and must be less than parameter "
                                  f"TotalSegments: Segment: {segment} is not less than TotalSegments: {total}")
    return segment, total


def _token_bounds(segment: tuple[int, int] | None) -> tuple[bytes, bytes | None]:
    """[low, high) storage-key bounds of a segment (token prefixes); high None = end of ring."""
    if segment is None:
        return b"", None
    low, high = routing.segment_bounds(*segment)
    return low.to_bytes(8, "big"), (high.to_bytes(8, "big") if high < (1 << 64) else None)


def scan_order(nshards: int, segment: tuple[int, int] | None) -> list[int]:
    """The shards in the order a scan (or one segment) visits them."""
    first = segment[0] % nshards if segment is not None else 0
    return [(first + i) % nshards for i in range(nshards)]


@operation("Scan")
async def scan(svc, request: dict) -> bytes:
    schema = table_of(svc, request)
    index_name = request.get("IndexName")
    svc.prepare_expressions(request, schema, "Scan")     # validate everything before any shard reads
    limit = limit_of(request)
    select = select_of(request, "Scan")
    mode = capacity.requested_mode(request)
    consistent = _consistent_of(request)
    segment = _segment_of(request)
    low, high = _token_bounds(segment)
    order = scan_order(svc.nshards, segment)
    position, start, start_exclusive = 0, low, False
    exclusive = request.get("ExclusiveStartKey")
    if exclusive is not None:
        pk, sk = start_key_of(schema, exclusive) if index_name is None else svc.index_start_key(
            request, schema, exclusive)
        key = values.encode_key(pk, sk)
        if key < low or (high is not None and key >= high):
            raise ValidationException(OUTSIDE_SEGMENT)
        position, start, start_exclusive = order.index(svc.owner_of(pk)), key, True
    count_only = select == "COUNT"
    fields = {k: request[k] for k in _PAGE_FIELDS if k in request}

    async def gather(sized: bool):
        """The page from `position` on: (chunks, count, scanned, read size, last key, more to read),
        or None when a shard's part reached a budget that earlier parts measured only by their
        JSON: the page must then be read again with every item's DynamoDB size counted."""
        at, first, exclusive_first = position, start, start_exclusive
        remaining = limit or UNBOUNDED
        budget = PAGE_BYTES
        budget_known = True
        chunks: list[bytes] = []
        count = scanned = read_size = 0
        last = None
        while at < len(order):
            part = {"start": first.hex(), "exclusive": exclusive_first,
                    "end": high.hex() if high is not None else None,
                    "limit": remaining, "bytes": budget, "known": budget_known, "sized": sized,
                    "count_only": count_only, "request": fields, "size": mode != "NONE"}
            reply = await svc.submit_to(order[at], SCAN_PAGE, orjson.dumps(part))
            header, _, joined = reply.partition(b"\0")
            result = orjson.loads(header)
            if "error" in result:
                _raise(result["error"])
            if result["full"] and not result["exact"]:
                return None
            if joined:
                chunks.append(joined)
            count += result["count"]
            scanned += result["scanned"]
            read_size += result.get("size", 0)
            if result["last"] is not None:
                last = result["last"]
            remaining -= result["scanned"]
            budget -= result["bytes"]
            budget_known = budget_known and (result["exact"] or not result["scanned"])
            if remaining <= 0 or result["full"]:
                return chunks, count, scanned, read_size, last, True
            at, first, exclusive_first = at + 1, low, False
        return chunks, count, scanned, read_size, last, False

    page = await gather(sized=False) or await gather(sized=True)
    chunks, count, scanned, read_size, last, stopped_early = page
    tail = {"Count": count, "ScannedCount": scanned}
    if stopped_early and last is not None:
        tail["LastEvaluatedKey"] = last
    if mode != "NONE":
        units = capacity.read_units(read_size, consistent)
        if index_name is None:
            tail["ConsumedCapacity"] = capacity.consumed(mode, schema.name, units)
        else:
            # An index scan reads the index alone: INDEXES charges it there, the table nothing.
            spent = {index_name: units}
            is_global = any(i["IndexName"] == index_name for i in schema.global_indexes)
            tail["ConsumedCapacity"] = capacity.consumed(mode, schema.name, 0.0, **{
                "gsis" if is_global else "lsis": spent})
    return _items_response(chunks, tail, count_only)


_PAGE_FIELDS = ("FilterExpression", "ProjectionExpression", "ExpressionAttributeNames",
                "ExpressionAttributeValues", "ScanFilter", "ConditionalOperator", "AttributesToGet", "Select",
                "TableName", "IndexName")


def _raise(error: dict) -> None:
    from shardserver import errors
    error_class = getattr(errors, error.get("type", ""), None)
    if isinstance(error_class, type) and issubclass(error_class, DynamoDBError):
        raise error_class(error.get("message", ""))
    raise ValidationException(error.get("message", ""))


@fabric_verb(SCAN_PAGE)
async def scan_page(svc, src: int, payload: bytes) -> bytes:
    """One shard's part of a Scan page: header JSON, NUL, the matching items' JSON joined by commas."""
    part = orjson.loads(payload)
    request = part["request"]
    try:
        # The table may have been dropped, or not yet be known here, since the acceptor looked.
        schema = table_of(svc, request)
        prepared = svc.prepare_expressions(request, schema, "Scan", check_unused=False)
    except DynamoDBError as error:
        return orjson.dumps({"error": {"type": type(error).__name__, "message": error.message}}) + b"\0"
    if request.get("IndexName") is not None:
        return await svc.scan_index_page(part, schema, prepared)
    page = await read_part(svc, schema.table_id, part)
    pairs = page.pairs
    items, count = shape_page(pairs, prepared.filter, prepared.projection, part["count_only"])
    return part_reply(page, part, count, key_attributes(schema, orjson.loads(pairs[-1][1])) if pairs else None,
                      b",".join(items))


def read_part(svc, storage_id: str, part: dict):
    """Reads one shard's part of a Scan page (of a table or an index)."""
    end = bytes.fromhex(part["end"]) if part["end"] is not None else None
    return read_page(svc.storage, storage_id, bytes.fromhex(part["start"]) or None, end,
                     start_exclusive=part["exclusive"], limit=part["limit"], budget=part["bytes"],
                     budget_known=part["known"], sized=part["sized"])


def part_reply(page, part: dict, count: int, last: dict | None, joined: bytes) -> bytes:
    """Header JSON, NUL, the part's matching items' JSON joined by commas."""
    header = {"count": count, "scanned": len(page.pairs), "bytes": page.used,
              "exact": page.exact, "full": page.full, "last": last}
    if part.get("size"):
        header["size"] = page.size()
    return orjson.dumps(header) + b"\0" + joined
