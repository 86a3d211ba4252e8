"""SSTables: write/read round trip, point lookups, range cursors, bloom filter quality,
checksum verification."""

import os
import random

import pytest
import uvloop

from shardserver.errors import InternalServerError
from shardserver.reactor.aio import AIOContext, aio_available_events, aio_events_needed
from shardserver.sstable import block as block_mod
from shardserver.sstable.bloom import BloomFilter, key_hashes, probe_mask
from shardserver.sstable.merge import MergeIterator
from shardserver.sstable.reader import MISSING, BlockCache, CorruptSSTable, SSTableReader
from shardserver.sstable.writer import SSTableWriter


def run(coro):
    return uvloop.run(coro)


def make_entries(n, seed=1, tomb_every=7):
    rnd = random.Random(seed)
    keys = sorted({rnd.randbytes(rnd.randint(1, 24)) for _ in range(n)})
    out = []
    for i, k in enumerate(keys):
        out.append((k, 1700000000 + i if i % tomb_every == 3 else rnd.randbytes(rnd.randint(0, 300))))
    return out


async def write_table(path, entries, aio, block_size=1024):
    w = SSTableWriter(path, aio, block_size=block_size)
    for k, v in entries:
        w.add(k, v)
        await w.write_pending()
    return await w.finish({"generation": 1})


async def written_reader(path, entries, cache, on_checksum_error=None):
    """(AIO context, reader) of an SSTable of entries written at path."""
    aio = AIOContext(8)
    await aio.open()
    await write_table(path, entries, aio)
    return aio, SSTableReader.load(path, aio, cache, on_checksum_error)


def write_tiny_table(path):
    """A one-entry SSTable at path (for tests that then damage the file)."""
    async def go():
        aio = AIOContext(4)
        await aio.open()
        await write_table(path, [(b"a", b"b")], aio)
        aio.close()
    run(go())


def test_block_round_trip():
    b = block_mod.BlockBuilder()
    ents = [(b"a", b"1"), (b"b", 123), (b"c", b""), (b"d" * 300, b"x" * 1000)]
    for k, v in ents:
        b.add(k, v)
    data = b.finish()
    assert block_mod.entries(data) == ents
    for k, v in ents:
        assert block_mod.find(data, k) == v
    assert block_mod.find(data, b"bb") is block_mod.MISSING
    assert block_mod.find(data, b"") is block_mod.MISSING


def test_block_find_among_shared_prefixes():
    """Keys sharing their first 8 bytes (a partition's items), keys shorter than 8 bytes
    (zero-padded prefixes that tie), tombstones, and absent keys on every side."""
    rnd = random.Random(3)
    keys = set()
    for _ in range(40):
        token = rnd.randbytes(8)
        keys.update(token + rnd.randbytes(rnd.randint(0, 6)) for _ in range(rnd.randint(1, 12)))
    keys.update({b"a", b"a\0", b"a\0\0", b"ab", b"\0", b"\0\0\0\0\0\0\0\0", b"\0" * 9})
    keys = sorted(keys)
    b = block_mod.BlockBuilder()
    expected = {}
    for i, k in enumerate(keys):
        v = 1700000000 + i if i % 5 == 0 else rnd.randbytes(rnd.randint(0, 40))
        b.add(k, v)
        expected[k] = v
    block = block_mod.Block(b.finish())
    assert block.entries() == sorted(expected.items())
    for k, v in expected.items():
        assert block.find(k) == v
        for probe in (k + b"\0", k + b"\xff", k[:-1]):
            if probe not in expected:
                assert block.find(probe) is block_mod.MISSING
    assert block.find(b"") is block_mod.MISSING
    assert block.find(b"\xff" * 20) is block_mod.MISSING


def test_format_version_1_is_refused_clearly(tmp_path):
    import struct

    from shardserver.sstable import format as fmt
    path = str(tmp_path / "old.db")

    write_tiny_table(path)
    with open(path, "r+b") as f:    # rewrite the footer as an older release would have
        f.seek(-fmt.FOOTER_SIZE, os.SEEK_END)
        footer = bytearray(f.read())
        struct.pack_into("<I", footer, 48, 1)
        struct.pack_into("<I", footer, 56, fmt.checksum(bytes(footer[:56])))
        f.seek(-fmt.FOOTER_SIZE, os.SEEK_END)
        f.write(footer)
    with pytest.raises(CorruptSSTable, match="format version 1 .*version 2"):
        SSTableReader.load(path, None, BlockCache())


