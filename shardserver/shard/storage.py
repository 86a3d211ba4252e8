"""A shard's storage engine: commit log, memtables, SSTables, compaction, row cache.

Owns everything under the shard's data directory:

    <directory>/commitlog/CommitLog-<shard>-<segment>.log   (docs/commitlog_format.md)
    <directory>/tables/<table dir>/MANIFEST                  live SSTables, stats, replay position
    <directory>/tables/<table dir>/sst-<generation>.db       (docs/sstable_format.md)
    <directory>/backups/<backup id>/...                      snapshots (docs/backups_format.md)

and the API the shard's executor calls (get/put/delete/scan/sync and table
life cycle).  Writes go to the commit log buffer and the memtable at once
(with durable_writes false there is no commit log: only flushed data survives
a crash); memtables over the shard's threshold are flushed in the background to
SSTables; size-tiered compaction merges them; point reads check memtables,
the row cache, then SSTables newest first behind their bloom filters.

It must never block the event loop for long (flush, compaction and scans
yield), never acknowledge a batch-mode sync before fdatasync, and never let a
dropped table's data come back.  Keys and values are opaque bytes.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import secrets
import shutil
import struct
import time
from dataclasses import dataclass

import orjson

from shardserver.errors import InternalServerError, ResourceNotFoundException
from shardserver.reactor.aio import AIOContext
from shardserver.shard.commitlog import CommitLog, _fsync_dir
from shardserver.shard.memtable import MISSING, Memtable, is_tombstone
from shardserver.shard.row_cache import ABSENT, CachedPartition, PartitionCache, RowCache
from shardserver.shard.values import partition_end
from shardserver.sstable import compaction as compaction_mod
from shardserver.sstable.compaction import BACKGROUND_SLICE_S
from shardserver.sstable.bloom import bloom_key, key_hashes, partition_hashes, probe_mask
from shardserver.sstable.format import key_prefix
from shardserver.sstable.merge import MemtableSource, MergeIterator
from shardserver.sstable.reader import NEED_IO, BlockCache, CorruptSSTable, SSTableReader
from shardserver.sstable.reader import MISSING as SST_MISSING
from shardserver.sstable.writer import DEFAULT_BLOCK_SIZE, SSTableWriter

# Commit-log record kinds owned by the storage layer; 16..255 are free for
# callers of append_record() (e.g. index maintenance), replayed through a hook.
KIND_PUT = 1
KIND_DELETE = 2
KIND_DROP_TABLE = 3
FIRST_USER_KIND = 16

FLUSH_RETRY_SECONDS = 1
# A flush runs in slices between requests. Once memtables outgrow the flush threshold
# (writers outpacing the flush), its slices lengthen, up to this much more at twice the
# threshold, where writers would otherwise all wait for the flush at once.
MAX_EXTRA_FLUSH_SLICE_S = 0.030

_INC_TID = struct.Struct("<QH")      # table incarnation, table id length
_INCARNATION = struct.Struct("<Q")
_KEYLEN = struct.Struct("<I")

MANIFEST = "MANIFEST"
SNAPSHOT_MANIFEST = "SNAPSHOT"
SSTABLE_PREFIX = "sst-"
SSTABLE_SUFFIX = ".db"
TMP_SUFFIX = ".tmp"

_SAFE_DIR_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass
class StorageOptions:
    commitlog_sync: str = "periodic"            # or "batch"
    commitlog_sync_period_in_ms: int = 10000
    commitlog_sync_batch_window_in_ms: float = 2.0
    commitlog_segment_size_in_mb: int = 32
    durable_writes: bool = True                 # False: no commit log (see open())
    memtable_flush_threshold_in_mb: int = 64     # per shard, all tables together
    aio_queue_depth: int = 128
    compaction_min_threshold: int = 4
    compaction_max_threshold: int = 32
    tombstone_gc_grace_seconds: int = 864000
    row_cache_in_mb: int = 128
    partition_cache_in_mb: int = 128            # whole partitions, for Query (0: off)
    block_cache_in_mb: int = 32
    sstable_block_size_in_kb: int = 8
    bloom_bits_per_key: float = 12.0            # ~1 % false positives (blocked filter)
    commitlog_total_space_in_mb: int = 0        # 0: 2 x flush threshold + 2 segments
    force_thread_io: bool = False               # use the thread pool even where Linux AIO works
    trim_heap_after_flush: bool = True          # give freed memtables back to the OS (glibc)
    # tests only: byte counts instead of MB for thresholds (None = use the MB fields)
    memtable_flush_threshold_bytes: int | None = None
    commitlog_segment_size_bytes: int | None = None


def _find_malloc_trim():
    """glibc's malloc_trim, or None (musl, macOS, ...).

    A flushed memtable's values are ~1 KB allocations of the C heap; freed, they
    stay resident because live allocations are interleaved with them, and RSS
    grew by hundreds of MB over a few flushes.  malloc_trim(0) hands every free
    page in the middle of the heap back to the kernel (madvise), in ~10-20 ms for
    a 64 MB memtable's worth.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


class _FlushSlices:
    """A flush's pacing: once it has run for its slice, it lets requests in."""

    __slots__ = ("_loop", "_slice", "_table", "_since")

    def __init__(self, loop, slice_seconds, table):
        self._loop = loop
        self._slice = slice_seconds      # called each time: the slice follows memtable pressure
        self._table = table
        self._since = loop.time()

    async def pause(self) -> None:
        if self._loop.time() - self._since > self._slice():
            await asyncio.sleep(0)
            self._since = self._loop.time()
            if self._table.dropped:
                raise asyncio.CancelledError()


def table_dir_name(table_id: str) -> str:
    """A directory name for a table id, reversible, safe on any filesystem."""
    if table_id and table_id[0] != "." and set(table_id) <= _SAFE_DIR_CHARS and len(table_id) < 200:
        return table_id
    return "~" + table_id.encode().hex()[:400]


def table_id_of_dir(name: str) -> str:
    if name.startswith("~"):
        return bytes.fromhex(name[1:]).decode()
    return name


def _sstable_name(generation: int) -> str:
    return f"{SSTABLE_PREFIX}{generation:010d}{SSTABLE_SUFFIX}"


def _encode_head(incarnation: int, table_id: str) -> bytes:
    tid = table_id.encode()
    return _INC_TID.pack(incarnation, len(tid)) + tid


def _decode_head(payload: bytes) -> tuple[int, str, int]:
    incarnation, tlen = _INC_TID.unpack_from(payload, 0)
    start = _INC_TID.size
    return incarnation, payload[start:start + tlen].decode(), start + tlen


