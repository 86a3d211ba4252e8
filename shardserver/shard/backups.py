"""On-demand backups: their records, each shard's snapshots, and tables restored from them.

A backup is a record in the catalog (``Catalog.backups``: name, ARN, status,
size and the source table's schema as it was) plus, on every shard, a snapshot
directory ``<shard dir>/backups/<backup id>/`` that ``ShardStorage.snapshot``
fills with hard links to the table's SSTables and one SSTable of its memtables
(docs/backups_format.md).  The record is written (CREATING) before any shard
snapshots and made AVAILABLE once all have, so a shard may remove every
snapshot directory the catalog does not list: deleting a record deletes the
backup everywhere.

A restored table's schema names its backup (``RestoreSource``): a shard whose
catalog view gains the table builds its storage, and its local indexes',
from its own snapshot (hard links again) in the background, instead of
creating them empty; the table is CREATING until every shard has.  Global
indexes are rebuilt by the backfill that indexes added by UpdateTable use.
Every change here runs on the catalog coordinator; shards reach each other
only through ``svc.broadcast``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time

import orjson

from shardserver.errors import BackupInUseException, BackupNotFoundException, TableAlreadyExistsException
from shardserver.shard.catalog import TableSchema
from shardserver.shard.executor import fabric_verb

log = logging.getLogger("shardserver.backups")

SNAPSHOT = b"backup-snapshot"        # payload: {"id", "tables", "unchanged_before"} -> this shard's totals
UNCHANGED_SINCE = b"backup-unchanged"  # payload: table id -> orjson float (see ShardStorage.unchanged_since)

BACKUPS_DIR = "backups"


def snapshot_dir(svc, backup_id: str) -> str:
    return os.path.join(svc.storage.directory, BACKUPS_DIR, backup_id)


def storage_ids(schema: TableSchema) -> list[str]:
    """The storage tables a snapshot copies: the base table first, then its local indexes
    (written in the same step as their items, so one instant fits all; global indexes are
    rebuilt on restore instead)."""
    from shardserver.shard.indexes import index_storage_id
    return [schema.table_id] + [index_storage_id(schema.table_id, d, False) for d in schema.local_indexes]


# ---------------------------------------------------------------------- fabric verbs

@fabric_verb(SNAPSHOT)
async def take_snapshot(svc, src: int, payload: bytes) -> bytes:
    """This shard's part of a backup: {"items", "bytes"}, {"refused": true} when the table
    was written after ``unchanged_before``, or {"missing": true} when it is gone."""
    request = orjson.loads(payload)
    tables = request["tables"]
    if not all(svc.storage.has_table(t) for t in tables):
        return orjson.dumps({"missing": True})      # deleted (or an index dropped) meanwhile
    directory = snapshot_dir(svc, request["id"])
    shutil.rmtree(directory, ignore_errors=True)      # a retried or half-made part
    try:
        manifest = await svc.storage.snapshot(tables, directory, request.get("unchanged_before"))
    except ValueError:
        return orjson.dumps({"refused": True})
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    base = manifest["tables"][tables[0]]
    return orjson.dumps({"items": base["live_items"], "bytes": base["live_bytes"]})


@fabric_verb(UNCHANGED_SINCE)
async def unchanged_since(svc, src: int, payload: bytes) -> bytes:
    table_id = payload.decode()
    if not svc.storage.has_table(table_id):
        return b"0"
    return orjson.dumps(svc.storage.unchanged_since(table_id))


# ---------------------------------------------------------------------- storage hooks

def restore_sources(svc) -> dict[str, tuple[str, str]]:
    """Storage table id -> (snapshot directory, source storage id) of every table being
    restored whose snapshot this shard holds."""
    out = {}
    for schema in svc.catalog.tables.values():
        source = schema.extra.get("RestoreSource")
        if source is None:
            continue
        directory = snapshot_dir(svc, source["backup"])
        for target, source_id in source["tables"].items():
            out[target] = (directory, source_id)
    return out


_building: dict[str, asyncio.Task] = {}       # storage id -> its build from a snapshot


def build_restored_tables(svc, restores: dict[str, tuple[str, str]]) -> None:
    """Starts building, in the background, the storage of every restored table this shard
    lacks (see ``restore_sources``).  A snapshot that cannot be read (removed by hand,
    damaged) leaves the table without storage here, so its reads and writes on this shard
    fail loudly rather than an empty table hide the loss; the next catalog change retries."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return      # no loop (offline tools)
    for table_id, (directory, source_id) in restores.items():
        if not svc.storage.has_table(table_id) and table_id not in _building:
            _building[table_id] = loop.create_task(_build(svc, table_id, directory, source_id))


async def _build(svc, table_id: str, directory: str, source_id: str) -> None:
    try:
        await svc.storage.create_table_from_snapshot(table_id, directory, source_id)
    except Exception as exc:
        log.error("cannot restore table storage %s from %s: %s", table_id, directory, exc)
        return
    finally:
        _building.pop(table_id, None)
    svc.reconcile_storage()      # the table may have been deleted while it was being built


