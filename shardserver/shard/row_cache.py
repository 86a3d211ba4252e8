"""The row cache: recent point-read results of one shard, bounded in bytes.

Owns an LRU from (table incarnation, key) to the row's value bytes, or None
for a key known to be absent (Scylla's row cache is the model: hot reads never
reach an SSTable).  Every entry is charged its key and value lengths plus the
CPython objects around them, so the cache stays inside its byte budget
whatever the item size (an item count alone let 100,000 rows of 400 KB pin
40 GB).  The storage layer keeps it coherent: a write updates an entry that
is present, a read that went to the SSTables inserts one.

It never does I/O and never decides what is current: it only remembers.
"""

from __future__ import annotations

from collections import OrderedDict

# OrderedDict entry and node, the (incarnation, key) tuple, two bytes headers
ENTRY_OVERHEAD = 224

ABSENT = object()   # get()'s answer for a key the cache knows nothing about


class RowCache:
    __slots__ = ("capacity_bytes", "capacity_items", "size", "_rows", "hits", "misses",
                 "evictions", "enabled")

    def __init__(self, capacity_bytes: int, capacity_items: int):
        self.capacity_bytes = max(0, capacity_bytes)
        self.capacity_items = max(0, capacity_items)
        # a cache of size 0 (row_cache_in_mb: 0) holds nothing: readers skip it
        self.enabled = bool(self.capacity_bytes and self.capacity_items)
        self.size = 0
        self._rows: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, ck) -> bool:
        return ck in self._rows

    @staticmethod
    def charge(ck, value) -> int:
        return ENTRY_OVERHEAD + len(ck[1]) + (len(value) if value is not None else 0)

    def peek(self, ck):
        """The cached value (bytes or None), or ABSENT; no LRU or hit accounting."""
        return self._rows.get(ck, ABSENT)

    def get(self, ck):
        """Like peek, but a hit refreshes the entry and counts."""
        rows = self._rows
        value = rows.get(ck, ABSENT)
        if value is ABSENT:
            self.misses += 1
            return ABSENT
        rows.move_to_end(ck)
        self.hits += 1
        return value

    def update_if_present(self, ck, value) -> None:
        """A write to a cached key: keep the entry true (bytes, or None once deleted)."""
        rows = self._rows
        old = rows.get(ck, ABSENT)
        if old is ABSENT:
            return
        rows[ck] = value
        self.size += self.charge(ck, value) - self.charge(ck, old)
        self._evict()

    def put(self, ck, value) -> None:
        charge = self.charge(ck, value)
        if not self.capacity_items or charge > self.capacity_bytes // 8:
            return    # one huge row must not flush the whole cache
        rows = self._rows
        old = rows.pop(ck, ABSENT)
        if old is not ABSENT:
            self.size -= self.charge(ck, old)
        rows[ck] = value
        self.size += charge
        self._evict()

    def _evict(self) -> None:
        rows = self._rows
        while rows and (self.size > self.capacity_bytes or len(rows) > self.capacity_items):
            ck, value = rows.popitem(last=False)
            self.size -= self.charge(ck, value)
            self.evictions += 1

    def clear(self) -> None:
        self._rows.clear()
        self.size = 0
