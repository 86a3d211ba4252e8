"""The shard service: one instance per shard process (Seastar's ``sharded<>``).

It owns this shard's catalog view, storage and metrics, and is the only
place where requests meet the cross-shard fabric: ``handle`` runs a request
as its acceptor (executing locally or forwarding to the owner with
``submit_to``), and ``on_message`` serves what other shards send.  Every
cross-shard hop in the server goes through ``self.fabric``.
"""

from __future__ import annotations

import logging
import struct
import time

import orjson

from shardserver import errors
from shardserver.errors import (DynamoDBError, InternalServerError, ResourceInUseException,
                                ResourceNotFoundException, ServiceUnavailableException,
                                UnknownOperationException, ValidationException)
from shardserver.protocol import shapes, wire
from shardserver.shard import backups, indexes, itemsem, routing, streams
from shardserver.shard.catalog import Catalog, TableSchema
from shardserver.shard.executor import FABRIC_VERBS, load_all
from shardserver.shard.executor.control import answer_with_arns, names_for_arns
from shardserver.shard.executor.items import ROUTED

log = logging.getLogger("shardserver.shard")

_STATUS = struct.Struct(">H")
CATALOG_SHARD = 0

# Verbs on the fabric.
OP = b"op"               # payload: see _forward_payload -> reply: see _forward_reply
CATALOG = b"catalog"     # payload: kind, NUL, data (coordinator only) -> b""
RELOAD = b"reload"       # re-read catalog.json and reconcile storage -> b""
TABLE_STATS = b"tstats"  # payload: table id -> orjson [count, bytes]
METRICS = b"metrics"     # -> orjson snapshot of this shard's metrics


