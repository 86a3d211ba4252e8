"""The memtable: one table's recent writes on one shard, sorted by key, in memory.

Owns a dict from the order-preserving key bytes to either the value bytes or
a tombstone (an int: the deletion time in whole seconds since the epoch), the
keys in order (a sortedcontainers.SortedList, brought up to date only when a
range read or a flush asks for the order), plus the bookkeeping the storage
layer needs: an
estimate of the memory used, the commit-log segments holding its records,
and the change it made to the table's live item count and bytes.

It must never do I/O, and once frozen (handed to a flush) it must never change.
"""

from __future__ import annotations

from itertools import islice

from sortedcontainers import SortedList

# Rough per-entry cost of a dict entry, a SortedList slot and two bytes objects in CPython:
# what counts towards the flush threshold beyond the raw key and value lengths.
ENTRY_OVERHEAD = 112

MISSING = object()

# New keys sorted per step when a flush orders a frozen memtable (ordering_steps).
ORDER_RUN = 8192


def is_tombstone(value) -> bool:
    return type(value) is int


class Memtable:
    __slots__ = ("data", "memory_bytes", "segments", "count_delta", "bytes_delta",
                 "frozen", "flush_position", "generation", "_ordered", "_unordered")

    def __init__(self, generation: int = 0):
        # Point reads and writes touch only the dict; a new key is only noted, and
        # put in order when the order is asked for: a write-only stretch pays one
        # sort of its new keys instead of an insertion into a sorted list per write.
        self.data: dict = {}
        self._ordered = SortedList()
        self._unordered: list[bytes] = []
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
            self._unordered.append(key)
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
        keys = list(islice(self.ordered_keys().irange(low, high, (low_inclusive, high_inclusive), reverse), n))
        return [(k, data[k]) for k in keys]

    def ordered_keys(self) -> SortedList:
        """Every key ascending (tombstones' too)."""
        if self._unordered:
            self._ordered.update(self._unordered)
            self._unordered = []
        return self._ordered

    def ordering_steps(self, run: int = ORDER_RUN):
        """Bring a frozen memtable's key order up to date in bounded steps.

        A generator: each step sorts ``run`` new keys, or merges two sorted runs,
        so a flush can let requests in between steps; at the end the order is up
        to date.  Sorting a 64 MB memtable's ~64,000 new keys in one go held the
        loop for ~15 ms; the largest step here is the last merge, ~3 ms (timsort
        merges two sorted runs in one linear pass).  A range read between steps
        may bring the order up to date itself; the steps then stop.
        """
        if not self.frozen:
            raise RuntimeError("ordering_steps is for a frozen memtable")
        new = self._unordered
        if len(new) <= run:
            return
        runs = []
        for start in range(0, len(new), run):
            runs.append(sorted(new[start:start + run]))
            yield
            if self._unordered is not new:
                return
        while len(runs) > 1:
            merged = []
            for i in range(0, len(runs) - 1, 2):
                pair = runs[i]
                pair += runs[i + 1]
                pair.sort()
                merged.append(pair)
                yield
                if self._unordered is not new:
                    return
            if len(runs) % 2:
                merged.append(runs[-1])
            runs = merged
        self._ordered.update(runs[0])   # one linear pass over keys already in order
        self._unordered = []

    def items(self):
        """All (key, value-or-tombstone) pairs ascending; only for a frozen memtable."""
        data = self.data
        return ((k, data[k]) for k in self.ordered_keys())
