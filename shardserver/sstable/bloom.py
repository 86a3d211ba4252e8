"""Bloom filter of an SSTable's keys: mmh3 hashes over 64-bit words, one word per key.

Owns the filter's construction, its membership test and its serialized form
(docs/sstable_format.md, "Bloom block").  It is a blocked ("register-blocked")
filter: the first 64-bit half h1 of MurmurHash3 x64_128 picks one 64-bit word,
and k 6-bit fields of the second half h2 pick the bits inside it.  A probe is
then one word lookup and one AND in Python, instead of k bit lookups: the
point-read path probes every SSTable of a table, so this cost is paid per
SSTable per read.  Built with numpy, kept as an array of machine words.
It never does I/O and never reports a present key as absent.
"""

from __future__ import annotations

import struct
import sys
from array import array

import mmh3
import numpy as np

_HEADER = struct.Struct("<QI")   # number of 64-bit words, number of probes
MAX_PROBES = 10                  # 6-bit fields of the 64-bit h2
DEFAULT_BITS_PER_KEY = 12.0      # ~1 % false positives with 6 probes in a 64-bit word

# bits of two adjacent 6-bit fields: probe_mask reads h2 twelve bits at a time
_PAIR_BITS = tuple((1 << (x & 63)) | (1 << (x >> 6)) for x in range(4096))


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


def partition_hashes(key: bytes) -> tuple[int, int]:
    """key_hashes(bloom_key(key)) in one call: what every filter probes for a storage key
    (a flush adds one per entry)."""
    end = key.find(_TERMINATOR, 8)
    return mmh3.hash64(key if end < 0 else key[:end + 2], signed=False)


def optimal_probes(bits_per_key: float) -> int:
    """Probes for a 64-bit-blocked filter: about half the bits per key (fewer than a
    classic filter's ln 2 x bits: every probe of a key lands in the same word)."""
    return max(1, min(MAX_PROBES, int(round(bits_per_key / 2))))


def probe_mask(h2: int, nprobes: int) -> int:
    """The bits a key sets in its word: bit ((h2 >> 6i) & 63) for i < nprobes."""
    if nprobes == 6:    # the default (12 bits per key)
        return _PAIR_BITS[h2 & 4095] | _PAIR_BITS[(h2 >> 12) & 4095] | _PAIR_BITS[(h2 >> 24) & 4095]
    mask = 0
    for i in range(nprobes >> 1):
        mask |= _PAIR_BITS[(h2 >> (12 * i)) & 4095]
    if nprobes & 1:
        mask |= 1 << ((h2 >> (6 * (nprobes - 1))) & 63)
    return mask


class BloomFilter:
    # The words as an array of machine words: words[i] is a Python int without
    # any decoding, and one copy of the bits is all a large table pays for.
    __slots__ = ("nwords", "nprobes", "words")

    def __init__(self, nprobes: int, words: array):
        if not 1 <= nprobes <= MAX_PROBES or not len(words):
            raise ValueError("bloom filter block is inconsistent")
        self.nwords = len(words)
        self.nprobes = nprobes
        self.words = words

    @property
    def nbits(self) -> int:
        return 64 * self.nwords

    @property
    def memory_bytes(self) -> int:
        return 8 * self.nwords

    @classmethod
    def build(cls, hashes: list[tuple[int, int]],
              bits_per_key: float = DEFAULT_BITS_PER_KEY) -> "BloomFilter":
        builder = BloomBuilder(len(hashes), bits_per_key)
        builder.add_hashes(hashes)
        return builder.finish()

    def might_contain(self, key: bytes) -> bool:
        h1, h2 = mmh3.hash64(key, signed=False)
        return self.might_contain_hashes(h1, h2)

    def might_contain_hashes(self, h1: int, h2: int) -> bool:
        mask = probe_mask(h2, self.nprobes)
        return self.words[h1 % self.nwords] & mask == mask

    def might_contain_masked(self, h1: int, mask: int) -> bool:
        """might_contain for a key whose h1 and probe_mask(h2, self.nprobes) the caller
        computed once for every SSTable of a table (the filters share the hash)."""
        return self.words[h1 % self.nwords] & mask == mask

    def to_bytes(self) -> bytes:
        words = self.words
        if sys.byteorder != "little":
            words = array("Q", words)
            words.byteswap()
        return _HEADER.pack(self.nwords, self.nprobes) + words.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "BloomFilter":
        if len(data) < _HEADER.size:
            raise ValueError("bloom filter block is inconsistent")
        nwords, nprobes = _HEADER.unpack_from(data, 0)
        if len(data) - _HEADER.size != 8 * nwords:
            raise ValueError("bloom filter block is inconsistent")
        words = array("Q")
        if words.itemsize != 8:     # pragma: no cover - every 64-bit CPython has 8-byte Q
            raise RuntimeError("array('Q') is not 64 bits wide here")
        words.frombytes(memoryview(data)[_HEADER.size:])
        if sys.byteorder != "little":
            words.byteswap()
        return cls(nprobes, words)


class BloomBuilder:
    """Builds a filter in chunks of hashes with numpy, sized up front."""

    def __init__(self, nkeys: int, bits_per_key: float = DEFAULT_BITS_PER_KEY):
        nbits = max(64, int(max(1, nkeys) * bits_per_key))
        self.nwords = (nbits + 63) // 64
        self.nprobes = optimal_probes(bits_per_key)
        self._words = np.zeros(self.nwords, dtype=np.uint64)

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
        masks = np.zeros(len(arr), dtype=np.uint64)
        one, six = np.uint64(1), np.uint64(63)
        for i in range(self.nprobes):
            masks |= one << ((h2 >> np.uint64(6 * i)) & six)
        np.bitwise_or.at(self._words, (h1 % np.uint64(self.nwords)).astype(np.int64), masks)

    def finish(self) -> BloomFilter:
        words = array("Q")
        words.frombytes(self._words.tobytes())    # native order, as array("Q") wants
        self._words = None
        return BloomFilter(self.nprobes, words)
