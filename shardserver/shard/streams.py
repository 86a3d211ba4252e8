"""DynamoDB Streams on a shard: stream definitions, record writing, reading and trimming.

A table's streams live in its catalog entry (``TableSchema.streams``, oldest
first; only the last may be enabled).  Each stream has one *stream shard*, as
a new table's stream has in DynamoDB, merged from every server shard's part:
a record is written by the item's owner in the same step as the item
(``after_write``) and kept there; GetRecords, on the acceptor, reads every
server shard's part (``read_records``) and merges them by sequence number
(``merge_parts``).  The stream shard never splits and never closes while the
stream is enabled; a disabled stream's shard is closed and stays readable for
the retention period (24 h by default, as in DynamoDB), after which the
catalog coordinator forgets the stream and every shard drops its storage.

Records are kept in hidden storage tables, one per stream per shard per
span of time (a *generation*, id ``<table id>.s<created ms>.g<first seq>``),
keyed by the record's sequence number as 8 big-endian bytes and valued by the
record's JSON, so they go through the memtable, commit log and SSTables like
items and survive a restart by replay (docs/streams_format.md).  Sequence
numbers are per shard, increasing across all of its streams and across
restarts: the wall clock in microseconds times 1000, or the last one plus one
if that is not larger, moved up to the shard's own residue modulo the shard
count, so that no two server shards ever give the same number and one number
orders a whole stream; at start the shard also reads the largest one it
stored (``recover``).  Their time part dates a record, so trimming needs no
decoding: a background pass drops the generations past the retention horizon
whole, with no tombstone per record.

This module never formats wire errors and reaches other shards only through
``svc.change_catalog``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import secrets
import struct
import time
from datetime import datetime, timezone

import orjson

from shardserver.shard import values
from shardserver.shard.catalog import REGION

log = logging.getLogger("shardserver.streams")

VIEW_TYPES = ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY")
SEQUENCE_DIGITS = 21            # sequence numbers are zero-padded: numeric and string order agree
SLOTS_PER_MICROSECOND = 1000
TTL_IDENTITY = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}

_SEQ = struct.Struct(">Q")


# ====================================================================== definitions

def label_of(created_ms: int) -> str:
    """DynamoDB's stream label: the creation time, ISO 8601 with milliseconds (UTC)."""
    moment = datetime.fromtimestamp(created_ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created_ms % 1000:03d}"


def new_stream(view_type: str, created_ms: int, existing: list) -> dict:
    """A new stream definition; its label is unique among the table's ``existing`` streams."""
    if existing:
        created_ms = max(created_ms, max(s["created_ms"] for s in existing) + 1)
    return {"label": label_of(created_ms), "view_type": view_type, "created_ms": created_ms,
            "disabled_ms": None}


def storage_prefix(schema, stream: dict) -> str:
    """What the ids of a stream's storage tables (one per generation) start with."""
    return f"{schema.table_id}.s{stream['created_ms']}.g"


def generation_id(prefix: str, first_seq: int) -> str:
    return f"{prefix}{first_seq}"


