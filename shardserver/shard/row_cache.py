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

from bisect import bisect_left, bisect_right
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

    def fill(self, ck, value) -> bool:
        """Insert a row only if it fits in the free room (no eviction, no refresh of a
        present entry).  False once the cache is full."""
        rows = self._rows
        charge = self.charge(ck, value)
        if self.size + charge > self.capacity_bytes or len(rows) >= self.capacity_items:
            return False
        if ck not in rows:
            rows[ck] = value
            self.size += charge
        return True

    def _evict(self) -> None:
        rows = self._rows
        while rows and (self.size > self.capacity_bytes or len(rows) > self.capacity_items):
            ck, value = rows.popitem(last=False)
            self.size -= self.charge(ck, value)
            self.evictions += 1

    def clear(self) -> None:
        self._rows.clear()
        self.size = 0


# per cached item: its (key, value) tuple, the key in the bisect list, two
# list slots and one prefix-sum slot, plus the two bytes headers
PARTITION_ITEM_OVERHEAD = 160
PARTITION_OVERHEAD = 400    # OrderedDict entry, the entry object, its three lists


class CachedPartition:
    """Every live item of one partition, ascending: what a Query of it reads."""

    __slots__ = ("keys", "pairs", "ends", "charge")

    def __init__(self, pairs: list[tuple[bytes, bytes]]):
        self.pairs = pairs
        self.keys = [kv[0] for kv in pairs]
        ends = [0]
        total = 0
        for kv in pairs:
            total += len(kv[1])
            ends.append(total)
        self.ends = ends     # ends[i]: bytes of the values before item i
        self.charge = (PARTITION_OVERHEAD + PARTITION_ITEM_OVERHEAD * len(pairs) + total
                       + sum([len(k) for k in self.keys]))

    @property
    def value_bytes(self) -> int:
        return self.ends[-1]

    def read(self, start: bytes | None, start_exclusive: bool, end: bytes | None,
             reverse: bool, limit: int, max_bytes: int) -> list[tuple[bytes, bytes]]:
        """What ShardStorage.scan returns for these bounds: start <= key < end (start
        excluded with start_exclusive), descending if reverse, at most `limit` items,
        stopping once the values reach max_bytes (the item crossing it included)."""
        if limit < 1:
            limit = 1        # as the merging read: the first item is always returned
        keys = self.keys
        if start is None:
            lo = 0
        else:
            lo = (bisect_right if start_exclusive else bisect_left)(keys, start)
        hi = len(keys) if end is None else bisect_left(keys, end, lo)
        if lo >= hi:
            return []
        ends = self.ends
        if not reverse:
            if hi - lo > limit:
                hi = lo + limit
            if ends[hi] - ends[lo] >= max_bytes:
                # the first item whose inclusion reaches max_bytes ends the page
                hi = bisect_left(ends, ends[lo] + max_bytes, lo + 1, hi + 1)
            return self.pairs[lo:hi]
        if hi - lo > limit:
            lo = hi - limit
        if ends[hi] - ends[lo] >= max_bytes:
            lo = bisect_right(ends, ends[hi] - max_bytes, lo, hi) - 1
        page = self.pairs[lo:hi]
        page.reverse()
        return page


class PartitionCache:
    """LRU from (table incarnation, partition prefix) to a CachedPartition, bounded
    in bytes: one-partition range reads (Query) served without merging memtables
    and SSTable blocks, as Scylla's row cache holds whole partitions.

    Filled by a range read that returned a whole partition; a write to the
    partition drops its entry (the storage layer calls invalidate), so an entry
    is always the partition's current content."""

    __slots__ = ("capacity_bytes", "size", "_parts", "hits", "misses", "evictions", "enabled")

    def __init__(self, capacity_bytes: int):
        self.capacity_bytes = max(0, capacity_bytes)
        self.enabled = bool(self.capacity_bytes)
        self.size = 0
        self._parts: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._parts)

    def __contains__(self, ck) -> bool:
        return ck in self._parts

    def get(self, ck) -> CachedPartition | None:
        parts = self._parts
        entry = parts.get(ck)
        if entry is None:
            self.misses += 1
            return None
        parts.move_to_end(ck)
        self.hits += 1
        return entry

    def put(self, ck, entry: CachedPartition) -> None:
        if entry.charge > self.capacity_bytes // 8:
            return    # one huge partition must not flush the whole cache
        self.invalidate(ck)
        self._parts[ck] = entry
        self.size += entry.charge
        parts = self._parts
        while self.size > self.capacity_bytes:
            _, old = parts.popitem(last=False)
            self.size -= old.charge
            self.evictions += 1

    def invalidate(self, ck) -> None:
        entry = self._parts.pop(ck, None)
        if entry is not None:
            self.size -= entry.charge

    def clear(self) -> None:
        self._parts.clear()
        self.size = 0