class ShardService:
    def __init__(self, shard_id: int, nshards: int, config, storage, stats=None):
        self.shard_id = shard_id
        self.nshards = nshards
        self.config = config
        self.storage = storage
        self.stats = stats
        self.catalog = Catalog(config.data_dir)
        self.fabric = None          # set by the shard main once the rings are attached
        self.transactions = None    # the shard's TransactionTable, set by the shard main
        self.operations = load_all()
        self.refusing_forwarded = False     # stopping: other shards' requests get a retryable refusal
        self.forwarded_running = 0

    # ------------------------------------------------------------ set-up

    def load_catalog(self) -> None:
        self.catalog.load()
        self.reconcile_storage()

    def reconcile_storage(self) -> None:
        """Storage tables to match the catalog: created, dropped, restored from backups."""
        live = {t.table_id for t in self.catalog.tables.values()}
        live |= indexes.storage_table_ids(self)
        live |= streams.storage_table_ids(self)
        restores = backups.restore_sources(self)
        for table_id in live:
            if table_id not in restores:
                self.storage.create_table(table_id)
        for table_id in list(self.storage.table_ids()):
            if table_id not in live:
                self.storage.drop_table(table_id)
        backups.build_restored_tables(self, restores)
        backups.remove_unlisted_snapshots(self)
        backups.catalog_changed(self)
        indexes.catalog_changed(self)

    # ------------------------------------------------------------ routing

    def owner_of(self, pk: dict) -> int:
        return routing.shard_of_key(pk, self.nshards)[0]

    def public_address(self) -> str:
        return f"{self.config.alternator_address}:{self.config.alternator_port}"

    async def submit_to(self, shard: int, verb: bytes, payload: bytes) -> bytes:
        if shard == self.shard_id:
            return await self.on_message(shard, verb, payload)
        try:
            # The fabric's future, awaited here: one coroutine frame less than Fabric.submit_to,
            # which is what this waits in only while the ring to shard is full.
            reply = self.fabric.request(shard, verb, payload)
            if reply is None:
                return await self.fabric.submit_to(shard, verb, payload)
            return await reply
        except Exception as exc:
            raise _forward_error(shard, exc) from None

    async def submit_to_owner(self, shard: int, op: str, body: bytes) -> dict:
        """Runs API operation ``op`` with request ``body`` on ``shard``; its response as a dict."""
        reply = await self.submit_to(shard, OP, _forward_payload(op, {}, body))
        status, payload = _forward_reply(reply)
        response = orjson.loads(payload)
        if status != 200:
            name = response.get("__type", "").rsplit("#", 1)[-1]
            error_class = getattr(errors, name, None)
            if isinstance(error_class, type) and issubclass(error_class, DynamoDBError):
                error = error_class(response.get("message", response.get("Message", "")))
                if "Item" in response and hasattr(error, "item"):
                    error.item = response["Item"]     # ReturnValuesOnConditionCheckFailure's
                raise error
            raise InternalServerError(response.get("message", "Internal server error"))
        return response

    async def broadcast(self, verb: bytes, payload: bytes) -> list[bytes]:
        if self.nshards == 1:
            return [await self.on_message(self.shard_id, verb, payload)]
        try:
            return await self.fabric.broadcast(verb, payload)
        except Exception as exc:
            if _is_peer_unavailable(exc):
                raise ServiceUnavailableException("A shard is restarting; retry the request") from None
            raise

    # ------------------------------------------------------------ requests

    async def handle(self, op: str, body: bytes) -> tuple[int, bytes]:
        """Runs one API request as its acceptor; returns (HTTP status, body)."""
        started = time.perf_counter()
        try:
            operation = self.operations.get(op)
            if operation is None:
                raise UnknownOperationException("")
            request = wire.parse_body(body)
            as_checked = shapes.check(op, request)     # True: the body is the request as checked
            arns = names_for_arns(op, request)
            if operation.route is not None:
                if arns:
                    try:
                        body = orjson.dumps(request)    # the owner, if another shard, reads names too
                        as_checked = True
                    except orjson.JSONEncodeError:
                        # Values nested deeper than orjson writes (and DynamoDB accepts): the raw
                        # body, for the owner to check, rename and refuse as this shard would.
                        as_checked = False
                owner = operation.route(self, request)
                if owner != self.shard_id:
                    if self.stats is not None:
                        self.stats.forwarded_out += 1
                    # submit_to, inline: a coroutine less on every forwarded request.
                    payload = _forward_payload(op, request, body, as_checked)
                    try:
                        reply = await (self.fabric.request(owner, OP, payload)
                                       or self.fabric.submit_to(owner, OP, payload))
                    except Exception as exc:
                        raise _forward_error(owner, exc) from None
                    return _forward_reply(reply)
            result = await operation.execute(self, request)
            if arns:
                result = answer_with_arns(result, arns)
            if self.stats is not None:
                self.stats.op(op, time.perf_counter() - started)
            return 200, result
        except DynamoDBError as error:
            if self.stats is not None:
                self.stats.error(op, error.type_name)
            return wire.error_response(error)
        except Exception:
            log.exception("internal error in %s", op)
            if self.stats is not None:
                self.stats.error(op, "InternalServerError")
            return wire.error_response(InternalServerError("Internal server error"))

    async def _execute_forwarded(self, payload: bytes) -> bytes:
        started = time.perf_counter()
        as_checked, name, table_id, rest = payload.split(b"\0", 3)
        key_length = _KEY_LENGTH.unpack_from(rest)[0]
        key, body = rest[2:2 + key_length], rest[2 + key_length:]
        op = name.decode()
        if self.stats is not None:
            self.stats.forwarded_in += 1
        self.forwarded_running += 1
        try:
            if self.refusing_forwarded:
                raise ServiceUnavailableException(f"Shard {self.shard_id} is restarting; retry the request")
            request = wire.parse_body(body)
            if not as_checked:
                shapes.check(op, request)     # the raw body again: its nulls and unknown members
                names_for_arns(op, request)   # ... and its table ARNs
            if key_length:
                schema = self.catalog.tables.get(request.get("TableName"))
                # Trust the acceptor's key checks only for the table it checked against.
                if schema is not None and schema.table_id == table_id.decode():
                    request[ROUTED] = (schema, key, self.shard_id)
            result = await self.operations[op].execute(self, request)
            if self.stats is not None:
                self.stats.op(op, time.perf_counter() - started)
            # A response body is a JSON object: sent as it is, with no copy to prefix a status.
            return result if result[:1] == b"{" else _OK + result
        except DynamoDBError as error:
            if self.stats is not None:
                self.stats.error(op, error.type_name)
            status, body = wire.error_response(error)
        except Exception:
            log.exception("internal error in forwarded %s", op)
            if self.stats is not None:
                self.stats.error(op, "InternalServerError")
            status, body = wire.error_response(InternalServerError("Internal server error"))
        finally:
            self.forwarded_running -= 1
        return _STATUS.pack(status) + body

    def on_message(self, src: int, verb: bytes, payload: bytes):
        """Serves a message from another shard (or from this one, for uniformity).

        Returns the coroutine that serves it: a forwarded request's, with no
        coroutine of this method's own around it.
        """
        if verb == OP:
            return self._execute_forwarded(payload)
        return self._serve_message(src, verb, payload)

    async def _serve_message(self, src: int, verb: bytes, payload: bytes) -> bytes:
        if verb == TABLE_STATS:
            return orjson.dumps(self.storage.table_stats(payload.decode()))
        if verb == RELOAD:
            self.load_catalog()
            return b""
        if verb == CATALOG:
            return await self._coordinate_catalog(payload)
        if verb == METRICS:
            return orjson.dumps(self.metrics_snapshot())
        handler = FABRIC_VERBS.get(verb)
        if handler is None:
            raise ValueError(f"unknown fabric verb {verb!r}")
        return await handler(self, src, payload)

    # ------------------------------------------------------------ catalog

    async def change_catalog(self, kind: bytes, data: bytes) -> bytes:
        """Runs a schema change on the catalog coordinator; returns once every shard knows it."""
        reply = await self.submit_to(CATALOG_SHARD, CATALOG, kind + b"\0" + data)
        if reply:
            error = orjson.loads(reply)
            raise getattr(errors, error["type"])(error["message"])
        return reply

    async def _coordinate_catalog(self, payload: bytes) -> bytes:
        kind, _, data = payload.partition(b"\0")
        tables = self.catalog.tables
        try:
            if kind == b"create":
                schema = TableSchema.from_json(orjson.loads(data))
                if schema.name in tables:
                    raise ResourceInUseException(f"Table already exists: {schema.name}")
                tables[schema.name] = schema
            elif kind == b"delete":
                name = data.decode()
                if name not in tables:
                    raise ResourceNotFoundException(f"Requested resource not found: Table: {name} not found")
                streams.retire(self.catalog, tables.pop(name), int(time.time() * 1000))
            elif kind == b"tags":
                from shardserver.shard.executor.tables import changed_tags
                change = orjson.loads(data)
                schema = self._existing(change["name"])
                schema.tags = changed_tags(schema.tags, change)
            elif kind == b"ttl":
                change = orjson.loads(data)
                schema = self._existing(change["name"])
                if schema.ttl_attribute != change["expected"]:
                    # Another UpdateTimeToLive won the race since the acceptor checked.
                    raise ValidationException("TimeToLive is already enabled" if schema.ttl_attribute else
                                              "TimeToLive is already disabled")
                schema.ttl_attribute = change["attribute"]
            elif kind == b"expire-streams":
                if not streams.expire(self.catalog, float(data), time.time()):
                    return b""      # nothing to forget: no catalog write
            elif kind == b"backup":
                backups.apply_catalog_change(self.catalog, orjson.loads(data))
            elif kind == b"update":
                from shardserver.shard.executor import update_table
                update_table.apply_catalog_change(tables, orjson.loads(data))
            elif kind == b"extra":
                from shardserver.shard.executor import control
                control.apply_extra_change(tables, orjson.loads(data))
            else:
                raise ValidationException(f"unknown catalog change {kind!r}")
        except DynamoDBError as error:
            return orjson.dumps({"type": type(error).__name__, "message": error.message})
        self.catalog.save()
        self.reconcile_storage()
        if self.nshards > 1:
            await self.fabric.broadcast(RELOAD, b"")
        return b""

    def _existing(self, name: str) -> TableSchema:
        schema = self.catalog.tables.get(name)
        if schema is None:
            raise ResourceNotFoundException(f"Requested resource not found: Table: {name} not found")
        return schema

    async def table_totals(self, schema: TableSchema) -> tuple[int, int]:
        replies = await self.broadcast(TABLE_STATS, schema.table_id.encode())
        count = size = 0
        for reply in replies:
            c, s = orjson.loads(reply)
            count += c
            size += s
        return count, size

    # ------------------------------------------------------------ hooks for item semantics

    def prepare_expressions(self, request: dict, schema, op: str, check_unused: bool = True):
        """The request's expressions, validated and bound (see ``itemsem.prepare``)."""
        prepared = itemsem.prepare(request, schema, op, check_unused)
        if op in ("Query", "Scan") and request.get("IndexName") is not None:
            # On the acceptor, so a bad index request fails before any shard is asked.
            indexes.check_request(request, schema, op)
        return prepared

    async def query_index(self, request: dict, schema, prepared) -> bytes:
        return await indexes.query_index(self, request, schema, prepared)

    async def scan_index_page(self, part: dict, schema, prepared) -> bytes:
        return await indexes.scan_index_page(self, part, schema, prepared)

    def index_start_key(self, request: dict, schema, exclusive: dict):
        return indexes.index_start_key(self, request, schema, exclusive)

    def check_index_keys(self, schema, item: dict, by_update: bool = False) -> None:
        """Rejects an item whose secondary-index key attributes are wrong-typed or empty."""
        if schema.local_indexes or schema.global_indexes:
            indexes.check_item(schema, item, by_update)

    def needs_old_image(self, schema) -> bool:
        """Whether writes must read the old item (indexes, streams: INSERT or MODIFY, OldImage)."""
        return bool(schema.local_indexes or schema.global_indexes or schema.active_stream is not None)

    def after_write(self, schema, key: bytes, old: dict | None, new: dict | None, by_ttl: bool = False) -> None:
        """Index and stream maintenance after a write was applied (same step, nothing awaited).

        ``by_ttl``: the write is a Time to Live expiry (its stream record names the service).
        """
        if schema.local_indexes or schema.global_indexes:
            indexes.after_write(self, schema, key, old, new)     # may refuse (and undo) the write
        if schema.active_stream is not None:
            streams.after_write(self, schema, key, old, new, by_ttl)

    # ------------------------------------------------------------ metrics

    def metrics_snapshot(self) -> dict:
        extra = {"storage": self.storage.stats() if self.storage else {},
                 "transactions": self.transactions.stats() if self.transactions is not None else {},
                 "fabric": self.fabric.stats() if self.fabric else {},
                 "streams": streams.state_of(self).stats(),
                 "tables": {t.name: dict(zip(("items", "bytes"), self.storage.table_stats(t.table_id)))
                            for t in self.catalog.tables.values()}}
        if self.stats is None:
            return {"shard": self.shard_id, **extra}
        return self.stats.snapshot(extra)


