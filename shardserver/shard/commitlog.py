"""The shard's commit log: append-only segments of checksummed records.

Owns the files under <shard dir>/commitlog/ (format: docs/commitlog_format.md):
framing of records (length, kind, CRC32C), segment rolling, the two sync modes
Scylla offers (`periodic`: fsync on a timer; `batch`: group commit, the caller
waits for the fsync that covers its record), replay on open with truncation of
a torn or corrupt tail, and deletion of segments nobody needs any more.
With ``enabled=False`` (the server's ``durable_writes: false``) it still
replays and deletes the segments found on disk, but writes nothing: appends
only advance an in-memory position, and syncs return at once.

It knows nothing about tables or keys: payloads are opaque bytes whose
meaning the storage layer (shardserver.shard.storage) defines by `kind`.
It must never lose or reorder an appended record, and never acknowledge a
sync before the covering fdatasync has completed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import crc32c

from shardserver.errors import InternalServerError

SEGMENT_MAGIC = b"SSCL"
SEGMENT_VERSION = 1
# magic, version, flags, shard id, segment id, crc32c of the preceding 20 bytes
SEGMENT_HEADER = struct.Struct("<4sHHIQ")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size + 4   # 24
# crc32c over (length, kind, payload); length of the payload; kind
RECORD_HEADER = struct.Struct("<IIB")
RECORD_HEADER_SIZE = RECORD_HEADER.size          # 9
_LEN_KIND = struct.Struct("<IB")
_U32 = struct.Struct("<I")
MAX_RECORD_PAYLOAD = 1 << 30

SEGMENT_PREFIX = "CommitLog-"
SEGMENT_SUFFIX = ".log"


def segment_name(shard_id: int, segment_id: int) -> str:
    return f"{SEGMENT_PREFIX}{shard_id}-{segment_id:016d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The segment id of a segment file name, None for anything else."""
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    middle = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
    _, _, seg = middle.rpartition("-")
    return int(seg) if seg.isdigit() else None


def _unlink_all(paths: list[str], log) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:   # the file stays; the next open replays and releases it again
            log.warning("commit log: could not delete segment %s: %s", path, exc)


def encode_segment_header(shard_id: int, segment_id: int) -> bytes:
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, 0, shard_id & 0xFFFFFFFF, segment_id)
    return head + _U32.pack(crc32c.crc32c(head))


def decode_segment_header(data: bytes) -> tuple[int, int] | None:
    """(shard_id, segment_id) of a valid header, None if short or damaged."""
    if len(data) < SEGMENT_HEADER_SIZE:
        return None
    head = data[:SEGMENT_HEADER.size]
    (crc,) = _U32.unpack_from(data, SEGMENT_HEADER.size)
    if crc32c.crc32c(head) != crc:
        return None
    magic, version, _flags, shard_id, segment_id = SEGMENT_HEADER.unpack(head)
    if magic != SEGMENT_MAGIC or version != SEGMENT_VERSION:
        return None
    return shard_id, segment_id


def encode_record(kind: int, payload: bytes) -> bytes:
    if not 0 < kind < 256:
        raise ValueError("record kind must be 1..255")
    if len(payload) > MAX_RECORD_PAYLOAD:
        raise ValueError("commit log record too large")
    len_kind = _LEN_KIND.pack(len(payload), kind)
    crc = crc32c.crc32c(payload, crc32c.crc32c(len_kind))
    return _U32.pack(crc) + len_kind + payload


def scan_records(data: bytes | memoryview, start: int = SEGMENT_HEADER_SIZE):
    """Parse a segment image: (valid_end, damaged, [(kind, payload, end_offset), ...]).

    `damaged` is None when the image ends exactly at a record boundary, else a
    short reason ("torn header", "torn payload", "checksum mismatch", "bad kind").
    """
    view = memoryview(data)
    n = len(view)
    off = start
    out = []
    damaged = None
    while off < n:
        if n - off < RECORD_HEADER_SIZE:
            damaged = "torn record header"
            break
        crc, length, kind = RECORD_HEADER.unpack_from(view, off)
        body_start = off + RECORD_HEADER_SIZE
        end = body_start + length
        if length > MAX_RECORD_PAYLOAD or end > n:
            damaged = "torn record payload"
            break
        payload = view[body_start:end]
        if crc32c.crc32c(payload, crc32c.crc32c(view[off + 4:body_start])) != crc:
            damaged = "checksum mismatch"
            break
        if kind == 0:
            damaged = "bad record kind"
            break
        out.append((kind, bytes(payload), end))
        off = end
    return off, damaged, out


