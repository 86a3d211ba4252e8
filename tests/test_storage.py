"""ShardStorage end to end: flushes, compaction, restart, crash (kill -9) recovery, table drops,
read semantics, scans, exact table stats, disk full, loop responsiveness."""

import asyncio
import gc
import os
import random
import signal
import struct
import time

import pytest
import uvloop

from shardserver.errors import InternalServerError, ResourceNotFoundException
from shardserver.shard import storage as storage_mod
from shardserver.shard.storage import ShardStorage, StorageOptions
from shardserver.sstable import reader as sst_reader
from test_commitlog import fill_the_disk


def run(coro):
    return uvloop.run(coro)


def small_opts(**kw):
    base = dict(memtable_flush_threshold_bytes=100_000, commitlog_segment_size_bytes=64 * 1024,
                sstable_block_size_in_kb=2, compaction_min_threshold=4,
                commitlog_sync_batch_window_in_ms=0.0)
    base.update(kw)
    return StorageOptions(**base)


async def opened(path, opts):
    s = ShardStorage(str(path), 0, opts)
    await s.open()
    return s


async def abandon(s):
    """Simulate a crash after the last sync: no flush, no close of the commit log."""
    if s.commitlog._periodic_task is not None:
        s.commitlog._periodic_task.cancel()
    for task in (s._flush_task, s._compaction_task):
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass
    s._closing = True
    s.aio.close()


def value_of(i: int) -> bytes:
    return (b"value-%d-" % i) * (1 + i % 5)


def test_fill_flush_compact_restart(tmp_path):
    opts = small_opts()

    async def fill():
        s = await opened(tmp_path, opts)
        s.create_table("users")
        s.create_table("other")
        rnd = random.Random(7)
        ref = {}
        for i in range(15000):
            k = struct.pack(">Q", rnd.randrange(1 << 64)) + b"k%d" % rnd.randrange(6000)
            if i % 9 == 0 and ref:
                victim = rnd.choice(list(ref))
                s.delete("users", victim)
                del ref[victim]
            s.put("users", k, value_of(i))
            ref[k] = value_of(i)
            if i % 3 == 0:
                s.put("other", b"o%d" % i, b"x")
            if i % 500 == 0:
                await s.sync()
        await s.sync()
        st = s.stats()
        assert st["flushes_total"] >= 5
        assert st["compactions_total"] >= 1
        assert s.table_stats("users") == (len(ref), sum(map(len, ref.values())))
        assert s.table_stats("other") == (5000, 5000)
        await s.close()
        return ref

    ref = run(fill())

    async def check():
        s = await opened(tmp_path, opts)
        assert s.has_table("users") and s.has_table("other")
        assert s.table_stats("users") == (len(ref), sum(map(len, ref.values())))
        assert s.table_stats("other") == (5000, 5000)
        for k, v in ref.items():
            assert await s.get("users", k) == v
        assert await s.get("users", b"\x00nope") is None
        assert await s.scan("users", None, None) == sorted(ref.items())
        st = s.stats()
        assert st["row_cache_misses_total"] > 0
        # hot keys come from the row cache the second time
        for k in list(ref)[:100]:
            await s.get("users", k)
        assert s.stats()["row_cache_hits_total"] >= 100
        await s.close()
    run(check())


def test_scan_bounds_limits_and_resume(tmp_path):
    async def go():
        s = await opened(tmp_path, small_opts(memtable_flush_threshold_bytes=20_000))
        s.create_table("t")
        keys = [b"%05d" % i for i in range(0, 3000, 3)]
        for k in keys[::2]:
            s.put("t", k, k * 4)
        await s.flush()
        for k in keys[1::2]:
            s.put("t", k, k * 4)
        await s.flush()
        for k in keys[::5]:
            s.delete("t", k)
        live = [k for i, k in enumerate(keys) if i % 5]
        assert s.stats()["sstables_count"] >= 2      # scan merges memtable and SSTables
        got = await s.scan("t", b"00100", b"00200")
        assert [k for k, _ in got] == [k for k in live if b"00100" <= k < b"00200"]
        got = await s.scan("t", b"00102", b"00200", start_exclusive=True)
        assert [k for k, _ in got] == [k for k in live if b"00102" < k < b"00200"]
        got = await s.scan("t", b"00100", b"00200", reverse=True)
        assert [k for k, _ in got] == [k for k in reversed(live) if b"00100" <= k < b"00200"]
        # paging forward and backward with limit, resuming past the last key
        for reverse in (False, True):
            pages, cursor = [], None
            while True:
                if reverse:
                    page = await s.scan("t", None, cursor, reverse=True, limit=97)
                else:
                    page = await s.scan("t", cursor, None, start_exclusive=True, limit=97)
                if not page:
                    break
                pages += page
                cursor = page[-1][0]
            assert [k for k, _ in pages] == (list(reversed(live)) if reverse else live)
        # max_bytes: stops once the sum reaches it, the crossing item included
        got = await s.scan("t", None, None, max_bytes=50)
        assert sum(len(v) for _, v in got[:-1]) < 50 <= sum(len(v) for _, v in got)
        assert await s.scan("t", b"5", b"1") == []
        await s.close()
    run(go())


