"""Secondary indexes: LSI and GSI definitions, entries, maintenance, GSI messages, backfill, reads.

An index is a storage table of its own on every shard (id ``<table id>.l<id>``
or ``.g<id>``) whose keys are ``partition_prefix(index pk) + escaped(index
sk) + base storage key``: unique per base item, ordered by index key then
base key, and placed by the index partition key's token like any item.  A
GSI's multi-attribute key has for pk one composite value of its partition key
attributes (``values.composite_key``) and for sk its sort key attributes'
escaped encodings one after another.
Values are the projected items (orjson bytes).

* An LSI entry lives with its base item (same partition key, same owner) and
  is written in the same synchronous step as the base item.
* A GSI entry lives on the owner of the GSI partition key.  The base owner
  writes the update to its *outbox* (a storage table, so it is in the commit
  log with the base write and survives a crash) and a per-destination sender
  delivers outbox entries over the rings in order, one batch in flight, until
  acknowledged; after a restart every unacknowledged entry is sent again.
  Updates for one index entry always travel the same (source, destination)
  pair, so they are applied in the order they were made; re-sending an
  already applied prefix only re-applies old states before the newer ones.
* A GSI added by UpdateTable is backfilled by every shard scanning its part
  of the base table while writes go on (CREATING -> ACTIVE).

This module never formats wire errors (it raises shardserver.errors) and
never touches the rings except through ``svc.submit_to`` / ``svc.broadcast``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import time
import uuid
import weakref
from collections import deque

import orjson

from shardserver.errors import ValidationException
from shardserver.shard import routing, values
from shardserver.shard.executor import capacity, fabric_verb
from shardserver.shard.executor.query import limit_of, part_reply, read_part, select_of
from shardserver.shard.catalog import WARM_THROUGHPUT_BASELINE
from shardserver.shard.executor.tables import (Constraints, check_capacity_bounds, constraint_error,
                                               key_schema_elements, table_name_errors, table_settings)
from shardserver.shard.keys import EmptyKeyValue
from shardserver.shard.pages import UNBOUNDED, read_page

log = logging.getLogger("shardserver.indexes")

MAX_LSIS = 5
MAX_GSIS = 20
MAX_PROJECTED_ATTRIBUTES = 100
PROJECTION_TYPES = ("ALL", "INCLUDE", "KEYS_ONLY")
MAX_KEY_ATTRIBUTES = 4          # per part (HASH, RANGE) of a GSI's multi-attribute key

GSI_APPLY = b"gsi-apply"        # payload: encoded entry operations -> b"" once durable
GSI_BACKFILL = b"gsi-backfill"  # payload: {"table", "index_id"} -> b"" once this shard's part is acked
INDEX_STATS = b"index-stats"    # payload: [storage ids] -> [[count, bytes], ...]

OUTBOX_PREFIX = "gsi-outbox."
ROTATE_OPS = 100_000            # outbox entries per generation before a fresh table is started
MAX_BATCH_OPS = 512
MAX_BATCH_BYTES = 1 << 20
BACKFILL_CHUNK = 256
BACKFILL_HIGH_WATER = 4096      # pending entries per destination before a backfill waits

_OP_PUT = 0x50                  # "P"
_OP_DELETE = 0x44               # "D"
_H = struct.Struct(">H")
_I = struct.Struct(">I")
_Q = struct.Struct(">Q")


_escape = values.escape_component
_after = values.partition_end   # just past every key starting with an encoded, terminated prefix


def _successor(prefix: bytes) -> bytes | None:
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


# ====================================================================== definitions

def _key_schema_of(index: dict, field: str) -> tuple[str, str | None]:
    names, kinds = key_schema_elements(index.get("KeySchema"), f"{field}.keySchema")
    if len(names) == 2 and names[0] == names[1]:
        raise ValidationException("Both the Hash Key and the Range Key element in the KeySchema have the same name")
    if kinds[0] != "HASH":
        raise ValidationException("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
    if len(kinds) == 2 and kinds[1] != "RANGE":
        raise ValidationException("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
    return names[0], (names[1] if len(names) == 2 else None)


def _gsi_key_schema(index: dict, field: str) -> tuple[list[str], list[str]]:
    """A GSI's partition and sort key attributes: multi-attribute keys allow up to four of each,
    the HASH elements first."""
    names, kinds = key_schema_elements(index.get("KeySchema"), f"{field}.keySchema", MAX_KEY_ATTRIBUTES * 2)
    if len(names) <= 2 and kinds != ["HASH", "HASH"]:
        hash_key, range_key = _key_schema_of(index, field)
        return [hash_key], [range_key] if range_key else []
    if kinds[0] != "HASH":
        raise ValidationException("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
    hashes = names[:kinds.index("RANGE")] if "RANGE" in kinds else names
    ranges = names[len(hashes):]
    # DynamoDB's own wording for the rules of multi-attribute keys.
    if any(kind != "RANGE" for kind in kinds[len(hashes):]):
        raise ValidationException("One or more parameter values were invalid: All HASH key attributes must "
                                  "precede RANGE key attributes in the KeySchema")
    for part, kind in ((hashes, "HASH"), (ranges, "RANGE")):
        if len(part) > MAX_KEY_ATTRIBUTES:
            raise ValidationException("One or more parameter values were invalid: The KeySchema exceeds the "
                                      f"maximum allowed number of {kind} key attributes")
    if len(set(names)) != len(names):
        raise ValidationException("The KeySchema contains multiple key attributes with the same name")
    return hashes, ranges


def check_index_name(index: dict, field: str) -> str:
    errors = index_name_errors(index, field)
    if errors:
        raise constraint_error(errors)
    return index["IndexName"]


def index_name_errors(index: dict, field: str) -> list[str]:
    """An IndexName's constraint problems: the same rules as a table name's."""
    return table_name_errors(index.get("IndexName"), f"{field}.indexName")


def index_member_errors(index: dict, field: str, is_global: bool) -> list[str]:
    """A CreateTable index's member constraint problems, in DynamoDB's order: a KeySchema (not
    empty) and a Projection (a known ProjectionType, NonKeyAttributes not empty) present, its
    name's, and a global index's capacity units present and at least 1."""
    constraints = Constraints()
    key_schema = index.get("KeySchema")
    if constraints.required(key_schema, f"{field}.keySchema"):
        constraints.length(key_schema, f"{field}.keySchema", low=1)
    projection = index.get("Projection")
    if constraints.required(projection, f"{field}.projection"):
        constraints.enum(projection.get("ProjectionType"), f"{field}.projection.projectionType", PROJECTION_TYPES)
        constraints.length(projection.get("NonKeyAttributes"), f"{field}.projection.nonKeyAttributes", low=1)
    constraints.problems += index_name_errors(index, field)
    throughput = index.get("ProvisionedThroughput") if is_global else None
    if throughput is not None:
        for member in ("ReadCapacityUnits", "WriteCapacityUnits"):
            where = f"{field}.provisionedThroughput.{member[0].lower()}{member[1:]}"
            if constraints.required(throughput.get(member), where):
                constraints.value(throughput[member], where, low=1)
    return constraints.problems


MAX_NON_KEY_ATTRIBUTES = 20      # an INCLUDE projection's own list (the table's total: MAX_PROJECTED_ATTRIBUTES)


def _projection_of(index: dict, field: str) -> dict:
    projection = index.get("Projection")
    if not isinstance(projection, dict):
        raise constraint_error([f"Value null at '{field}.projection' failed to satisfy constraint: "
                                "Member must not be null"])
    kind = projection.get("ProjectionType")
    if kind is None:
        raise ValidationException("One or more parameter values were invalid: Unknown ProjectionType: null")
    if kind not in PROJECTION_TYPES:
        raise constraint_error([f"Value '{kind}' at '{field}.projection.projectionType' failed to satisfy "
                                "constraint: Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]"])
    attributes = projection.get("NonKeyAttributes")
    if attributes is not None and kind != "INCLUDE":
        raise ValidationException(f"One or more parameter values were invalid: ProjectionType is {kind}, "
                                  "but NonKeyAttributes is specified")
    if kind != "INCLUDE":
        return {"ProjectionType": kind}
    if not attributes:
        raise ValidationException("One or more parameter values were invalid: ProjectionType is INCLUDE, "
                                  "but NonKeyAttributes is not specified")
    if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
        raise ValidationException(f"1 validation error detected: Value '{attributes}' at "
                                  f"'{field}.projection.nonKeyAttributes' failed to satisfy constraint: "
                                  "Member must satisfy constraint: [Member must be a string]")
    if len(attributes) > MAX_NON_KEY_ATTRIBUTES:
        raise constraint_error([f"Value '[{', '.join(attributes)}]' at '{field}.projection.nonKeyAttributes' failed "
                                f"to satisfy constraint: Member must have length less than or equal to "
                                f"{MAX_NON_KEY_ATTRIBUTES}"])
    seen = set()
    for attribute in attributes:
        if not 1 <= len(attribute) <= 255:
            raise constraint_error([f"Value '{attributes}' at '{field}.projection.nonKeyAttributes' failed to "
                                    "satisfy constraint: Member must have length between 1 and 255"])
        if attribute in seen:
            raise ValidationException("One or more parameter values were invalid: Duplicate element "
                                      f"in NonKeyAttributes: {attribute}")
        seen.add(attribute)
    # Kept (and described) sorted by name, as DynamoDB keeps them.
    return {"ProjectionType": "INCLUDE", "NonKeyAttributes": sorted(attributes, key=lambda a: a.encode("utf-16-be"))}


def _throughput_of(index: dict, name: str, billing_mode: str, table_read: int, table_write: int,
                   by_update: bool) -> dict:
    throughput = index.get("ProvisionedThroughput")
    if billing_mode == "PAY_PER_REQUEST":
        if throughput is not None:
            raise ValidationException("One or more parameter values were invalid: ProvisionedThroughput should "
                                      f"not be specified for index: {name} when BillingMode is PAY_PER_REQUEST")
        return {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0}
    if throughput is None:
        # CreateTable's and UpdateTable's Create's words differ, both as DynamoDB answers them.
        if by_update:
            raise ValidationException("One or more parameter values were invalid: Both ReadCapacityUnits and "
                                      f"WriteCapacityUnits must be specified for index: {name}")
        raise ValidationException("One or more parameter values were invalid: ProvisionedThroughput is not "
                                  f"specified for index: {name}")
    read, write = throughput.get("ReadCapacityUnits"), throughput.get("WriteCapacityUnits")
    for value, field in ((read, "readCapacityUnits"), (write, "writeCapacityUnits")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise constraint_error([f"Value '{value}' at 'globalSecondaryIndexes.member.provisionedThroughput."
                                    f"{field}' failed to satisfy constraint: Member must have value greater "
                                    "than or equal to 1"])
    check_capacity_bounds(read, write, name)
    return {"ReadCapacityUnits": read, "WriteCapacityUnits": write}


def _undefined(keys: list[str], types: dict) -> ValidationException:
    return ValidationException(
        "One or more parameter values were invalid: Some index key attributes are not defined in "
        f"AttributeDefinitions. Keys: [{', '.join(keys)}], AttributeDefinitions: [{', '.join(types)}]")


def new_index_id() -> str:
    return uuid.uuid4().hex[:12]


def parse_gsi(index, field: str, types: dict, billing_mode: str, read: int = 0, write: int = 0,
              status: str = "ACTIVE", by_update: bool = False) -> dict:
    """One GlobalSecondaryIndex definition, validated and normalized for the catalog
    (by_update: an UpdateTable Create, not a CreateTable)."""
    if not isinstance(index, dict):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    name = check_index_name(index, field)
    hashes, ranges = _gsi_key_schema(index, field)
    keys = hashes + ranges
    if any(k not in types for k in keys):
        raise _undefined(keys, types)
    projection = _projection_of(index, field)
    definition = {"IndexName": name, "KeySchema": _key_schema_list(hashes, ranges), "Projection": projection,
                  "IndexId": new_index_id(), "IndexStatus": status,
                  "ProvisionedThroughput": _throughput_of(index, name, billing_mode, read, write, by_update)}
    definition.update(gsi_settings(index))
    return definition


def gsi_settings(index: dict) -> dict:
    """A global index's own OnDemandThroughput caps and WarmThroughput (CreateTable, or an
    UpdateTable Update); stored and described only.  Unlike the table's, an index's warm
    throughput may be set below the table baseline (the developer guide creates one at 1987/543)."""
    settings = {k: v for k, v in table_settings({"OnDemandThroughput": index.get("OnDemandThroughput")}).items() if v}
    warm = index.get("WarmThroughput")
    if isinstance(warm, dict):
        units = {u: warm[u] for u in WARM_THROUGHPUT_BASELINE if isinstance(warm.get(u), int)}
        if units:
            settings["WarmThroughput"] = units
    return settings


def parse_lsi(index, field: str, types: dict, table_hash: str) -> dict:
    if not isinstance(index, dict):
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    name = check_index_name(index, field)
    hash_key, range_key = _key_schema_of(index, field)
    keys = [hash_key] + ([range_key] if range_key else [])
    if any(k not in types for k in keys):
        raise _undefined(keys, types)
    if range_key is None:
        raise ValidationException("One or more parameter values were invalid: Index KeySchema does not have a "
                                  f"range key for index: {name}")
    if hash_key != table_hash:
        raise ValidationException("One or more parameter values were invalid: Index KeySchema does not have the "
                                  f"same leading hash key as table KeySchema for index: {name}. index hash key: "
                                  f"{hash_key}, table hash key: {table_hash}")
    projection = _projection_of(index, field)
    return {"IndexName": name, "KeySchema": _key_schema_list([hash_key], [range_key]), "Projection": projection,
            "IndexId": new_index_id(), "IndexStatus": "ACTIVE"}


def _key_schema_list(hashes: list[str], ranges: list[str]) -> list:
    return ([{"AttributeName": n, "KeyType": "HASH"} for n in hashes] +
            [{"AttributeName": n, "KeyType": "RANGE"} for n in ranges])


def check_projected_total(lsis: list, gsis: list) -> None:
    total = sum(len(i["Projection"].get("NonKeyAttributes", ())) for i in lsis + gsis)
    if total > MAX_PROJECTED_ATTRIBUTES:
        raise ValidationException("One or more parameter values were invalid: Number of projected attributes in "
                                  f"all secondary indexes exceeds the per-table limit of {MAX_PROJECTED_ATTRIBUTES}")


def _index_list(request: dict, kind: str) -> list | None:
    """A CreateTable index list ("LocalSecondaryIndexes"/"GlobalSecondaryIndexes"), shape-checked."""
    raw = request.get(kind)
    if raw is None:
        return None
    if not isinstance(raw, list):
        field = kind[0].lower() + kind[1:]
        raise constraint_error([f"Value null at '{field}' failed to satisfy constraint: Member must not be null"])
    if not raw:
        raise ValidationException(f"One or more parameter values were invalid: List of {kind} is empty")
    return raw


def _add_unique(index: dict, names: set, into: list) -> None:
    if index["IndexName"] in names:
        raise ValidationException(f"One or more parameter values were invalid: Duplicate index name: "
                                  f"{index['IndexName']}")
    names.add(index["IndexName"])
    into.append(index)


def parse_create_indexes(request: dict, hash_key: str, range_key: str | None, types: dict,
                         billing_mode: str, read: int, write: int) -> tuple[list, list]:
    """CreateTable's LocalSecondaryIndexes and GlobalSecondaryIndexes, validated as DynamoDB does."""
    names: set[str] = set()
    lsis: list = []
    gsis: list = []
    raw_lsis = _index_list(request, "LocalSecondaryIndexes")
    raw_gsis = _index_list(request, "GlobalSecondaryIndexes")
    # Member constraints (bad names, missing parts): DynamoDB reports them all at once, GSIs first.
    errors = []
    for kind, raw in (("globalSecondaryIndexes", raw_gsis), ("localSecondaryIndexes", raw_lsis)):
        for i, index in enumerate(raw or [], 1):
            if isinstance(index, dict):
                errors += index_member_errors(index, f"{kind}.{i}.member", kind[0] == "g")
    if errors:
        raise constraint_error(errors)
    if raw_lsis is not None:
        if range_key is None:
            raise ValidationException("One or more parameter values were invalid: Table KeySchema does not have a "
                                      "range key, which is required when specifying a LocalSecondaryIndex")
        for i, index in enumerate(raw_lsis, 1):
            _add_unique(parse_lsi(index, f"localSecondaryIndexes.{i}.member", types, hash_key), names, lsis)
        if len(lsis) > MAX_LSIS:
            raise ValidationException("One or more parameter values were invalid: Number of LocalSecondaryIndexes "
                                      f"exceeds per-table limit of {MAX_LSIS}")
    if raw_gsis is not None:
        for i, index in enumerate(raw_gsis, 1):
            _add_unique(parse_gsi(index, f"globalSecondaryIndexes.{i}.member", types, billing_mode, read, write),
                        names, gsis)
        if len(gsis) > MAX_GSIS:
            raise ValidationException("One or more parameter values were invalid: GlobalSecondaryIndex count "
                                      f"exceeds the per-table limit of {MAX_GSIS}")
    check_projected_total(lsis, gsis)
    return lsis, gsis


