"""UpdateItem: read, check the condition, apply the update, write — all on the owner shard.

The owner runs the whole read-modify-write on its event loop with no await
between the read it decides on and the write, so concurrent updates of one
item never interleave (every Alternator write-isolation mode is safe).
An item that does not exist is created from its key (upsert semantics).
"""

from __future__ import annotations

import orjson

from shardserver.shard import expressions as ex
from shardserver.shard.executor import capacity, operation
from shardserver.shard.executor.items import addressed_item, response, return_values, route_to_item
from shardserver.shard.transactions import check_write
from shardserver.shard.values import MAX_ITEM_SIZE

ALL_RETURN_VALUES = ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW")


@operation("UpdateItem", route=route_to_item("UpdateItem"))
async def update_item(svc, request: dict) -> bytes:
    schema, key = addressed_item(svc, request, "UpdateItem")
    key_av = request.get("Key")
    rv = return_values(request, ALL_RETURN_VALUES)
    mode = capacity.requested_mode(request)
    metrics = capacity.wants_collection_metrics(request, schema)
    prepared = svc.prepare_expressions(request, schema, "UpdateItem")
    table_id = schema.table_id
    key_names = schema.key_names

    # A counter update nobody needs the old or new item of (no condition, no
    # ReturnValues, no capacity, no index or stream) may be applied to the stored JSON.
    counter = prepared.update.counter if prepared.update is not None else None
    if counter is not None and (prepared.condition is not None or rv != "NONE" or mode != "NONE" or metrics):
        counter = None

    stored = await svc.storage.get(table_id, key)
    # From here to storage.put nothing awaits: no other write to this item can slip in.
    if counter is not None and stored is not None and not svc.needs_old_image(schema):
        encoded = _add_to_stored_counter(stored, counter)
        if encoded is not None:
            check_write(svc, table_id, key)
            svc.storage.put(table_id, key, encoded)
            await svc.storage.sync()
            return b"{}"
    old = orjson.loads(stored) if stored is not None else None
    prepared.check_condition(old)
    base = old if old is not None else {name: key_av[name] for name in key_names}
    encoded = None
    if prepared.update is not None and old is None and prepared.only_removes():
        # Nothing to remove from an absent item, so DynamoDB does not look at
        # the paths: REMOVE x.y succeeds (key attributes were refused in prepare).
        new, touched = base, set()
    elif prepared.update is not None:
        # The new item's JSON, made for storage anyway, bounds its size for the 400 KB check.
        new, touched = ex.apply_update(prepared.update, base, None, key_names, check_size=False)
        encoded = orjson.dumps(new)
        ex.check_updated_size(new, len(encoded))
    elif prepared.legacy_updates is not None:
        new, touched = ex.apply_attribute_updates(prepared.legacy_updates, base, key_names)
    else:
        new, touched = base, set()
    if old is None and prepared.only_removes():
        new = None          # nothing to remove from an absent item: it stays absent
    else:
        # The 400 KB limit on the result is already enforced (check_updated_size, apply_attribute_updates).
        svc.check_index_keys(schema, new, by_update=True)
        check_write(svc, table_id, key)
        svc.storage.put(table_id, key, encoded if encoded is not None else orjson.dumps(new))
        svc.after_write(schema, key, old, new)
        await svc.storage.sync()

    fields = {}
    if rv == "ALL_OLD":
        if old is not None:
            fields["Attributes"] = old
    elif rv == "ALL_NEW":
        if new is not None:
            fields["Attributes"] = new
    elif rv in ("UPDATED_OLD", "UPDATED_NEW") and new is not None:
        attributes = _updated(prepared, old, new, touched, rv)
        if attributes:
            fields["Attributes"] = attributes
    if mode != "NONE":
        fields["ConsumedCapacity"] = capacity.write_consumed(mode, schema, old, new)
    if metrics:
        fields["ItemCollectionMetrics"] = await capacity.collection_metrics(svc, schema, key_av[schema.hash_key])
    return response(fields)


def _add_to_stored_counter(stored: bytes, counter: tuple) -> bytes | None:
    """The stored item JSON with a counter update (expressions' BoundUpdate.counter) applied,
    or None to decode the item and apply the update instead.

    Only the common case is taken: the counter is the item's last attribute, a small
    integer, as it is once a counter has been added to an item.  Storage keeps items
    as orjson's compact JSON of the item, where a quote that is not escaped always
    delimits a string; with a plain name (no character of it can follow a closing
    quote), a text ending in ,"name":{"N":"<integer>"}} therefore ends with the
    top-level attribute "name", and the answer is the bytes orjson.dumps of the
    updated item would give (an attribute keeps its place when it is set).
    """
    name, delta = counter
    marker = b',"' + name.encode() + b'":{"N":"'
    at = stored.rfind(marker)
    if at < 0 or not stored.endswith(b'"}}'):
        return None
    start = at + len(marker)
    number = stored[start:-3]
    if len(number) >= 18 or not (number.isdigit() or number[:1] == b"-" and number[1:].isdigit()):
        return None
    encoded = b"".join((stored[:start], str(int(number) + delta).encode(), b'"}}'))
    # JSON is never shorter than the DynamoDB size: under the limit here, under it there.
    return encoded if len(encoded) <= MAX_ITEM_SIZE else None


def _updated(prepared, old: dict | None, new: dict, touched: set, which: str) -> dict:
    if prepared.update is not None:
        return ex.updated_values(old, new, prepared.update, None, which)
    source = old if which == "UPDATED_OLD" else new
    if source is None:
        return {}
    return {name: source[name] for name in touched if name in source}