class _Table:
    """One table on this shard: memtables, SSTables (newest first) and its stats."""

    def __init__(self, table_id: str, path: str, incarnation: int):
        self.table_id = table_id
        self.path = path
        self.incarnation = incarnation
        self.log_head = _encode_head(incarnation, table_id)   # what each of its log records starts with
        self.cache_prefix = _INCARNATION.pack(incarnation)    # ... and each of its cache keys
        self.active = Memtable()
        self.frozen: list[Memtable] = []          # oldest first, being flushed
        self._sstables: list[SSTableReader] = []
        self._probes: tuple | None = None
        self.sst_items = 0                        # live items as of the SSTables alone
        self.sst_bytes = 0
        self.live_items = 0                       # including every memtable's delta
        self.live_bytes = 0
        self.replay_position = (0, 0)             # records at or before this are in SSTables
        self.next_generation = 1
        self.epoch = 0                            # bumped whenever the SSTable set changes
        self.writes = 0                           # bumped by every write (partition cache fills)
        # unchanged_since(): no write after last_write_time, as of when `writes` was last_seen_writes
        self.last_write_time = time.time()
        self.last_seen_writes = 0
        self.dropped = False
        self.compacting = False
        self.lock = asyncio.Lock()                # serializes manifest updates

    @property
    def sstables(self) -> list[SSTableReader]:
        """Newest first.  Replaced, never changed in place: assigning it drops bloom_probes."""
        return self._sstables

    @sstables.setter
    def sstables(self, readers: list[SSTableReader]) -> None:
        self._sstables = readers
        self._probes = None

    def bloom_probes(self) -> tuple:
        """(bloom words, word count, probes, reader) per SSTable, newest first: the point
        read's loop without attribute lookups, built once per SSTable set."""
        probes = self._probes
        if probes is None:
            probes = self._probes = tuple((r.bloom.words, r.bloom.nwords, r.bloom.nprobes, r)
                                          for r in self._sstables)
        return probes

    def memtables_newest_first(self) -> list[Memtable]:
        return [self.active, *reversed(self.frozen)]

    def manifest(self) -> dict:
        return {
            "format": 1,
            "table_id": self.table_id,
            "incarnation": self.incarnation,
            "sstables": [os.path.basename(r.path) for r in self.sstables],
            "live_items": self.sst_items,
            "live_bytes": self.sst_bytes,
            "replay_position": list(self.replay_position),
            "next_generation": self.next_generation,
        }


def _write_file_durably(path: str, data: bytes) -> None:
    """tmp + fsync + rename + fsync(dir): the file is either old or new after a crash."""
    tmp = path + TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def _write_snapshot_manifest(directory: str, manifest: dict) -> None:
    """The snapshot's links and directories made durable, then its manifest (written last)."""
    for part in manifest["tables"].values():
        _fsync_dir(os.path.join(directory, part["dir"]))
    _write_file_durably(os.path.join(directory, SNAPSHOT_MANIFEST), orjson.dumps(manifest))
    _fsync_dir(os.path.dirname(directory))


