"""The row cache and the partition cache of one shard, each bounded in bytes.

The row cache (RowCache) holds recent point-read results; the partition
cache (PartitionCache, below) whole partitions for Query.

Owns an LRU from a cache key (the table's incarnation, 8 bytes, then the
row's key) to the row's value bytes, or None for a key known to be absent (Scylla's row cache is the model: hot reads never
reach an SSTable).  Every entry is charged its key and value lengths plus the
CPython objects around them, so the cache stays inside its byte budget
whatever the item size (an item count alone let 100,000 rows of 400 KB pin
40 GB).  The storage layer keeps it coherent: it never holds a key that a
memtable holds (a write drops the key's entry, and the memtable answers from
then on), a read that went to the SSTables inserts one, and so does a flush
for the rows it moved out of a memtable.

Neither does I/O nor decides what is current: they only remember.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import OrderedDict

# OrderedDict entry and node, two bytes headers and pymalloc's rounding (measured
# as 477 bytes per row of a 20-byte key and a 200-byte value with a tuple key)
ENTRY_OVERHEAD = 256

ABSENT = object()   # get()'s answer for a key the cache knows nothing about


class _ByteBoundedLRU:
    """What both caches share: an LRU OrderedDict, its byte total and the counters."""

    __slots__ = ("capacity_bytes", "refresh_above", "size", "_entries", "hits", "misses", "evictions",
                 "enabled")

    def __init__(self, capacity_bytes: int, enabled: bool):
        self.capacity_bytes = max(0, capacity_bytes)
        self.refresh_above = self.capacity_bytes * 3 // 4
        # a cache of size 0 (..._in_mb: 0) holds nothing: readers skip it
        self.enabled = enabled and bool(self.capacity_bytes)
        self.size = 0
        self._entries: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ck) -> bool:
        return ck in self._entries

    def get(self, ck):
        """The entry (a hit counts, and refreshes it once the cache is 3/4 full), or the class's MISSING."""
        entries = self._entries
        missing = self.MISSING
        value = entries.get(ck, missing)
        if value is missing:
            self.misses += 1
            return missing
        if self.size > self.refresh_above:
            # The order only matters once evictions near; below that a hit skips
            # the relinking, which costs as much as the lookup itself.
            entries.move_to_end(ck)
        self.hits += 1
        return value

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0


class RowCache(_ByteBoundedLRU):
    """Cache key (incarnation + key) -> value bytes, or None for a key known to be absent."""

    MISSING = ABSENT

    def __init__(self, capacity_bytes: int):
        super().__init__(capacity_bytes, True)

    @staticmethod
    def charge(ck, value) -> int:
        return ENTRY_OVERHEAD + len(ck) + (len(value) if value is not None else 0)

    def peek(self, ck):
        """The cached value (bytes or None), or ABSENT; no LRU or hit accounting."""
        return self._entries.get(ck, ABSENT)

    def discard(self, ck) -> None:
        """A write to the key: the memtable holds it now, the entry would only go stale."""
        old = self._entries.pop(ck, ABSENT)
        if old is not ABSENT:
            self.size -= self.charge(ck, old)

    def put(self, ck, value) -> None:
        charge = self.charge(ck, value)
        if not self.enabled or charge > self.capacity_bytes // 8:
            return    # one huge row must not flush the whole cache
        rows = self._entries
        old = rows.pop(ck, ABSENT)
        if old is not ABSENT:
            self.size -= self.charge(ck, old)
        rows[ck] = value
        self.size += charge
        self._evict()

    def fill(self, ck, value) -> bool:
        """Insert a row only if it fits in the free room (no eviction, no refresh of a
        present entry).  False once the cache is full."""
        rows = self._entries
        charge = self.charge(ck, value)
        if self.size + charge > self.capacity_bytes:
            return False
        if ck not in rows:
            rows[ck] = value
            self.size += charge
        return True

    def _evict(self) -> None:
        rows = self._entries
        while rows and self.size > self.capacity_bytes:
            ck, value = rows.popitem(last=False)
            self.size -= self.charge(ck, value)
            self.evictions += 1



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


class PartitionCache(_ByteBoundedLRU):
    """LRU from a cache key (table incarnation + partition prefix) to a CachedPartition, bounded
    in bytes: one-partition range reads (Query) served without merging memtables
    and SSTable blocks, as Scylla's row cache holds whole partitions.

    Filled by a range read that returned a whole partition; a write to the
    partition drops its entry (the storage layer calls invalidate), so an entry
    is always the partition's current content."""

    __slots__ = ()
    MISSING = None

    def __init__(self, capacity_bytes: int):
        super().__init__(capacity_bytes, True)

    def put(self, ck, entry: CachedPartition) -> None:
        if entry.charge > self.capacity_bytes // 8:
            return    # one huge partition must not flush the whole cache
        self.invalidate(ck)
        self._entries[ck] = entry
        self.size += entry.charge
        parts = self._entries
        while self.size > self.capacity_bytes:
            _, old = parts.popitem(last=False)
            self.size -= old.charge
            self.evictions += 1

    def invalidate(self, ck) -> None:
        entry = self._entries.pop(ck, None)
        if entry is not None:
            self.size -= entry.charge

