"""Partition-keyed bloom filters: what they hash, and that point reads and one-partition
range reads (a Query) consult them."""

import uvloop

from shardserver.shard import values
from shardserver.shard.storage import ShardStorage, StorageOptions
from shardserver.sstable import bloom as bloom_mod


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