async def _uncancellable(coro):
    """Run coro to completion even if the caller is cancelled meanwhile (installs must
    not stop half way between the manifest on disk and the state in memory)."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class ShardStorage:
    def __init__(self, directory: str, shard_id: int, options: StorageOptions | None = None,
                 log: logging.Logger | None = None):
        self.directory = directory
        self.shard_id = shard_id
        self.options = options or StorageOptions()
        self.log = log or logging.getLogger(f"shardserver.storage.{shard_id}")
        o = self.options
        self.flush_threshold = (o.memtable_flush_threshold_bytes
                                if o.memtable_flush_threshold_bytes is not None
                                else o.memtable_flush_threshold_in_mb << 20)
        segment_size = (o.commitlog_segment_size_bytes if o.commitlog_segment_size_bytes is not None
                        else o.commitlog_segment_size_in_mb << 20)
        self.segment_size = segment_size
        self.commitlog_limit = ((o.commitlog_total_space_in_mb << 20) if o.commitlog_total_space_in_mb
                                else 2 * self.flush_threshold + 2 * segment_size)
        self.block_size = max(1024, o.sstable_block_size_in_kb * 1024) or DEFAULT_BLOCK_SIZE
        self.tables_dir = os.path.join(directory, "tables")
        self.aio = AIOContext(o.aio_queue_depth, log=self.log, force_threads=o.force_thread_io)
        self.commitlog = CommitLog(os.path.join(directory, "commitlog"), shard_id,
                                   sync_mode=o.commitlog_sync,
                                   sync_period_ms=o.commitlog_sync_period_in_ms,
                                   batch_window_ms=o.commitlog_sync_batch_window_in_ms,
                                   segment_size=segment_size, aio=self.aio, log=self.log,
                                   enabled=o.durable_writes)
        self.block_cache = BlockCache(o.block_cache_in_mb << 20)
        self._tables: dict[str, _Table] = {}
        self._row_cache = RowCache(o.row_cache_in_mb << 20)
        self._partitions = PartitionCache(o.partition_cache_in_mb << 20)
        self._memtable_bytes = 0
        self._open = False
        self._loop = None
        self._synced = None
        self._closing = False
        self._flush_task: asyncio.Task | None = None
        self._compaction_task: asyncio.Task | None = None
        self._flush_waiters: list[asyncio.Future] = []
        self._side_flushes: set[asyncio.Task] = set()     # flushes of memtables a snapshot froze
        self._flush_retry_at = 0.0
        self._replaying = False
        self.replay_hook = None      # callable(kind, payload) for kinds >= FIRST_USER_KIND

        self.flushes_total = 0
        self.flush_bytes_total = 0
        self.compactions_total = 0
        self.compaction_bytes_in_total = 0
        self.compaction_bytes_out_total = 0
        self.tombstones_purged_total = 0
        self.checksum_errors_total = 0
        self.bloom_negatives_total = 0
        self.sstable_reads_total = 0
        self.blind_write_reads_total = 0
        self.get_retries_total = 0
        self.background_errors_total = 0
        self.unknown_records_total = 0
        self.replay_applied_total = 0
        self.heap_trims_total = 0
        self.flush_waits_total = 0            # writes held back by memtables at twice the threshold
        self.flush_wait_seconds_total = 0.0
        self.heap_trim_seconds_total = 0.0
        self._trimming = False
        self._trim_again = False

    # ================================================================== life cycle
    async def open(self) -> None:
        """Open the AIO context and the SSTables, replay the commit log, start writing."""
        os.makedirs(self.tables_dir, exist_ok=True)
        # asyncio.get_running_loop() makes a getpid() syscall each call (its fork
        # check): the hot paths use this instead.
        self._loop = asyncio.get_running_loop()
        self._synced = self._loop.create_future()     # sync()'s answer when there is nothing to wait for
        self._synced.set_result(None)
        if not self.options.durable_writes:
            self.log.warning("storage: durable_writes is false: no commit log. Acknowledged "
                             "writes are NOT crash-safe: a crash loses every write not yet "
                             "flushed to an SSTable (a clean shutdown flushes them)")
        await self.aio.open()
        for name in sorted(os.listdir(self.tables_dir)):
            path = os.path.join(self.tables_dir, name)
            if os.path.isdir(path):
                self._load_table(table_id_of_dir(name), path)
        highest = 0
        self._replaying = True
        try:
            highest = self.commitlog.replay(self._replay_record)
        finally:
            self._replaying = False
        for t in self._tables.values():
            highest = max(highest, t.replay_position[0])
        self.commitlog.start(highest + 1)
        self._open = True
        self._release_segments()
        if self.commitlog.replayed_records_total or self.commitlog.corrupt_records_total:
            self.log.info("storage: commit log replay: %d records read, %d applied (the rest "
                          "were already in SSTables), %d damaged",
                          self.commitlog.replayed_records_total, self.replay_applied_total,
                          self.commitlog.corrupt_records_total)
        self._maybe_flush()
        for t in self._tables.values():
            self._maybe_compact(t)

    def _load_table(self, table_id: str, path: str) -> None:
        manifest_path = os.path.join(path, MANIFEST)
        try:
            with open(manifest_path, "rb") as f:
                manifest = orjson.loads(f.read())
        except FileNotFoundError:
            # create_table crashed before its manifest landed: the table never existed
            self.log.warning("storage: %s has no manifest; removing the half-created table", path)
            shutil.rmtree(path, ignore_errors=True)
            return
        t = _Table(manifest.get("table_id", table_id), path, int(manifest["incarnation"]))
        t.sst_items = t.live_items = int(manifest["live_items"])
        t.sst_bytes = t.live_bytes = int(manifest["live_bytes"])
        t.replay_position = tuple(manifest["replay_position"])
        t.next_generation = int(manifest["next_generation"])
        listed = set(manifest["sstables"])
        for name in manifest["sstables"]:
            try:
                reader = SSTableReader.load(os.path.join(path, name), self.aio, self.block_cache,
                                            self._count_checksum_error, self.log)
            except (OSError, CorruptSSTable, ValueError) as exc:
                self.checksum_errors_total += 1
                self.log.error("storage: cannot open SSTable %s of table %s: %s", name, table_id, exc)
                raise InternalServerError(f"Internal server error: damaged SSTable {name}") from exc
            t.sstables = t.sstables + [reader.acquire()]
        for name in os.listdir(path):
            if name == MANIFEST or name in listed:
                continue
            # leftovers of a flush or compaction that crashed before its manifest update
            self.log.info("storage: removing unlisted file %s of table %s", name, table_id)
            os.unlink(os.path.join(path, name))
        self._tables[t.table_id] = t

    async def close(self) -> None:
        """Flush every memtable, sync and close the commit log, close files and AIO."""
        if not self._open:
            return
        self._closing = True
        if self._compaction_task is not None and not self._compaction_task.done():
            self._compaction_task.cancel()
            try:
                await self._compaction_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._flush_task is not None and not self._flush_task.done():
            try:
                await self._flush_task
            except Exception:
                pass
        while self._side_flushes:
            await asyncio.gather(*self._side_flushes, return_exceptions=True)
        for t in list(self._tables.values()):
            if len(t.active) and not t.dropped:
                try:
                    await self._flush_table(t)
                except Exception as exc:  # the commit log still holds the data
                    self.log.error("storage: flush of %s at close failed: %s", t.table_id, exc)
        self._release_segments()
        await self.commitlog.close()
        self._release_segments()
        for t in self._tables.values():
            for r in t.sstables:
                r.mark_obsolete(unlink=False)
                r.release()
        self.aio.close()
        self._open = False

    # ================================================================== tables
    def create_table(self, table_id: str) -> None:
        """Idempotent.  Blocks briefly on an fsync: table creation is rare."""
        if table_id in self._tables:
            return
        path = os.path.join(self.tables_dir, table_dir_name(table_id))
        if os.path.isdir(path):
            shutil.rmtree(path)     # a leftover nobody owns (its manifest says otherwise)
        os.makedirs(path)
        t = _Table(table_id, path, secrets.randbits(63) or 1)
        _write_file_durably(os.path.join(path, MANIFEST), orjson.dumps(t.manifest()))
        _fsync_dir(self.tables_dir)
        self._tables[table_id] = t

    def drop_table(self, table_id: str) -> None:
        """The table's data is gone, from disk and from any future replay."""
        t = self._tables.get(table_id)
        if t is None:
            return
        if self._open:
            self.commitlog.append(KIND_DROP_TABLE, _encode_head(t.incarnation, table_id))
            self.commitlog.sync_blocking()   # the record must be durable before files go
        self._forget_table(t)

    def _forget_table(self, t: _Table) -> None:
        t.dropped = True
        self._tables.pop(t.table_id, None)
        for m in t.memtables_newest_first():
            self._memtable_bytes -= m.memory_bytes
        t.active = Memtable()
        t.frozen = []
        for r in t.sstables:
            r.mark_obsolete(unlink=False)
            r.release()
        t.sstables = []
        t.epoch += 1
        shutil.rmtree(t.path, ignore_errors=True)
        if self._open:
            self._release_segments()

    def has_table(self, table_id) -> bool:
        return table_id in self._tables

    def table_ids(self) -> list[str]:
        return list(self._tables)

    def _table(self, table_id: str) -> _Table:
        t = self._tables.get(table_id)
        if t is None:
            raise ResourceNotFoundException("Requested resource not found")
        return t

    # ================================================================== writes
    def put(self, table_id: str, key: bytes, value: bytes) -> None:
        t = self._table(table_id)
        # A copy of exactly its length: orjson.dumps (>= 3.12) hands back bytes whose
        # buffer keeps the serializer's capacity, 4 KB for a 200-byte item and ~13x
        # for larger ones, which a memtable would hold until its flush.
        value = bytes(memoryview(value))
        old_len = self._current_len(t, key)
        seg, _ = self.commitlog.append(KIND_PUT, b"".join((t.log_head, _KEYLEN.pack(len(key)), key, value)))
        self._apply(t, key, value, seg, old_len)

    def delete(self, table_id: str, key: bytes) -> None:
        t = self._table(table_id)
        old_len = self._current_len(t, key)
        seg, _ = self.commitlog.append(KIND_DELETE, t.log_head + key)
        self._apply(t, key, int(time.time()), seg, old_len)

    def append_record(self, kind: int, payload: bytes) -> tuple[int, int]:
        """Log an opaque record of a caller-defined kind (16..255); replayed via replay_hook."""
        if not FIRST_USER_KIND <= kind <= 255:
            raise ValueError("record kinds below 16 belong to the storage engine")
        return self.commitlog.append(kind, payload)

    def _apply(self, t: _Table, key: bytes, value, segment: int | None, old_len: int) -> None:
        """Put value (bytes) or a tombstone (int) into the active memtable and the stats."""
        m = t.active
        before = m.memory_bytes
        m.apply(key, value, segment)
        self._memtable_bytes += m.memory_bytes - before
        if is_tombstone(value):
            if old_len >= 0:
                m.count_delta -= 1
                m.bytes_delta -= old_len
                t.live_items -= 1
                t.live_bytes -= old_len
        else:
            if old_len < 0:
                m.count_delta += 1
                t.live_items += 1
            else:
                m.bytes_delta -= old_len
                t.live_bytes -= old_len
            m.bytes_delta += len(value)
            t.live_bytes += len(value)
        self._row_cache.discard(t.cache_prefix + key)
        t.writes += 1
        if self._partitions.size:
            self._partitions.invalidate(t.cache_prefix + bloom_key(key))
        if not self._replaying and (self._memtable_bytes > self.flush_threshold
                                    or self.commitlog.disk_bytes() > self.commitlog_limit):
            self._maybe_flush()

    def _current_len(self, t: _Table, key: bytes) -> int:
        """Length of the live value for key, -1 if absent: what a write replaces.

        Memtables and the row cache answer without I/O (a read-modify-write just
        cached the key); otherwise bloom filters, and for a blind write whose
        key may be on disk a blocking page-cache read: table stats stay exact.
        """
        v = t.active.data.get(key, MISSING)
        if v is MISSING and t.frozen:
            for m in reversed(t.frozen):
                v = m.data.get(key, MISSING)
                if v is not MISSING:
                    break
        if v is not MISSING:
            return -1 if type(v) is int else len(v)
        v = self._row_cache.peek(t.cache_prefix + key)
        if v is not ABSENT:
            return -1 if v is None else len(v)
        probes = t.bloom_probes()
        if not probes:
            return -1
        h1, h2 = partition_hashes(key)
        mask = 0
        mask_probes = 0
        for words, nwords, nprobes, r in probes:
            if nprobes != mask_probes:
                mask_probes = nprobes
                mask = probe_mask(h2, nprobes)
            if words[h1 % nwords] & mask != mask:
                continue
            self.blind_write_reads_total += 1
            v = r.get_blocking(key)
            if v is not SST_MISSING:
                return -1 if type(v) is int else len(v)
        return -1

    # ================================================================== reads
    async def get(self, table_id: str, key: bytes) -> bytes | None:
        """The value current when this coroutine returns (None if absent or deleted).

        The common case runs without suspending: memtables, row cache, then each
        SSTable's bloom filter and one block from the block cache or, copied without
        waiting, from the page cache.  Nothing can change in between, so it needs no
        reference counts or retries; only a block that must come from the disk takes
        the awaiting path (_get_from_disk).
        """
        t = self._tables.get(table_id)
        if t is None:
            raise ResourceNotFoundException("Requested resource not found")
        v = t.active.data.get(key, MISSING)
        if v is not MISSING:
            return None if type(v) is int else v
        if t.frozen:
            for m in reversed(t.frozen):
                v = m.data.get(key, MISSING)
                if v is not MISSING:
                    return None if type(v) is int else v
        row_cache = self._row_cache
        ck = t.cache_prefix + key
        if row_cache.enabled:
            v = row_cache.get(ck)
            if v is not ABSENT:
                return v
        probes = t.bloom_probes()
        if not probes:
            return None
        h1, h2 = partition_hashes(key)   # every filter of the table shares the hash ...
        prefix = key_prefix(key)   # ... and every index and block the key prefix
        mask = 0
        mask_probes = 0
        negatives = 0
        found = SST_MISSING
        for words, nwords, nprobes, r in probes:
            if nprobes != mask_probes:
                mask_probes = nprobes
                mask = probe_mask(h2, nprobes)
            if words[h1 % nwords] & mask != mask:
                negatives += 1
                continue
            found = r.get_nowait(key, prefix)
            if found is NEED_IO:
                self.bloom_negatives_total += negatives
                return await self._get_from_disk(t, key)
            self.sstable_reads_total += 1
            if found is not SST_MISSING:
                break
        self.bloom_negatives_total += negatives
        value = None if found is SST_MISSING or type(found) is int else found
        if row_cache.enabled:
            row_cache.put(ck, value)
        return value

    async def _get_from_disk(self, t: _Table, key: bytes) -> bytes | None:
        """get() when some block needs the disk: awaits, so files may be swapped meanwhile."""
        while True:
            for m in t.memtables_newest_first():
                v = m.data.get(key, MISSING)
                if v is not MISSING:
                    return None if type(v) is int else v
            ck = t.cache_prefix + key
            v = self._row_cache.peek(ck)
            if v is not ABSENT:
                return v
            epoch = t.epoch
            found = SST_MISSING
            sstables = tuple(t.sstables)   # flush and compaction replace entries of the list
            if sstables:
                h1, h2 = partition_hashes(key)   # the partition, as every filter holds
                for r in sstables:
                    if t.epoch != epoch:
                        break     # r may already be closed: the retry below looks again
                    if not r.bloom.might_contain_hashes(h1, h2):
                        self.bloom_negatives_total += 1
                        continue
                    self.sstable_reads_total += 1
                    r.acquire()   # a compaction must not close the file under this read
                    try:
                        found = await r.get(key)
                    finally:
                        r.release()
                    if found is not SST_MISSING:
                        break
            if t.dropped:
                return None
            if t.epoch != epoch:
                # a flush or compaction swapped files while we read: look again
                self.get_retries_total += 1
                continue
            for m in t.memtables_newest_first():
                v = m.data.get(key, MISSING)
                if v is not MISSING:   # written while we were reading the disk
                    return None if type(v) is int else v
            value = None if found is SST_MISSING or type(found) is int else found
            self._row_cache.put(ck, value)
            return value

    async def scan(self, table_id: str, start: bytes | None, end: bytes | None, *,
                   start_exclusive: bool = False, reverse: bool = False,
                   limit: int = 1 << 62, max_bytes: int = 1 << 62,
                   partition: bytes | None = None) -> list[tuple[bytes, bytes]]:
        """Live (key, value) pairs with start <= key < end, ascending or descending.

        Bounds are the same in both directions: `start` the inclusive lower bound
        (exclusive with start_exclusive), `end` the exclusive upper bound; None is
        unbounded.  Resume a forward scan after key K with start=K,
        start_exclusive=True; resume a reverse scan below K with end=K.
        Stops after `limit` items or once the values' total length reaches
        max_bytes (the item crossing it is included).  `partition`: the
        partition prefix every key of the range starts with (a Query), so
        SSTables whose filter rules the partition out are not read at all, and
        the partition cache may answer without reading any source.
        """
        t = self._table(table_id)
        if start is not None and end is not None and start >= end:
            return []
        partitions = self._partitions
        if partition is None or not partitions.enabled:
            return await self._scan(t, start, end, start_exclusive, reverse, limit, max_bytes, partition)
        ck = t.cache_prefix + partition
        cached = partitions.get(ck)
        if cached is not None:
            return cached.read(start, start_exclusive, end, reverse, limit, max_bytes)
        writes = t.writes
        out = await self._scan(t, start, end, start_exclusive, reverse, limit, max_bytes, partition)
        # A read that returned the whole partition, with no write to the table while
        # it ran, is the partition's content: cache it for the next Query.
        if (len(out) < limit and t.writes == writes and not t.dropped
                and (start is None or start < partition or (start == partition and not start_exclusive))
                and (end is None or end >= partition_end(partition))):
            entry = CachedPartition(out[::-1] if reverse else out[:])
            if entry.value_bytes < max_bytes:
                partitions.put(ck, entry)
        return out

    async def _scan(self, t: _Table, start: bytes | None, end: bytes | None, start_exclusive: bool,
                    reverse: bool, limit: int, max_bytes: int,
                    partition: bytes | None) -> list[tuple[bytes, bytes]]:
        """scan() from the memtables and SSTables (the partition cache not consulted)."""
        low_incl = not start_exclusive
        sources = []
        for m in t.memtables_newest_first():
            sources.append(MemtableSource(m, start, low_incl, end, False, reverse))
        readers = []
        hashes = key_hashes(partition) if partition is not None else None
        for r in t.sstables:
            if hashes is not None and not r.might_contain_hashes(*hashes):
                self.bloom_negatives_total += 1
                continue
            readers.append(r.acquire())
        try:
            for r in readers:
                sources.append(r.cursor(start, low_incl, end, False, reverse))
            # Peek at every source: a short range (a Query of one partition) usually
            # lives in one of them, and then needs no k-way merge at all.
            firsts = []
            holding = []
            for i, source in enumerate(sources):
                chunk = await source.next_chunk()
                firsts.append(chunk)
                if chunk:
                    holding.append(i)
            out = []
            total = 0
            loop = self._loop
            last_yield = loop.time()
            if len(holding) <= 1:
                if not holding:
                    return out
                source = sources[holding[0]]
                chunk = firsts[holding[0]]
                while chunk:
                    live = [kv for kv in chunk if type(kv[1]) is not int]   # no tombstones
                    size = sum([len(kv[1]) for kv in live])
                    if len(out) + len(live) < limit and total + size < max_bytes:
                        out += live          # the whole chunk fits: no per-item checks
                        total += size
                    else:
                        for kv in live:
                            out.append(kv)
                            total += len(kv[1])
                            if len(out) >= limit or total >= max_bytes:
                                return out
                    if loop.time() - last_yield > 0.002:
                        await asyncio.sleep(0)
                        last_yield = loop.time()
                    chunk = await source.next_chunk()
                return out
            merged = MergeIterator(sources, reverse, firsts)
            while len(out) < limit and total < max_bytes:
                batch = await merged.batch(256)
                if not batch:
                    break
                for key, value in batch:
                    if type(value) is int:
                        continue
                    out.append((key, value))
                    total += len(value)
                    if len(out) >= limit or total >= max_bytes:
                        break
                if loop.time() - last_yield > 0.002:
                    await asyncio.sleep(0)
                    last_yield = loop.time()
            return out
        finally:
            for r in readers:
                r.release()

    # ================================================================== durability
    def sync(self):
        """Awaitable. batch: wait for the fdatasync covering every write applied so far
        (group commit). periodic: the writes reach the page cache (survive a process crash)
        and return. Also the place where writers wait when memtables outgrow twice the
        threshold. With nothing to wait for (periodic mode, memtables under that), a future
        already done: every write awaits this, and a coroutine that does nothing costs more."""
        if (self.commitlog.sync_is_noop() and self._memtable_bytes <= 2 * self.flush_threshold
                and self._synced is not None):
            return self._synced
        return self._sync()

    async def _sync(self) -> None:
        await self.commitlog.sync()
        if self._writers_held():
            self.flush_waits_total += 1
            start = time.perf_counter()
            while self._writers_held():
                fut = asyncio.get_running_loop().create_future()
                self._flush_waiters.append(fut)
                await fut
            self.flush_wait_seconds_total += time.perf_counter() - start

    def _writers_held(self) -> bool:
        """Must a write wait for the running flush (memtables past twice the threshold)?"""
        return (self._memtable_bytes > 2 * self.flush_threshold and self._flush_task is not None
                and not self._flush_task.done())

    # ================================================================== flush
    def _maybe_flush(self) -> None:
        if self._closing or not self._open:
            return
        if self._flush_retry_at and asyncio.get_running_loop().time() < self._flush_retry_at:
            return   # the last flush failed (disk full?): don't retry on every write
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_loop())

    def _flush_needed(self) -> _Table | None:
        """The table to flush next, or None."""
        live = [t for t in self._tables.values() if len(t.active)]
        if not live:
            return None
        if self._memtable_bytes > self.flush_threshold:
            return max(live, key=lambda t: t.active.memory_bytes)
        if self.commitlog.disk_bytes() > self.commitlog_limit:
            # the oldest segment is pinned by some memtable: flush whoever pins it
            ids = self.commitlog.segment_ids()
            for seg in ids[:-1]:
                for t in live:
                    if seg in t.active.segments:
                        return t
        return None

    async def _flush_loop(self) -> None:
        try:
            while not self._closing:
                t = self._flush_needed()
                if t is None:
                    break
                await self._flush_table(t)
                self._wake_flush_waiters()
                self._trim_heap()
            self._flush_retry_at = 0.0
        except Exception as exc:
            self.background_errors_total += 1
            self._flush_retry_at = asyncio.get_running_loop().time() + FLUSH_RETRY_SECONDS
            self.log.error("storage: memtable flush failed: %s (the data stays in memory and "
                           "in the commit log; retrying in %d s)", exc, FLUSH_RETRY_SECONDS)
        finally:
            self._wake_flush_waiters()

    def _wake_flush_waiters(self) -> None:
        waiters, self._flush_waiters = self._flush_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def flush(self, table_id: str | None = None) -> None:
        """Flush one table's (or every table's) memtable now (tests, nodetool-like use)."""
        if self._flush_task is not None and not self._flush_task.done():
            await asyncio.shield(self._flush_task)
        for t in ([self._table(table_id)] if table_id else list(self._tables.values())):
            if len(t.active):
                await self._flush_table(t)

    def _freeze(self, t: _Table) -> Memtable:
        """Hand the active memtable over to a flush; later writes go to a new one."""
        m = t.active
        m.frozen = True
        m.flush_position = self.commitlog.position()
        t.frozen.append(m)
        t.active = Memtable()
        return m

    async def _flush_table(self, t: _Table) -> None:
        await self._flush_frozen(t, self._freeze(t))

    async def _flush_frozen(self, t: _Table, m: Memtable) -> None:
        try:
            await self._write_memtable(t, m)
        except BaseException:
            if not t.dropped and m in t.frozen and t.frozen[-1] is not m:
                # A newer frozen memtable (a snapshot froze one) must stay in front of this
                # one: keep it frozen, readable where it is, and try its flush again later.
                self._loop.call_later(FLUSH_RETRY_SECONDS, self._flush_in_background, t, m)
                raise
            # keep the data readable: thaw the memtable back in front of the new one
            if not t.dropped and m in t.frozen:
                t.frozen.remove(m)
                newer = t.active
                m.frozen = False
                before = m.memory_bytes
                for k, v in newer.data.items():
                    m.apply(k, v, None)
                m.segments |= newer.segments
                m.count_delta += newer.count_delta
                m.bytes_delta += newer.bytes_delta
                self._memtable_bytes += m.memory_bytes - before - newer.memory_bytes
                t.active = m
            raise

    def _flush_slice(self) -> float:
        """Seconds a flush runs before letting requests in: BACKGROUND_SLICE_S while the
        memtables are under the threshold, growing with how far past it they are, so that a
        flush keeps up with the writers (its share of the loop grows until it does) instead
        of stopping them all for a whole flush at twice the threshold."""
        over = self._memtable_bytes - self.flush_threshold
        if over <= 0:
            return BACKGROUND_SLICE_S
        return BACKGROUND_SLICE_S + MAX_EXTRA_FLUSH_SLICE_S * min(1.0, over / self.flush_threshold)

    async def _write_memtable(self, t: _Table, m: Memtable) -> None:
        async with t.lock:
            if t.frozen and t.frozen[0] is not m:
                # Installs move the replay position up to this memtable's: an older one
                # (whose flush failed) must be in an SSTable first, or a crash would lose it.
                raise InternalServerError("Internal server error: an older memtable is not flushed yet")
            generation = t.next_generation
            t.next_generation += 1
            final = os.path.join(t.path, _sstable_name(generation))
            tmp = f"{final}.{secrets.token_hex(4)}{TMP_SUFFIX}"
            writer = SSTableWriter(tmp, self.aio, block_size=self.block_size,
                                   bits_per_key=self.options.bloom_bits_per_key,
                                   expected_keys=len(m))
            slices = _FlushSlices(asyncio.get_running_loop(), self._flush_slice, t)
            try:
                for _ in m.ordering_steps():
                    await slices.pause()
                i = 0
                for key, value in m.items():
                    writer.add(key, value)
                    i += 1
                    if i & 63 == 0:
                        await writer.write_pending()
                        await slices.pause()
                meta = await writer.finish({"generation": generation, "table_id": t.table_id,
                                            "level": 0})
            except asyncio.CancelledError:
                writer.abort(unlink=not t.dropped)   # a dropped table's directory is gone
                if t.dropped:
                    return
                raise
            except BaseException:
                writer.abort(unlink=not t.dropped)
                raise
            if t.dropped:
                return
            await _uncancellable(self._install_flushed(t, m, tmp, final, meta))
        self._release_segments()
        self._maybe_compact(t)
        await self._fill_row_cache(t, m)   # last: a cancellation here loses nothing

    async def _install_flushed(self, t: _Table, m: Memtable, tmp: str, final: str,
                               meta: dict) -> None:
        """Rename, open, persist the manifest, swap in memory: all or nothing."""
        os.replace(tmp, final)
        reader = SSTableReader.load(final, self.aio, self.block_cache,
                                    self._count_checksum_error, self.log,
                                    index=meta.pop("sparse_index", None))
        new_sst_items = t.sst_items + m.count_delta
        new_sst_bytes = t.sst_bytes + m.bytes_delta
        old_position = t.replay_position
        t.sstables = [reader.acquire()] + t.sstables
        t.sst_items, t.sst_bytes = new_sst_items, new_sst_bytes
        t.replay_position = m.flush_position
        try:
            await self._persist_manifest(t)
        except BaseException:
            # the old manifest may or may not have been replaced: keep the file (an
            # unlisted file is removed at the next open) and keep serving from memory
            t.sstables = [r for r in t.sstables if r is not reader]
            reader.mark_obsolete(unlink=False)
            reader.release()
            t.sst_items -= m.count_delta
            t.sst_bytes -= m.bytes_delta
            t.replay_position = old_position
            raise
        t.frozen.remove(m)
        t.epoch += 1
        self._memtable_bytes -= m.memory_bytes
        self.flushes_total += 1
        self.flush_bytes_total += meta["file_size"]
        self.log.info("storage: flushed a memtable of table %s to %s (%d bytes, %d SSTables now)",
                      t.table_id, os.path.basename(reader.path), meta["file_size"], len(t.sstables))

    async def _fill_row_cache(self, t: _Table, m: Memtable) -> None:
        """Hand a flushed memtable's rows to the row cache while it has free room, as
        Scylla moves a flushed memtable into its cache: what was just written is
        read next from memory, not from the new SSTable.  Never evicts, so a full
        cache keeps its hot rows.  A row that a newer memtable holds is skipped;
        each row is checked and inserted in one step, and a later write drops
        the entry again (the memtable then holds the row)."""
        cache = self._row_cache
        if not cache.enabled or self._closing:
            return
        loop = self._loop or asyncio.get_running_loop()
        last_yield = loop.time()
        prefix = t.cache_prefix
        newer = [n.data for n in t.memtables_newest_first()]
        i = 0
        for key, value in m.data.items():
            i += 1
            if i & 255 == 0 and loop.time() - last_yield > BACKGROUND_SLICE_S:
                await asyncio.sleep(0)
                last_yield = loop.time()
                if t.dropped or self._closing:
                    return
                newer = [n.data for n in t.memtables_newest_first()]   # may have changed
            if any([key in data for data in newer]):
                continue
            if not cache.fill(prefix + key, None if type(value) is int else value):
                return

    def _trim_heap(self) -> None:
        """Return the C heap's free pages to the kernel after a memtable or SSTables went.

        In a worker thread (ctypes lets go of the GIL): on the loop, the trim's
        madvise calls stopped every request for 10-20 ms.  One at a time: asked
        for while one runs, another follows it.
        """
        if _malloc_trim is None or not self.options.trim_heap_after_flush:
            return
        if self._trimming:
            self._trim_again = True
            return
        self._trimming = True
        self._trim_again = False
        loop = self._loop or asyncio.get_running_loop()
        loop.run_in_executor(None, self._trim_heap_now).add_done_callback(self._trimmed)

    def _trim_heap_now(self) -> float:
        start = time.perf_counter()
        _malloc_trim(0)
        return time.perf_counter() - start

    def _trimmed(self, fut) -> None:
        self._trimming = False
        if not fut.cancelled() and fut.exception() is None:
            elapsed = fut.result()
            self.heap_trims_total += 1
            self.heap_trim_seconds_total += elapsed
            if elapsed > 0.05:
                self.log.info("storage: malloc_trim took %.1f ms", elapsed * 1e3)
        if self._trim_again and not self._closing:
            self._trim_heap()

    async def _persist_manifest(self, t: _Table) -> None:
        data = orjson.dumps(t.manifest())
        await asyncio.get_running_loop().run_in_executor(
            None, _write_file_durably, os.path.join(t.path, MANIFEST), data)

    def _release_segments(self) -> None:
        pinned: set[int] = set()
        for t in self._tables.values():
            for m in t.memtables_newest_first():
                pinned |= m.segments
        self.commitlog.release(pinned)

    # ================================================================== compaction
    def _maybe_compact(self, t: _Table) -> None:
        if self._closing or t.dropped or self.options.compaction_min_threshold < 2:
            return
        if self._compaction_task is None or self._compaction_task.done():
            self._compaction_task = asyncio.get_running_loop().create_task(self._compaction_loop())

    async def _compaction_loop(self) -> None:
        try:
            progress = True
            while progress and not self._closing:
                progress = False
                for t in list(self._tables.values()):
                    if self._closing:
                        return
                    if t.dropped:
                        continue
                    run = compaction_mod.select_run(
                        [r.file_size for r in t.sstables], self.options.compaction_min_threshold,
                        self.options.compaction_max_threshold)
                    if run is None:
                        continue
                    await self._compact(t, run[0], run[1])
                    self._trim_heap()
                    progress = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.background_errors_total += 1
            self.log.error("storage: compaction failed: %s (the old SSTables stay in use)", exc)

    async def compact(self, table_id: str) -> bool:
        """Compact every SSTable of a table into one now (major compaction)."""
        t = self._table(table_id)
        if self._compaction_task is not None and not self._compaction_task.done():
            await asyncio.shield(self._compaction_task)
        if len(t.sstables) < 2 and not any(r.meta.get("tombstones") for r in t.sstables):
            return False
        await self._compact(t, 0, len(t.sstables))
        return True

    async def _compact(self, t: _Table, start: int, end: int) -> None:
        inputs = [r.acquire() for r in t.sstables[start:end]]
        older = [r.acquire() for r in t.sstables[end:]]
        t.compacting = True
        try:
            generation = t.next_generation
            t.next_generation += 1
            final = os.path.join(t.path, _sstable_name(generation))
            tmp = f"{final}.{secrets.token_hex(4)}{TMP_SUFFIX}"
            meta, purged, _dropped = await compaction_mod.compact(
                inputs, older, tmp, self.aio,
                gc_grace_seconds=self.options.tombstone_gc_grace_seconds,
                block_size=self.block_size,
                extra_meta={"generation": generation, "table_id": t.table_id,
                            "level": 1 + max(r.meta.get("level", 0) for r in inputs)})
            async with t.lock:
                await _uncancellable(self._install_compacted(t, inputs, tmp, final, meta, purged))
        finally:
            t.compacting = False
            for r in inputs + older:
                r.release()

    async def _install_compacted(self, t: _Table, inputs: list, tmp: str, final: str,
                                 meta: dict | None, purged: int) -> None:
        current = t.sstables
        try:
            first = current.index(inputs[0])
        except ValueError:
            first = -1
        if t.dropped or first < 0 or current[first:first + len(inputs)] != inputs:
            if meta is not None and not t.dropped:
                os.unlink(tmp)
            return
        new_reader = None
        if meta is not None:
            os.replace(tmp, final)
            new_reader = SSTableReader.load(final, self.aio, self.block_cache,
                                            self._count_checksum_error, self.log,
                                            index=meta.pop("sparse_index", None)).acquire()
        replacement = [new_reader] if new_reader is not None else []
        t.sstables = current[:first] + replacement + current[first + len(inputs):]
        try:
            await self._persist_manifest(t)
        except BaseException:
            t.sstables = current
            if new_reader is not None:
                new_reader.mark_obsolete(unlink=False)
                new_reader.release()
            raise
        t.epoch += 1
        for r in inputs:
            r.mark_obsolete(unlink=True)
            r.release()           # the table's own reference
        self.compactions_total += 1
        self.log.info("storage: compacted %d SSTables of table %s into %s (%d bytes in, %d out, "
                      "%d tombstones purged)", len(inputs), t.table_id,
                      os.path.basename(new_reader.path) if new_reader is not None else "nothing",
                      sum(r.file_size for r in inputs), meta["file_size"] if meta else 0, purged)
        self.tombstones_purged_total += purged
        self.compaction_bytes_in_total += sum(r.file_size for r in inputs)
        self.compaction_bytes_out_total += meta["file_size"] if meta else 0

    # ================================================================== snapshots
    def unchanged_since(self, table_id: str) -> float:
        """A time after which no write reached the table (as far as this shard can tell):
        the time of its latest write, or a later one.  Costs the write path nothing: a
        write seen here for the first time is dated now, which is never too early."""
        t = self._table(table_id)
        if t.writes != t.last_seen_writes:
            t.last_seen_writes = t.writes
            t.last_write_time = time.time()
        return t.last_write_time

    def _flush_in_background(self, t: _Table, m: Memtable) -> None:
        if self._closing or t.dropped or m not in t.frozen:
            return
        task = self._loop.create_task(self._flush_frozen(t, m))
        self._side_flushes.add(task)
        task.add_done_callback(self._side_flush_done)

    def _side_flush_done(self, task: asyncio.Task) -> None:
        self._side_flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.background_errors_total += 1
            self.log.error("storage: memtable flush failed: %s (the data stays in memory and in "
                           "the commit log; retrying in %d s)", task.exception(), FLUSH_RETRY_SECONDS)

    async def snapshot(self, table_ids: list[str], directory: str,
                       unchanged_after: float | None = None) -> dict:
        """Copies tables (a base table and its local indexes) into ``directory`` as of one
        instant; returns the snapshot's manifest (see docs/backups_format.md).

        The instant is this call's first step, which awaits nothing: every table's active
        memtable is frozen (and flushed in the background as usual) and its SSTables are
        hard-linked.  The frozen memtables, which never change again, are then written
        into one more SSTable per table, yielding like a flush.  ``unchanged_after``: refuse
        (ValueError) unless no write reached the first table after that time.
        """
        tables = [self._table(table_id) for table_id in table_ids]
        if unchanged_after is not None and self.unchanged_since(table_ids[0]) > unchanged_after:
            raise ValueError("the table was written after the requested time")
        os.makedirs(directory)
        parts = []
        for t in tables:
            if len(t.active):
                self._flush_in_background(t, self._freeze(t))
            sub = os.path.join(directory, table_dir_name(t.table_id))
            os.makedirs(sub)
            files = []
            for i, reader in enumerate(t.sstables):     # newest first: generations descend
                name = _sstable_name(len(t.sstables) - i)
                os.link(reader.path, os.path.join(sub, name))
                files.append(name)
            parts.append((t, sub, files, list(t.frozen), t.live_items, t.live_bytes))
        manifest = {"format": 1, "tables": {}}
        for t, sub, files, memtables, live_items, live_bytes in parts:
            if memtables:
                name = _sstable_name(len(files) + 1)
                if await self._write_memtables(memtables, os.path.join(sub, name)):
                    files.insert(0, name)
            manifest["tables"][t.table_id] = {"dir": os.path.basename(sub), "sstables": files,
                                              "live_items": live_items, "live_bytes": live_bytes}
        await self._loop.run_in_executor(None, _write_snapshot_manifest, directory, manifest)
        return manifest

    async def _write_memtables(self, memtables: list[Memtable], path: str) -> bool:
        """Merges frozen memtables (oldest first), tombstones included, into one SSTable at
        path; False if they hold nothing."""
        sources = [MemtableSource(m, None, True, None, False, False) for m in reversed(memtables)]
        merged = MergeIterator(sources)
        writer = SSTableWriter(path, self.aio, block_size=self.block_size,
                               bits_per_key=self.options.bloom_bits_per_key,
                               expected_keys=sum(len(m) for m in memtables))
        try:
            while True:
                batch = await merged.batch(256)
                if not batch:
                    break
                for key, value in batch:
                    writer.add(key, value)
                await writer.write_pending()
                await asyncio.sleep(0)
            if not all(m.frozen for m in memtables):
                # a failed flush thawed one and wrote newer data into it: not the instant's copy
                raise InternalServerError("Internal server error: a memtable flush failed during a backup")
            if not writer.entries:
                writer.abort()
                return False
            await writer.finish({"generation": 0, "snapshot": True, "level": 0})
            return True
        except BaseException:
            writer.abort()
            raise

    async def create_table_from_snapshot(self, table_id: str, directory: str, source_id: str) -> None:
        """A new table holding the snapshot's copy of table ``source_id``: its SSTables
        hard-linked (the snapshot stays as it is) and opened off the event loop.  Until
        its MANIFEST is written the table does not exist (a crash removes the directory)."""
        with open(os.path.join(directory, SNAPSHOT_MANIFEST), "rb") as f:
            part = orjson.loads(f.read())["tables"][source_id]
        if table_id in self._tables:
            return
        path = os.path.join(self.tables_dir, table_dir_name(table_id))
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.makedirs(path)
        count = len(part["sstables"])
        readers = []
        try:
            for i, name in enumerate(part["sstables"]):
                final = os.path.join(path, _sstable_name(count - i))
                os.link(os.path.join(directory, part["dir"], name), final)
                # opening reads the bloom filter and parses the index: a thread's work
                readers.append((await self._loop.run_in_executor(
                    None, SSTableReader.load, final, self.aio, self.block_cache,
                    self._count_checksum_error, self.log)).acquire())
            if table_id in self._tables or self._closing:
                raise RuntimeError(f"table {table_id} was created or the storage closed meanwhile")
            t = _Table(table_id, path, secrets.randbits(63) or 1)
            t.sstables = readers
            t.next_generation = count + 1
            t.sst_items = t.live_items = int(part["live_items"])
            t.sst_bytes = t.live_bytes = int(part["live_bytes"])
            await self._loop.run_in_executor(None, _write_file_durably, os.path.join(path, MANIFEST),
                                             orjson.dumps(t.manifest()))
            if table_id in self._tables or self._closing:
                raise RuntimeError(f"table {table_id} was created or the storage closed meanwhile")
        except BaseException:
            for reader in readers:
                reader.mark_obsolete(unlink=False)
                reader.release()
            if table_id not in self._tables:
                shutil.rmtree(path, ignore_errors=True)
            raise
        _fsync_dir(self.tables_dir)
        self._tables[table_id] = t
        self._maybe_compact(t)

    # ================================================================== replay
    def _replay_record(self, kind: int, payload: bytes, position: tuple[int, int]) -> None:
        if kind == KIND_PUT or kind == KIND_DELETE:
            incarnation, table_id, off = _decode_head(payload)
            t = self._tables.get(table_id)
            if t is None or t.incarnation != incarnation:
                return   # the table was dropped (and maybe re-created) after this record
            if position <= t.replay_position:
                return   # already in an SSTable
            if kind == KIND_PUT:
                (klen,) = _KEYLEN.unpack_from(payload, off)
                key = payload[off + 4:off + 4 + klen]
                value = payload[off + 4 + klen:]
            else:
                key = payload[off:]
                value = int(time.time())
            self._apply(t, key, value, position[0], self._current_len(t, key))
            self.replay_applied_total += 1
        elif kind == KIND_DROP_TABLE:
            incarnation, table_id, _ = _decode_head(payload)
            t = self._tables.get(table_id)
            if t is not None and t.incarnation == incarnation:
                # crashed between logging the drop and removing the files
                self._forget_table(t)
        elif kind >= FIRST_USER_KIND and self.replay_hook is not None:
            self.replay_hook(kind, payload)
        else:
            self.unknown_records_total += 1

    # ================================================================== stats
    def _count_checksum_error(self) -> None:
        self.checksum_errors_total += 1

    def table_stats(self, table_id) -> tuple[int, int]:
        """(live item count, sum of value lengths), exact."""
        t = self._table(table_id)
        return t.live_items, t.live_bytes

    def stats(self) -> dict:
        sstables = [r for t in self._tables.values() for r in t.sstables]
        out = {
            "memtable_bytes": self._memtable_bytes,
            "memtables_flushing": sum(len(t.frozen) for t in self._tables.values()),
            "sstables_count": len(sstables),
            "sstables_bytes": sum(r.file_size for r in sstables),
            "flushes_total": self.flushes_total,
            "flush_waits_total": self.flush_waits_total,
            "flush_wait_seconds_total": self.flush_wait_seconds_total,
            "flush_bytes_total": self.flush_bytes_total,
            "compactions_total": self.compactions_total,
            "compaction_bytes_in_total": self.compaction_bytes_in_total,
            "compaction_bytes_out_total": self.compaction_bytes_out_total,
            "compactions_pending": int(self._compaction_task is not None
                                       and not self._compaction_task.done()),
            "tombstones_purged_total": self.tombstones_purged_total,
            "checksum_errors_total": self.checksum_errors_total,
            "row_cache_items": len(self._row_cache),
            "row_cache_bytes": self._row_cache.size,
            "row_cache_hits_total": self._row_cache.hits,
            "row_cache_misses_total": self._row_cache.misses,
            "row_cache_evictions_total": self._row_cache.evictions,
            "partition_cache_partitions": len(self._partitions),
            "partition_cache_bytes": self._partitions.size,
            "partition_cache_hits_total": self._partitions.hits,
            "partition_cache_misses_total": self._partitions.misses,
            "partition_cache_evictions_total": self._partitions.evictions,
            "block_cache_bytes": self.block_cache.size,
            "block_cache_hits_total": self.block_cache.hits,
            "block_cache_misses_total": self.block_cache.misses,
            "bloom_filter_negatives_total": self.bloom_negatives_total,
            "sstable_reads_total": self.sstable_reads_total,
            "blind_write_reads_total": self.blind_write_reads_total,
            "get_retries_total": self.get_retries_total,
            "background_errors_total": self.background_errors_total,
            "unknown_records_total": self.unknown_records_total,
            "replay_applied_total": self.replay_applied_total,
            "heap_trims_total": self.heap_trims_total,
            "heap_trim_seconds_total": self.heap_trim_seconds_total,
            "sstables_memory_bytes": sum(r.memory_bytes() for r in sstables),
            "tables": len(self._tables),
        }
        out.update(self.commitlog.stats())
        out.update(self.aio.stats())
        return out