def test_get_nowait_and_the_disk_path_agree(tmp_path, monkeypatch):
    from shardserver.sstable import reader as reader_mod
    from shardserver.sstable.format import key_prefix
    entries = make_entries(2000, seed=9)
    path = str(tmp_path / "t.db")

    async def go():
        aio, r = await written_reader(path, entries, BlockCache(0))      # no block cache
        for k, v in entries[::7]:
            assert r.get_nowait(k, key_prefix(k)) == v          # page cache
        monkeypatch.setattr(reader_mod, "_nowait_usable", False)
        for k, v in entries[::7]:
            assert r.get_nowait(k, key_prefix(k)) is reader_mod.NEED_IO
            assert await r.get(k) == v                           # through AIO
        assert r.aio_reads > 0
        r.mark_obsolete(unlink=False)
        aio.close()
    run(go())


def test_block_cache_admits_on_a_second_miss_once_full(tmp_path):
    from shardserver.sstable.format import key_prefix
    entries = [(b"k%06d" % i, b"v" * 200) for i in range(4000)]
    path = str(tmp_path / "t.db")
    errors = []

    async def go():
        cache = BlockCache(8 * 1024)          # a few 1 KB blocks: full at once
        aio, r = await written_reader(path, entries, cache, lambda: errors.append(1))
        for k, v in entries:                  # every block once: the cache fills, then bypasses
            assert r.get_nowait(k, key_prefix(k)) == v
        assert cache.bypassed > 0 and cache.size <= cache.capacity
        hot = entries[len(entries) // 2][0]
        block_key = r.cache_base | r.block_for(hot)
        for _ in range(3):
            assert r.get_nowait(hot, key_prefix(hot)) == b"v" * 200
        assert cache.get(block_key) is not None      # missed twice in a row: admitted
        assert r.get_nowait(b"k9", key_prefix(b"k9")) is MISSING
        r.mark_obsolete(unlink=False)
        # a damaged block read through the scratch buffer is an error too, not garbage
        target = 7
        with open(path, "r+b") as f:
            f.seek(r.offsets[target] + 20)
            byte = f.read(1)
            f.seek(r.offsets[target] + 20)
            f.write(bytes([byte[0] ^ 4]))
        r = SSTableReader.load(path, aio, BlockCache(0), lambda: errors.append(1))
        with pytest.raises(InternalServerError):
            key = r.last_keys[target]
            r.get_nowait(key, key_prefix(key))
        r.mark_obsolete(unlink=False)
        aio.close()
    run(go())
    assert errors == [1]


def test_round_trip_get_and_cursors(tmp_path):
    entries = make_entries(3000)
    path = str(tmp_path / "t.db")

    async def go():
        aio = AIOContext(32)
        await aio.open()
        meta = await write_table(path, entries, aio)
        assert meta["entries"] == len(entries)
        r = SSTableReader.load(path, aio, BlockCache(1 << 20))
        assert r.nblocks > 10
        for k, v in entries[::13]:
            assert r.might_contain(k)
            assert await r.get(k) == v
            assert r.get_blocking(k) == v
        assert await r.get(b"\xff" * 30) is MISSING
        keys = [k for k, _ in entries]
        # forward, bounded
        lo, hi = keys[100], keys[2000]
        c = r.cursor(lo, True, hi, False, False)
        got = []
        while chunk := await c.next_chunk():
            got += chunk
        assert got == entries[100:2000]
        # reverse, exclusive low
        c = r.cursor(lo, False, hi, True, True)
        got = []
        while chunk := await c.next_chunk():
            got += chunk
        assert got == list(reversed(entries[101:2001]))
        # unbounded, both directions
        for rev in (False, True):
            c = r.cursor(None, True, None, True, rev)
            got = []
            while chunk := await c.next_chunk():
                got += chunk
            assert got == (list(reversed(entries)) if rev else entries)
        r.mark_obsolete(unlink=False)
        aio.close()
    run(go())


def test_writer_rejects_unsorted(tmp_path):
    async def go():
        aio = AIOContext(4)
        await aio.open()
        w = SSTableWriter(str(tmp_path / "x.db"), aio)
        w.add(b"b", b"1")
        with pytest.raises(ValueError):
            w.add(b"a", b"1")
        w.abort()
        aio.close()
    run(go())
    assert not os.path.exists(tmp_path / "x.db")


def test_bloom_false_positive_rate():
    rnd = random.Random(5)
    present = [rnd.randbytes(16) for _ in range(20000)]
    bf = BloomFilter.build([key_hashes(k) for k in present])
    assert all(bf.might_contain(k) for k in present)
    absent = [rnd.randbytes(17) for _ in range(20000)]
    fp = sum(bf.might_contain(k) for k in absent) / len(absent)
    assert fp < 0.015, fp    # 12 bits/key, 6 probes in one 64-bit word: ~1 %
    for k in present[:500] + absent[:500]:     # the storage layer's inlined probe agrees
        h1, h2 = key_hashes(k)
        assert bf.might_contain_masked(h1, probe_mask(h2, bf.nprobes)) == bf.might_contain(k)
    for nprobes in range(1, 11):
        h2 = rnd.getrandbits(64)
        assert probe_mask(h2, nprobes) == sum({1 << ((h2 >> (6 * i)) & 63) for i in range(nprobes)})
    bf2 = BloomFilter.from_bytes(bf.to_bytes())
    assert all(bf2.might_contain(k) for k in present[:500])


def test_data_block_bit_flip_is_an_error_not_garbage(tmp_path):
    entries = [(b"k%05d" % i, b"value%d" % i) for i in range(2000)]
    path = str(tmp_path / "t.db")
    errors = []

    async def go():
        aio, r = await written_reader(path, entries, BlockCache(1 << 20), lambda: errors.append(1))
        target = 5
        off = r.offsets[target] + 10
        r.mark_obsolete(unlink=False)
        with open(path, "r+b") as f:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 1]))
        r = SSTableReader.load(path, aio, BlockCache(1 << 20), lambda: errors.append(1))
        block_keys = [k for k, _ in block_mod.entries(r.read_block_blocking(4))]
        with pytest.raises(InternalServerError):
            await r.get(r.last_keys[target])
        with pytest.raises(InternalServerError):
            r.get_blocking(r.last_keys[target])
        c = r.cursor(None, True, None, True, False)
        with pytest.raises(InternalServerError):
            while await c.next_chunk():
                pass
        assert await r.get(block_keys[0]) is not MISSING   # other blocks still fine
        r.mark_obsolete(unlink=False)
        aio.close()
    run(go())
    assert len(errors) == 3


