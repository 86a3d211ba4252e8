"""Partition-keyed bloom filters: what they hash, and that point reads and one-partition
range reads (a Query) consult them, next to files written before them (whole-key filters)."""

import uvloop

from shardserver.shard import values
from shardserver.shard.storage import ShardStorage, StorageOptions
from shardserver.sstable import bloom as bloom_mod
from shardserver.sstable import writer as writer_mod


def run(coro):
    return uvloop.run(coro)


def key(pk: str, sk: int | None = None) -> bytes:
    return values.encode_key({"S": pk}, None if sk is None else {"N": str(sk)})


def test_bloom_key_is_the_partition_prefix():
    for pk in ("a", "a\x00b", "\x00", "a\x00\x01", "é" * 50):
        prefix = values.partition_prefix({"S": pk})
        assert bloom_mod.bloom_key(key(pk)) == prefix
        assert bloom_mod.bloom_key(key(pk, 7)) == prefix
        assert bloom_mod.bloom_key(prefix + b"\x00\x01tail") == prefix
    # a token whose bytes hold 00 01 does not end the partition early
    token = int.from_bytes(b"\x00\x01" * 4, "big") - values.TOKEN_BIAS
    k = values.encode_key({"S": "x"}, {"S": "y"}, token)
    assert bloom_mod.bloom_key(k) == values.partition_prefix({"S": "x"}, token)
    # keys of internal tables without a terminator are their own partition
    assert bloom_mod.bloom_key(b"outbox-0000000001") == b"outbox-0000000001"


def _storage(path):
    return ShardStorage(str(path), 0, StorageOptions(memtable_flush_threshold_bytes=1 << 30,
                                                     sstable_block_size_in_kb=1))


def test_query_range_skips_sstables_without_the_partition(tmp_path):
    async def go():
        s = _storage(tmp_path)
        await s.open()
        s.create_table("t")
        for pk in ("p1", "p2", "p3"):
            for sk in range(20):
                s.put("t", key(pk, sk), b'{"v":%d}' % sk)
            await s.flush()            # one SSTable per partition
        assert s.stats()["sstables_count"] == 3
        prefix = values.partition_prefix({"S": "p2"})
        end = prefix[:-1] + b"\x02"
        before = s.bloom_negatives_total
        got = await s.scan("t", prefix, end, partition=prefix)
        assert [k for k, _ in got] == [key("p2", sk) for sk in range(20)]
        # two of the three files were ruled out (bar a false positive)
        assert s.bloom_negatives_total - before >= 1
        got = await s.scan("t", prefix, end, partition=prefix, reverse=True, limit=5)
        assert [k for k, _ in got] == [key("p2", sk) for sk in range(19, 14, -1)]
        # a partition nobody holds reads nothing
        other = values.partition_prefix({"S": "nobody"})
        assert await s.scan("t", other, other[:-1] + b"\x02", partition=other) == []
        for pk in ("p1", "p2", "p3"):
            assert await s.get("t", key(pk, 3)) == b'{"v":3}'
        assert await s.get("t", key("p4", 3)) is None
        await s.close()
    run(go())


def test_files_with_whole_key_filters_still_answer(tmp_path, monkeypatch):
    """An SSTable written before partition filters (meta without "bloom_key")."""
    async def go():
        s = _storage(tmp_path)
        await s.open()
        s.create_table("t")
        old_bloom_key = bloom_mod.bloom_key
        real_finish = writer_mod.SSTableWriter.finish

        async def old_finish(self, extra_meta=None):
            return await real_finish(self, {**(extra_meta or {}), "bloom_key": "key"})

        monkeypatch.setattr(bloom_mod, "bloom_key", lambda k: k)
        monkeypatch.setattr(writer_mod.SSTableWriter, "finish", old_finish)
        for sk in range(10):
            s.put("t", key("old", sk), b"old%d" % sk)
        await s.flush()
        monkeypatch.setattr(bloom_mod, "bloom_key", old_bloom_key)
        monkeypatch.setattr(writer_mod.SSTableWriter, "finish", real_finish)
        for sk in range(10):
            s.put("t", key("new", sk), b"new%d" % sk)
        await s.flush()
        readers = s._table("t").sstables
        assert [r.partition_bloom for r in readers] == [True, False]     # newest first
        assert readers[1].might_contain(key("old", 4))
        assert await s.get("t", key("old", 4)) == b"old4"
        assert await s.get("t", key("new", 4)) == b"new4"
        prefix = values.partition_prefix({"S": "old"})
        got = await s.scan("t", prefix, prefix[:-1] + b"\x02", partition=prefix)
        assert [v for _, v in got] == [b"old%d" % sk for sk in range(10)]
        await s.close()
        # after a restart the old file is still read through its whole-key filter
        s = _storage(tmp_path)
        await s.open()
        assert await s.get("t", key("old", 9)) == b"old9"
        await s.close()
    run(go())