def key_attribute_names(schema) -> set[str]:
    """Every attribute some key (table, LSI, GSI) is made of."""
    names = set(schema.key_names)
    for index in schema.local_indexes + schema.global_indexes:
        for element in index["KeySchema"]:
            names.add(element["AttributeName"])
    return names


def throughput_dates(dated: dict) -> dict:
    """The dates of the last increase and decrease of units an UpdateTable recorded (in a table's
    extra settings or an index's definition) and the UTC day's count of decreases."""
    throughput = {}
    if "ThroughputIncreased" in dated:
        throughput["LastIncreaseDateTime"] = dated["ThroughputIncreased"]
    if "ThroughputDecreased" in dated:
        throughput["LastDecreaseDateTime"] = dated["ThroughputDecreased"]
    day, decreases = dated.get("ThroughputDecreases", ("", 0))
    throughput["NumberOfDecreasesToday"] = decreases if day == time.strftime("%Y-%m-%d", time.gmtime()) else 0
    return throughput


def describe_index(schema, index: dict, is_global: bool, stats: tuple[int, int] | None) -> dict:
    count, size = stats or (0, 0)
    description = {"IndexName": index["IndexName"], "KeySchema": index["KeySchema"],
                   "Projection": index["Projection"], "IndexSizeBytes": size, "ItemCount": count,
                   "IndexArn": f"{schema.arn}/index/{index['IndexName']}"}
    if is_global:
        status = index.get("IndexStatus", "ACTIVE")
        description["IndexStatus"] = status
        if status == "CREATING":
            description["Backfilling"] = True
        throughput = index.get("ProvisionedThroughput") or {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0}
        description["ProvisionedThroughput"] = {**throughput_dates(index), **throughput}
        if index.get("OnDemandThroughput"):
            description["OnDemandThroughput"] = dict(index["OnDemandThroughput"])
        # Like the table's: DynamoDB's baseline until raised (the index's own, not the table's).
        description["WarmThroughput"] = {**WARM_THROUGHPUT_BASELINE, **index.get("WarmThroughput", {}),
                                         "Status": "ACTIVE"}
    return description


