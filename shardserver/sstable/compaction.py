"""Size-tiered compaction: which SSTables to merge, and the merge itself.

Owns the choice of a run of similarly sized SSTables (Scylla's size-tiered
strategy, restricted to runs adjacent in age so the merged file can take
their place in the newest-first order) and the rewrite of that run into one
SSTable: shadowed versions dropped, tombstones dropped once older than the
grace period and only when no older SSTable might still hold the key.

It never installs or deletes files: the storage layer swaps the set
atomically through its manifest, so a crash mid-way leaves the old files
authoritative.
"""

from __future__ import annotations

import asyncio
import time

from shardserver.sstable.merge import MergeIterator
from shardserver.sstable.writer import SSTableWriter

BUCKET_LOW = 0.5
BUCKET_HIGH = 1.5
MIN_SSTABLE_SIZE = 50 << 20     # files below this all share the smallest bucket, as in Scylla


def select_run(sizes: list[int], min_threshold: int = 4, max_threshold: int = 32,
               min_sstable_size: int = MIN_SSTABLE_SIZE) -> tuple[int, int] | None:
    """Pick [start, end) of `sizes` (SSTable sizes, newest first) to compact, or None.

    A run qualifies when it has at least min_threshold files and every file is
    within [BUCKET_LOW, BUCKET_HIGH] of the run's average (or all are small).
    The run with the smallest average wins: merging small files first keeps
    write amplification down.
    """
    n = len(sizes)
    if min_threshold < 2 or n < min_threshold:
        return None
    best = None
    best_avg = None
    for start in range(n):
        total = 0
        end = start
        while end < n and end - start < max_threshold:
            size = sizes[end]
            count = end - start
            if count:
                avg = total / count
                small = size < min_sstable_size and avg < min_sstable_size
                if not small and not (BUCKET_LOW * avg <= size <= BUCKET_HIGH * avg):
                    break
            total += size
            end += 1
        if end - start >= min_threshold:
            avg = total / (end - start)
            if best_avg is None or avg < best_avg:
                best, best_avg = (start, end), avg
    return best


# Background work (flushes, compactions) runs in slices this long between yields: a
# request arriving meanwhile waits at most about one slice (64 entries, ~0.5 ms).
BACKGROUND_SLICE_S = 0.0005


async def compact(readers: list, older: list, out_path: str, aio, *, gc_grace_seconds: int,
                  now: float | None = None, block_size: int | None = None,
                  yield_every: float = BACKGROUND_SLICE_S, extra_meta: dict | None = None):
    """Merge `readers` (newest first) into out_path.

    `older` are the table's SSTables older than the run: a tombstone may go only
    if none of them might hold its key.  Returns (meta or None if nothing
    survived, tombstones_dropped, entries_dropped).
    """
    now = time.time() if now is None else now
    gc_before = int(now) - int(gc_grace_seconds)
    # each input block is read once: keep the block cache for the point reads
    sources = [r.cursor(None, True, None, True, False, fill_cache=False) for r in readers]
    merged = MergeIterator(sources)
    kwargs = {"block_size": block_size} if block_size else {}
    total_in = sum(r.meta.get("entries", 0) for r in readers)
    # the output holds at most every input entry: the bloom filter is sized for that
    writer = SSTableWriter(out_path, aio, expected_keys=total_in, **kwargs)
    dropped_tombstones = 0
    loop = asyncio.get_running_loop()
    last_yield = loop.time()
    try:
        while True:
            batch = await merged.batch(64)
            if not batch:
                break
            for key, value in batch:
                if type(value) is int and value <= gc_before and \
                        not any(o.might_contain(key) for o in older):
                    dropped_tombstones += 1
                    continue
                writer.add(key, value)
            await writer.write_pending()
            if loop.time() - last_yield > yield_every:
                await asyncio.sleep(0)
                last_yield = loop.time()
        if writer.entries == 0:
            writer.abort()
            return None, dropped_tombstones, total_in
        meta = await writer.finish(extra_meta)
    except BaseException:
        writer.abort()
        raise
    return meta, dropped_tombstones, total_in - writer.entries
