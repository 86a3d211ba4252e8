"""SSTable writer: turns a sorted stream of entries into one immutable file.

Owns the encoding of a whole SSTable (data blocks, bloom filter, sparse index,
meta block, footer; docs/sstable_format.md) into a temporary file written in
chunks through the shard's AIO context, fsynced before finish() returns.
Installing the file (rename, manifest) is the caller's business.

It must never block the loop for long: add() only encodes in memory, and the
caller awaits write_pending() whenever pending_bytes grows, which hands the
bytes to the kernel and yields.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array

import orjson

from shardserver.sstable import bloom as bloom_mod
from shardserver.sstable.block import BlockBuilder
from shardserver.sstable.format import BLOCK_TRAILER, checksum, encode_footer
from shardserver.sstable.index import SparseIndex, shortest_separator

DEFAULT_BLOCK_SIZE = 8 * 1024
WRITE_CHUNK = 1 << 20
BLOOM_CHUNK = 10000


class SSTableWriter:
    def __init__(self, path: str, aio, *, block_size: int = DEFAULT_BLOCK_SIZE,
                 bits_per_key: float = bloom_mod.DEFAULT_BITS_PER_KEY, expected_keys: int | None = None):
        """expected_keys: an upper bound on the entries to come, when the caller knows
        one (a flush, a compaction): the bloom filter is then sized up front and fed as
        entries arrive instead of buffering 16 bytes of hashes per entry to the end."""
        self.path = path
        self.aio = aio
        self.block_size = block_size
        self.bits_per_key = bits_per_key
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self._file_offset = 0           # where the pending bytes start in the file
        self._pending: list[bytes] = []
        self.pending_bytes = 0
        self._block = BlockBuilder()
        self.index = SparseIndex()
        # the finished block whose index entry waits for the next block's first key
        # (its index key is a short separator between the two)
        self._open_entry: tuple[int, int, bytes] | None = None
        # flat h1, h2, h1, h2...: an array of machine words creates no objects the
        # garbage collector has to walk (a list of tuples made gen-2 pauses of 15+ ms)
        self._hashes = array("Q")
        self._bloom = (bloom_mod.BloomBuilder(expected_keys, bits_per_key)
                       if expected_keys is not None else None)
        self._last_key: bytes | None = None
        self.entries = 0
        self.tombstones = 0
        self.live_items = 0
        self.live_bytes = 0
        self.min_key: bytes | None = None
        self.min_deletion_time: int | None = None
        self.max_deletion_time: int | None = None
        self._closed = False

    @property
    def _written_upto(self) -> int:
        return self._file_offset + self.pending_bytes

    def add(self, key: bytes, value) -> None:
        """Append an entry; keys must strictly ascend. value: bytes or tombstone int."""
        if self._last_key is not None and key <= self._last_key:
            raise ValueError("SSTable keys must be added in strictly ascending order")
        self._last_key = key
        if self.min_key is None:
            self.min_key = key
        if self._open_entry is not None:
            offset, length, last = self._open_entry
            self._open_entry = None
            self.index.append(offset, length, shortest_separator(last, key))
        block_size = self._block.add(key, value)
        hashes = self._hashes
        hashes.extend(bloom_mod.partition_hashes(key))
        self.entries += 1
        if self._bloom is not None and len(hashes) >= 2 * BLOOM_CHUNK:
            self._bloom.add_hash_words(hashes)
            self._hashes = array("Q")
        if type(value) is int:
            self.tombstones += 1
            if self.min_deletion_time is None or value < self.min_deletion_time:
                self.min_deletion_time = value
            if self.max_deletion_time is None or value > self.max_deletion_time:
                self.max_deletion_time = value
        else:
            self.live_items += 1
            self.live_bytes += len(value)
        if block_size >= self.block_size:
            self._finish_block()

    def _finish_block(self) -> None:
        if self._block.empty:
            return
        last_key = self._block.last_key
        data = self._block.finish()
        offset = self._written_upto
        self._emit(data)
        self._emit(BLOCK_TRAILER.pack(checksum(data)))
        self._open_entry = (offset, len(data), last_key)

    def _emit(self, data: bytes) -> None:
        self._pending.append(data)
        self.pending_bytes += len(data)

    async def write_pending(self, force: bool = False) -> None:
        """Hand pending bytes to the kernel once there is a chunk's worth (or when forced)."""
        if not self._pending or (self.pending_bytes < WRITE_CHUNK and not force):
            return
        data = b"".join(self._pending)
        self._pending = []
        offset = self._file_offset
        self._file_offset += len(data)
        self.pending_bytes = 0
        await self.aio.write(self.fd, offset, data)

    async def finish(self, extra_meta: dict | None = None) -> dict:
        """Write the bloom, index, meta blocks and footer, fdatasync, close.

        Returns the meta, plus "file_size" and "sparse_index" (the in-memory index)."""
        self._finish_block()
        if self._open_entry is not None:
            offset, length, last = self._open_entry
            self._open_entry = None
            self.index.append(offset, length, last)
        self.index.freeze()
        # more entries than expected_keys only raise the false-positive rate: a bloom
        # filter never answers "absent" for a key it was given
        builder = self._bloom or bloom_mod.BloomBuilder(self.entries, self.bits_per_key)
        self._bloom = None
        hashes, self._hashes = self._hashes, array("Q")
        for start in range(0, len(hashes), 2 * BLOOM_CHUNK):
            builder.add_hash_words(hashes[start:start + 2 * BLOOM_CHUNK])
            await asyncio.sleep(0)   # bounded work per loop turn
        bloom = builder.finish()
        bloom_bytes = bloom.to_bytes()
        bloom_loc = (self._written_upto, len(bloom_bytes))
        self._emit(bloom_bytes)
        self._emit(BLOCK_TRAILER.pack(checksum(bloom_bytes)))

        index_bytes = self.index.to_bytes()
        index_loc = (self._written_upto, len(index_bytes))
        self._emit(index_bytes)
        self._emit(BLOCK_TRAILER.pack(checksum(index_bytes)))

        meta = {
            "entries": self.entries,
            "tombstones": self.tombstones,
            "live_items": self.live_items,
            "live_bytes": self.live_bytes,
            "blocks": len(self.index),
            "min_key": self.min_key.hex() if self.min_key is not None else None,
            "max_key": self._last_key.hex() if self._last_key is not None else None,
            "min_deletion_time": self.min_deletion_time,
            "max_deletion_time": self.max_deletion_time,
            "created_at": int(time.time()),
        }
        if extra_meta:
            meta.update(extra_meta)
        meta_bytes = orjson.dumps(meta)
        meta_loc = (self._written_upto, len(meta_bytes))
        self._emit(meta_bytes)
        self._emit(BLOCK_TRAILER.pack(checksum(meta_bytes)))
        self._emit(encode_footer(bloom_loc, index_loc, meta_loc))
        await self.write_pending(force=True)
        await self.aio.fdatasync(self.fd)
        os.close(self.fd)
        self._closed = True
        # not part of the meta block (written above): handed to SSTableReader.load so the
        # file's index need not be parsed back from disk
        meta["file_size"] = self._file_offset
        meta["sparse_index"] = self.index
        return meta

    def abort(self, unlink: bool = True) -> None:
        """Close and remove the partial file (the SSTable never existed)."""
        if not self._closed:
            self._closed = True
            try:
                os.close(self.fd)
            except OSError:
                pass
        if unlink:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
