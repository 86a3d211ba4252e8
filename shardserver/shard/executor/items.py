"""Single-item operations: PutItem, GetItem, DeleteItem.

Each runs on the shard that owns the item's partition, so its
read-modify-write (conditions, ReturnValues) completes on one event loop
without interleaving.  ``route`` runs on the acceptor and names the owner;
``execute`` runs on the owner: validate, read what is needed, apply, shape
the response.
"""

from __future__ import annotations

import orjson

from shardserver.errors import ValidationException
from shardserver.shard import values
from shardserver.shard.executor import capacity, operation
from shardserver.shard.executor.tables import table_of
from shardserver.shard.itemsem import check_before_table
from shardserver.shard.keys import key_of_item, key_of_request
from shardserver.shard.routing import shard_of_token
from shardserver.shard.transactions import check_write

RETURN_VALUES_ENUM = "[ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]"


ROUTED = "\0item"   # request key under which routing leaves (schema, storage key, owner shard)


def _address(svc, request: dict, op: str) -> tuple:
    """(schema, storage key, owner shard) of the one item a request names."""
    from_item = op == "PutItem"
    named = request.get("Item" if from_item else "Key")
    if named is None:
        # Request validation, before the table is looked up.
        member = "item" if from_item else "key"
        raise ValidationException(f"1 validation error detected: Value null at '{member}' failed "
                                  "to satisfy constraint: Member must not be null")
    check_before_table(request, op)
    schema = table_of(svc, request)
    pk, sk = key_of_item(schema, named) if from_item else key_of_request(schema, named)
    key, token = values.storage_key_and_token(pk, sk)
    nshards = svc.nshards
    return schema, key, shard_of_token(token, nshards) if nshards > 1 else 0    # one shard owns every token


def addressed_item(svc, request: dict, op: str) -> tuple:
    """(schema, storage key) of the request's item.

    Routing already computed them when it ran on this shard, or on the
    acceptor that forwarded the request here (see ShardService.handle);
    otherwise they are computed, with every key check, now.
    """
    routed = request.pop(ROUTED, None)
    return (routed or _address(svc, request, op))[:2]


def route_to_item(op: str):
    """The route of an operation on one item: the owner shard of the item it
    names (by ``Item`` for PutItem, by ``Key`` otherwise)."""
    def route(svc, request: dict) -> int:
        routed = request[ROUTED] = _address(svc, request, op)
        return routed[2]
    return route


def return_values(request: dict, allowed: tuple[str, ...]) -> str:
    value = request.get("ReturnValues", "NONE")
    if value not in ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"):
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at 'returnValues' failed to satisfy constraint: "
            f"Member must satisfy enum value set: {RETURN_VALUES_ENUM}")
    if value not in allowed:
        # Only PutItem and DeleteItem restrict the enum; DynamoDB's wording lists ALL_OLD first.
        raise ValidationException("ReturnValues can only be ALL_OLD or NONE")
    return value


def response(fields: dict) -> bytes:
    return orjson.dumps(fields) if fields else b"{}"


# ------------------------------------------------------------------ GetItem

@operation("GetItem", route=route_to_item("GetItem"))
async def get_item(svc, request: dict) -> bytes:
    schema, key = addressed_item(svc, request, "GetItem")
    if len(request) == 2 or (len(request) == 3 and request.get("ConsistentRead").__class__ is bool):
        # Only TableName and Key (and ConsistentRead, which only capacity would show): no projection,
        # no capacity, nothing to check.
        stored = await svc.storage.get(schema.table_id, key)
        return b"".join((b'{"Item":', stored, b"}")) if stored is not None else b"{}"
    projection = svc.prepare_expressions(request, schema, "GetItem").projection
    mode = capacity.requested_mode(request)
    consistent = request.get("ConsistentRead", False)
    if not isinstance(consistent, bool):
        raise ValidationException("1 validation error detected: Value at 'consistentRead' failed to satisfy "
                                  "constraint: Member must be a boolean")
    stored = await svc.storage.get(schema.table_id, key)
    used = None
    if mode != "NONE":
        used = capacity.consumed(mode, schema.name, capacity.stored_read_units(stored, consistent))
    if stored is None:
        return response({"ConsumedCapacity": used} if used else {})
    if projection is None:
        # Splice the stored JSON into the response: no decode, no re-encode.
        if used is None:
            return b"".join((b'{"Item":', stored, b"}"))
        return b"".join((b'{"Item":', stored, b',"ConsumedCapacity":', orjson.dumps(used), b"}"))
    fields = {"Item": projection(orjson.loads(stored))}
    if used:
        fields["ConsumedCapacity"] = used
    return orjson.dumps(fields)