def test_get_sees_write_landing_during_disk_read(tmp_path, monkeypatch):
    # a block the page cache holds is read without suspending; force the AIO path
    monkeypatch.setattr(sst_reader, "_nowait_usable", False)

    async def go():
        s = await opened(tmp_path, small_opts())
        s.create_table("t")
        s.put("t", b"k", b"old")
        await s.flush()
        s._row_cache.clear()             # the flush filled it: make the read go to the SSTable
        task = asyncio.ensure_future(s.get("t", b"k"))
        await asyncio.sleep(0)           # get is now awaiting the SSTable read
        s.put("t", b"k", b"new")
        assert await task == b"new"
        assert await s.get("t", b"k") == b"new"
        await s.flush()
        assert await s.get("t", b"k") == b"new"    # row cache was kept coherent
        s.delete("t", b"k")
        await s.flush()
        assert await s.get("t", b"k") is None
        await s.close()
    run(go())


def test_a_write_to_a_cached_row_is_what_reads_see_before_and_after_flushes(tmp_path):
    """A write drops the row cache's entry: the memtable answers, then the flush's refill."""
    async def go():
        s = await opened(tmp_path, small_opts())
        s.create_table("t")
        keys = [b"k%03d" % i for i in range(200)]
        for k in keys:
            s.put("t", k, b"v1" + k)
        await s.flush()
        s._row_cache.clear()
        assert [await s.get("t", k) for k in keys] == [b"v1" + k for k in keys]   # cached now
        for n, k in enumerate(keys):
            if n % 3 == 0:
                s.delete("t", k)
            else:
                s.put("t", k, b"v2" + k)
        expected = [None if n % 3 == 0 else b"v2" + k for n, k in enumerate(keys)]
        prefix = s._tables["t"].cache_prefix
        assert not any(prefix + k in s._row_cache for k in keys)
        assert [await s.get("t", k) for k in keys] == expected
        await s.flush()
        assert [await s.get("t", k) for k in keys] == expected
        assert s.stats()["row_cache_hits_total"] >= 200
        await s.close()
    run(go())


