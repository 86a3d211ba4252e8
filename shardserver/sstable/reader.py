"""SSTable reader: point lookups and ordered cursors over one immutable file.

Owns an open SSTable: its bloom filter and sparse index in memory (flat
arrays, see index.py), data blocks read on demand, each block's CRC32C
verified before use and the block kept parsed (block.Block) in a shared block
cache.  get_nowait() answers a point read without suspending whenever the
block is in the block cache or the page cache.  A block already in the kernel's page
cache is copied out with a non-blocking preadv(RWF_NOWAIT), which costs a
fraction of an AIO round trip; only a block that would wait for the disk goes
through the shard's AIO context, so the loop never waits on the device.  A mismatch is logged, counted and
raised as InternalServerError: never garbage.  Reference counts keep the file
open for reads in flight after compaction replaced it.

It must never write to the file and never return an entry outside the range
it was asked for.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
from collections import OrderedDict

import orjson

from shardserver.errors import InternalServerError
from shardserver.sstable import block as block_mod
from shardserver.sstable.bloom import BloomFilter, bloom_key
from shardserver.sstable.format import BLOCK_TRAILER, FOOTER_SIZE, FooterError, checksum, decode_footer
from shardserver.sstable.index import SparseIndex

MISSING = block_mod.MISSING
# get_nowait's answer when the block is neither cached nor in the page cache
NEED_IO = object()
_ids = itertools.count(1)

# preadv(..., RWF_NOWAIT) reads what the page cache holds and fails with EAGAIN
# instead of waiting for the device (Linux >= 4.14 for buffered reads).
RWF_NOWAIT = getattr(os, "RWF_NOWAIT", None)
_nowait_usable = RWF_NOWAIT is not None and hasattr(os, "preadv")


class CorruptSSTable(Exception):
    """Raised while opening a file whose structure is damaged."""


class BlockCache:
    """LRU of verified, parsed data blocks (block.Block), shared by every SSTable of a shard.

    Keyed by (reader uid << 32) | block number: one int, no tuple per lookup.

    Admission: while the cache has room every block goes in; once it is full, a
    point read's block goes in only if it was missed recently already (a ghost
    list of the keys of the last misses, one per 64 KB of capacity).  A block
    that is not admitted is read into one scratch buffer that stays in the CPU
    caches.  Under uniform reads of a table several times the cache, inserting
    every missed block (a freshly evicted, cold 8 KB buffer to fill, an
    eviction) made a point read ~6 us dearer than reading into the scratch
    buffer, for hits it did not buy: measured 15-17 us against 10 us per
    read with 100,000 items of 1 KB and the default 32 MB cache.
    """

    def __init__(self, capacity_bytes: int = 32 << 20):
        self.capacity = capacity_bytes
        self.size = 0
        self._blocks: OrderedDict = OrderedDict()
        self._ghosts: OrderedDict = OrderedDict()
        # a block missed again within the last ~512 misses (32 MB cache) is hot enough
        self._ghost_limit = max(64, capacity_bytes // 65536)
        self._scratch = bytearray(0)
        self._scratch_view = memoryview(self._scratch)
        self.hits = 0
        self.misses = 0
        self.bypassed = 0       # point reads served from the scratch buffer, not admitted

    def admit(self, key, nbytes: int) -> bool:
        """Whether the block of nbytes missed under key should be cached (class doc)."""
        if self.capacity <= 0:
            return False
        if self.size + nbytes + block_mod.BLOCK_OVERHEAD <= self.capacity:
            return True     # room left: caching it evicts nothing
        ghosts = self._ghosts
        if key in ghosts:
            del ghosts[key]
            return True
        ghosts[key] = None
        if len(ghosts) > self._ghost_limit:
            ghosts.popitem(last=False)
        self.bypassed += 1
        return False

    def scratch(self, nbytes: int) -> memoryview:
        """A view of nbytes of the shard's scratch buffer (valid until the next call)."""
        if len(self._scratch) < nbytes:
            self._scratch = bytearray(max(nbytes, 2 * len(self._scratch)))
            self._scratch_view = memoryview(self._scratch)
        return self._scratch_view[:nbytes]

    def get(self, key):
        block = self._blocks.get(key)
        if block is None:
            self.misses += 1
            return None
        self.hits += 1
        self._blocks.move_to_end(key)
        return block

    def put(self, key, block) -> None:
        charge = block.charge
        if self.capacity <= 0 or charge > self.capacity // 4:
            return
        old = self._blocks.pop(key, None)
        if old is not None:
            self.size -= old.charge
        self._blocks[key] = block
        self.size += charge
        while self.size > self.capacity:
            _, evicted = self._blocks.popitem(last=False)
            self.size -= evicted.charge

    def forget(self, reader_uid: int, nblocks: int) -> None:
        base = reader_uid << 32
        for i in range(nblocks):
            block = self._blocks.pop(base | i, None)
            if block is not None:
                self.size -= block.charge


