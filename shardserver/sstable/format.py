"""SSTable on-disk constants and fixed-size structures (docs/sstable_format.md).

Owns the byte layout shared by the writer and the reader: the entry header,
the block trailer, the index entry, the meta block and the footer.  It does
no I/O and holds no state.
"""

from __future__ import annotations

import struct

import crc32c

MAGIC = b"SHSST001"
# 2: data blocks carry a key-prefix array, the bloom filter is blocked in 64-bit words.
# Version 1 files are refused with a message that says so (their blocks cannot be
# searched the version-2 way).
FORMAT_VERSION = 2

# entry inside a data block: key length, value length, flags; then key, value
ENTRY_HEADER = struct.Struct("<IIB")
FLAG_TOMBSTONE = 1
TOMBSTONE_VALUE = struct.Struct("<Q")   # deletion time, seconds since the epoch

# every block (data, bloom, index, meta) is followed by crc32c(block bytes)
BLOCK_TRAILER = struct.Struct("<I")

# index entry: block offset, block length (without trailer), last key length; then last key
INDEX_ENTRY = struct.Struct("<QII")

# footer: bloom (offset, length), index (offset, length), meta (offset, length),
# format version, reserved, crc32c of the preceding 56 bytes, magic
FOOTER = struct.Struct("<QQQQQQIIIxxxx8s")
FOOTER_SIZE = FOOTER.size   # 72

_U32 = struct.Struct("<I")
U32 = _U32
KEY_PREFIX_SIZE = 8


def key_prefix(key: bytes) -> int:
    """The first 8 bytes of key as a big-endian integer, zero-padded: order-preserving
    in the weak sense (a < b implies prefix(a) <= prefix(b)).  Data blocks and the
    sparse index bisect arrays of these before comparing whole keys."""
    if len(key) >= KEY_PREFIX_SIZE:
        return int.from_bytes(key[:KEY_PREFIX_SIZE], "big")
    return int.from_bytes(key.ljust(KEY_PREFIX_SIZE, b"\0"), "big")


def checksum(data) -> int:
    return crc32c.crc32c(data)


def encode_footer(bloom: tuple[int, int], index: tuple[int, int], meta: tuple[int, int]) -> bytes:
    body = struct.pack("<QQQQQQII", bloom[0], bloom[1], index[0], index[1], meta[0], meta[1],
                       FORMAT_VERSION, 0)
    return body + _U32.pack(checksum(body)) + b"\0\0\0\0" + MAGIC


class FooterError(ValueError):
    pass


def decode_footer(data: bytes) -> dict:
    if len(data) != FOOTER_SIZE:
        raise FooterError("short footer")
    (b_off, b_len, i_off, i_len, m_off, m_len, version, _res, crc,
     magic) = FOOTER.unpack(data)
    if magic != MAGIC:
        raise FooterError("bad magic")
    if checksum(data[:56]) != crc:
        raise FooterError("footer checksum mismatch")
    if version != FORMAT_VERSION:
        raise FooterError(f"SSTable format version {version} is not readable by this shardserver, "
                          f"which reads version {FORMAT_VERSION} only"
                          + (" (version 1 files come from an older release)" if version < FORMAT_VERSION
                             else ""))
    return {"bloom": (b_off, b_len), "index": (i_off, i_len), "meta": (m_off, m_len)}