# ------------------------------------------------------------------ PutItem

_DEFAULT_WRITE_OPTIONS = ("NONE", "NONE", False, None)


def _write_options(svc, request: dict, schema, op: str) -> tuple:
    """PutItem's or DeleteItem's (ReturnValues, ReturnConsumedCapacity mode, collection
    metrics wanted, condition)."""
    if len(request) == 2:
        # Only TableName and the Item or Key: every option takes its default, and none of
        # their checks can fail.
        return _DEFAULT_WRITE_OPTIONS
    return (return_values(request, ("NONE", "ALL_OLD")), capacity.requested_mode(request),
            capacity.wants_collection_metrics(request, schema),
            svc.prepare_expressions(request, schema, op).condition)


@operation("PutItem", route=route_to_item("PutItem"))
async def put_item(svc, request: dict) -> bytes:
    schema, key = addressed_item(svc, request, "PutItem")
    item = request.get("Item")
    values.validate_item(item)
    encoded = orjson.dumps(item)
    if len(encoded) > values.MAX_ITEM_SIZE:
        # An item's DynamoDB size never exceeds its JSON length: only a long
        # encoding needs the exact count.
        values.check_item_size(item)
    rv, mode, metrics, condition = _write_options(svc, request, schema, "PutItem")
    svc.check_index_keys(schema, item)
    table_id = schema.table_id
    old = None
    if rv == "ALL_OLD" or condition is not None or svc.needs_old_image(schema) or mode != "NONE":
        stored = await svc.storage.get(table_id, key)
        old = orjson.loads(stored) if stored is not None else None
        if condition is not None:
            condition(old)
    check_write(svc, table_id, key)
    svc.storage.put(table_id, key, encoded)
    svc.after_write(schema, key, old, item)
    await svc.storage.sync()
    fields = {}
    if rv == "ALL_OLD" and old is not None:
        fields["Attributes"] = old
    if mode != "NONE":
        fields["ConsumedCapacity"] = capacity.write_consumed(mode, schema, old, item)
    if metrics:
        fields["ItemCollectionMetrics"] = await capacity.collection_metrics(svc, schema, item[schema.hash_key])
    return response(fields)


# ------------------------------------------------------------------ DeleteItem

@operation("DeleteItem", route=route_to_item("DeleteItem"))
async def delete_item(svc, request: dict) -> bytes:
    schema, key = addressed_item(svc, request, "DeleteItem")
    rv, mode, metrics, condition = _write_options(svc, request, schema, "DeleteItem")
    table_id = schema.table_id
    stored = await svc.storage.get(table_id, key)
    old = None
    if stored is not None and (rv == "ALL_OLD" or condition is not None or svc.needs_old_image(schema)
                               or mode != "NONE"):
        # Decoded only for what looks at it, as PutItem reads it only then.
        old = orjson.loads(stored)
    if condition is not None:
        condition(old)
    check_write(svc, table_id, key)
    if stored is not None:
        svc.storage.delete(table_id, key)
        svc.after_write(schema, key, old, None)
        await svc.storage.sync()
    fields = {}
    if rv == "ALL_OLD" and old is not None:
        fields["Attributes"] = old
    if mode != "NONE":
        fields["ConsumedCapacity"] = capacity.write_consumed(mode, schema, old, None)
    if metrics:
        fields["ItemCollectionMetrics"] = await capacity.collection_metrics(
            svc, schema, request["Key"][schema.hash_key])
    return response(fields)