class _Segment:
    __slots__ = ("segment_id", "path", "fd", "written", "synced", "size")

    def __init__(self, segment_id: int, path: str, fd: int | None, size: int):
        self.segment_id = segment_id
        self.path = path
        self.fd = fd
        self.size = size        # bytes appended (written or still buffered)
        self.written = size     # bytes that reached the file (page cache)
        self.synced = size      # bytes covered by a completed fdatasync


class CommitLog:
    """One shard's commit log.  Life cycle: replay() -> start() -> append()/sync() -> close()."""

    def __init__(self, directory: str, shard_id: int, *, sync_mode: str = "periodic",
                 sync_period_ms: int = 10000, batch_window_ms: float = 2.0,
                 segment_size: int = 32 << 20, aio=None, log: logging.Logger | None = None,
                 enabled: bool = True):
        if sync_mode not in ("periodic", "batch"):
            raise ValueError("commitlog_sync must be 'periodic' or 'batch'")
        self.directory = directory
        self.shard_id = shard_id
        self.sync_mode = sync_mode
        self.sync_period = max(1, sync_period_ms) / 1000.0
        self.batch_window = max(0.0, batch_window_ms) / 1000.0
        self.segment_size = max(SEGMENT_HEADER_SIZE + 1, int(segment_size))
        self.aio = aio
        self.log = log or logging.getLogger("shardserver.commitlog")
        self.enabled = enabled

        self._segments: list[_Segment] = []     # oldest first; the last one is active
        self._buffer = bytearray()              # appended, not yet written to the active segment
        self._write_scheduled = False
        # Set by the shard once every acknowledgement it sends passes through
        # write_pending(): periodic syncs then leave the write to that barrier,
        # one pwrite per loop iteration instead of one per write.
        self.acks_wait_for_writes = False
        self._dir_dirty = False
        self._error: OSError | None = None
        self._closed = False
        self._started = False

        self._disk_bytes = 0                    # sum of the segments' sizes (checked per write)
        self.appended_total = 0                 # log-wide byte counters, monotonic
        self.written_total = 0
        self.synced_total = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._sync_task: asyncio.Task | None = None
        self._periodic_task: asyncio.Task | None = None
        self._last_sync_start = 0.0

        self.syncs_total = 0
        self.corrupt_records_total = 0
        self.write_errors_total = 0
        self.records_total = 0
        self.replayed_records_total = 0
        self.segments_deleted_total = 0
        # Released segments are unlinked by one worker thread (so in the order
        # release() let them go): unlinking a 32 MB file took ~30 ms on the loop.
        self._deleter: ThreadPoolExecutor | None = None
        self._deleting = None                   # the last deletion handed to it

    # ------------------------------------------------------------------ replay
    def existing_segments(self) -> list[tuple[int, str]]:
        """(segment id, file name) of the segments on disk, oldest first."""
        os.makedirs(self.directory, exist_ok=True)
        found = []
        for name in os.listdir(self.directory):
            seg = parse_segment_name(name)
            if seg is not None:
                found.append((seg, name))
        return sorted(found)

    def replay(self, handler) -> int:
        """Feed every valid record to handler(kind, payload, (segment_id, end_offset)).

        Damaged tails are truncated (with a warning, counted) so they are not
        replayed again; the replayed segments stay on disk, owned by this log,
        until release() finds them unneeded.  Returns the highest segment id seen.
        """
        highest = 0
        for seg_id, name in self.existing_segments():
            highest = max(highest, seg_id)
            path = os.path.join(self.directory, name)
            with open(path, "rb") as f:
                data = f.read()
            header = decode_segment_header(data)
            if header is None or header[1] != seg_id:
                if len(data) <= SEGMENT_HEADER_SIZE:
                    # a segment torn while being created holds no record: nothing lost
                    self.log.warning("commit log: removing segment %s with a torn header (%d bytes)",
                                     path, len(data))
                    os.unlink(path)
                    continue
                self.corrupt_records_total += 1
                self.log.warning("commit log: segment %s has a damaged header; moved aside as "
                                 "%s.corrupt, its records are not replayed", path, path)
                os.replace(path, path + ".corrupt")
                continue
            valid_end, damaged, records = scan_records(data)
            for kind, payload, end in records:
                handler(kind, payload, (seg_id, end))
                self.replayed_records_total += 1
            if damaged is not None:
                self.corrupt_records_total += 1
                self.log.warning("commit log: %s at offset %d of %s (%d bytes dropped); "
                                 "truncating the segment there", damaged, valid_end, path,
                                 len(data) - valid_end)
                with open(path, "r+b") as f:
                    f.truncate(valid_end)
                    os.fsync(f.fileno())
            self._segments.append(_Segment(seg_id, path, None, valid_end))
            self._disk_bytes += valid_end
        return highest

    # ------------------------------------------------------------------ writing
    def start(self, first_segment_id: int) -> None:
        """Open a fresh active segment; ids must grow across restarts."""
        last = self._segments[-1].segment_id if self._segments else 0
        segment_id = max(first_segment_id, last + 1)
        if not self.enabled:
            # no file: positions still grow past every replayed record, so a later
            # start with the commit log enabled picks a fresh segment id
            self._segments.append(_Segment(segment_id, "", None, SEGMENT_HEADER_SIZE))
            self._started = True
            return
        self._open_segment(segment_id)
        self._started = True
        if self.sync_mode == "periodic":
            self._periodic_task = asyncio.get_running_loop().create_task(self._periodic_sync())

    def _open_segment(self, segment_id: int) -> None:
        path = os.path.join(self.directory, segment_name(self.shard_id, segment_id))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            header = encode_segment_header(self.shard_id, segment_id)
            os.pwrite(fd, header, 0)
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        seg = _Segment(segment_id, path, fd, SEGMENT_HEADER_SIZE)
        seg.synced = 0
        self._segments.append(seg)
        self._disk_bytes += SEGMENT_HEADER_SIZE
        self._dir_dirty = True

    @property
    def active_segment_id(self) -> int:
        return self._segments[-1].segment_id

    def position(self) -> tuple[int, int]:
        """(segment id, offset) just past the last appended record."""
        seg = self._segments[-1]
        return seg.segment_id, seg.size

    @property
    def failed(self) -> bool:
        return self._error is not None

    def check_writable(self) -> None:
        """Raise InternalServerError while the log cannot write (e.g. disk full)."""
        if self._error is not None:
            self._write_out()
            if self._error is not None:
                raise InternalServerError("Internal server error: commit log write failed "
                                          f"({os.strerror(self._error.errno or errno.EIO)})")

    def append(self, kind: int, payload: bytes) -> tuple[int, int]:
        """Append one record; returns its position (segment id, end offset).

        The record is in memory now, reaches the page cache before the loop's
        next iteration (or at the next sync()), and is durable after sync().
        """
        if self._closed or not self._started:
            raise InternalServerError("Internal server error: commit log is not open")
        if not self.enabled:
            self.records_total += 1
            seg = self._segments[-1]
            return seg.segment_id, seg.size
        self.check_writable()
        record = encode_record(kind, payload)
        seg = self._segments[-1]
        if seg.size + len(record) > self.segment_size and seg.size > SEGMENT_HEADER_SIZE:
            self._roll()
            seg = self._segments[-1]
        self._buffer += record
        seg.size += len(record)
        self._disk_bytes += len(record)
        self.appended_total += len(record)
        self.records_total += 1
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_write)
        return seg.segment_id, seg.size

    def _roll(self) -> None:
        self._write_out()
        if self._buffer:
            return  # cannot write the old segment's tail: stay on it rather than reorder
        try:
            self._open_segment(self._segments[-1].segment_id + 1)
        except OSError as exc:
            self._set_error(exc, "creating a commit log segment")

    def _scheduled_write(self) -> None:
        self._write_scheduled = False
        self._write_out()

    def _write_out(self) -> None:
        """Move the buffer into the active segment's file with pwrite.

        pwrite of an append into the page cache measured ~0.8 us against ~7 us
        for a Linux AIO round trip, so buffered appends use it; fdatasync,
        the slow part, goes through the AIO context.
        """
        if not self._buffer:
            return
        seg = self._segments[-1]
        try:
            while self._buffer:
                n = os.pwrite(seg.fd, self._buffer, seg.written)
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                del self._buffer[:n]
                seg.written += n
                self.written_total += n
        except OSError as exc:
            self._set_error(exc, "writing the commit log")
            return
        if self._error is not None:
            self.log.warning("commit log: writes succeed again (%s)", seg.path)
            self._error = None

    def write_pending(self) -> bool:
        """The barrier before answers leave the shard: appended records into the page cache.

        Returns False while records stay unwritten (the write failed): the
        answers about to leave may acknowledge them, so they must not claim
        success.  Until a retried write succeeds every answer of the shard
        fails, as a commit-log failure stops a ScyllaDB node from serving.
        """
        if not self._buffer:
            return True
        self._write_out()
        return not self._buffer

    def _set_error(self, exc: OSError, what: str) -> None:
        if self._error is None:
            self.log.error("commit log: %s failed: %s; writes fail with InternalServerError "
                           "until this clears", what, exc)
        self.write_errors_total += 1
        self._error = exc

    # ------------------------------------------------------------------ syncing
    def sync_is_noop(self) -> bool:
        """True when sync() would return at once doing nothing: no log, or periodic mode
        whose records reach the page cache at the acknowledgement barrier (or already did)."""
        return not self.enabled or (self._error is None and self.sync_mode == "periodic" and (
            self.acks_wait_for_writes or self.written_total >= self.appended_total))

    async def sync(self) -> None:
        """batch: wait for an fdatasync covering every record appended so far (shared with
        concurrent callers). periodic: make sure those records reached the page cache."""
        if not self.enabled:
            return
        if self._error is not None:
            self.check_writable()
        target = self.appended_total
        if self.sync_mode == "periodic":
            if self.written_total < target and not self.acks_wait_for_writes:
                self._write_out()
                if self._error is not None:
                    self.check_writable()
            return
        if self.synced_total >= target:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._group_commit())
        await fut

    async def _group_commit(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            if self.batch_window > 0.0:
                # one fsync at most per window: writers arriving meanwhile share the next one
                wait = self._last_sync_start + self.batch_window - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            else:
                await asyncio.sleep(0)
            self._last_sync_start = loop.time()
            try:
                await self._sync_all()
            except OSError as exc:
                self._set_error(exc, "syncing the commit log")
                waiters, self._waiters = self._waiters, []
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(InternalServerError(
                            f"Internal server error: commit log sync failed ({exc.strerror})"))
                return
            done = self.synced_total
            still = []
            for target, fut in self._waiters:
                if target <= done:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((target, fut))
            self._waiters = still

    async def _sync_all(self) -> None:
        """Write out and fdatasync everything appended so far; close finished segments."""
        self._write_out()
        if self._error is not None:
            raise self._error
        target = self.written_total
        dir_dirty = self._dir_dirty
        self._dir_dirty = False
        for seg in list(self._segments):
            if seg.fd is None or seg.synced >= seg.written:
                continue
            upto = seg.written
            if self.aio is not None and self.aio.is_open:
                await self.aio.fdatasync(seg.fd)
            else:
                await asyncio.get_running_loop().run_in_executor(None, os.fdatasync, seg.fd)
            seg.synced = max(seg.synced, upto)
            if seg is not self._segments[-1] and seg.synced >= seg.size and seg.fd is not None:
                os.close(seg.fd)
                seg.fd = None
        if dir_dirty:
            await asyncio.get_running_loop().run_in_executor(None, _fsync_dir, self.directory)
        self.syncs_total += 1
        self.synced_total = max(self.synced_total, target)

    async def _periodic_sync(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.sync_period)
            if self._closed:
                break
            if self.synced_total >= self.appended_total and not self._dir_dirty:
                continue
            try:
                await self._sync_all()
            except OSError as exc:
                self._set_error(exc, "syncing the commit log")
            except asyncio.CancelledError:
                raise

    def sync_blocking(self) -> None:
        """Write out and fdatasync now, blocking the loop: for rare events (DROP TABLE)
        whose record must be durable before files are removed."""
        if not self.enabled:
            return
        self._write_out()
        if self._error is not None:
            self.check_writable()
        for seg in self._segments:
            if seg.fd is not None and seg.synced < seg.written:
                os.fdatasync(seg.fd)
                seg.synced = seg.written
        if self._dir_dirty:
            _fsync_dir(self.directory)
            self._dir_dirty = False
        self.syncs_total += 1
        self.synced_total = max(self.synced_total, self.written_total)

    # ------------------------------------------------------------------ recycling
    def segment_ids(self) -> list[int]:
        return [s.segment_id for s in self._segments]

    def release(self, pinned: set[int]) -> int:
        """Delete the oldest segments that no unflushed memtable pins.

        Only a prefix is deleted: a younger segment may hold the record that
        cancels data in an older one (a table drop), so it must outlive it.
        """
        paths = []
        while len(self._segments) > 1:
            seg = self._segments[0]
            if seg.segment_id in pinned:
                break
            if seg.fd is not None:
                if seg.synced < seg.written:
                    break  # its fsync is still pending: keep the file until then
                os.close(seg.fd)
                seg.fd = None
            paths.append(seg.path)
            self._segments.pop(0)
            self._disk_bytes -= seg.size
            self.segments_deleted_total += 1
        if paths:
            self._delete_files(paths)
        return len(paths)

    def _delete_files(self, paths: list[str]) -> None:
        """Unlink released segments, off the event loop while the log is open.

        A released segment's file lingering a few milliseconds is harmless: a
        replay skips what the tables' replay positions say is in SSTables.
        """
        if self._closed:
            _unlink_all(paths, self.log)
            return
        if self._deleter is None:
            self._deleter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commitlog-unlink")
        self._deleting = self._deleter.submit(_unlink_all, paths, self.log)

    async def deletions_done(self) -> None:
        """Wait until the files of every segment released so far are gone."""
        if self._deleting is not None:
            await asyncio.wrap_future(self._deleting)

    def disk_bytes(self) -> int:
        """Bytes of the segments the log holds (on disk or being written; not the released
        ones whose files are being deleted): what commitlog_total_space caps."""
        return self._disk_bytes

    # ------------------------------------------------------------------ closing
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._periodic_task is not None:
            self._periodic_task.cancel()
            try:
                await self._periodic_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._sync_task is not None and not self._sync_task.done():
            try:
                await self._sync_task
            except Exception:
                pass
        if self._started and self.enabled:
            try:
                await self._sync_all()
            except OSError as exc:
                self.log.error("commit log: final sync failed: %s", exc)
        for seg in self._segments:
            if seg.fd is not None:
                os.close(seg.fd)
                seg.fd = None
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(InternalServerError("Internal server error: commit log closed"))
        self._waiters = []
        if self._deleter is not None:
            await self.deletions_done()
            self._deleter.shutdown()
            self._deleter = None

    def stats(self) -> dict:
        return {
            "commitlog_bytes_total": self.appended_total,
            "commitlog_records_total": self.records_total,
            "commitlog_syncs_total": self.syncs_total,
            "commitlog_segments": len(self._segments),
            "commitlog_disk_bytes": self.disk_bytes(),
            "commitlog_pending_bytes": self.appended_total - self.written_total,
            "commitlog_write_errors_total": self.write_errors_total,
            "commitlog_segments_deleted_total": self.segments_deleted_total,
            "commitlog_replayed_records_total": self.replayed_records_total,
            "corrupt_records_total": self.corrupt_records_total,
        }


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