_KEY_LENGTH = struct.Struct(">H")


def _forward_payload(op: str, request: dict, body: bytes, as_checked: bool = False) -> bytes:
    """OP message: mark, NUL, name, NUL, table id, NUL, u16 key length, storage key, raw request body.

    The storage key the acceptor computed (after checking the key against
    the schema) travels with the raw body, so the owner need not redo it.
    The mark is "=" when the body is also the request exactly as the
    acceptor's shapes.check left it, so the owner need not check it again;
    empty when the owner must.
    """
    mark = b"=\0" if as_checked else b"\0"
    routed = request.get(ROUTED)
    if routed is None:
        return b"".join((mark, op.encode(), b"\0\0\0\0", body))
    schema, key, _ = routed
    return b"".join((mark, op.encode(), b"\0", schema.table_id.encode(), b"\0",
                     _KEY_LENGTH.pack(len(key)), key, body))


_OK = _STATUS.pack(200)


def _forward_reply(reply: bytes) -> tuple[int, bytes]:
    """(HTTP status, body) of an OP reply: a JSON object is a 200's body; anything else
    starts with a big-endian u16 status (never 0x7B, "{", as its first byte)."""
    if reply[0] == 0x7B:
        return 200, reply
    return _STATUS.unpack_from(reply)[0], reply[2:]


def _forward_error(shard: int, exc: Exception) -> Exception:
    """What a caller of submit_to sees of a failed call to ``shard``."""
    if _is_peer_unavailable(exc):
        return ServiceUnavailableException(f"Shard {shard} is restarting; retry the request")
    return _local_error(exc)


def _local_error(exc: Exception) -> Exception:
    """A DynamoDB error raised by a handler on another shard, as the same error here."""
    remote_type = getattr(exc, "remote_type", None)
    error_class = getattr(errors, remote_type, None) if remote_type else None
    if isinstance(error_class, type) and issubclass(error_class, DynamoDBError) and \
            error_class is not InternalServerError:
        return error_class(exc.remote_message)
    return exc


def _is_peer_unavailable(exc: BaseException) -> bool:
    return type(exc).__name__ == "PeerUnavailable"