def test_damaged_footer_refuses_to_open(tmp_path):
    path = str(tmp_path / "t.db")

    write_tiny_table(path)
    for pos in (-1, -14, -30, -70):     # magic, checksum, index location, bloom location
        with open(path, "r+b") as f:
            f.seek(pos, os.SEEK_END)
            b = f.read(1)
            f.seek(pos, os.SEEK_END)
            f.write(bytes([b[0] ^ 0x40]))
        with pytest.raises(CorruptSSTable):
            SSTableReader.load(path, None, BlockCache())
        with open(path, "r+b") as f:
            f.seek(pos, os.SEEK_END)
            f.write(b)
    SSTableReader.load(path, None, BlockCache()).mark_obsolete(unlink=False)
    with open(path, "r+b") as f:     # a damaged index block is caught by its own checksum
        f.seek(-80, os.SEEK_END)
        b = f.read(1)
        f.seek(-80, os.SEEK_END)
        f.write(bytes([b[0] ^ 0x40]))
    with pytest.raises(CorruptSSTable):
        SSTableReader.load(path, None, BlockCache())


def test_merge_newest_wins(tmp_path):
    class ListSource:
        def __init__(self, items):
            self.items = items

        async def next_chunk(self):
            out, self.items = self.items[:3], self.items[3:]
            return out

    newer = [(b"a", b"new"), (b"c", 5), (b"e", b"new")]
    older = [(b"a", b"old"), (b"b", b"old"), (b"c", b"old"), (b"d", b"old"), (b"e", b"old")]

    async def go():
        m = MergeIterator([ListSource(list(newer)), ListSource(list(older))])
        fwd = await m.batch(100)
        m = MergeIterator([ListSource(list(reversed(newer))), ListSource(list(reversed(older)))],
                          reverse=True)
        rev = []
        while b := await m.batch(2):
            rev += b
        return fwd, rev
    fwd, rev = run(go())
    assert fwd == [(b"a", b"new"), (b"b", b"old"), (b"c", 5), (b"d", b"old"), (b"e", b"new")]
    assert rev == list(reversed(fwd))