def generation_seconds(retention_s: float) -> int:
    """How long one generation table takes records: a 24th of the retention, at most an hour."""
    return int(max(1, min(3600, retention_s // 24)))


def generations(svc, prefix: str) -> list[tuple[int, str]]:
    """(first sequence number, storage id) of a stream's generation tables on this shard, oldest first."""
    found = []
    for table_id in svc.storage.table_ids():
        if table_id.startswith(prefix):
            try:
                found.append((int(table_id[len(prefix):]), table_id))
            except ValueError:
                continue
    found.sort()
    return found


def storage_table_ids(svc) -> set[str]:
    """Storage tables of every stream of every table (enabled or still readable, the table deleted or not)."""
    prefixes = tuple(storage_prefix(schema, stream) for schema in schemas_of(svc.catalog) for stream in schema.streams)
    if not prefixes or svc.storage is None:
        return set()
    return {table_id for table_id in svc.storage.table_ids() if table_id.startswith(prefixes)}


def stream_arn(schema, stream: dict) -> str:
    return f"{schema.arn}/stream/{stream['label']}"


def shard_id_of(stream: dict, index: int = 0) -> str:
    """A stream shard's id (37 characters): the stream's creation time and the shard's number.

    A stream has the one shard number 0; another number names no shard (an
    error message may still need its id).
    """
    return f"shardId-{stream['created_ms']:020d}-{index:08x}"


def shard_index_of(stream: dict, shard_id: str) -> int | None:
    """0 if ``shard_id`` is the stream's one shard, else None."""
    return 0 if shard_id == shard_id_of(stream) else None


def sequence_text(seq: int) -> str:
    return f"{seq:0{SEQUENCE_DIGITS}d}"


def sequence_at(ms: float) -> int:
    """The first sequence number a record written at ``ms`` (epoch milliseconds) could have."""
    return int(ms * 1000) * SLOTS_PER_MICROSECOND


def retention_of(svc) -> float:
    """Seconds a record (and a disabled stream) stays readable: ``--streams-retention-in-s``."""
    return float(svc.config.streams_retention_in_s)


def horizon_sequence(retention_s: float) -> int:
    """Records with a sequence number below this are past the retention period (trimmed)."""
    return sequence_at((time.time() - retention_s) * 1000)


def stream_status(stream: dict) -> str:
    return "ENABLED" if stream.get("disabled_ms") is None else "DISABLED"


def ending_sequence(stream: dict) -> int | None:
    """The last sequence number a closed (disabled) stream shard can hold."""
    if stream.get("disabled_ms") is None:
        return None
    return max(sequence_at(stream["disabled_ms"]), sequence_at(stream["created_ms"]))


def encode_key(seq: int) -> bytes:
    return _SEQ.pack(seq)


def decode_key(key: bytes) -> int:
    return _SEQ.unpack(key)[0]


# ====================================================================== per-shard state

class StreamState:
    """A shard's sequence counter and stream counters."""

    def __init__(self, svc):
        self.svc = svc
        self.last_seq = 0
        self.generation_span = generation_seconds(retention_of(svc)) * 1_000_000 * SLOTS_PER_MICROSECOND
        self.open_generations: dict[str, tuple[str, int]] = {}    # prefix -> (storage id, end sequence)
        self.records_written_total = 0
        self.records_read_total = 0
        self.records_trimmed_total = 0
        self.trim_task: asyncio.Task | None = None

    def next_seq(self) -> int:
        """The next sequence number: at least the clock's and above the last, and this shard's own.

        Shard s of N takes only numbers congruent to s modulo N, so numbers are
        unique across server shards and order the merged stream shard.
        """
        seq = time.time_ns() // 1000 * SLOTS_PER_MICROSECOND
        if seq <= self.last_seq:
            seq = self.last_seq + 1
        seq += (self.svc.shard_id - seq) % self.svc.nshards
        self.last_seq = seq
        return seq

    def generation_for(self, prefix: str, seq: int, floor: int) -> str:
        """The storage table a record numbered ``seq`` goes to, created when a generation starts.

        ``floor`` is above every sequence number this shard gave before: a new
        generation's first number is at least that, and it takes numbers up to
        the end of its span only, so each generation holds keys below the next
        one's first number, whatever spans earlier runs used.
        """
        storage = self.svc.storage
        current = self.open_generations.get(prefix)
        if current is not None and seq < current[1] and storage.has_table(current[0]):
            return current[0]
        window = seq - seq % self.generation_span
        table_id = generation_id(prefix, max(window, floor))
        if not storage.has_table(table_id):
            storage.create_table(table_id)      # once a generation: blocks on an fsync, like any table creation
        self.open_generations[prefix] = (table_id, window + self.generation_span)
        return table_id

    def stats(self) -> dict:
        return {"stream_records_written_total": self.records_written_total,
                "stream_records_read_total": self.records_read_total,
                "stream_records_trimmed_total": self.records_trimmed_total}


def state_of(svc) -> StreamState:
    state = getattr(svc, "_stream_state", None)
    if state is None:
        state = svc._stream_state = StreamState(svc)
    return state


async def recover(svc) -> None:
    """After the commit-log replay: continue above every sequence number this shard stored."""
    state = state_of(svc)
    for schema in schemas_of(svc.catalog):
        for stream in schema.streams:
            for _, table_id in reversed(generations(svc, storage_prefix(schema, stream))):
                last = await svc.storage.scan(table_id, None, None, reverse=True, limit=1)
                if last:        # the newest generation holding a record holds the stream's last one
                    state.last_seq = max(state.last_seq, decode_key(last[0][0]))
                    break


# ====================================================================== write path

def after_write(svc, schema, key: bytes, old: dict | None, new: dict | None, by_ttl: bool = False) -> None:
    """Appends the stream record of one applied write (same step as the write, nothing awaited).

    A write that changed nothing (a PutItem of the identical item, a delete of
    a missing item) leaves no record, as in DynamoDB.
    """
    if old is None:
        if new is None:
            return
        event = "INSERT"
    elif new is None:
        event = "REMOVE"
    elif old == new or _canonical(old) == _canonical(new):
        return
    else:
        event = "MODIFY"
    stream = schema.active_stream
    view = stream["view_type"]
    item = new if new is not None else old
    keys = {name: item[name] for name in schema.key_names}
    state = state_of(svc)
    floor = state.last_seq + 1
    seq = state.next_seq()
    body = {"ApproximateCreationDateTime": seq // (SLOTS_PER_MICROSECOND * 1_000_000), "Keys": keys}
    size = values.item_size(keys)
    if new is not None and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["NewImage"] = new
        size += values.item_size(new)
    if old is not None and view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["OldImage"] = old
        size += values.item_size(old)
    body["SequenceNumber"] = sequence_text(seq)
    body["SizeBytes"] = size
    body["StreamViewType"] = view
    record = {"eventID": secrets.token_hex(16), "eventName": event, "eventVersion": "1.1",
              "eventSource": "aws:dynamodb", "awsRegion": REGION, "dynamodb": body}
    if by_ttl:
        record["userIdentity"] = TTL_IDENTITY
    table_id = state.generation_for(storage_prefix(schema, stream), seq, floor)
    svc.storage.put(table_id, encode_key(seq), orjson.dumps(record))
    state.records_written_total += 1


_SETS = ("SS", "NS", "BS")


def _canonical(value):
    """An item or attribute value with set members in a fixed order (sets are unordered)."""
    if isinstance(value, dict):
        if len(value) == 1:
            (kind, inner), = value.items()
            if kind in _SETS and isinstance(inner, list):
                if kind == "NS":
                    return {kind: sorted(inner, key=values.to_decimal)}
                return {kind: sorted(inner)}
            if kind == "N" and isinstance(inner, str):
                return {kind: values.to_decimal(inner)}
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


# ====================================================================== read path

def read_position(svc) -> int:
    """The first sequence number a record written on this shard from now on can have.

    Above both the last one assigned and the clock's, so that an iterator at an
    idle stream's end does not look trimmed a day later.
    """
    last = state_of(svc).last_seq
    return max(last + 1, time.time_ns() // 1000 * SLOTS_PER_MICROSECOND)


async def read_records(svc, prefix: str, start: int, limit: int,
                       max_bytes: int) -> tuple[list[tuple[int, bytes]], int, bool]:
    """This server shard's part of a stream from sequence number ``start`` on, in order.

    ``prefix`` is the stream's ``storage_prefix``.  Returns ((sequence number,
    record JSON) of at most ``limit`` records and about ``max_bytes``, *covered*,
    whether the end of what is written so far was reached): every record of
    this shard numbered in [start, covered) is among those returned, and at the
    end no later record of this shard will be numbered below covered.
    """
    state = state_of(svc)
    high = state.last_seq           # every record up to here is in storage already ...
    following = read_position(svc)  # ... and every later one will be numbered from here on
    if start > high:
        return [], max(start, following), True
    found = generations(svc, prefix)
    records: list[tuple[int, bytes]] = []
    size = 0
    for i, (_, table_id) in enumerate(found):
        if i + 1 < len(found) and found[i + 1][0] <= start:
            continue        # every key of this generation is below the next one's first number
        pairs = await svc.storage.scan(table_id, encode_key(start), encode_key(high + 1),
                                       limit=limit - len(records), max_bytes=max_bytes - size)
        if pairs:
            records += [(decode_key(key), value) for key, value in pairs]
            size += sum(len(value) for _, value in pairs)
            if len(records) >= limit or size >= max_bytes:
                return records, records[-1][0] + 1, False
    return records, following, True


def merge_parts(parts: list, limit: int, max_bytes: int) -> tuple[list[bytes], int, bool]:
    """One GetRecords page of the stream shard from every server shard's ``read_records``.

    ``parts`` are the (records, covered, at end) of every server shard, all
    read from the same position.  Below the smallest *covered* (the bound)
    every record of every shard is known, and no record can appear there
    later; so the page is those records in sequence-number order, cut at
    ``limit`` records and once ``max_bytes`` is reached, and the next page
    starts just after its last record, or at the bound if it holds them all.
    Returns (record JSONs, where the next page starts, whether the stream
    shard was read to the end of what is written so far).

    Numbers given before they were unique across shards may tie; a page is
    never cut between equal numbers (it takes a whole tie group that would
    start it, beyond ``limit`` if need be), so none of them is skipped.
    """
    bound = min(covered for _, covered, _ in parts)
    runs = [[r for r in records if r[0] < bound] if covered > bound else records
            for records, covered, _ in parts]
    complete = all(at_end for _, _, at_end in parts) and sum(map(len, runs)) == sum(len(p[0]) for p in parts)
    merged = list(heapq.merge(*runs, key=_sequence)) if len(runs) > 1 else runs[0]
    count = size = 0
    while count < len(merged) and count < limit and size < max_bytes:
        size += len(merged[count][1])
        count += 1
    if count < len(merged):
        while count and merged[count - 1][0] == merged[count][0]:
            count -= 1                  # (old data) not between equal numbers
        if not count:
            count = 1
            while count < len(merged) and merged[count][0] == merged[0][0]:
                count += 1
    if count == len(merged):
        return [value for _, value in merged], bound, complete
    return [value for _, value in merged[:count]], merged[count - 1][0] + 1, False


def _sequence(record: tuple[int, bytes]) -> int:
    return record[0]


# ====================================================================== trimming

def start_trimming(svc, retention_s: float) -> None:
    state = state_of(svc)
    if state.trim_task is None:
        state.trim_task = asyncio.get_running_loop().create_task(_trim_loop(svc, retention_s))


async def stop_trimming(svc) -> None:
    state = state_of(svc)
    task, state.trim_task = state.trim_task, None
    if task is not None:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


def trim_interval(retention_s: float) -> float:
    return max(0.5, min(60.0, retention_s / 10))


async def _trim_loop(svc, retention_s: float) -> None:
    while True:
        await asyncio.sleep(trim_interval(retention_s))
        try:
            await trim(svc, retention_s)
            if svc.shard_id == 0:
                await expire_disabled_streams(svc, retention_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("streams: trimming failed; trying again later")


async def trim(svc, retention_s: float) -> int:
    """Drops this shard's generation tables whose records are all past the retention; how many records.

    A generation holds the keys below the next one's first sequence number, so
    every generation but the newest goes once the next one starts before the
    horizon; the newest once its last record is older.  Whole tables go: no
    tombstone per record.  Records of a partly expired generation are hidden
    by GetRecords until their table goes.
    """
    storage = svc.storage
    state = state_of(svc)
    horizon = horizon_sequence(retention_s)
    dropped = 0
    for schema in schemas_of(svc.catalog):
        for stream in schema.streams:
            found = generations(svc, storage_prefix(schema, stream))
            for i, (_, table_id) in enumerate(found):
                if i + 1 < len(found):
                    if found[i + 1][0] > horizon:
                        break
                else:
                    last = await storage.scan(table_id, None, None, reverse=True, limit=1)
                    if not storage.has_table(table_id) or (last and decode_key(last[0][0]) >= horizon):
                        break       # (the writer opens a new generation if this one goes)
                if storage.has_table(table_id):
                    dropped += storage.table_stats(table_id)[0]
                    storage.drop_table(table_id)
                await asyncio.sleep(0)
    state.records_trimmed_total += dropped
    return dropped


async def expire_disabled_streams(svc, retention_s: float) -> None:
    """On the catalog coordinator: forget streams disabled longer than the retention period."""
    if expired_streams(svc.catalog, retention_s, time.time()):
        await svc.change_catalog(b"expire-streams", str(retention_s).encode())


def _expired(stream: dict, limit_ms: float) -> bool:
    return stream.get("disabled_ms") is not None and stream["disabled_ms"] < limit_ms


def expired_streams(catalog, retention_s: float, now: float) -> bool:
    limit_ms = (now - retention_s) * 1000
    schemas = list(catalog.tables.values()) + list(catalog.deleted_tables.values())
    return any(_expired(stream, limit_ms) for schema in schemas for stream in schema.streams)


def expire(catalog, retention_s: float, now: float) -> bool:
    """Drops expired streams from the catalog (on the coordinator); whether anything changed."""
    from shardserver.shard.catalog import TableSchema
    limit_ms = (now - retention_s) * 1000
    changed = False
    for name, schema in list(catalog.tables.items()):
        if any(_expired(s, limit_ms) for s in schema.streams):
            data = schema.to_json()
            data["streams"] = [s for s in data["streams"] if not _expired(s, limit_ms)]
            catalog.tables[name] = TableSchema.from_json(data)
            changed = True
    for table_id, schema in list(catalog.deleted_tables.items()):
        if any(_expired(s, limit_ms) for s in schema.streams):
            kept = [s for s in schema.streams if not _expired(s, limit_ms)]
            if kept:
                data = schema.to_json()
                data["streams"] = kept
                catalog.deleted_tables[table_id] = TableSchema.from_json(data)
            else:
                del catalog.deleted_tables[table_id]
            changed = True
    return changed


def retire(catalog, schema, now_ms: int) -> None:
    """A table is deleted: its streams are disabled and stay readable (DynamoDB's DeleteTable)."""
    if not schema.streams:
        return
    from shardserver.shard.catalog import TableSchema
    data = schema.to_json()
    for stream in data["streams"]:
        if stream.get("disabled_ms") is None:
            stream["disabled_ms"] = max(now_ms, stream["created_ms"])
    catalog.deleted_tables[schema.table_id] = TableSchema.from_json(data)


def schemas_of(catalog, name: str | None = None) -> list:
    """Live and deleted tables (of that name) that have streams."""
    schemas = list(catalog.tables.values()) + list(catalog.deleted_tables.values())
    return [s for s in schemas if s.streams and (name is None or s.name == name)]


# ====================================================================== StreamSpecification

def check_specification(value, creating: bool = False) -> dict:
    """A StreamSpecification's validated content ({"StreamEnabled", "StreamViewType"?})."""
    from shardserver.errors import ValidationException
    from shardserver.shard.executor.tables import constraint_error
    if not isinstance(value, dict) or not isinstance(value.get("StreamEnabled"), bool):
        raise constraint_error(["Value null at 'streamSpecification.streamEnabled' failed to satisfy constraint: "
                                "Member must not be null"])
    view = value.get("StreamViewType")
    if view is not None and view not in VIEW_TYPES:
        raise constraint_error([f"Value '{view}' at 'streamSpecification.streamViewType' failed to satisfy "
                                "constraint: Member must satisfy enum value set: "
                                "[OLD_IMAGE, KEYS_ONLY, NEW_AND_OLD_IMAGES, NEW_IMAGE]"])     # DynamoDB's order
    if not value["StreamEnabled"]:
        if view is not None and creating:       # (sic: DynamoDB's wording)
            raise ValidationException("One or more parameter values were invalid: Table is being created with a "
                                      "stream disabled, UpdateViewType should not be specified")
        if view is not None:
            raise ValidationException("One or more parameter values were invalid: If stream is being disabled, "
                                      "then UpdateViewType must not be specified")
        return {"StreamEnabled": False}
    if view is None and creating:               # (sic, as above)
        raise ValidationException("One or more parameter values were invalid: Table is being created with a "
                                  "stream enabled, UpdateViewType is required")
    if view is None:
        raise ValidationException("One or more parameter values were invalid: If stream is being enabled then "
                                  "UpdateViewType is required")
    return {"StreamEnabled": True, "StreamViewType": view}


def check_change(schema, specification: dict) -> None:
    """Whether an UpdateTable may apply this (checked) specification to the table now."""
    from shardserver.errors import ValidationException
    if specification["StreamEnabled"]:
        if schema.active_stream is not None:
            raise ValidationException(f"Table already has an enabled stream: TableName: {schema.name}")
    elif schema.active_stream is None:
        raise ValidationException(f"Table has no stream to disable: TableName: {schema.name}")


def streams_after(schema, specification: dict, now_ms: int) -> list:
    """The table's stream list once ``specification`` is applied (on the catalog coordinator)."""
    check_change(schema, specification)
    streams = [dict(s) for s in schema.streams]
    if specification["StreamEnabled"]:
        streams.append(new_stream(specification["StreamViewType"], now_ms, streams))
    else:
        streams[-1]["disabled_ms"] = max(now_ms, streams[-1]["created_ms"])
    return streams