class SSTableReader:
    def __init__(self, path: str, fd: int, size: int, bloom: BloomFilter, index: SparseIndex,
                 meta: dict, aio, cache: BlockCache, on_checksum_error, log):
        self.uid = next(_ids)
        self.cache_base = self.uid << 32     # block i's key in the block cache: cache_base | i
        self.path = path
        self.fd = fd
        self.file_size = size
        self.bloom = bloom
        self.index = index
        self.offsets = index.offsets
        self.lengths = index.lengths
        self.meta = meta
        self.aio = aio
        self.cache = cache
        self.on_checksum_error = on_checksum_error
        self.log = log
        self.refs = 0
        self.obsolete = False
        self._unlink_when_done = False
        self.page_cache_reads = 0     # blocks copied from the page cache without AIO
        self.aio_reads = 0

    @property
    def last_keys(self) -> list[bytes]:
        """The index keys (each >= its block's last key); tests and tools only."""
        return self.index.keys()

    def memory_bytes(self) -> int:
        """What this open SSTable keeps in memory: bloom filter and sparse index."""
        return self.bloom.memory_bytes + self.index.memory_bytes()

    # ------------------------------------------------------------------ opening
    @classmethod
    def load(cls, path: str, aio, cache: BlockCache, on_checksum_error=None,
             log: logging.Logger | None = None, index: SparseIndex | None = None) -> "SSTableReader":
        """Open a finished SSTable (blocking reads of footer, bloom, index, meta).

        index: the writer's in-memory index of this very file, which saves parsing
        the index block again (a loop in Python over every block of a big file)."""
        log = log or logging.getLogger("shardserver.sstable")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < FOOTER_SIZE:
                raise CorruptSSTable(f"{path}: file too short for a footer")
            try:
                footer = decode_footer(os.pread(fd, FOOTER_SIZE, size - FOOTER_SIZE))
            except FooterError as exc:
                raise CorruptSSTable(f"{path}: {exc}") from None

            def section(name):
                off, length = footer[name]
                raw = os.pread(fd, length + BLOCK_TRAILER.size, off)
                if len(raw) != length + BLOCK_TRAILER.size:
                    raise CorruptSSTable(f"{path}: {name} block truncated")
                body = raw[:length]
                if checksum(body) != BLOCK_TRAILER.unpack_from(raw, length)[0]:
                    raise CorruptSSTable(f"{path}: {name} block checksum mismatch")
                return body

            bloom = BloomFilter.from_bytes(section("bloom"))
            meta = orjson.loads(section("meta"))
            if index is None:
                index = SparseIndex.from_bytes(section("index"))
            elif len(index) != meta.get("blocks", len(index)):
                raise CorruptSSTable(f"{path}: index given does not match the file")
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, size, bloom, index, meta, aio, cache, on_checksum_error, log)

    # ------------------------------------------------------------------ life cycle
    def acquire(self) -> "SSTableReader":
        self.refs += 1
        return self

    def release(self) -> None:
        self.refs -= 1
        if self.obsolete and self.refs <= 0:
            self._close()

    def mark_obsolete(self, unlink: bool) -> None:
        """No longer part of the table: close (and unlink) once the last reader is done."""
        self.obsolete = True
        self._unlink_when_done = unlink
        if self.refs <= 0:
            self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.cache.forget(self.uid, len(self.offsets))
        if self._unlink_when_done:
            self._unlink_when_done = False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    @property
    def nblocks(self) -> int:
        return len(self.offsets)

    # ------------------------------------------------------------------ blocks
    def _verify(self, i: int, raw, fill_cache: bool = True) -> block_mod.Block:
        """raw: bytes, or a bytearray this reader owns (trimmed in place, no copy).
        Returns the parsed block, now in the block cache (if fill_cache)."""
        length = self.lengths[i]
        if len(raw) == length + BLOCK_TRAILER.size:
            with memoryview(raw) as view:
                good = checksum(view[:length]) == BLOCK_TRAILER.unpack_from(raw, length)[0]
            if good:
                if type(raw) is bytearray:
                    del raw[length:]
                    body = raw
                else:
                    body = raw[:length]
                try:
                    block = block_mod.Block(body)
                except ValueError:
                    block = None    # a checksum-valid block we cannot parse: same refusal
                if block is not None:
                    if fill_cache:
                        self.cache.put(self.cache_base | i, block)
                    return block
        self._checksum_mismatch(i, len(raw))

    def _checksum_mismatch(self, i: int, nread: int):
        if self.on_checksum_error is not None:
            self.on_checksum_error()
        self.log.error("SSTable %s: checksum mismatch in data block %d at offset %d "
                       "(%d bytes read); refusing to return its contents",
                       self.path, i, self.offsets[i], nread)
        raise InternalServerError("Internal server error")

    async def read_block(self, i: int, fill_cache: bool = True) -> block_mod.Block:
        """fill_cache=False: a block read once (compaction) must not evict hot ones."""
        cached = self.cache.get(self.cache_base | i)
        if cached is not None:
            return cached
        return await self.load_block(i, fill_cache)

    async def load_block(self, i: int, fill_cache: bool = True) -> block_mod.Block:
        """Block i from the file (the caller found it missing from the block cache)."""
        nbytes = self.lengths[i] + BLOCK_TRAILER.size
        if _nowait_usable:
            raw = self._read_cached_pages(self.offsets[i], nbytes)
            if raw is not None:
                self.page_cache_reads += 1
                return self._verify(i, raw, fill_cache)
        self.aio_reads += 1
        raw = await self.aio.read(self.fd, self.offsets[i], nbytes)
        return self._verify(i, raw, fill_cache)

    def _read_cached_pages(self, offset: int, nbytes: int):
        """The bytes if the page cache holds all of them, else None (never waits on the disk)."""
        buf = bytearray(nbytes)
        return buf if self._read_cached_pages_into(buf, offset) else None

    def _read_cached_pages_into(self, buf, offset: int) -> bool:
        """Fill buf (writable, exact size) from the page cache; False if it would wait."""
        global _nowait_usable
        nbytes = len(buf)
        try:
            n = os.preadv(self.fd, [buf], offset, RWF_NOWAIT)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                _nowait_usable = False     # kernel or filesystem without RWF_NOWAIT
                return False
            raise
        return n == nbytes   # else partly cached (or a short file: AIO reports it the same way)

    def read_block_blocking(self, i: int) -> block_mod.Block:
        cached = self.cache.get(self.cache_base | i)
        if cached is not None:
            return cached
        raw = os.pread(self.fd, self.lengths[i] + BLOCK_TRAILER.size, self.offsets[i])
        return self._verify(i, raw)

    # ------------------------------------------------------------------ lookups
    def might_contain(self, key: bytes) -> bool:
        return self.bloom.might_contain(bloom_key(key))

    def might_contain_hashes(self, h1: int, h2: int) -> bool:
        """h1, h2: key_hashes of a bloom key (a partition prefix, see bloom.bloom_key)."""
        return self.bloom.might_contain_hashes(h1, h2)

    def block_for(self, key: bytes) -> int:
        """Index of the only block that may hold key, or -1."""
        i = self.index.lower_bound(key)
        return i if i < len(self.index) else -1

    async def get(self, key: bytes):
        """Value bytes, tombstone int, or MISSING."""
        i = self.block_for(key)
        if i < 0:
            return MISSING
        return (await self.read_block(i)).find(key)

    def get_nowait(self, key: bytes, prefix: int):
        """get() without waiting: value bytes, tombstone int, MISSING, or NEED_IO when the
        block is in neither the block cache nor the page cache (then await get()).

        prefix: format.key_prefix(key), computed once by the caller for every SSTable."""
        i = self.index.lower_bound(key, prefix)
        if i >= len(self.offsets):
            return MISSING
        cache = self.cache
        block_key = self.cache_base | i
        block = cache.get(block_key)
        if block is not None:
            return block.find(key, prefix)
        if not _nowait_usable:
            return NEED_IO
        nbytes = self.lengths[i] + BLOCK_TRAILER.size
        if cache.admit(block_key, nbytes):
            raw = self._read_cached_pages(self.offsets[i], nbytes)
            if raw is None:
                return NEED_IO
            self.page_cache_reads += 1
            return self._verify(i, raw).find(key, prefix)
        view = cache.scratch(nbytes)
        if not self._read_cached_pages_into(view, self.offsets[i]):
            return NEED_IO
        self.page_cache_reads += 1
        length = nbytes - BLOCK_TRAILER.size
        if checksum(view[:length]) != BLOCK_TRAILER.unpack_from(view, length)[0]:
            self._checksum_mismatch(i, nbytes)
        try:
            block = block_mod.Block(view.obj, length)
        except ValueError:
            self._checksum_mismatch(i, nbytes)
        return block.find(key, prefix)

    def get_blocking(self, key: bytes):
        i = self.block_for(key)
        if i < 0:
            return MISSING
        return self.read_block_blocking(i).find(key)

    def cursor(self, low, low_inclusive, high, high_inclusive, reverse,
               fill_cache: bool = True) -> "SSTableCursor":
        return SSTableCursor(self, low, low_inclusive, high, high_inclusive, reverse, fill_cache)


