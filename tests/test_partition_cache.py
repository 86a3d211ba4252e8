"""The partition cache (whole partitions for Query) and the row cache's fill on flush:
a cached read must answer exactly what the merging read answers, whatever the
bounds, direction, limit and page size, and every write must be seen at once."""

import asyncio
import random

from shardserver.shard import values
from shardserver.shard.row_cache import ABSENT, ENTRY_OVERHEAD, CachedPartition, PartitionCache, RowCache
from shardserver.sstable import reader as sst_reader
from test_storage import opened, run, small_opts


def opts(**kw):
    return small_opts(**{"memtable_flush_threshold_bytes": 60_000, "compaction_min_threshold": 3, **kw})


def reference_read(pairs, start, start_exclusive, end, reverse, limit, max_bytes):
    """What a scan returns, item by item (the definition CachedPartition.read must match)."""
    chosen = [kv for kv in pairs
              if (start is None or kv[0] > start or (kv[0] == start and not start_exclusive))
              and (end is None or kv[0] < end)]
    if reverse:
        chosen.reverse()
    out, total = [], 0
    for kv in chosen:
        out.append(kv)
        total += len(kv[1])
        if len(out) >= limit or total >= max_bytes:
            break
    return out


def test_cached_partition_read_matches_the_definition():
    rnd = random.Random(5)
    for _ in range(300):
        n = rnd.randint(0, 30)
        keys = sorted({bytes([rnd.randrange(1, 40)]) for _ in range(n)})
        pairs = [(k, b"v" * rnd.randint(1, 50)) for k in keys]
        entry = CachedPartition(list(pairs))
        for _ in range(20):
            start = rnd.choice([None, bytes([rnd.randrange(0, 42)])])
            end = rnd.choice([None, bytes([rnd.randrange(0, 42)])])
            if start is not None and end is not None and start >= end:
                continue
            args = (start, rnd.random() < 0.5, end, rnd.random() < 0.5,
                    rnd.choice([1, 2, 5, 1 << 62]), rnd.choice([1, 30, 100, 400, 1 << 62]))
            assert entry.read(*args) == reference_read(pairs, *args), args
    # a page handed out is a copy: changing it leaves the cache intact
    entry = CachedPartition([(b"a", b"1"), (b"b", b"2")])
    entry.read(None, False, None, False, 10, 100).clear()
    entry.read(None, False, None, True, 10, 100).clear()
    assert entry.read(None, False, None, False, 10, 100) == [(b"a", b"1"), (b"b", b"2")]


def test_partition_cache_is_bounded_and_refuses_huge_partitions():
    cache = PartitionCache(100_000)
    for i in range(200):
        cache.put(("t", i), CachedPartition([(b"k%d" % j, b"x" * 100) for j in range(10)]))
    assert cache.size <= 100_000 and cache.evictions > 0
    assert ("t", 199) in cache and ("t", 0) not in cache
    cache.put(("t", "huge"), CachedPartition([(b"k%d" % j, b"x" * 1000) for j in range(20)]))
    assert ("t", "huge") not in cache      # over an eighth of the cache
    cache.invalidate(("t", 199))
    assert ("t", 199) not in cache


def test_row_cache_fill_never_evicts():
    cache = RowCache(10_000)
    cache.put(b"t" + b"hot", b"h" * 100)
    filled = 0
    while cache.fill(b"t" + b"k%d" % filled, b"x" * 100):
        filled += 1
    assert 20 < filled < 40 and cache.evictions == 0
    assert cache.peek(b"t" + b"hot") == b"h" * 100
    assert cache.size <= 10_000


def test_row_cache_is_bounded_by_bytes_not_by_rows():
    cache = RowCache(4 << 20)
    for i in range(12_000):                     # ~300 bytes each: 3.6 MB of small rows
        cache.put(b"t" + b"k%06d" % i, b"v" * 30)
    assert len(cache) == 12_000 and cache.evictions == 0
    for i in range(12_000, 20_000):
        cache.put(b"t" + b"k%06d" % i, b"v" * 30)
    assert cache.size <= 4 << 20 and cache.evictions > 0
    assert cache.peek(b"t" + b"k019999") == b"v" * 30 and cache.peek(b"t" + b"k000000") is ABSENT


def test_row_cache_hits_keep_rows_once_evictions_near():
    """Past 3/4 of its bytes a hit refreshes the row: the next eviction takes the
    least recently used row, not the hit one."""
    cache = RowCache(10 * (ENTRY_OVERHEAD + 2 + 100))
    for i in range(10):
        cache.put(b"k%d" % i, b"x" * 100)
    assert cache.get(b"k0") == b"x" * 100
    cache.put(b"kA", b"x" * 100)
    assert b"k0" in cache and b"k1" not in cache and cache.evictions == 1


def pk_of(i: int) -> dict:
    return {"S": f"part-{i}"}


def key_of(p: int, s: int) -> bytes:
    return values.encode_key(pk_of(p), {"N": str(s)})