def test_a_flush_runs_longer_slices_as_writers_outpace_it(tmp_path):
    """Under the threshold a flush yields every BACKGROUND_SLICE_S; past it, its slices grow
    with the excess, so it catches up instead of every writer waiting at twice the threshold."""
    from shardserver.sstable.compaction import BACKGROUND_SLICE_S

    async def go():
        s = await opened(tmp_path, small_opts())
        threshold = s.flush_threshold
        for used, expected in ((0, BACKGROUND_SLICE_S), (threshold, BACKGROUND_SLICE_S),
                               (threshold * 3 // 2, BACKGROUND_SLICE_S + storage_mod.MAX_EXTRA_FLUSH_SLICE_S / 2),
                               (threshold * 2, BACKGROUND_SLICE_S + storage_mod.MAX_EXTRA_FLUSH_SLICE_S),
                               (threshold * 5, BACKGROUND_SLICE_S + storage_mod.MAX_EXTRA_FLUSH_SLICE_S)):
            s._memtable_bytes = used
            assert s._flush_slice() == pytest.approx(expected)
        s._memtable_bytes = 0
        await s.close()
    run(go())


def test_stats_exact_with_blind_writes_across_restart(tmp_path):
    opts = small_opts(memtable_flush_threshold_bytes=30_000)

    async def go():
        s = await opened(tmp_path, opts)
        s.create_table("t")
        ref = {}
        rnd = random.Random(11)
        for i in range(6000):
            k = b"%04d" % rnd.randrange(1500)
            if rnd.random() < 0.3:
                s.delete("t", k)          # blind: no get() before
                ref.pop(k, None)
            else:
                v = rnd.randbytes(rnd.randint(1, 30))
                s.put("t", k, v)
                ref[k] = v
        await s.sync()
        expect = (len(ref), sum(map(len, ref.values())))
        assert s.table_stats("t") == expect
        await abandon(s)                  # crash: replay must rebuild the same numbers
        s = await opened(tmp_path, opts)
        assert s.table_stats("t") == expect
        await s.compact("t")
        assert s.table_stats("t") == expect
        assert await s.scan("t", None, None) == sorted(ref.items())
        await s.close()
    run(go())


def test_drop_table_is_not_resurrected(tmp_path):
    opts = small_opts(commitlog_sync="batch")

    async def go():
        s = await opened(tmp_path, opts)
        s.create_table("keep")
        s.create_table("gone")
        for i in range(3000):
            s.put("gone", b"%d" % i, b"x" * 20)
            s.put("keep", b"%d" % i, b"y")
        await s.sync()
        s.drop_table("gone")
        assert not s.has_table("gone")
        with pytest.raises(ResourceNotFoundException):
            await s.get("gone", b"1")
        s.create_table("gone")                 # same id, new incarnation
        s.put("gone", b"fresh", b"z")
        await s.sync()
        await abandon(s)
        s = await opened(tmp_path, opts)
        assert await s.scan("gone", None, None) == [(b"fresh", b"z")]
        assert s.table_stats("gone") == (1, 1)
        assert s.table_stats("keep") == (3000, 3000)
        s.drop_table("gone")
        await s.close()
        s = await opened(tmp_path, opts)
        assert not s.has_table("gone")
        assert sorted(os.listdir(os.path.join(tmp_path, "tables"))) == ["keep"]
        await s.close()
    run(go())


def test_damaged_commitlog_tail_start_succeeds(tmp_path):
    opts = small_opts(commitlog_sync="batch", memtable_flush_threshold_bytes=10 << 20)

    async def go(phase):
        s = await opened(tmp_path, opts)
        if phase == 0:
            s.create_table("t")
            for i in range(100):
                s.put("t", b"%03d" % i, b"v%d" % i)
            await s.sync()
            await abandon(s)
            return None
        got = await s.scan("t", None, None)
        st = s.stats()
        await s.close()
        return got, st
    run(go(0))
    logdir = os.path.join(tmp_path, "commitlog")
    (seg,) = [n for n in os.listdir(logdir) if n.endswith(".log")]
    with open(os.path.join(logdir, seg), "r+b") as f:
        f.seek(-3, os.SEEK_END)
        b = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([b[0] ^ 0xFF]))
    got, st = run(go(1))
    assert [k for k, _ in got] == [b"%03d" % i for i in range(99)]
    assert st["corrupt_records_total"] == 1


def test_disk_full_put_fails_then_recovers(tmp_path, monkeypatch):
    async def go():
        s = await opened(tmp_path, small_opts(commitlog_sync="batch"))
        s.create_table("t")
        s.put("t", b"a", b"1")
        await s.sync()
        full = fill_the_disk(monkeypatch)
        s.put("t", b"b", b"2")
        with pytest.raises(InternalServerError):
            await s.sync()
        with pytest.raises(InternalServerError):
            s.put("t", b"c", b"3")
        assert await s.get("t", b"c") is None        # a refused put changed nothing
        assert s.stats()["commitlog_write_errors_total"] >= 1
        full["on"] = False
        s.put("t", b"c", b"3")
        await s.sync()
        await abandon(s)
        s = await opened(tmp_path, small_opts(commitlog_sync="batch"))
        assert await s.scan("t", None, None) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
        await s.close()
    run(go())