class SSTableCursor:
    """Walks the blocks overlapping [low, high] in key order (or reverse), one block per chunk."""

    __slots__ = ("reader", "low", "low_inclusive", "high", "high_inclusive", "reverse", "block",
                 "done", "fill_cache")

    def __init__(self, reader: SSTableReader, low, low_inclusive, high, high_inclusive, reverse,
                 fill_cache: bool = True):
        self.reader = reader
        self.fill_cache = fill_cache
        self.low = low
        self.low_inclusive = low_inclusive
        self.high = high
        self.high_inclusive = high_inclusive
        self.reverse = reverse
        n = reader.nblocks
        if not reverse:
            self.block = reader.index.lower_bound(low) if low is not None else 0
        else:
            self.block = reader.index.lower_bound(high) if high is not None else n - 1
            if self.block >= n:
                self.block = n - 1
        self.done = n == 0

    async def next_chunk(self) -> list[tuple[bytes, object]]:
        """The next non-empty run of in-range entries in scan order; [] once exhausted."""
        reader = self.reader
        n = reader.nblocks
        cache = reader.cache
        while not self.done and 0 <= self.block < n:
            # A cached block needs no coroutine: most blocks of a hot range are.
            block = cache.get(reader.cache_base | self.block)
            if block is None:
                block = await reader.load_block(self.block, self.fill_cache)
            # Only the entries inside the bounds are decoded: a Query of one
            # partition touches a few entries of a block, not all of them.
            count = block.n
            # Past the first block, the bound behind the scan is behind every key.
            lo = 0 if self.low is None else block.bound(self.low, not self.low_inclusive)
            hi = count if self.high is None else block.bound(self.high, self.high_inclusive)
            if not self.reverse:
                self.low = None
                self.block += 1
                if hi < count:
                    self.done = True      # this block already passes the upper bound
            else:
                self.high = None
                self.block -= 1
                if lo > 0:
                    self.done = True
            if lo < hi:
                chunk = block.entries_between(lo, hi)
                if self.reverse:
                    chunk.reverse()
                return chunk
        self.done = True
        return []