def test_queries_see_every_write_through_flushes_and_compactions(tmp_path):
    """Random writes, deletes and one-partition range reads against a dict model; the
    same partitions are read again and again, so most reads come from the cache."""
    rnd = random.Random(3)

    async def go():
        s = await opened(tmp_path, opts())
        s.create_table("t")
        model: dict[bytes, bytes] = {}
        prefixes = [values.partition_prefix(pk_of(p)) for p in range(12)]
        for step in range(6000):
            p = rnd.randrange(12)
            roll = rnd.random()
            if roll < 0.35:
                k = key_of(p, rnd.randrange(40))
                v = b'{"v":"%d"}' % step + b"x" * rnd.randint(0, 300)
                s.put("t", k, v)
                model[k] = v
            elif roll < 0.45:
                k = key_of(p, rnd.randrange(40))
                s.delete("t", k)
                model.pop(k, None)
            else:
                prefix = prefixes[p]
                whole = rnd.random() < 0.6
                lo = prefix if whole else key_of(p, rnd.randrange(40))
                hi = values.partition_end(prefix) if whole or rnd.random() < 0.5 else key_of(p, rnd.randrange(40))
                if lo >= hi:
                    continue
                exclusive = not whole and rnd.random() < 0.3
                reverse = rnd.random() < 0.3
                limit = rnd.choice([1 << 62, 1 << 62, 3, 10])
                max_bytes = rnd.choice([1 << 62, 1 << 62, 2000])
                got = await s.scan("t", lo, hi, start_exclusive=exclusive, reverse=reverse,
                                   limit=limit, max_bytes=max_bytes, partition=prefix)
                want = reference_read(sorted(model.items()), lo, exclusive, hi, reverse, limit, max_bytes)
                assert got == want, step
            if step % 1500 == 1499:
                await s.flush()
                if step % 3000 == 2999:
                    await s.compact("t")
        st = s.stats()
        assert st["partition_cache_hits_total"] > 500, st
        assert st["flushes_total"] >= 3
        await s.close()
    run(go())


def test_a_write_during_a_suspended_read_keeps_it_out_of_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(sst_reader, "_nowait_usable", False)   # the read awaits the disk

    async def go():
        s = await opened(tmp_path, opts())
        s.create_table("t")
        prefix = values.partition_prefix(pk_of(1))
        for i in range(5):
            s.put("t", key_of(1, i), b"old%d" % i)
        await s.flush()
        end = values.partition_end(prefix)
        task = asyncio.ensure_future(s.scan("t", prefix, end, partition=prefix))
        await asyncio.sleep(0)
        s.put("t", key_of(1, 9), b"new")
        await task
        assert s.stats()["partition_cache_partitions"] == 0
        pairs = await s.scan("t", prefix, end, partition=prefix)   # no write meanwhile: cached
        assert pairs[-1] == (key_of(1, 9), b"new") and len(pairs) == 6
        assert s.stats()["partition_cache_partitions"] == 1
        await s.close()
    run(go())


def test_only_whole_untruncated_partitions_are_cached(tmp_path):
    async def go():
        s = await opened(tmp_path, opts())
        s.create_table("t")
        prefix = values.partition_prefix(pk_of(2))
        end = values.partition_end(prefix)
        for i in range(10):
            s.put("t", key_of(2, i), b"v%d" % i)
        await s.scan("t", prefix, end, limit=10, partition=prefix)            # may be cut by the limit
        await s.scan("t", prefix, end, max_bytes=5, partition=prefix)         # cut by the page size
        await s.scan("t", key_of(2, 3), end, partition=prefix)                # a part of it
        await s.scan("t", prefix, end, start_exclusive=True, partition=prefix)
        assert s.stats()["partition_cache_partitions"] == 0
        await s.scan("t", prefix, end, reverse=True, partition=prefix)
        assert s.stats()["partition_cache_partitions"] == 1
        assert await s.scan("t", key_of(2, 3), key_of(2, 5), partition=prefix) == [
            (key_of(2, 3), b"v3"), (key_of(2, 4), b"v4")]
        assert s.stats()["partition_cache_hits_total"] == 1
        s.delete("t", key_of(2, 3))        # dropped from the cache by the write
        assert await s.scan("t", key_of(2, 3), key_of(2, 5), partition=prefix) == [(key_of(2, 4), b"v4")]
        await s.close()

        off = await opened(tmp_path, opts(partition_cache_in_mb=0))
        assert len(await off.scan("t", prefix, end, partition=prefix)) == 9
        assert off.stats()["partition_cache_partitions"] == 0
        await off.close()
    run(go())


def test_flush_fills_the_row_cache_with_current_rows(tmp_path):
    async def go():
        s = await opened(tmp_path, opts(memtable_flush_threshold_bytes=10 << 20))
        s.create_table("t")
        for i in range(300):
            s.put("t", b"k%03d" % i, b"v%d" % i)
        s.delete("t", b"k007")
        flushing = asyncio.ensure_future(s.flush())
        await asyncio.sleep(0)
        s.put("t", b"k005", b"newer")      # lands in the new memtable while the old one flushes
        await flushing
        reads = s.stats()["sstable_reads_total"]
        assert await s.get("t", b"k100") == b"v100"
        assert await s.get("t", b"k007") is None
        assert await s.get("t", b"k005") == b"newer"
        await s.flush()                    # the newer value flushed: the cache must not hold the older
        assert await s.get("t", b"k005") == b"newer"
        st = s.stats()
        assert st["sstable_reads_total"] == reads, "flushed rows should be served from the row cache"
        assert st["row_cache_hits_total"] >= 3
        await s.close()

        small = await opened(tmp_path, opts(row_cache_in_mb=0))
        assert await small.get("t", b"k005") == b"newer"     # a cache of size 0 takes nothing
        assert small.stats()["row_cache_items"] == 0
        await small.close()
    run(go())