def test_flush_does_not_stall_the_loop(tmp_path):
    opts = small_opts(memtable_flush_threshold_bytes=64 << 20, sstable_block_size_in_kb=16)

    async def go():
        s = await opened(tmp_path, opts)
        s.create_table("t")
        for i in range(60000):
            s.put("t", struct.pack(">Q", i * 2654435761 % (1 << 64)), b"v" * 100)
        await s.sync()
        stalls = []
        done = False

        async def ticker():
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0)
                now = time.perf_counter()
                stalls.append(now - last)
                last = now
        # As a shard does (shard/main.py): what exists before serving is frozen, so a
        # full collection of the test process's leftovers is not counted as the flush's.
        gc.collect()
        gc.freeze()
        try:
            tick = asyncio.ensure_future(ticker())
            await asyncio.sleep(0)
            await s.flush("t")
            done = True
            await tick
        finally:
            gc.unfreeze()
        await s.close()
        return max(stalls)
    worst = run(go())
    assert worst < 0.05, f"loop stalled {worst * 1000:.1f} ms during a flush"


# --------------------------------------------------------------------------- kill -9

def _child(path, mode, wfd):
    async def main():
        s = ShardStorage(path, 0, small_opts(commitlog_sync=mode, commitlog_sync_period_in_ms=50,
                                             memtable_flush_threshold_bytes=200_000))
        await s.open()
        s.create_table("t")
        counter = iter(range(1 << 30))

        async def writer():
            while True:
                i = next(counter)
                s.put("t", b"%09d" % i, value_of(i))
                await s.sync()
                os.write(wfd, struct.pack("<I", i))
        await asyncio.gather(*(writer() for _ in range(8)))
    try:
        uvloop.run(main())
    finally:
        os._exit(1)


@pytest.mark.parametrize("mode", ["batch", "periodic"])
def test_kill_9_loses_no_acknowledged_write(tmp_path, mode):
    path = str(tmp_path)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(path, mode, wfd)
    os.close(wfd)
    acked = set()
    buf = b""
    deadline = time.monotonic() + 20
    try:
        while len(acked) < 4000 and time.monotonic() < deadline:
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            buf += chunk
            n = len(buf) // 4
            acked.update(struct.unpack(f"<{n}I", buf[:4 * n]))
            buf = buf[4 * n:]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    while chunk := os.read(rfd, 65536):   # acks already in the pipe when the child died
        buf += chunk
    os.close(rfd)
    n = len(buf) // 4
    acked.update(struct.unpack(f"<{n}I", buf[:4 * n]))
    assert len(acked) >= 1000

    async def verify():
        s = await opened(path, small_opts(commitlog_sync=mode))
        missing = [i for i in sorted(acked) if await s.get("t", b"%09d" % i) != value_of(i)]
        items, _ = s.table_stats("t")
        await s.close()
        return missing, items
    missing, items = run(verify())
    assert missing == []
    assert items >= len(acked)


def test_drop_and_recreate_during_flush(tmp_path):
    async def go():
        s = await opened(tmp_path, small_opts(memtable_flush_threshold_bytes=64 << 20))
        s.create_table("t")
        for i in range(30000):
            s.put("t", b"%08d" % i, b"x" * 50)
        flush = asyncio.ensure_future(s.flush("t"))
        for _ in range(3):
            await asyncio.sleep(0)
        s.drop_table("t")
        s.create_table("t")
        s.put("t", b"new", b"1")
        await flush
        assert await s.scan("t", None, None) == [(b"new", b"1")]
        assert s.table_stats("t") == (1, 1)
        await s.close()
        s = await opened(tmp_path, small_opts())
        assert await s.scan("t", None, None) == [(b"new", b"1")]
        assert os.listdir(os.path.join(tmp_path, "tables", "t")) == ["MANIFEST"] or \
            len(os.listdir(os.path.join(tmp_path, "tables", "t"))) == 2
        await s.close()
    run(go())


# --------------------------------------------------------------------------- memory bounds