def test_aio_helpers_and_fallback(tmp_path):
    assert aio_events_needed(4, 128) == 512
    avail = aio_available_events()
    assert avail is None or avail >= 0
    path = str(tmp_path / "f")

    async def go(force):
        aio = AIOContext(8, force_threads=force)
        await aio.open()
        fd = os.open(path, os.O_RDWR | os.O_CREAT)
        await aio.write(fd, 0, b"hello world")
        await aio.fdatasync(fd)
        data = await aio.read(fd, 6, 5)
        os.close(fd)
        mode = aio.mode
        aio.close()
        return data, mode
    data, mode = run(go(True))
    assert data == b"world" and mode == "threads"
    data, mode = run(go(False))
    assert data == b"world" and mode in ("linux-aio", "threads")


# --------------------------------------------------------------------------- sparse index

def test_shortest_separator_is_between_the_keys():
    from shardserver.sstable.index import shortest_separator
    rnd = random.Random(3)
    cases = [(b"abc", b"abd"), (b"a", b"b"), (b"a", b"c"), (b"ab", b"abc"), (b"\xff\x01", b"\xff\x05"),
             (b"", b"a"), (b"x\xff", b"y")]
    for _ in range(2000):
        if rnd.random() < 0.5:
            a, b = sorted((rnd.randbytes(rnd.randint(0, 12)), rnd.randbytes(rnd.randint(0, 12))))
        else:
            a, b = b"tok" + rnd.randbytes(3), b"tol" + rnd.randbytes(3)
        if a < b:
            cases.append((a, b))
    for a, b in cases:
        s = shortest_separator(a, b)
        assert a <= s < b, (a, b, s)
        assert len(s) <= len(a) or s == a
    # random 8-byte tokens: the separator is usually a byte or two, not the whole key
    seps = [shortest_separator(*sorted((rnd.randbytes(8) + b"pk", rnd.randbytes(8) + b"pk")))
            for _ in range(200)]
    assert sum(len(s) for s in seps) / len(seps) < 3


def test_sparse_index_lower_bound_matches_bisect():
    from bisect import bisect_left

    from shardserver.sstable.index import SparseIndex
    rnd = random.Random(11)
    # shared 8-byte prefixes (one partition over several blocks), short keys, long keys
    pool = {rnd.randbytes(rnd.randint(0, 7)) for _ in range(200)}
    for _ in range(50):
        token = rnd.randbytes(8)
        pool |= {token + rnd.randbytes(rnd.randint(0, 6)) for _ in range(8)}
    keys = sorted(pool)
    index = SparseIndex()
    for i, k in enumerate(keys):
        index.append(i * 100, 90, k)
    index.freeze()
    assert index.keys() == keys
    probes = keys + [rnd.randbytes(rnd.randint(0, 12)) for _ in range(2000)] + \
        [k + b"\0" for k in keys] + [k[:-1] for k in keys if k]
    for p in probes:
        assert index.lower_bound(p) == bisect_left(keys, p), p
    assert SparseIndex.from_bytes(index.to_bytes()).keys() == keys
    # a few dozen bytes per block, no Python object per entry
    assert index.memory_bytes() < len(keys) * 28 + sum(map(len, keys)) + 64


def test_page_cache_reads_skip_aio_and_fall_back(tmp_path, monkeypatch):
    from shardserver.sstable import reader as reader_mod
    entries = make_entries(2000, seed=5)
    path = str(tmp_path / "t.db")

    async def go(nowait):
        monkeypatch.setattr(reader_mod, "_nowait_usable", nowait)
        aio, r = await written_reader(path, entries, BlockCache(0))     # no block cache: every get reads
        assert r.memory_bytes() < 40 * r.nblocks + 2 * len(entries) + 64
        for k, v in entries[::7]:
            assert await r.get(k) == v
            assert type(await r.get(k)) in (bytes, int)
        r.mark_obsolete(unlink=False)
        aio.close()
        return r.page_cache_reads, r.aio_reads, aio.reads_total
    pc, ar, total = run(go(True))
    if reader_mod.RWF_NOWAIT is not None:
        assert pc > 0 and ar + pc == 2 * len(entries[::7])    # a freshly written file is cached
    pc, ar, total = run(go(False))
    assert pc == 0 and ar == total == 2 * len(entries[::7])
