"""The SPSC ring on its own: layout, wrap-around, large frames, wake-up words, segments."""

import hashlib
import os
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardserver.reactor.ring import (
    CACHE_LINE,
    FRAME_HEADER,
    HEAD,
    TAIL,
    WAIT_SEQ,
    AttachedSegment,
    Ring,
    RingCorrupt,
    RingReader,
    RingWriter,
    create_segment,
    full_fence,
)


@pytest.fixture
def segment():
    made, rings = [], []

    def make(size):
        shm = create_segment(f"shardserver-test-{os.getpid()}-{random.getrandbits(32):08x}", size)
        made.append(shm)
        return shm

    make.rings = rings
    yield make
    for ring in rings:
        ring.release()
    for shm in made:
        shm.close()
        shm.unlink()


def make_ring(segment, capacity):
    shm = segment(Ring.region_bytes(capacity))
    ring = Ring(shm.buf, 0, capacity)
    segment.rings.append(ring)
    return ring


def collect(reader):
    got = []
    reader.drain(lambda kind, rid, verb, payload: got.append((kind, rid, verb, payload)))
    reader.publish()
    return got


def test_counters_live_on_their_own_cache_lines(segment):
    ring = make_ring(segment, 4096)
    assert ring.ctl.format == "Q" and ring.ctl.itemsize == 8
    offsets = sorted(w * 8 for w in (HEAD, TAIL, WAIT_SEQ))
    assert all(b - a >= CACHE_LINE for a, b in zip(offsets, offsets[1:]))
    for bad in (1000, 4095, 6000):
        with pytest.raises(ValueError):
            Ring.region_bytes(bad)


def test_wrap_around_with_odd_frame_sizes(segment):
    cap = 4096
    ring = make_ring(segment, cap)
    writer, reader = RingWriter(ring), RingReader(ring)
    rnd = random.Random(7)
    sent, got = [], []
    for i in range(3000):
        size = rnd.choice([0, 1, 3, 7, 13, 255, 1021, 2047, 4093, 9001])
        verb = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 5, 17])))
        payload = rnd.randbytes(size)
        writer.put(1 + i % 3, i, verb, payload)
        sent.append((1 + i % 3, i, verb, payload))
        # Interleave writer and reader at random so every split point gets hit.
        if rnd.random() < 0.5:
            writer.pump()
            writer.publish()
        if rnd.random() < 0.3:
            got += collect(reader)
        assert ring.ctl[TAIL] - ring.ctl[HEAD] <= cap
    deadline = time.monotonic() + 5
    while len(got) < len(sent):
        assert time.monotonic() < deadline
        writer.pump()
        writer.publish()
        got += collect(reader)
    assert got == sent
    assert ring.ctl[TAIL] > 50 * cap  # wrapped many times
    assert not writer.has_backlog() and writer.backlog_bytes == 0


def test_header_straddling_the_end_of_the_data_area(segment):
    cap = 4096
    ring = make_ring(segment, cap)
    writer, reader = RingWriter(ring), RingReader(ring)
    for filler in range(cap - 40, cap + 1):
        # From an empty ring, a filler frame puts the next header (and verb)
        # at every offset around the wrap point.
        ring.reset()
        writer.resync()
        reader.resync()
        writer.put(1, 0, b"", bytes(filler - FRAME_HEADER.size))
        writer.put(2, filler, b"verb", b"x" * 50)
        got = []
        while len(got) < 2:
            writer.pump()
            writer.publish()
            got += collect(reader)
        assert got == [(1, 0, b"", bytes(filler - FRAME_HEADER.size)), (2, filler, b"verb", b"x" * 50)]


def test_frame_much_larger_than_the_ring(segment):
    cap = 64 * 1024
    ring = make_ring(segment, cap)
    writer, reader = RingWriter(ring), RingReader(ring)
    big = os.urandom(16 * 1024 * 1024)
    writer.put(1, 99, b"PutItem", big)
    writer.put(1, 100, b"", b"after")
    got = []
    rounds = 0
    while len(got) < 2:
        writer.pump()
        writer.publish()
        reader.drain(lambda *frame: got.append(frame))
        reader.publish()
        rounds += 1
        assert rounds < 1000
    assert rounds >= 16 * 1024 * 1024 // cap
    assert got[0][:3] == (1, 99, b"PutItem")
    assert hashlib.sha256(got[0][3]).digest() == hashlib.sha256(big).digest()
    assert got[1] == (1, 100, b"", b"after")


def test_backlog_keeps_order_and_nothing_is_dropped(segment):
    ring = make_ring(segment, 4096)
    writer, reader = RingWriter(ring), RingReader(ring)
    for i in range(100):
        writer.put(1, i, b"", i.to_bytes(4, "little") * 100)
    assert writer.has_backlog()
    assert writer.backlog_bytes > 0
    got = []
    while len(got) < 100:
        writer.pump()
        writer.publish()
        got += collect(reader)
    assert [rid for _, rid, _, _ in got] == list(range(100))
    assert all(p == rid.to_bytes(4, "little") * 100 for _, rid, _, p in got)