def test_memory_stays_bounded_as_the_table_grows(tmp_path):
    """What a shard keeps in memory is the memtable, the byte-bounded caches, and a few
    bytes per SSTable block and key (index, bloom): not something per item."""
    import gc
    import tracemalloc
    opts = small_opts(memtable_flush_threshold_bytes=1 << 20, commitlog_segment_size_bytes=1 << 20,
                      sstable_block_size_in_kb=8, row_cache_in_mb=1, block_cache_in_mb=1)

    def key(i):
        return struct.pack(">Q", i * 0x9E3779B97F4A7C15 % (1 << 64)) + b"pk%d" % i

    def value(i):
        return b"%08d" % i + b"v" * 1000

    async def go():
        s = await opened(tmp_path, opts)
        s.create_table("t")
        rnd = random.Random(3)

        async def grow_to(start, stop):
            for i in range(start, stop):
                s.put("t", key(i), value(i))
                if i % 500 == 0:
                    await s.sync()
            await s.flush("t")
            while s._compaction_task is not None and not s._compaction_task.done():
                await asyncio.sleep(0.01)
            for _ in range(2000):             # more distinct rows than the row cache holds
                i = rnd.randrange(stop)
                assert await s.get("t", key(i)) == value(i)
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        tracemalloc.start()
        try:
            small = await grow_to(0, 4000)
            big = await grow_to(4000, 24000)      # ~24 MB of items
        finally:
            tracemalloc.stop()
        while s._trimming:                    # the heap is trimmed in a worker thread
            await asyncio.sleep(0.01)
        st = s.stats()
        assert st["row_cache_bytes"] <= 1 << 20 and st["block_cache_bytes"] <= 1 << 20
        assert st["row_cache_evictions_total"] > 0
        blocks = sum(r.nblocks for r in s._tables["t"].sstables)
        assert st["sstables_memory_bytes"] < 40 * blocks + 2 * 24000 + 4096
        caches = (1 << 20) + (1 << 20)
        assert big < caches + (1 << 20), f"{big / 1e6:.1f} MB traced with 24k items"
        assert big - small < (512 << 10), f"grew {(big - small) / 1e6:.1f} MB from 4k to 24k items"
        if storage_mod._malloc_trim is not None:
            assert st["flushes_total"] > 0 and st["heap_trims_total"] > 0
        await s.close()
    run(go())


def test_durable_writes_option_reaches_the_storage():
    import argparse

    from shardserver import config as config_mod
    from shardserver.shard.main import storage_options
    parser = argparse.ArgumentParser()
    config_mod.add_arguments(parser)
    assert storage_options(config_mod.from_args(parser.parse_args([]))).durable_writes is True
    cfg = config_mod.from_args(parser.parse_args(["--durable-writes", "false"]))
    assert cfg.durable_writes is False and storage_options(cfg).durable_writes is False


def test_durable_writes_false_keeps_no_commit_log(tmp_path, caplog):
    """No commit log: nothing under commitlog/, a clean close flushes everything, a crash
    loses only what no flush wrote; segments of an earlier durable run are still replayed."""
    logdir = tmp_path / "commitlog"

    async def durable_run():
        s = await opened(tmp_path, small_opts())
        s.create_table("t")
        s.put("t", b"from-durable-run", b"1")
        await s.sync()
        await abandon(s)                 # crash: the record lives only in the commit log

    async def in_memory_run():
        s = await opened(tmp_path, small_opts(durable_writes=False))
        assert await s.get("t", b"from-durable-run") == b"1"     # replayed
        for i in range(3000):            # passes the flush threshold: SSTables get written
            s.put("t", b"%06d" % i, value_of(i))
            await s.sync()
        await s.flush()
        assert not any(name.endswith(".log") for name in os.listdir(logdir))   # replayed, flushed, gone
        s.put("t", b"unflushed", b"x")
        await s.sync()
        await abandon(s)

    async def check_after_crash():
        s = await opened(tmp_path, small_opts(durable_writes=False))
        assert await s.get("t", b"unflushed") is None      # the documented loss
        assert await s.get("t", b"from-durable-run") == b"1"
        assert all([await s.get("t", b"%06d" % i) == value_of(i) for i in range(3000)])
        s.put("t", b"flushed-at-close", b"y")
        await s.sync()
        await s.close()

    async def check_after_clean_close():
        s = await opened(tmp_path, small_opts())       # durable again: a fresh segment
        assert await s.get("t", b"flushed-at-close") == b"y"
        items, _ = s.table_stats("t")
        assert items == 3001 + 1
        s.put("t", b"durable-again", b"z")
        await s.sync()
        await abandon(s)
        s = await opened(tmp_path, small_opts())
        assert await s.get("t", b"durable-again") == b"z"
        await s.close()

    run(durable_run())
    with caplog.at_level("WARNING"):
        run(in_memory_run())
    assert any("NOT crash-safe" in r.getMessage() for r in caplog.records)
    run(check_after_crash())
    run(check_after_clean_close())