# ====================================================================== compiled indexes

class Index:
    """One index of one schema, compiled for the write and read paths."""

    __slots__ = ("name", "index_id", "is_global", "hashes", "ranges", "types",
                 "projection_type", "non_key", "storage_id", "status", "base_hash", "base_range",
                 "key_names", "definition")

    def __init__(self, schema, definition: dict, is_global: bool, types: dict):
        self.definition = definition
        self.name = definition["IndexName"]
        self.index_id = definition["IndexId"]
        self.is_global = is_global
        # One name each but for a GSI's multi-attribute key (up to four each).
        self.hashes = tuple(e["AttributeName"] for e in definition["KeySchema"] if e["KeyType"] == "HASH")
        self.ranges = tuple(e["AttributeName"] for e in definition["KeySchema"] if e["KeyType"] == "RANGE")
        self.types = {n: types[n] for n in self.hashes + self.ranges}
        projection = definition["Projection"]
        self.projection_type = projection["ProjectionType"]
        self.non_key = tuple(projection.get("NonKeyAttributes", ()))
        self.storage_id = index_storage_id(schema.table_id, definition, is_global)
        self.status = definition.get("IndexStatus", "ACTIVE")
        self.base_hash, self.base_range = schema.hash_key, schema.range_key
        self.key_names = tuple(dict.fromkeys(n for n in (self.base_hash, self.base_range, *self.hashes,
                                                          *self.ranges) if n))

    def key_value(self, item: dict, name: str, is_range: bool):
        """The item's attribute as an index key value, or None when the item is not indexed by it."""
        kind = self.types[name]
        av = item.get(name)
        if av is None or len(av) != 1:
            return None
        value = av.get(kind)
        if value is None or value == "":
            return None
        if kind != "N":
            size = len(value.encode()) if kind == "S" else len(values.binary_of(value))
            if size > (values.MAX_RANGE_KEY_BYTES if is_range else values.MAX_HASH_KEY_BYTES):
                return None
        return av

    def partition_key(self, item: dict) -> dict | None:
        """The index partition key value of an item (a multi-attribute key's composite value)."""
        parts = [self.key_value(item, name, False) for name in self.hashes]
        if None in parts:
            return None
        return parts[0] if len(parts) == 1 else values.composite_key(parts)

    def entry(self, item: dict, base_key: bytes) -> tuple[bytes, int] | None:
        """(entry storage key, token of the index partition key), or None when not indexed: an item
        is indexed only if it has every key attribute of the index."""
        pk = self.partition_key(item)
        if pk is None:
            return None
        token = values.token_of(pk)
        sort_key = [self.key_value(item, name, True) for name in self.ranges]
        if None in sort_key:
            return None
        return values.partition_prefix(pk, token) + values.sort_components(sort_key) + base_key, token

    def project(self, item: dict) -> dict:
        if self.projection_type == "ALL":
            return item
        projected = {n: item[n] for n in self.key_names if n in item}
        for name in self.non_key:
            if name in item:
                projected[name] = item[name]
        return projected

    def last_key(self, item: dict) -> dict:
        return {n: item[n] for n in self.key_names}


