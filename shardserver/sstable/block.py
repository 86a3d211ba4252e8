"""Data blocks of an SSTable: building them and searching them.

A block is a run of entries (key, value or tombstone) in ascending key order
followed by an array of u32 entry offsets and a u32 entry count, so a point
lookup binary-searches the raw bytes without decoding the whole block
(docs/sstable_format.md, "Data block").  No I/O, no checksums here: the
reader verifies a block's trailer before handing its bytes to these functions.
A block may be bytes or a bytearray; keys and values come out as bytes.
"""

from __future__ import annotations

import struct

from shardserver.sstable.format import ENTRY_HEADER, FLAG_TOMBSTONE, TOMBSTONE_VALUE

_HDR = ENTRY_HEADER
_HDR_SIZE = ENTRY_HEADER.size
_U32 = struct.Struct("<I")
_TOMB = TOMBSTONE_VALUE

MISSING = object()


class BlockBuilder:
    """Accumulates entries; finish() returns the block bytes and resets."""

    __slots__ = ("parts", "offsets", "size", "last_key", "first_key")

    def __init__(self):
        self.parts: list[bytes] = []
        self.offsets: list[int] = []
        self.size = 0
        self.last_key: bytes | None = None
        self.first_key: bytes | None = None

    def add(self, key: bytes, value) -> None:
        """value: bytes, or an int deletion time for a tombstone."""
        if type(value) is int:
            body = _TOMB.pack(value)
            flags = FLAG_TOMBSTONE
        else:
            body = value
            flags = 0
        self.offsets.append(self.size)
        head = _HDR.pack(len(key), len(body), flags)
        self.parts.append(head)
        self.parts.append(key)
        self.parts.append(body)
        self.size += _HDR_SIZE + len(key) + len(body)
        if self.first_key is None:
            self.first_key = key
        self.last_key = key

    @property
    def empty(self) -> bool:
        return not self.offsets

    def estimated_size(self) -> int:
        return self.size + 4 * len(self.offsets) + 4

    def finish(self) -> bytes:
        n = len(self.offsets)
        self.parts.append(struct.pack(f"<{n}I", *self.offsets))
        self.parts.append(_U32.pack(n))
        data = b"".join(self.parts)
        self.parts = []
        self.offsets = []
        self.size = 0
        self.first_key = None
        self.last_key = None
        return data


def _layout(block: bytes) -> tuple[int, int]:
    """(entry count, start of the offsets array)."""
    (n,) = _U32.unpack_from(block, len(block) - 4)
    return n, len(block) - 4 - 4 * n


def find(block: bytes, key: bytes):
    """The value bytes, a tombstone int, or MISSING for key in this block."""
    n, offs = _layout(block)
    unpack_off = _U32.unpack_from
    unpack_hdr = _HDR.unpack_from
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        (off,) = unpack_off(block, offs + 4 * mid)
        klen, vlen, flags = unpack_hdr(block, off)
        kstart = off + _HDR_SIZE
        k = block[kstart:kstart + klen]
        if k < key:
            lo = mid + 1
        elif k > key:
            hi = mid
        else:
            vstart = kstart + klen
            if flags & FLAG_TOMBSTONE:
                return _TOMB.unpack_from(block, vstart)[0]
            return bytes(block[vstart:vstart + vlen])   # no copy when block is bytes
    return MISSING


def entries(block: bytes) -> list[tuple[bytes, object]]:
    """Every (key, value-or-tombstone) of the block, ascending."""
    n, offs = _layout(block)
    out = []
    append = out.append
    unpack_hdr = _HDR.unpack_from
    off = 0
    for _ in range(n):
        klen, vlen, flags = unpack_hdr(block, off)
        kstart = off + _HDR_SIZE
        vstart = kstart + klen
        end = vstart + vlen
        if flags & FLAG_TOMBSTONE:
            append((bytes(block[kstart:vstart]), _TOMB.unpack_from(block, vstart)[0]))
        else:
            append((bytes(block[kstart:vstart]), bytes(block[vstart:end])))
        off = end
    if off != offs:
        raise ValueError("block entries do not end where the offsets array starts")
    return out
