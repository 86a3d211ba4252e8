"""Merging ordered sources (memtables, SSTables) into one stream, newest version winning.

Owns the k-way merge used by range scans and by compaction.  Sources are
given newest first; for a key present in several, only the newest source's
entry (a value or a tombstone) comes out.  Sources deliver chunks, so the
merge awaits only when a chunk runs dry, and memtable sources re-query from
their last key, so concurrent writes never invalidate an iterator.

It must never skip a key that the newest source holds, and never emit a key
twice.
"""

from __future__ import annotations

import heapq

MEMTABLE_CHUNK = 256


class MemtableSource:
    __slots__ = ("memtable", "low", "low_inclusive", "high", "high_inclusive", "reverse", "done")

    def __init__(self, memtable, low, low_inclusive, high, high_inclusive, reverse):
        self.memtable = memtable
        self.low = low
        self.low_inclusive = low_inclusive
        self.high = high
        self.high_inclusive = high_inclusive
        self.reverse = reverse
        self.done = False

    async def next_chunk(self) -> list:
        if self.done:
            return []
        chunk = self.memtable.chunk(self.low, self.low_inclusive, self.high, self.high_inclusive,
                                    self.reverse, MEMTABLE_CHUNK)
        if len(chunk) < MEMTABLE_CHUNK:
            # A short chunk is everything in range at this moment.  Writes landing
            # after this point are newer than the scan, which may miss them either
            # way; a short range (a Query's partition) saves its second look.
            self.done = True
        if chunk:
            if self.reverse:
                self.high, self.high_inclusive = chunk[-1][0], False
            else:
                self.low, self.low_inclusive = chunk[-1][0], False
        return chunk


class _Desc:
    """Heap key that orders bytes descending (for reverse scans)."""

    __slots__ = ("key",)

    def __init__(self, key: bytes):
        self.key = key

    def __lt__(self, other: "_Desc") -> bool:
        return other.key < self.key

    def __eq__(self, other) -> bool:
        return self.key == other.key


class MergeIterator:
    """Merges sources (each with `async next_chunk() -> list[(key, value)]`, [] at end)."""

    def __init__(self, sources: list, reverse: bool = False, first_chunks: list | None = None):
        self.sources = sources
        self.reverse = reverse
        self._heap: list = []
        # first_chunks: what each source's next_chunk() already returned, if the caller peeked.
        self._bufs: list[list] = list(first_chunks) if first_chunks is not None else [[] for _ in sources]
        self._pos: list[int] = [0] * len(sources)
        self._started = False

    async def _push(self, i: int) -> None:
        """Advance source i to its next entry and put it on the heap (if any)."""
        pos = self._pos[i] + 1
        buf = self._bufs[i]
        if pos >= len(buf):
            buf = await self.sources[i].next_chunk()
            self._bufs[i] = buf
            pos = 0
            if not buf:
                self._pos[i] = 0
                return
        self._pos[i] = pos
        key = buf[pos][0]
        heapq.heappush(self._heap, (_Desc(key) if self.reverse else key, i))

    async def batch(self, n: int) -> list:
        """Up to n merged (key, value-or-tombstone) entries; [] once every source is exhausted."""
        if not self._started:
            self._started = True
            for i in range(len(self.sources)):
                self._pos[i] = -1
                if self._bufs[i]:
                    heapq.heappush(self._heap, (_Desc(self._bufs[i][0][0]) if self.reverse
                                                else self._bufs[i][0][0], i))
                    self._pos[i] = 0
                else:
                    await self._push(i)
        heap = self._heap
        out = []
        while heap and len(out) < n:
            hk, i = heapq.heappop(heap)
            entry = self._bufs[i][self._pos[i]]
            # older sources holding the same key: their versions are shadowed
            while heap and heap[0][0] == hk:
                _, j = heapq.heappop(heap)
                await self._push(j)
            out.append(entry)
            await self._push(i)
        return out
