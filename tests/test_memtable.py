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
    assert list(m.data.keys()) == sorted(set(keys))
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


def test_frozen_rejects_writes():
    m = Memtable()
    m.frozen = True
    with pytest.raises(RuntimeError):
        m.apply(b"a", b"b", None)