def test_wait_word_one_wake_per_episode(segment):
    ring = make_ring(segment, 4096)
    writer, reader = RingWriter(ring), RingReader(ring)
    writer.put(1, 1, b"", bytes(5000))
    writer.pump()
    writer.publish()
    assert writer.has_backlog()
    assert writer.arm_wait() is False  # still full: the producer would sleep
    collect(reader)
    full_fence()
    assert reader.producer_waiting() is True
    assert reader.producer_waiting() is False  # already rung for this episode
    assert writer.arm_wait() is True  # space appeared
    writer.pump()
    writer.publish()
    # The producer re-arms after a wake: a new episode must wake it again.
    writer.put(1, 2, b"", bytes(8000))
    writer.pump()
    writer.publish()
    assert writer.arm_wait() is False
    collect(reader)
    full_fence()
    assert reader.producer_waiting() is True
    writer.disarm_wait()
    assert reader.producer_waiting() is False


def test_corrupt_length_is_detected(segment):
    ring = make_ring(segment, 4096)
    FRAME_HEADER.pack_into(ring.data, 0, 0xFFFFFFFF, 1, 0, 0, 1)
    ring.ctl[TAIL] = FRAME_HEADER.size
    with pytest.raises(RingCorrupt):
        RingReader(ring).drain(lambda *a: None)


def test_reset_and_resync(segment):
    ring = make_ring(segment, 4096)
    writer, reader = RingWriter(ring), RingReader(ring)
    writer.put(1, 1, b"", bytes(3000))
    writer.put(1, 2, b"", bytes(3000))
    writer.pump()
    writer.publish()
    reader.drain(lambda *a: None)
    ring.reset()
    writer.resync()
    reader.resync()
    assert (writer.tail, reader.head, writer.backlog_bytes) == (0, 0, 0)
    writer.put(1, 3, b"v", b"fresh")
    writer.publish()
    assert collect(reader) == [(1, 3, b"v", b"fresh")]


def test_attached_process_exiting_does_not_unlink(segment):
    cap = 4096
    shm = segment(Ring.region_bytes(cap))
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            seg = AttachedSegment(shm.name)
            ring = Ring(seg.buf, 0, cap)
            writer = RingWriter(ring)
            rnd = random.Random(3)
            deadline = time.monotonic() + 8
            for i in range(2000):
                writer.put(1, i, b"", rnd.randbytes(rnd.randrange(0, 3000)))
                writer.pump()
                writer.publish()
                while writer.has_backlog() and time.monotonic() < deadline:
                    time.sleep(0)
                    writer.pump()
                    writer.publish()
            ring.release()
            seg.close()
            code = 0
        finally:
            os._exit(code)
    ring = Ring(shm.buf, 0, cap)
    segment.rings.append(ring)
    reader = RingReader(ring)
    rnd = random.Random(3)
    expected = [rnd.randbytes(rnd.randrange(0, 3000)) for _ in range(2000)]
    got = []
    deadline = time.monotonic() + 8
    while len(got) < 2000 and time.monotonic() < deadline:
        if not reader.drain(lambda k, rid, v, p: got.append(p)):
            time.sleep(0)
        reader.publish()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got == expected
    # The child attached and exited: the segment must still be there.
    again = AttachedSegment(shm.name)
    assert again.size == shm.size
    again.close()


def test_a_raising_consumer_callback_does_not_redeliver(segment):
    ring = make_ring(segment, 4096)
    writer, reader = RingWriter(ring), RingReader(ring)
    for i in range(3):
        writer.put(1, i, b"", b"p%d" % i)
    writer.publish()
    seen = []

    def on_frame(kind, rid, verb, payload):
        seen.append(rid)
        if rid == 1:
            raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError):
        reader.drain(on_frame)
    reader.drain(on_frame)
    assert seen == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(st.tuples(st.binary(max_size=3), st.integers(0, 10_000)), min_size=1, max_size=40),
    schedule=st.lists(st.sampled_from(["put", "pump", "drain"]), min_size=1, max_size=120),
)
def test_any_interleaving_delivers_every_frame_once_in_order(frames, schedule):
    shm = create_segment(f"shardserver-test-{os.getpid()}-{random.getrandbits(32):08x}", Ring.region_bytes(4096))
    ring = Ring(shm.buf, 0, 4096)
    try:
        writer, reader = RingWriter(ring), RingReader(ring)
        sent, got = [], []
        todo = list(frames)
        steps = iter(schedule)
        for _ in range(10_000):
            step = next(steps, None)
            if step is None:
                if not todo and len(got) == len(sent):
                    break
                step = "put" if todo else "both"
            if step == "put" and todo:
                verb, size = todo.pop(0)
                payload = bytes([len(sent) % 256]) * size
                writer.put(1, len(sent), verb, payload)
                sent.append((1, len(sent), verb, payload))
            elif step == "pump":
                writer.pump()
                writer.publish()
            elif step == "drain":
                got += collect(reader)
            elif step == "both":
                writer.pump()
                writer.publish()
                got += collect(reader)
            assert 0 <= ring.ctl[TAIL] - ring.ctl[HEAD] <= 4096
        assert got == sent
    finally:
        ring.release()
        shm.close()
        shm.unlink()