class Plan:
    """The compiled indexes of one schema, cached on the schema object."""

    __slots__ = ("lsis", "gsis", "by_name", "key_checks")

    def __init__(self, schema):
        types = {d["AttributeName"]: d["AttributeType"] for d in schema.attribute_definitions}
        self.lsis = [Index(schema, d, False, types) for d in schema.local_indexes]
        self.gsis = [Index(schema, d, True, types) for d in schema.global_indexes]
        self.by_name = {i.name: i for i in self.lsis + self.gsis}
        checks = []
        # DynamoDB names the alphabetically first index an offending attribute keys.
        for index in sorted(self.lsis + self.gsis, key=lambda i: i.name):
            for name in index.hashes + index.ranges:
                checks.append((name, index.types[name], index.name, name in index.ranges))
        self.key_checks = checks


def write_units(schema, old: dict | None, new: dict | None) -> tuple[dict, dict]:
    """({GSI name: units}, {LSI name: units}) one write spends on the indexes it touches.

    DynamoDB's rules: putting an item into an index, or taking it out, is one index
    write; changing its index key is two (delete and put); changing only projected
    attributes is one; an index the item is in neither before nor after costs nothing.
    Each index write is charged by the size of the projected item, 1 KB a unit."""
    plan = plan_of(schema)
    spent = ({}, {})
    for bucket, group in ((spent[0], plan.gsis), (spent[1], plan.lsis)):
        for index in group:
            before = index.entry(old, b"") if old else None
            after = index.entry(new, b"") if new else None
            if before is None and after is None:
                continue
            old_entry = index.project(old) if before is not None else None
            new_entry = index.project(new) if after is not None else None
            if before is None or after is None:
                units = capacity.write_units(values.item_size(old_entry or new_entry))
            elif before[0] != after[0]:
                units = (capacity.write_units(values.item_size(old_entry))
                         + capacity.write_units(values.item_size(new_entry)))
            elif old_entry != new_entry:
                units = capacity.write_units(max(values.item_size(old_entry), values.item_size(new_entry)))
            else:
                continue
            bucket[index.name] = units
    return spent


def plan_of(schema) -> Plan:
    plan = schema.__dict__.get("_index_plan")
    if plan is None:
        plan = schema.__dict__["_index_plan"] = Plan(schema)
    return plan


def index_storage_id(table_id: str, definition: dict, is_global: bool) -> str:
    return f"{table_id}.{'g' if is_global else 'l'}{definition['IndexId']}"


def storage_table_ids(svc) -> set[str]:
    """Storage tables this module owns on the shard: every index, and the GSI outbox generations."""
    ids = set()
    for schema in svc.catalog.tables.values():
        for definition in schema.local_indexes:
            ids.add(index_storage_id(schema.table_id, definition, False))
        for definition in schema.global_indexes:
            ids.add(index_storage_id(schema.table_id, definition, True))
    if svc.storage is not None:
        ids.update(t for t in svc.storage.table_ids() if t.startswith(OUTBOX_PREFIX))
    return ids


# ====================================================================== write path

def check_item(schema, item: dict, by_update: bool = False) -> None:
    """Rejects an item whose index key attributes have the wrong type or an empty value.

    An empty value is EmptyKeyValue: input validation, never a transaction's cancellation
    reason; ``by_update`` (the item is an UpdateExpression's result) words it as DynamoDB does.
    """
    for name, expected, index_name, is_range in plan_of(schema).key_checks:
        av = item.get(name)
        if av is None:
            continue
        (kind, value), = av.items()
        if kind != expected:
            raise ValidationException("One or more parameter values were invalid: Type mismatch for Index Key "
                                      f"{name} Expected: {expected} Actual: {kind} IndexName: {index_name}")
        if kind != "N":
            if value == "":
                kind_word = "string" if kind == "S" else "binary"
                if by_update:
                    raise EmptyKeyValue(
                        "One or more parameter values are not valid. The update expression attempted to update a "
                        "secondary index key to a value that is not supported. The AttributeValue for a key "
                        f"attribute cannot contain an empty {kind_word} value.")
                raise EmptyKeyValue(
                    "One or more parameter values are not valid. A value specified for a secondary index key is "
                    f"not supported. The AttributeValue for a key attribute cannot contain an empty {kind_word} "
                    f"value. IndexName: {index_name}, IndexKey: {name}")
            size = len(value.encode()) if kind == "S" else len(values.binary_of(value))
            if is_range and size > values.MAX_RANGE_KEY_BYTES:
                raise ValidationException("One or more parameter values were invalid: Aggregated size of all range "
                                          "keys has exceeded the size limit of 1024 bytes")
            if not is_range and size > values.MAX_HASH_KEY_BYTES:
                raise ValidationException("One or more parameter values were invalid: Size of hashkey has "
                                          "exceeded the maximum size limit of2048 bytes")


