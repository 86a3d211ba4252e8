"""Size-tiered compaction: run selection, shadowed versions, tombstone purging rules, and
reads staying correct while a compaction runs."""

import random
import time

import uvloop

from shardserver.reactor.aio import AIOContext
from shardserver.shard.storage import ShardStorage, StorageOptions
from shardserver.sstable.compaction import compact, select_run
from shardserver.sstable.reader import BlockCache, SSTableReader
from shardserver.sstable.writer import SSTableWriter


def run(coro):
    return uvloop.run(coro)


def test_select_run():
    assert select_run([10, 10, 10], 4) is None
    assert select_run([10, 11, 9, 10], 4) == (0, 4)
    big = 200 << 20
    # small newest files form a bucket; the old big file stays out
    assert select_run([1000, 1200, 900, 1100, big], 4) == (0, 4)
    # similar big files bucket together, dissimilar ones split the run
    assert select_run([big, big, big, big, 4 * big], 4) == (0, 4)
    assert select_run([big, 4 * big, big, big, big], 4) is None
    assert select_run([5] * 40, 4, 32) == (0, 32)


async def _write(path, aio, entries):
    w = SSTableWriter(path, aio, block_size=512)
    for k, v in entries:
        w.add(k, v)
    await w.finish()
    return SSTableReader.load(path, aio, BlockCache(1 << 20))


def test_compact_drops_shadowed_and_only_safe_tombstones(tmp_path):
    old_time = int(time.time()) - 10_000
    recent = int(time.time())

    async def go():
        aio = AIOContext(8)
        await aio.open()
        newest = await _write(str(tmp_path / "1.db"), aio,
                              [(b"a", b"a2"), (b"b", old_time), (b"c", recent), (b"x", old_time)])
        middle = await _write(str(tmp_path / "2.db"), aio, [(b"a", b"a1"), (b"b", b"b1"),
                                                            (b"d", b"d1")])
        oldest_outside = await _write(str(tmp_path / "3.db"), aio, [(b"x", b"x0")])
        meta, purged, dropped = await compact([newest, middle], [oldest_outside],
                                              str(tmp_path / "out.db"), aio, gc_grace_seconds=3600)
        # compaction reads every input block once: none of them displaces the point reads'
        assert newest.cache.size == 0 and middle.cache.size == 0
        out = SSTableReader.load(str(tmp_path / "out.db"), aio, BlockCache(1 << 20))
        c = out.cursor(None, True, None, True, False)
        got = []
        while chunk := await c.next_chunk():
            got += chunk
        aio.close()
        return got, purged, meta
    got, purged, meta = run(go())
    # b: expired tombstone, no older file outside the run may hold b -> purged with b1
    # c: tombstone within the grace period -> kept
    # x: expired, but an older SSTable outside the run holds x -> kept, else x0 would resurrect
    assert got == [(b"a", b"a2"), (b"c", recent), (b"d", b"d1"), (b"x", old_time)]
    assert purged == 1
    assert meta["entries"] == 4


def test_storage_compaction_keeps_reads_correct(tmp_path):
    opts = StorageOptions(memtable_flush_threshold_bytes=60_000, compaction_min_threshold=4,
                          tombstone_gc_grace_seconds=0, commitlog_sync="periodic")

    async def go():
        s = ShardStorage(str(tmp_path), 0, opts)
        await s.open()
        s.create_table("t")
        rnd = random.Random(3)
        ref = {}
        reads_during = 0
        for i in range(12000):
            k = b"%06d" % rnd.randrange(4000)
            if rnd.random() < 0.25:
                s.delete("t", k)
                ref.pop(k, None)
            else:
                v = rnd.randbytes(rnd.randint(5, 60))
                s.put("t", k, v)
                ref[k] = v
            if i % 100 == 0:
                await s.sync()
                probe = b"%06d" % rnd.randrange(4000)
                assert await s.get("t", probe) == ref.get(probe)
                if s._compaction_task is not None and not s._compaction_task.done():
                    reads_during += 1
        await s.flush()
        await s.compact("t")
        st = s.stats()
        assert st["compactions_total"] >= 2
        assert st["sstables_count"] == 1
        assert st["tombstones_purged_total"] > 0
        assert await s.scan("t", None, None) == sorted(ref.items())
        assert s.table_stats("t") == (len(ref), sum(map(len, ref.values())))
        await s.close()
        return reads_during
    assert run(go()) > 0
