"""The memtable: one table's recent writes on one shard, sorted by key, in memory.

Owns a sortedcontainers.SortedDict from the order-preserving key bytes to
either the value bytes or a tombstone (an int: the deletion time in whole
seconds since the epoch), plus the bookkeeping the storage layer needs: an
estimate of the memory used, the commit-log segments holding its records,
and the change it made to the table's live item count and bytes.

It must never do I/O, and once frozen (handed to a flush) it must never change.
"""

from __future__ import annotations

from itertools import islice

from sortedcontainers import SortedDict

# Rough per-entry cost of a SortedDict entry plus two bytes objects in CPython:
# what counts towards the flush threshold beyond the raw key and value lengths.
ENTRY_OVERHEAD = 112

MISSING = object()


def is_tombstone(value) -> bool:
    return type(value) is int


class Memtable:
    __slots__ = ("data", "memory_bytes", "segments", "count_delta", "bytes_delta",
                 "frozen", "flush_position", "generation")

    def __init__(self, generation: int = 0):
        self.data = SortedDict()
        self.memory_bytes = 0
        self.segments: set[int] = set()
        self.count_delta = 0          # live items added minus removed, relative to older data
        self.bytes_delta = 0          # same for the sum of value lengths
        self.frozen = False
        self.flush_position: tuple[int, int] | None = None
        self.generation = generation

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: bytes):
        """The value bytes, a tombstone int, or MISSING."""
        return self.data.get(key, MISSING)

    def apply(self, key: bytes, value, segment: int | None) -> None:
        """Store value bytes, or a tombstone (int deletion time), for key."""
        if self.frozen:
            raise RuntimeError("write to a frozen memtable")
        old = self.data.get(key, MISSING)
        if old is MISSING:
            self.memory_bytes += len(key) + ENTRY_OVERHEAD
        elif not is_tombstone(old):
            self.memory_bytes -= len(old)
        self.data[key] = value
        if not is_tombstone(value):
            self.memory_bytes += len(value)
        if segment is not None:
            self.segments.add(segment)

    def chunk(self, low: bytes | None, low_inclusive: bool, high: bytes | None,
              high_inclusive: bool, reverse: bool, n: int) -> list[tuple[bytes, object]]:
        """Up to n (key, value-or-tombstone) pairs inside the bounds, in scan order.

        Materialized at once: callers that yield between chunks resume from the
        last key they saw, so writes landing meanwhile never break iteration.
        """
        data = self.data
        keys = list(islice(data.irange(low, high, (low_inclusive, high_inclusive), reverse), n))
        return [(k, data[k]) for k in keys]

    def items(self):
        """All (key, value-or-tombstone) pairs ascending; only for a frozen memtable."""
        return self.data.items()