def after_write(svc, schema, key: bytes, old: dict | None, new: dict | None) -> None:
    """Index maintenance for one applied base write; runs in the same step as the write.

    A new item with a bad index key is refused after the fact: the base write
    is undone (in the same step, so nothing saw it) and ValidationException
    raised, leaving table and indexes as they were.
    """
    if new is not None:
        try:
            check_item(schema, new)
        except ValidationException:
            if old is None:
                svc.storage.delete(schema.table_id, key)
            else:
                svc.storage.put(schema.table_id, key, orjson.dumps(old))
            raise
    plan = plan_of(schema)
    storage = svc.storage
    for index in plan.lsis:
        old_entry = index.entry(old, key) if old is not None else None
        new_entry = index.entry(new, key) if new is not None else None
        if old_entry is not None and (new_entry is None or old_entry[0] != new_entry[0]):
            storage.delete(index.storage_id, old_entry[0])
        if new_entry is not None:
            storage.put(index.storage_id, new_entry[0], orjson.dumps(index.project(new)))
    if plan.gsis:
        state = state_of(svc)
        for touched in state.touch_sets.get(schema.table_id, ()):
            touched.add(key)
        for index in plan.gsis:
            _maintain_gsi(svc, state, index, key, old, new)


def _maintain_gsi(svc, state, index: Index, key: bytes, old, new) -> None:
    old_entry = index.entry(old, key) if old is not None else None
    new_entry = index.entry(new, key) if new is not None else None
    if old_entry is None and new_entry is None:
        return
    nshards = svc.nshards
    if old_entry is not None and new_entry is not None and old_entry[0] == new_entry[0]:
        projected_new = index.project(new)
        if index.project(old) == projected_new:
            return      # e.g. an update of an attribute this index does not project
        state.put_entry(routing.shard_of_token(new_entry[1], nshards), index.storage_id, new_entry[0],
                        orjson.dumps(projected_new))
        return
    if old_entry is not None:
        state.delete_entry(routing.shard_of_token(old_entry[1], nshards), index.storage_id, old_entry[0])
    if new_entry is not None:
        state.put_entry(routing.shard_of_token(new_entry[1], nshards), index.storage_id, new_entry[0],
                        orjson.dumps(index.project(new)))


def encode_put(storage_id: str, key: bytes, value: bytes) -> bytes:
    tid = storage_id.encode()
    return b"".join((bytes((_OP_PUT,)), _H.pack(len(tid)), tid, _I.pack(len(key)), key, _I.pack(len(value)), value))


def encode_delete(storage_id: str, key: bytes) -> bytes:
    tid = storage_id.encode()
    return b"".join((bytes((_OP_DELETE,)), _H.pack(len(tid)), tid, _I.pack(len(key)), key))


def decode_ops(payload: bytes):
    """(op, storage id, key, value or None) for each operation of a GSI_APPLY payload."""
    view = memoryview(payload)
    offset, end = 0, len(payload)
    while offset < end:
        op = payload[offset]
        (tlen,) = _H.unpack_from(payload, offset + 1)
        offset += 3
        tid = bytes(view[offset:offset + tlen]).decode()
        offset += tlen
        (klen,) = _I.unpack_from(payload, offset)
        offset += 4
        key = bytes(view[offset:offset + klen])
        offset += klen
        value = None
        if op == _OP_PUT:
            (vlen,) = _I.unpack_from(payload, offset)
            offset += 4
            value = bytes(view[offset:offset + vlen])
            offset += vlen
        yield op, tid, key, value


# ====================================================================== per-shard GSI state

