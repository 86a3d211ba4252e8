"""Memtable: key order, tombstones, chunked iteration, memory accounting."""

import random

import pytest

from shardserver.shard.memtable import ENTRY_OVERHEAD, MISSING, Memtable, is_tombstone


def test_order_and_overwrite():
    m = Memtable()
    keys = [random.randbytes(random.randint(1, 12)) for _ in range(2000)]
    for k in keys:
        m.apply(k, b"v" + k, 1)
    m.apply(keys[0], b"new", 2)
    assert [k for k, _ in m.items()] == sorted(set(keys))
    assert m.get(keys[0]) == b"new"
    assert m.segments == {1, 2}
    assert m.get(b"\xff" * 20) is MISSING


def test_tombstone_and_memory():
    m = Memtable()
    m.apply(b"k", b"12345", 1)
    assert m.memory_bytes == 1 + 5 + ENTRY_OVERHEAD
    m.apply(b"k", 1700000000, 1)
    assert is_tombstone(m.get(b"k"))
    assert m.memory_bytes == 1 + ENTRY_OVERHEAD
    m.apply(b"k", b"ab", 1)
    assert m.memory_bytes == 1 + 2 + ENTRY_OVERHEAD


def test_chunk_bounds_both_directions():
    m = Memtable()
    for i in range(100):
        m.apply(bytes([i]), b"x", None)
    got = m.chunk(bytes([10]), True, bytes([20]), False, False, 1000)
    assert [k[0] for k, _ in got] == list(range(10, 20))
    got = m.chunk(bytes([10]), False, bytes([20]), True, True, 1000)
    assert [k[0] for k, _ in got] == list(range(20, 10, -1))
    got = m.chunk(None, True, None, True, True, 5)
    assert [k[0] for k, _ in got] == [99, 98, 97, 96, 95]


def test_keys_written_after_an_ordered_read_are_in_order_in_the_next():
    """The order is brought up to date lazily: writes between range reads must show."""
    m = Memtable()
    expected = set()
    for round_ in range(30):
        for _ in range(random.randint(0, 40)):
            k = random.randbytes(random.randint(1, 6))
            m.apply(k, b"v", None)
            expected.add(k)
        got = m.chunk(None, True, None, True, round_ % 2 == 1, 10_000)
        assert [k for k, _ in got] == sorted(expected, reverse=round_ % 2 == 1)
    assert [k for k, _ in m.items()] == sorted(expected)


def test_frozen_rejects_writes():
    m = Memtable()
    m.frozen = True
    with pytest.raises(RuntimeError):
        m.apply(b"a", b"b", None)


def test_stored_values_do_not_keep_the_serializers_buffer(tmp_path):
    """orjson.dumps may return bytes with a buffer many times their length; a memtable
    holding a million of them would be many times its accounted size."""
    import asyncio
    import tracemalloc

    import orjson
    import uvloop

    from shardserver.shard.storage import ShardStorage, StorageOptions

    async def go():
        s = ShardStorage(str(tmp_path), 0, StorageOptions())
        await s.open()
        s.create_table("t")
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        items = [orjson.dumps({"pk": {"S": "k%05d" % i}, "v": {"S": "x" * 150}}) for i in range(2000)]
        for i, value in enumerate(items):
            s.put("t", b"key-%05d" % i, value)
        del items, value
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        # what the memtable keeps of ~190-byte values, with keys and its own structures,
        # is well under 1 KB per item
        assert grown < 2000 * 1024, grown
        await asyncio.sleep(0)
        await s.close()

    uvloop.run(go())


def test_ordering_steps_sort_a_frozen_memtable_in_bounded_steps():
    """A flush orders the keys a step at a time; the result is the one sort's."""
    m = Memtable()
    early = [random.randbytes(8) for _ in range(300)]
    for k in early:
        m.apply(k, b"v", None)
    m.ordered_keys()                          # a range read ordered these already
    late = [random.randbytes(8) for _ in range(5000)]
    for k in late:
        m.apply(k, b"w", None)
    m.frozen = True
    steps = sum(1 for _ in m.ordering_steps(run=512))
    assert steps == 10 + 9                    # ten runs sorted, nine merges
    assert list(m.ordered_keys()) == sorted(set(early) | set(late))
    assert [k for k, _ in m.items()] == sorted(set(early) | set(late))


def test_ordering_steps_stop_when_a_range_read_orders_the_keys_meanwhile():
    m = Memtable()
    keys = [random.randbytes(6) for _ in range(3000)]
    for k in keys:
        m.apply(k, b"v", None)
    m.frozen = True
    steps = m.ordering_steps(run=256)
    next(steps)
    next(steps)
    got = m.chunk(None, True, None, True, False, 10_000)   # between two steps
    assert [k for k, _ in got] == sorted(set(keys))
    assert list(steps) == []                  # nothing left to do
    assert [k for k, _ in m.items()] == sorted(set(keys))


def test_ordering_steps_refuse_an_active_memtable():
    m = Memtable()
    m.apply(b"k", b"v", None)
    with pytest.raises(RuntimeError):
        next(m.ordering_steps())
