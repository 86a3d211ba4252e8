"""Data blocks of an SSTable: building them and searching them.

A block is a run of entries (key, value or tombstone) in ascending key order
followed by an array of u64 key prefixes, an array of u32 entry offsets and a
u32 entry count (docs/sstable_format.md, "Data block").  A point lookup
bisects the prefix array in C (bisect over an array of machine words), and
only reads the one or few entries whose 8-byte prefix matches: no Python work
per entry of the block.  A parsed block (``Block``: the bytes plus the two
arrays) is what the block cache holds, so a hot block is parsed once.

No I/O, no checksums here: the reader verifies a block's trailer before
handing its bytes to these functions.  A block's bytes may be bytes or a
bytearray; keys and values come out as bytes.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left, bisect_right

from shardserver.sstable.format import ENTRY_HEADER, FLAG_TOMBSTONE, TOMBSTONE_VALUE, key_prefix

_HDR = ENTRY_HEADER
_HDR_SIZE = ENTRY_HEADER.size
_U32 = struct.Struct("<I")
_TOMB = TOMBSTONE_VALUE
_BIG_ENDIAN = sys.byteorder != "little"

MISSING = object()

# what a cached Block costs beyond its bytes and array items: the object, the array headers
BLOCK_OVERHEAD = 256


class BlockBuilder:
    """Accumulates entries; finish() returns the block bytes and resets."""

    __slots__ = ("parts", "offsets", "prefixes", "size", "last_key", "first_key")

    def __init__(self):
        self.parts: list[bytes] = []
        self.offsets = array("I")
        self.prefixes = array("Q")
        self.size = 0
        self.last_key: bytes | None = None
        self.first_key: bytes | None = None

    def add(self, key: bytes, value) -> int:
        """value: bytes, or an int deletion time for a tombstone.  Returns the size the
        block would have if finished now: entries, prefix and offset arrays, count."""
        if type(value) is int:
            body = _TOMB.pack(value)
            flags = FLAG_TOMBSTONE
        else:
            body = value
            flags = 0
        offsets = self.offsets
        offsets.append(self.size)
        # key_prefix(key), inline for the usual key of 8 bytes or more
        self.prefixes.append(int.from_bytes(key[:8], "big") if len(key) >= 8 else key_prefix(key))
        parts = self.parts
        parts.append(_HDR.pack(len(key), len(body), flags))
        parts.append(key)
        parts.append(body)
        size = self.size = self.size + _HDR_SIZE + len(key) + len(body)
        if self.first_key is None:
            self.first_key = key
        self.last_key = key
        return size + 12 * len(offsets) + 4

    @property
    def empty(self) -> bool:
        return not self.offsets

    def finish(self) -> bytes:
        n = len(self.offsets)
        prefixes, offsets = self.prefixes, self.offsets
        if _BIG_ENDIAN:
            prefixes.byteswap()
            offsets.byteswap()
        self.parts.append(prefixes.tobytes())
        self.parts.append(offsets.tobytes())
        self.parts.append(_U32.pack(n))
        data = b"".join(self.parts)
        self.parts = []
        self.offsets = array("I")
        self.prefixes = array("Q")
        self.size = 0
        self.first_key = None
        self.last_key = None
        return data


class Block:
    """A verified data block with its prefix and offset arrays decoded (two C copies)."""

    __slots__ = ("data", "n", "prefixes", "offsets", "entries_end", "charge")

    def __init__(self, data, size: int | None = None):
        """data: the block's bytes; or, with size, a buffer whose first size bytes are
        the block (the reader's scratch buffer: the Block must not outlive the call)."""
        if size is None:
            size = len(data)
        if size < 4:
            raise ValueError("data block shorter than its entry count")
        (n,) = _U32.unpack_from(data, size - 4)
        start = size - 4 - 12 * n
        if start < 0:
            raise ValueError("data block too short for its %d entries" % n)
        mid = start + 8 * n
        prefixes = array("Q", data[start:mid])    # a slice: two C copies of n words
        offsets = array("I", data[mid:size - 4])
        if _BIG_ENDIAN:
            prefixes.byteswap()
            offsets.byteswap()
        # bytes, not the bytearray a read filled: slices of bytes are the
        # keys and values handed out, one copy each instead of two.
        self.data = data if type(data) is bytes else bytes(data)
        self.n = n
        self.prefixes = prefixes
        self.offsets = offsets
        self.entries_end = start
        self.charge = size + 12 * n + BLOCK_OVERHEAD    # the bytes plus both arrays' copies

    def find(self, key: bytes, prefix: int | None = None):
        """The value bytes, a tombstone int, or MISSING for key in this block.

        prefix: key_prefix(key), when the caller already computed it."""
        if prefix is None:
            prefix = key_prefix(key)
        prefixes = self.prefixes
        i = bisect_left(prefixes, prefix)
        n = self.n
        if i == n or prefixes[i] != prefix:
            return MISSING
        data = self.data
        if i + 1 < n and prefixes[i + 1] == prefix:
            # keys sharing their first 8 bytes (one partition's items, short keys):
            # binary search the run on whole keys
            offsets = self.offsets
            lo, hi = i, bisect_right(prefixes, prefix, i)
            while lo < hi:
                mid = (lo + hi) >> 1
                off = offsets[mid]
                klen = _U32.unpack_from(data, off)[0]
                kstart = off + _HDR_SIZE
                k = data[kstart:kstart + klen]
                if k < key:
                    lo = mid + 1
                elif k > key:
                    hi = mid
                else:
                    i = mid
                    break
            else:
                return MISSING
        off = self.offsets[i]
        klen, vlen, flags = _HDR.unpack_from(data, off)
        kstart = off + _HDR_SIZE
        if klen != len(key) or not data.startswith(key, kstart):
            return MISSING
        vstart = kstart + klen
        if flags & FLAG_TOMBSTONE:
            return _TOMB.unpack_from(data, vstart)[0]
        value = data[vstart:vstart + vlen]
        return value if type(value) is bytes else bytes(value)

    def _key_at(self, i: int):
        off = self.offsets[i]
        kstart = off + _HDR_SIZE
        return self.data[kstart:kstart + _U32.unpack_from(self.data, off)[0]]

    def bound(self, key: bytes, after: bool) -> int:
        """Index of the first entry whose key is >= key (> key if after).

        The prefix array narrows it to the entries sharing key's 8-byte
        prefix (prefixes never decrease along the block); only those are
        compared whole."""
        prefixes = self.prefixes
        prefix = key_prefix(key)
        lo = bisect_left(prefixes, prefix)
        hi = bisect_right(prefixes, prefix, lo)
        if lo == hi:
            return lo
        # A Query's bounds enclose one partition, whose items share the token
        # prefix: the bound is then at one end of the run, which two
        # comparisons tell without a search.
        k = self._key_at(lo)
        if k > key or (not after and k == key):
            return lo
        k = self._key_at(hi - 1)
        if k < key or (after and k == key):
            return hi
        lo += 1
        hi -= 1
        while lo < hi:
            mid = (lo + hi) >> 1
            k = self._key_at(mid)
            if k < key or (after and k == key):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def entries_between(self, lo: int, hi: int) -> list[tuple[bytes, object]]:
        """The (key, value-or-tombstone) pairs of entries lo..hi-1, ascending."""
        block = self.data
        offsets = self.offsets
        out = []
        append = out.append
        unpack_hdr = _HDR.unpack_from
        for i in range(lo, hi):
            off = offsets[i]
            klen, vlen, flags = unpack_hdr(block, off)
            kstart = off + _HDR_SIZE
            vstart = kstart + klen
            if flags & FLAG_TOMBSTONE:
                append((block[kstart:vstart], _TOMB.unpack_from(block, vstart)[0]))
            else:
                append((block[kstart:vstart], block[vstart:vstart + vlen]))
        return out

    def entries(self) -> list[tuple[bytes, object]]:
        """Every (key, value-or-tombstone) of the block, ascending."""
        block = self.data
        out = []
        append = out.append
        unpack_hdr = _HDR.unpack_from
        off = 0
        for _ in range(self.n):
            klen, vlen, flags = unpack_hdr(block, off)
            kstart = off + _HDR_SIZE
            vstart = kstart + klen
            end = vstart + vlen
            if flags & FLAG_TOMBSTONE:
                append((bytes(block[kstart:vstart]), _TOMB.unpack_from(block, vstart)[0]))
            else:
                append((bytes(block[kstart:vstart]), bytes(block[vstart:end])))
            off = end
        if off != self.entries_end:
            raise ValueError("block entries do not end where the prefix array starts")
        return out


def find(block, key: bytes):
    """block: a Block, or a block's bytes (tests, tools)."""
    if type(block) is not Block:
        block = Block(block)
    return block.find(key)


def entries(block) -> list[tuple[bytes, object]]:
    if type(block) is not Block:
        block = Block(block)
    return block.entries()