def catalog_changed(svc) -> None:
    """On the catalog coordinator: ends every restore whose table every shard now holds,
    also one whose acceptor failed half way (a shard was restarting)."""
    if svc.shard_id != 0:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for schema in svc.catalog.tables.values():
        if "RestoreSource" in schema.extra and schema.table_id not in _finishing:
            _finishing[schema.table_id] = loop.create_task(_drive_restore(svc, schema.name, schema.table_id))


_finishing: dict[str, asyncio.Task] = {}


async def finish_restore(svc, name: str, table_id: str, timeout: float | None = None) -> bool:
    """Waits until every shard holds the restored table's storage, then ends the restore
    (the backup may be deleted from then on); False if ``timeout`` passed first."""
    from shardserver.shard.service import TABLE_STATS
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        schema = svc.catalog.tables.get(name)
        if schema is None or schema.table_id != table_id or "RestoreSource" not in schema.extra:
            return True
        try:
            for storage_id in schema.extra["RestoreSource"]["tables"]:
                await svc.broadcast(TABLE_STATS, storage_id.encode())   # fails where it is missing
            await svc.change_catalog(b"backup", orjson.dumps({"action": "restored", "name": name,
                                                              "table_id": table_id}))
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            if delay >= 1.0:
                log.info("restore of %s not on every shard yet (%s); checking again", name, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _drive_restore(svc, name: str, table_id: str) -> None:
    try:
        await finish_restore(svc, name, table_id)
    finally:
        _finishing.pop(table_id, None)


def remove_unlisted_snapshots(svc) -> None:
    """Removes this shard's snapshots of backups the catalog no longer lists (deleted ones,
    and parts of backups that failed)."""
    if svc.storage is None:
        return
    root = os.path.join(svc.storage.directory, BACKUPS_DIR)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    for name in names:
        if name not in svc.catalog.backups and name not in _removing:
            log.info("removing the snapshot of backup %s (no longer in the catalog)", name)
            path = os.path.join(root, name)
            if loop is None:
                shutil.rmtree(path, ignore_errors=True)
            else:       # many files, maybe: not on the event loop
                _removing.add(name)
                loop.run_in_executor(None, shutil.rmtree, path, True).add_done_callback(
                    lambda _, name=name: _removing.discard(name))


_removing: set[str] = set()


# ---------------------------------------------------------------------- catalog changes

def in_use_by(catalog, backup_id: str) -> str | None:
    """The table a restore from this backup is still creating, if any."""
    for schema in catalog.tables.values():
        source = schema.extra.get("RestoreSource")
        if source is not None and source["backup"] == backup_id:
            return schema.name
    return None


def apply_catalog_change(catalog, change: dict) -> None:
    """One backup change, on the catalog coordinator (raises what the client should see)."""
    action = change["action"]
    backups = catalog.backups
    if action == "create":
        backups[change["record"]["id"]] = change["record"]
    elif action == "available":
        record = backups.get(change["id"])
        if record is None:
            raise BackupNotFoundException(f"Backup not found: {change['arn']}")
        record.update(status="AVAILABLE", size=change["size"], items=change["items"])
    elif action in ("delete", "forget"):
        record = backups.get(change["id"])
        if record is None:
            raise BackupNotFoundException(f"Backup not found: {change['arn']}")
        if action == "delete" and in_use_by(catalog, change["id"]) is not None:
            raise BackupInUseException(f"Backup is being restored to table {in_use_by(catalog, change['id'])}: "
                                       f"{change['arn']}")
        del backups[change["id"]]
    elif action == "restore":
        schema = TableSchema.from_json(change["schema"])
        record = backups.get(schema.extra["RestoreSource"]["backup"])
        if record is None or record["status"] != "AVAILABLE":
            raise BackupNotFoundException(f"Backup not found: {change['arn']}")
        if schema.name in catalog.tables:
            raise TableAlreadyExistsException(f"Table already exists: {schema.name}")
        catalog.tables[schema.name] = schema
    elif action == "restored":
        schema = catalog.tables.get(change["name"])
        if schema is None or schema.table_id != change["table_id"] or "RestoreSource" not in schema.extra:
            return
        source = schema.extra.pop("RestoreSource")
        schema.extra["RestoreSummary"] = {**schema.extra["RestoreSummary"], "RestoreInProgress": False}
        record = backups.get(source["backup"])
        if record is not None and record.get("hidden"):
            del backups[source["backup"]]       # the snapshot a point-in-time restore took
    elif action == "pitr":
        schema = catalog.tables.get(change["name"])
        if schema is None:
            from shardserver.errors import TableNotFoundException
            raise TableNotFoundException(f"Table not found: {change['name']}")
        schema.extra["PointInTimeRecovery"] = change["setting"]
    else:
        raise ValueError(f"unknown backup change {action!r}")
