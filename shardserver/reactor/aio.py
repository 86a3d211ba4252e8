"""Per-shard kernel asynchronous I/O (Linux AIO through caio), with a thread fallback.

Owns one AIO context per shard process: a fixed queue depth reserved in the
kernel's `fs.aio-nr`, completions delivered through an eventfd that caio
registers as a reader on the running (uv)loop.  Where Linux AIO cannot be set
up (no kernel support, aio-max-nr exhausted, seccomp) it falls back to caio's
thread implementation and says so in the log.  Also offers the arithmetic the
supervisor needs to check `fs.aio-max-nr` before starting the shards.

It must never block the event loop on I/O of its own and never be shared
between processes (a context belongs to the process that created it).
"""

from __future__ import annotations

import asyncio
import logging
import os

AIO_MAX_NR = "/proc/sys/fs/aio-max-nr"
AIO_NR = "/proc/sys/fs/aio-nr"

MODE_LINUX = "linux-aio"
MODE_THREADS = "threads"


def aio_events_needed(nshards: int, depth: int) -> int:
    """AIO events the whole server reserves: every shard opens one context of `depth`."""
    return max(0, int(nshards)) * max(1, int(depth))


def _read_proc_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip() or b"0")
    except (OSError, ValueError):
        return None


def aio_available_events() -> int | None:
    """fs.aio-max-nr minus fs.aio-nr: events still free system-wide (None if unknown)."""
    max_nr = _read_proc_int(AIO_MAX_NR)
    nr = _read_proc_int(AIO_NR)
    if max_nr is None or nr is None:
        return None
    return max(0, max_nr - nr)


class AIOContext:
    """A shard's I/O door: read/write/fdsync on raw file descriptors, awaited.

    Reads and writes are positional (pread/pwrite semantics) so one fd can be
    shared by many concurrent operations.  `mode` is "linux-aio" or "threads".
    """

    def __init__(self, depth: int = 128, log: logging.Logger | None = None,
                 force_threads: bool = False):
        self.depth = max(1, int(depth))
        self.log = log or logging.getLogger("shardserver.aio")
        self.force_threads = force_threads
        self.mode: str | None = None
        self._ctx = None
        self._fsync_via_thread = False
        self.reads_total = 0
        self.writes_total = 0
        self.syncs_total = 0
        self.read_bytes_total = 0
        self.write_bytes_total = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.force_threads:
            try:
                from caio import linux_aio_asyncio
                self._ctx = linux_aio_asyncio.AsyncioContext(max_requests=self.depth, loop=loop)
                self.mode = MODE_LINUX
                self.log.info("storage I/O: Linux AIO context, queue depth %d", self.depth)
                return
            except Exception as exc:  # any failure to set up kernel AIO means: use threads
                self.log.warning("storage I/O: Linux AIO unavailable (%s); falling back to a "
                                 "thread pool — expect higher I/O latency", exc)
        from caio import thread_aio_asyncio
        # The thread implementation runs each op on a pool thread; a handful is enough
        # because the row cache and page cache serve the hot path.
        self._ctx = thread_aio_asyncio.AsyncioContext(max_requests=min(self.depth, 16), loop=loop)
        self.mode = MODE_THREADS
        self.log.info("storage I/O: thread pool fallback (%d threads)", min(self.depth, 16))

    def close(self) -> None:
        if self._ctx is not None:
            try:
                self._ctx.close()
            finally:
                self._ctx = None

    @property
    def is_open(self) -> bool:
        return self._ctx is not None

    async def read(self, fd: int, offset: int, nbytes: int) -> bytes:
        self.reads_total += 1
        if self._ctx is None:
            data = os.pread(fd, nbytes, offset)
        else:
            data = await self._ctx.read(nbytes, fd, offset)
        self.read_bytes_total += len(data)
        return data

    async def write(self, fd: int, offset: int, data: bytes) -> None:
        """Write all of `data` at `offset` (short writes are continued, errors raised)."""
        view = memoryview(data)
        done = 0
        while done < len(view):
            chunk = bytes(view[done:])
            if self._ctx is None:
                n = os.pwrite(fd, chunk, offset + done)
            else:
                n = await self._ctx.write(chunk, fd, offset + done)
            if n is None or n <= 0:
                # caio reports the kernel's negative result as an exception; a zero write
                # means the device accepts nothing (treat like ENOSPC rather than spin).
                raise OSError(28, "short write (no space left on device?)")
            done += n
        self.writes_total += 1
        self.write_bytes_total += len(view)

    async def fdatasync(self, fd: int) -> None:
        self.syncs_total += 1
        if self._ctx is None:
            os.fdatasync(fd)
            return
        if not self._fsync_via_thread:
            try:
                await self._ctx.fdsync(fd)
                return
            except OSError as exc:
                if exc.errno not in (22, 95):  # EINVAL/EOPNOTSUPP: fs lacks AIO fsync
                    raise
                self._fsync_via_thread = True
                self.log.info("storage I/O: filesystem has no AIO fdsync; fsync in a thread")
        await asyncio.get_running_loop().run_in_executor(None, os.fdatasync, fd)

    def stats(self) -> dict:
        return {
            "aio_mode": self.mode or "closed",
            "aio_queue_depth": self.depth,
            "aio_reads_total": self.reads_total,
            "aio_writes_total": self.writes_total,
            "aio_syncs_total": self.syncs_total,
            "aio_read_bytes_total": self.read_bytes_total,
            "aio_write_bytes_total": self.write_bytes_total,
        }
