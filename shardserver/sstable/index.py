"""The sparse index of an SSTable, kept in memory as a few flat arrays.

Owns the in-memory form of the index block (docs/sstable_format.md, "Index
block"): per data block its file offset, its length and its index key, a
separator that is >= every key of the block and < every key of the next
block.  The keys live in one bytes blob, and an 8-byte big-endian prefix of
each key sits in a machine-word array that bisect searches first, so a
table of millions of blocks costs a few dozen bytes per block and no Python
object per entry (per-entry tuples and bytes objects were most of a large
shard's heap, and a load for the garbage collector).

Also owns the writer-side choice of short separators.  No I/O, no checksums.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

from shardserver.sstable.format import INDEX_ENTRY, U32, key_prefix


def shortest_separator(last: bytes, following: bytes) -> bytes:
    """A short s with last <= s < following (LevelDB's FindShortestSeparator)."""
    n = min(len(last), len(following))
    i = 0
    while i < n and last[i] == following[i]:
        i += 1
    if i < n and last[i] + 1 < following[i]:
        return last[:i] + bytes((last[i] + 1,))
    return last


class SparseIndex:
    __slots__ = ("offsets", "lengths", "prefixes", "key_starts", "blob")

    def __init__(self):
        self.offsets = array("Q")      # block offset in the file
        self.lengths = array("I")      # block length without its trailer
        self.prefixes = array("Q")     # key_prefix(index key)
        self.key_starts = array("Q", [0])   # index key i is blob[key_starts[i]:key_starts[i+1]]
        self.blob = bytearray()

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, offset: int, length: int, key: bytes) -> None:
        self.offsets.append(offset)
        self.lengths.append(length)
        self.prefixes.append(key_prefix(key))
        self.blob += key
        self.key_starts.append(len(self.blob))

    def key(self, i: int) -> bytes:
        return bytes(self.blob[self.key_starts[i]:self.key_starts[i + 1]])

    def keys(self) -> list[bytes]:
        """Every index key (tests and tools; not for the read path)."""
        return [self.key(i) for i in range(len(self))]

    def lower_bound(self, key: bytes, p: int | None = None) -> int:
        """The first block whose index key is >= key (len(self) if none).

        p: key_prefix(key), when the caller already computed it."""
        prefixes = self.prefixes
        if p is None:
            p = key_prefix(key)
        i = bisect_left(prefixes, p)
        n = len(prefixes)
        # equal prefixes (keys sharing a token, or short keys): compare whole keys
        blob, starts = self.blob, self.key_starts
        while i < n and prefixes[i] == p and blob[starts[i]:starts[i + 1]] < key:
            i += 1
        return i

    def memory_bytes(self) -> int:
        return (self.offsets.itemsize * len(self.offsets) + self.lengths.itemsize * len(self.lengths)
                + self.prefixes.itemsize * len(self.prefixes)
                + self.key_starts.itemsize * len(self.key_starts) + len(self.blob))

    def freeze(self) -> None:
        """Drop the slack arrays and the blob grew into while being built."""
        self.blob = bytes(self.blob)
        for name in ("offsets", "lengths", "prefixes", "key_starts"):
            a = getattr(self, name)
            setattr(self, name, array(a.typecode, a))

    # ------------------------------------------------------------------ on disk
    def to_bytes(self) -> bytes:
        parts = [U32.pack(len(self))]
        pack = INDEX_ENTRY.pack
        blob, starts = self.blob, self.key_starts
        for i in range(len(self)):
            a, b = starts[i], starts[i + 1]
            parts.append(pack(self.offsets[i], self.lengths[i], b - a))
            parts.append(blob[a:b])
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> "SparseIndex":
        (count,) = U32.unpack_from(data, 0)
        pos = U32.size
        index = cls()
        unpack = INDEX_ENTRY.unpack_from
        size = INDEX_ENTRY.size
        for _ in range(count):
            off, length, klen = unpack(data, pos)
            pos += size
            if pos + klen > len(data):
                raise ValueError("index block truncated")
            index.append(off, length, data[pos:pos + klen])
            pos += klen
        index.freeze()
        return index
