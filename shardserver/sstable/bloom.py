"""Bloom filter of an SSTable's keys: mmh3 hashes over a numpy bit array.

Owns the filter's construction, its membership test and its serialized form
(docs/sstable_format.md, "Bloom block").  k probes come from double hashing
of the two 64-bit halves of MurmurHash3 x64_128 (Kirsch-Mitzenmacher).
It never does I/O and never reports a present key as absent.
"""

from __future__ import annotations

import math
import struct

import mmh3
import numpy as np

_HEADER = struct.Struct("<QI")   # number of bits, number of probes
_MASK64 = (1 << 64) - 1


def key_hashes(key: bytes) -> tuple[int, int]:
    return mmh3.hash64(key, signed=False)


_TERMINATOR = b"\x00\x01"


def bloom_key(key: bytes) -> bytes:
    """What a partition-keyed filter hashes for a storage key: its partition prefix.

    A storage key is 8 token bytes, the partition key escaped and ended by
    0x00 0x01 (content 0x00 is escaped as 0x00 0xFF, so the first 0x00 0x01
    after the token ends it), then the sort key.  As in Scylla, the filter
    answers "may this SSTable hold the partition?", which serves point reads
    and a Query of one partition alike.  A key without a terminator (an
    internal table's) is its own partition.
    """
    end = key.find(_TERMINATOR, 8)
    return key if end < 0 else key[:end + 2]


def optimal_probes(bits_per_key: float) -> int:
    return max(1, min(30, int(round(bits_per_key * math.log(2)))))


class BloomFilter:
    # Only the packed bytes are kept: indexing bytes is cheaper than numpy scalar
    # access, and one copy of the bits is all a large table should pay for.
    __slots__ = ("nbits", "nprobes", "_bytes")

    def __init__(self, nbits: int, nprobes: int, bits):
        self.nbits = nbits
        self.nprobes = nprobes
        self._bytes = bits.tobytes() if isinstance(bits, np.ndarray) else bytes(bits)

    @property
    def bits(self) -> np.ndarray:
        return np.frombuffer(self._bytes, dtype=np.uint8)

    @property
    def memory_bytes(self) -> int:
        return len(self._bytes)

    @classmethod
    def build(cls, hashes: list[tuple[int, int]], bits_per_key: float = 10.0) -> "BloomFilter":
        builder = BloomBuilder(len(hashes), bits_per_key)
        builder.add_hashes(hashes)
        return builder.finish()

    def might_contain(self, key: bytes) -> bool:
        h1, h2 = mmh3.hash64(key, signed=False)
        return self.might_contain_hashes(h1, h2)

    def might_contain_hashes(self, h1: int, h2: int) -> bool:
        """might_contain for a key whose key_hashes() the caller computed once for
        every SSTable of a table (the filters share the hash function)."""
        nbits = self.nbits
        data = self._bytes
        for i in range(self.nprobes):
            pos = ((h1 + i * h2) & _MASK64) % nbits
            if not data[pos >> 3] & (1 << (pos & 7)):
                return False
        return True

    def to_bytes(self) -> bytes:
        return _HEADER.pack(self.nbits, self.nprobes) + self._bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> "BloomFilter":
        nbits, nprobes = _HEADER.unpack_from(data, 0)
        raw = data[_HEADER.size:]
        if len(raw) * 8 != nbits or nprobes < 1:
            raise ValueError("bloom filter block is inconsistent")
        return cls(nbits, nprobes, raw)


class BloomBuilder:
    """Builds a filter in chunks: one byte per bit while building (fancy indexing is
    much cheaper than read-modify-write of packed bits), packed at finish()."""

    def __init__(self, nkeys: int, bits_per_key: float = 10.0):
        nbits = max(64, int(max(1, nkeys) * bits_per_key))
        self.nbits = (nbits + 7) // 8 * 8
        self.nprobes = optimal_probes(bits_per_key)
        self._unpacked = np.zeros(self.nbits, dtype=np.uint8)

    def add_hashes(self, hashes: list[tuple[int, int]]) -> None:
        if not hashes:
            return
        self.add_hash_words(np.fromiter((x for pair in hashes for x in pair), dtype=np.uint64,
                                        count=2 * len(hashes)))

    def add_hash_words(self, words) -> None:
        """Like add_hashes, from a flat buffer of uint64 words h1, h2, h1, h2, ..."""
        arr = np.frombuffer(words, dtype=np.uint64).reshape(-1, 2)
        if not len(arr):
            return
        h1 = arr[:, 0]
        h2 = arr[:, 1]
        nbits = np.uint64(self.nbits)
        with np.errstate(over="ignore"):
            for i in range(self.nprobes):
                self._unpacked[((h1 + np.uint64(i) * h2) % nbits).astype(np.int64)] = 1

    def finish(self) -> BloomFilter:
        # bit j of the filter is bit (j & 7) of byte (j >> 3): little bit order
        packed = np.packbits(self._unpacked, bitorder="little")
        self._unpacked = None
        return BloomFilter(self.nbits, self.nprobes, packed)