class Sender:
    """Delivers one destination shard's GSI entry operations in order, one batch in flight."""

    def __init__(self, state: "IndexState", dest: int):
        self.state = state
        self.dest = dest
        self.pending: deque = deque()      # (seq, encoded op, durable)
        self.acked = 0                     # highest seq the destination has made durable
        self.wakeup = asyncio.Event()
        self.progress = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.sent_total = 0
        self.failures_total = 0

    def push(self, seq: int, op: bytes, durable: bool) -> None:
        self.pending.append((seq, op, durable))
        self.wakeup.set()
        if self.task is None or self.task.done():
            self.task = _spawn(self.run())

    async def run(self) -> None:
        svc = self.state.svc
        backoff = 0.02
        while True:
            if not self.pending or not self.state.ready or (svc.fabric is None and svc.nshards > 1):
                self.wakeup.clear()
                if not self.pending or not self.state.ready:
                    await self.wakeup.wait()
                else:
                    await asyncio.sleep(0.05)
                continue
            batch, size = [], 0
            for entry in self.pending:
                batch.append(entry)
                size += len(entry[1])
                if len(batch) >= MAX_BATCH_OPS or size >= MAX_BATCH_BYTES:
                    break
            try:
                await svc.submit_to(self.dest, GSI_APPLY, b"".join(e[1] for e in batch))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The destination is restarting (or failed): keep the batch and retry, in order.
                self.failures_total += 1
                log.debug("gsi updates to shard %d not delivered (%s); retrying", self.dest, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.02
            for _ in batch:
                self.pending.popleft()
            self.sent_total += len(batch)
            self.acked = batch[-1][0]
            if any(e[2] for e in batch):
                self.state.acknowledged(self.dest, self.acked)
            self.progress.set()
            self.progress.clear()

    async def wait_acked(self, seq: int) -> None:
        while self.acked < seq:
            await self.progress.wait()

    async def wait_below(self, count: int) -> None:
        while len(self.pending) > count:
            await self.progress.wait()


def _spawn(coro) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task


_TASKS: set = set()
_STATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def state_of(svc) -> "IndexState":
    state = _STATES.get(svc)
    if state is None:
        state = _STATES[svc] = IndexState(svc)
    return state


class IndexState:
    """This shard's GSI machinery: the outbox, the senders, running backfills."""

    def __init__(self, svc):
        self.svc = svc
        self.senders: dict[int, Sender] = {}
        self.ready = False                 # True once unacknowledged outbox entries are queued again
        self.generation = 0
        self.outbox_id: str | None = None
        self.counter = 0
        self.generation_max: dict[int, int] = {}      # dest -> highest durable seq in this generation
        self.old_generations: dict[str, dict[int, int]] = {}
        self.touch_sets: dict[str, list] = {}         # base table id -> sets of keys written during backfills
        self.backfills: dict[tuple, asyncio.Task] = {}
        self.drivers: dict[tuple, asyncio.Task] = {}
        self.started = False

    # ---------------------------------------------------------------- outbox

    def start(self) -> None:
        """Opens a fresh outbox generation and re-queues what older ones still owe."""
        self.started = True
        storage = self.svc.storage
        existing = sorted(t for t in storage.table_ids() if t.startswith(OUTBOX_PREFIX))
        last = max((int(t[len(OUTBOX_PREFIX):]) for t in existing), default=0)
        self._open_generation(last + 1)
        if existing:
            _spawn(self._replay(existing))
        else:
            self.ready = True

    def _open_generation(self, generation: int) -> None:
        self.generation = generation
        self.outbox_id = f"{OUTBOX_PREFIX}{generation:010d}"
        self.svc.storage.create_table(self.outbox_id)
        self.counter = 0
        self.generation_max = {}

    async def _replay(self, tables: list[str]) -> None:
        storage = self.svc.storage
        watermarks: dict[int, int] = {}
        owed: dict[int, list] = {}
        for table_id in tables:
            maxima: dict[int, int] = {}
            start = None
            while True:
                pairs = await storage.scan(table_id, start, None, start_exclusive=start is not None, limit=4096)
                if not pairs:
                    break
                for key, value in pairs:
                    dest = _H.unpack_from(key, 1)[0]
                    if key[:1] == b"w":
                        watermarks[dest] = max(watermarks.get(dest, 0), _Q.unpack(value)[0])
                    else:
                        seq = _Q.unpack_from(key, 3)[0]
                        owed.setdefault(dest, []).append((seq, value))
                        maxima[dest] = max(maxima.get(dest, 0), seq)
                start = pairs[-1][0]
            self.old_generations[table_id] = maxima
        resent = 0
        for dest, entries in owed.items():
            mark = watermarks.get(dest, 0)
            sender = self.sender(dest)
            sender.acked = max(sender.acked, mark)
            again = sorted(e for e in entries if e[0] > mark)
            resent += len(again)
            # Older generations' entries go before anything queued since the restart.
            sender.pending.extendleft((seq, op, True) for seq, op in reversed(again))
        self.ready = True
        for sender in self.senders.values():
            sender.wakeup.set()
            if sender.pending and (sender.task is None or sender.task.done()):
                sender.task = _spawn(sender.run())
        if resent:
            log.info("re-sending %d unacknowledged global index updates", resent)
        self._collect_generations()

    def sender(self, dest: int) -> Sender:
        sender = self.senders.get(dest)
        if sender is None:
            sender = self.senders[dest] = Sender(self, dest)
        return sender

    def _next_seq(self) -> int:
        self.counter += 1
        return (self.generation << 40) | self.counter

    def _send(self, dest: int, op: bytes, durable: bool) -> int:
        if not self.started:
            self.start()
        seq = self._next_seq()
        if durable:
            self.svc.storage.put(self.outbox_id, b"o" + _H.pack(dest) + _Q.pack(seq), op)
            self.generation_max[dest] = seq
        self.sender(dest).push(seq, op, durable)
        if self.counter >= ROTATE_OPS:
            self.old_generations[self.outbox_id] = self.generation_max
            self._open_generation(self.generation + 1)
        return seq

    def put_entry(self, dest: int, storage_id: str, key: bytes, value: bytes, durable: bool = True) -> int:
        if dest == self.svc.shard_id:
            self.svc.storage.put(storage_id, key, value)
            return 0
        return self._send(dest, encode_put(storage_id, key, value), durable)

    def delete_entry(self, dest: int, storage_id: str, key: bytes) -> int:
        if dest == self.svc.shard_id:
            self.svc.storage.delete(storage_id, key)
            return 0
        return self._send(dest, encode_delete(storage_id, key), True)

    def acknowledged(self, dest: int, seq: int) -> None:
        """Records that ``dest`` holds everything up to ``seq``, so a restart need not re-send it."""
        if self.outbox_id is not None and self.svc.storage.has_table(self.outbox_id):
            self.svc.storage.put(self.outbox_id, b"w" + _H.pack(dest), _Q.pack(seq))
        self._collect_generations()

    def _collect_generations(self) -> None:
        """Drops outbox generations whose every entry has been acknowledged."""
        for table_id, maxima in list(self.old_generations.items()):
            if all(self.sender(d).acked >= seq for d, seq in maxima.items()):
                del self.old_generations[table_id]
                if self.svc.storage.has_table(table_id):
                    self.svc.storage.drop_table(table_id)

    def stats(self) -> dict:
        return {"gsi_pending": sum(len(s.pending) for s in self.senders.values()),
                "gsi_sent_total": sum(s.sent_total for s in self.senders.values()),
                "gsi_send_failures_total": sum(s.failures_total for s in self.senders.values())}


def catalog_changed(svc) -> None:
    """Called whenever this shard's catalog view changed (and at start)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return      # no loop (offline tools): nothing to deliver or drive
    state = state_of(svc)
    if not state.started:
        state.start()
    if svc.shard_id != 0:
        return
    for schema in svc.catalog.tables.values():
        for definition in schema.global_indexes:
            if definition.get("IndexStatus") == "CREATING":
                key = (schema.table_id, definition["IndexId"])
                task = state.drivers.get(key)
                if task is None or task.done():
                    state.drivers[key] = _spawn(_drive_backfill(svc, schema.name, schema.table_id,
                                                                definition["IndexId"]))


# ====================================================================== fabric verbs

@fabric_verb(GSI_APPLY)
async def apply_gsi_updates(svc, src: int, payload: bytes) -> bytes:
    storage = svc.storage
    reloaded = False
    for op, storage_id, key, value in decode_ops(payload):
        if not storage.has_table(storage_id):
            if not reloaded:
                # The sender may know a new index before our catalog does; catalog.json already has it.
                svc.load_catalog()
                reloaded = True
            if not storage.has_table(storage_id):
                continue        # the index (or its table) was deleted: nothing to maintain
        if op == _OP_PUT:
            storage.put(storage_id, key, value)
        else:
            storage.delete(storage_id, key)
    await storage.sync()
    return b""


@fabric_verb(INDEX_STATS)
async def index_stats(svc, src: int, payload: bytes) -> bytes:
    storage = svc.storage
    return orjson.dumps([list(storage.table_stats(t)) if storage.has_table(t) else [0, 0]
                         for t in orjson.loads(payload)])


@fabric_verb(GSI_BACKFILL)
async def backfill(svc, src: int, payload: bytes) -> bytes:
    request = orjson.loads(payload)
    state = state_of(svc)
    schema = svc.catalog.tables.get(request["table"])
    if schema is None or schema.table_id != request["table_id"]:
        return b""
    key = (schema.table_id, request["index_id"])
    task = state.backfills.get(key)
    if task is None or task.done():
        task = state.backfills[key] = _spawn(_backfill_shard(svc, state, request["table"], schema.table_id,
                                                             request["index_id"]))
    await asyncio.shield(task)
    return b""


def _find_gsi(svc, table: str, table_id: str, index_id: str) -> tuple | None:
    schema = svc.catalog.tables.get(table)
    if schema is None or schema.table_id != table_id:
        return None
    for index in plan_of(schema).gsis:
        if index.index_id == index_id:
            return schema, index
    return None


async def _backfill_shard(svc, state: IndexState, table: str, table_id: str, index_id: str) -> None:
    """Indexes this shard's items of the base table, while writes go on."""
    touched: set = set()
    state.touch_sets.setdefault(table_id, []).append(touched)
    last_seq: dict[int, int] = {}
    count = 0
    started = time.monotonic()
    try:
        start = None
        while True:
            touched.clear()
            found = _find_gsi(svc, table, table_id, index_id)
            if found is None:
                return
            pairs = await svc.storage.scan(table_id, start, None, start_exclusive=start is not None,
                                           limit=BACKFILL_CHUNK)
            if not pairs:
                break
            # Nothing awaits from here to the enqueueing: an item written since the scan read it
            # was already sent by its own write (with its true old image), so it is skipped.
            found = _find_gsi(svc, table, table_id, index_id)
            if found is None:
                return
            _, index = found
            for base_key, raw in pairs:
                if base_key in touched:
                    continue
                item = orjson.loads(raw)
                entry = index.entry(item, base_key)
                if entry is None:
                    continue
                dest = routing.shard_of_token(entry[1], svc.nshards)
                seq = state.put_entry(dest, index.storage_id, entry[0], orjson.dumps(index.project(item)),
                                      durable=False)
                if seq:
                    last_seq[dest] = seq
                count += 1
            start = pairs[-1][0]
            for dest in list(last_seq):
                await state.sender(dest).wait_below(BACKFILL_HIGH_WATER)
        for dest, seq in last_seq.items():
            await state.sender(dest).wait_acked(seq)
        await svc.storage.sync()
        log.info("backfilled %d entries of index %s.%s in %.2fs", count, table, index_id,
                 time.monotonic() - started)
    finally:
        sets = state.touch_sets.get(table_id, [])
        if touched in sets:
            sets.remove(touched)
        if not sets:
            state.touch_sets.pop(table_id, None)


async def _drive_backfill(svc, table: str, table_id: str, index_id: str) -> None:
    """On the catalog coordinator: backfill on every shard, then mark the index ACTIVE."""
    payload = orjson.dumps({"table": table, "table_id": table_id, "index_id": index_id})
    delay = 0.05
    while True:
        found = _find_gsi(svc, table, table_id, index_id)
        if found is None or found[1].status != "CREATING":
            return
        try:
            if svc.fabric is None and svc.nshards > 1:
                raise RuntimeError("fabric not started")
            await svc.broadcast(GSI_BACKFILL, payload)
            await svc.change_catalog(b"update", orjson.dumps({"action": "activate", "table": table,
                                                              "table_id": table_id, "index_id": index_id}))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A shard restarted mid-way: every shard's part is idempotent, so start over.
            log.info("backfill of %s.%s interrupted (%s); retrying", table, index_id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def index_totals(svc, schema) -> dict[str, tuple[int, int]]:
    """(item count, bytes) of every index of the table, summed over shards."""
    plan = plan_of(schema)
    indexes = plan.lsis + plan.gsis
    if not indexes:
        return {}
    ids = [i.storage_id for i in indexes]
    replies = await svc.broadcast(INDEX_STATS, orjson.dumps(ids))
    totals = {i.name: [0, 0] for i in indexes}
    for reply in replies:
        for index, (count, size) in zip(indexes, orjson.loads(reply)):
            totals[index.name][0] += count
            totals[index.name][1] += size
    return {name: (c, s) for name, (c, s) in totals.items()}


# ====================================================================== read path

def index_of(schema, name) -> Index:
    index = plan_of(schema).by_name.get(name) if isinstance(name, str) else None
    if index is None:
        raise ValidationException(f"The table does not have the specified index: {name}")
    return index


def check_request(request: dict, schema, op: str) -> Index:
    """Validates a Query/Scan naming an index, on the acceptor, before any shard is asked."""
    index = index_of(schema, request.get("IndexName"))
    if index.is_global:
        if request.get("ConsistentRead") is True:
            raise ValidationException("Consistent reads are not supported on global secondary indexes")
        if index.status == "CREATING":
            raise ValidationException(f"Cannot read from backfilling global secondary index: {index.name}")
        if request.get("Select") == "ALL_ATTRIBUTES" and index.projection_type != "ALL":
            raise ValidationException("One or more parameter values were invalid: Select type ALL_ATTRIBUTES is "
                                      f"not supported for global secondary index {index.name} because its "
                                      "projection type is not ALL")
    select_of(request, op, "ALL_PROJECTED_ATTRIBUTES")
    return index


def _index_range(pk: dict, range_op: str | None, operands: list, sort_prefix: bytes = b"") -> tuple[bytes, bytes | None]:
    """[start, end) of the entry keys a key condition selects in one index partition; ``sort_prefix``:
    the encoded sort key attributes a multi-attribute key condition fixes by equality, before the
    one the operator applies to."""
    prefix = values.partition_prefix(pk) + sort_prefix
    end = _after(prefix)
    if range_op is None:
        return prefix, end
    encoded = [prefix + _escape(values.encode_sort_component(v)) for v in operands]
    if range_op == "EQ":
        return encoded[0], _after(encoded[0])
    if range_op == "LT":
        return prefix, encoded[0]
    if range_op == "LE":
        return prefix, _after(encoded[0])
    if range_op == "GT":
        return _after(encoded[0]), end
    if range_op == "GE":
        return encoded[0], end
    if range_op == "BETWEEN":
        return encoded[0], _after(encoded[1])
    if range_op == "BEGINS_WITH":
        body = prefix + values.encode_sort_component(operands[0]).replace(b"\x00", b"\x00\xff")
        return body, _successor(body) or end
    raise ValidationException(f"Unsupported key condition operator {range_op}")


def _start_entry(schema, index: Index, exclusive) -> tuple[dict, bytes]:
    """(index partition key, entry key) of an index ExclusiveStartKey."""
    if not isinstance(exclusive, dict) or set(exclusive) != set(index.key_names):
        raise ValidationException("The provided starting key is invalid")
    types = {**index.types, schema.hash_key: schema.hash_type}
    if schema.range_key:
        types[schema.range_key] = schema.range_type
    for name, kind in types.items():
        av = exclusive[name]
        if not isinstance(av, dict) or len(av) != 1 or kind not in av or not isinstance(av[kind], str):
            raise ValidationException("The provided key element does not match the schema")
        values.validate_value(av)
    base_key = values.encode_key(exclusive[schema.hash_key],
                                 exclusive[schema.range_key] if schema.range_key else None)
    entry = index.entry(exclusive, base_key)
    if entry is None:
        raise ValidationException("The provided starting key is invalid")
    return index.partition_key(exclusive), entry[0]


class _Reader:
    """Turns index entries into response items: base fetch, filter, projection, counting."""

    def __init__(self, svc, schema, index: Index, prepared, select: str, request: dict):
        self.svc = svc
        self.schema = schema
        self.index = index
        self.filter = prepared.filter
        self.projection = prepared.projection
        self.count_only = select == "COUNT"
        partial = index.projection_type != "ALL"
        # An LSI reads unprojected attributes from the base item (same shard), as DynamoDB does.
        self.from_base = (not index.is_global and partial and
                          (select == "ALL_ATTRIBUTES" or self.projection is not None or self.filter is not None))
        # fetched only for the filter: the answer is still the index's projection of the item
        self.reproject = self.from_base and select == "ALL_PROJECTED_ATTRIBUTES" and self.projection is None
        # DynamoDB charges the table a read of each whole item it fetches for attributes the index
        # does not hold: every item for ALL_ATTRIBUTES, or a projection naming such an attribute.
        self.charged_fetch = self.from_base and (select == "ALL_ATTRIBUTES" or _names_unprojected(
            index, self.projection))
        self.consistent = bool(request.get("ConsistentRead", False))
        self.fetch_units = 0.0

    async def shape(self, pairs) -> tuple[list, int]:
        items = []
        count = 0
        schema = self.schema
        for _, raw in pairs:
            item = None
            if self.from_base:
                projected = orjson.loads(raw)
                base = await self.svc.storage.get(schema.table_id, values.encode_key(
                    projected[schema.hash_key], projected.get(schema.range_key) if schema.range_key else None))
                if base is None:
                    continue
                raw = base
                if self.charged_fetch:
                    self.fetch_units += capacity.read_units(values.item_size(orjson.loads(raw)), self.consistent)
            if self.filter is not None:
                item = orjson.loads(raw)
                if not self.filter(item):
                    continue
            count += 1
            if self.count_only:
                continue
            if self.projection is not None:
                items.append(self.projection(item if item is not None else orjson.loads(raw)))
            elif self.reproject:
                items.append(self.index.project(item))
            else:
                items.append(raw)
        return items, count


def _names_unprojected(index: Index, projection) -> bool:
    """Whether a bound ProjectionExpression names a top-level attribute the index does not hold."""
    paths = getattr(getattr(projection, "__self__", None), "paths", None)
    if not paths or index.projection_type == "ALL":
        return False
    held = set(index.key_names) | set(index.non_key)
    return any(path[0] not in held for path in paths)


def _consumed(request: dict, schema, index: Index, page, fetched: float = 0.0) -> dict | None:
    """Query on an index: its units for the entries read, the table's for the items an LSI
    query fetched from it (``fetched``)."""
    mode = capacity.requested_mode(request)
    if mode == "NONE":
        return None
    units = capacity.read_units(page.size(), bool(request.get("ConsistentRead", False)))
    spent = {index.name: units}
    return capacity.consumed(mode, schema.name, fetched, **{"gsis" if index.is_global else "lsis": spent})


async def query_index(svc, request: dict, schema, prepared) -> bytes:
    """Query with IndexName, on the shard owning the index partition."""
    index = check_request(request, schema, "Query")
    select = select_of(request, "Query", "ALL_PROJECTED_ATTRIBUTES")
    limit = limit_of(request)
    forward = request.get("ScanIndexForward", True)
    if not isinstance(forward, bool):
        raise ValidationException("ScanIndexForward must be a boolean")
    pk, range_op, operands = prepared.key_condition
    start, end = _index_range(pk, range_op, operands, prepared.sort_prefix)
    start_exclusive = False
    exclusive = request.get("ExclusiveStartKey")
    if exclusive is not None:
        start_pk, key = _start_entry(schema, index, exclusive)
        if values.compare_key(start_pk, pk) != 0:
            raise ValidationException("The provided starting key is invalid: The provided key element does not "
                                      "match the schema")
        if forward and key >= start:
            start, start_exclusive = key, True
        elif not forward and (end is None or key < end):
            end = key
    page = await read_page(svc.storage, index.storage_id, start, end, start_exclusive=start_exclusive,
                           reverse=not forward, limit=limit or UNBOUNDED, partition=values.partition_prefix(pk))
    pairs = page.pairs
    reader = _Reader(svc, schema, index, prepared, select, request)
    items, count = await reader.shape(pairs)
    response = {"Count": count, "ScannedCount": len(pairs)}
    if select != "COUNT":
        response["Items"] = [orjson.Fragment(i) if isinstance(i, bytes) else i for i in items]
    if pairs and ((limit is not None and len(pairs) >= limit) or page.full):
        response["LastEvaluatedKey"] = index.last_key(orjson.loads(pairs[-1][1]))
    consumed = _consumed(request, schema, index, page, reader.fetch_units)
    if consumed is not None:
        response["ConsumedCapacity"] = consumed
    return orjson.dumps(response)


def index_start_key(svc, request: dict, schema, exclusive) -> tuple[dict, dict]:
    """A Scan's ExclusiveStartKey on an index as (pk, sk) with encode_key(pk, sk) == the entry key.

    The sort part is handed back as a B value holding the rest of the entry
    key, so the Scan code can treat index entries like base items.
    """
    index = check_request(request, schema, "Scan")
    pk, key = _start_entry(schema, index, exclusive)
    rest = key[len(values.partition_prefix(pk)):]
    return pk, {"B": base64.b64encode(rest).decode()}


async def scan_index_page(svc, part: dict, schema, prepared) -> bytes:
    """One shard's part of a Scan page over an index (see executor/query.py scan_page)."""
    request = part["request"]
    index = index_of(schema, request.get("IndexName"))
    select = "COUNT" if part["count_only"] else select_of(request, "Scan", "ALL_PROJECTED_ATTRIBUTES")
    page = await read_part(svc, index.storage_id, part)
    pairs = page.pairs
    items, count = await _Reader(svc, schema, index, prepared, select, request).shape(pairs)
    return part_reply(page, part, count, index.last_key(orjson.loads(pairs[-1][1])) if pairs else None,
                      b",".join(i if isinstance(i, bytes) else orjson.dumps(i) for i in items))
