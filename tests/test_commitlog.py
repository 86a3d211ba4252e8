"""Commit log: record framing, replay, torn and corrupt tails, sync modes, segment recycling,
disk-full behaviour."""

import asyncio
import errno
import os

import pytest
import uvloop

from shardserver.errors import InternalServerError
from shardserver.shard import commitlog as cl
from shardserver.shard.commitlog import (RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, CommitLog,
                                         decode_segment_header, encode_record,
                                         encode_segment_header, scan_records)


def run(coro):
    return uvloop.run(coro)


def replay_all(directory, **kw):
    log = CommitLog(directory, 0, **kw)
    seen = []
    log.replay(lambda kind, payload, pos: seen.append((kind, payload, pos)))
    return log, seen


def test_record_round_trip():
    recs = [(1, b""), (2, b"hello"), (200, os.urandom(70000))]
    image = encode_segment_header(3, 42) + b"".join(encode_record(k, p) for k, p in recs)
    assert decode_segment_header(image) == (3, 42)
    end, damaged, out = scan_records(image)
    assert damaged is None and end == len(image)
    assert [(k, p) for k, p, _ in out] == recs
    assert out[0][2] == SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE


def test_bad_kind_rejected():
    with pytest.raises(ValueError):
        encode_record(0, b"x")
    with pytest.raises(ValueError):
        encode_record(256, b"x")


def test_every_bit_flip_in_last_record_is_detected():
    good = encode_record(1, b"first")
    last = encode_record(1, b"second record payload")
    base = encode_segment_header(0, 1) + good
    for bit in range(len(last) * 8):
        damaged_rec = bytearray(last)
        damaged_rec[bit // 8] ^= 1 << (bit % 8)
        end, damaged, out = scan_records(base + bytes(damaged_rec))
        assert [p for _, p, _ in out] == [b"first"], bit
        assert damaged is not None
        assert end == len(base)


def _write_log(directory, payloads, sync_mode="batch", segment_size=1 << 20):
    async def go():
        log = CommitLog(directory, 0, sync_mode=sync_mode, segment_size=segment_size)
        log.replay(lambda *a: None)
        log.start(1)
        for p in payloads:
            log.append(1, p)
        await log.sync()
        await log.close()
        return log
    return run(go())


def test_replay_and_torn_tail_truncated(tmp_path):
    d = str(tmp_path)
    payloads = [f"rec{i}".encode() * 10 for i in range(50)]
    _write_log(d, payloads)
    (seg,) = [n for n in os.listdir(d) if n.endswith(".log")]
    path = os.path.join(d, seg)
    size = os.path.getsize(path)
    os.truncate(path, size - 7)               # tear the last record
    log, seen = replay_all(d)
    assert [p for _, p, _ in seen] == payloads[:-1]
    assert log.corrupt_records_total == 1
    assert os.path.getsize(path) < size - 7   # truncated at the last good record
    log2, seen2 = replay_all(d)               # second replay: clean
    assert log2.corrupt_records_total == 0
    assert [p for _, p, _ in seen2] == payloads[:-1]


def test_bit_flip_in_last_record(tmp_path):
    d = str(tmp_path)
    payloads = [os.urandom(100) for _ in range(20)]
    _write_log(d, payloads)
    (seg,) = [n for n in os.listdir(d) if n.endswith(".log")]
    path = os.path.join(d, seg)
    with open(path, "r+b") as f:
        f.seek(-30, os.SEEK_END)
        b = f.read(1)
        f.seek(-30, os.SEEK_END)
        f.write(bytes([b[0] ^ 0x10]))
    log, seen = replay_all(d)
    assert [p for _, p, _ in seen] == payloads[:-1]
    assert log.corrupt_records_total == 1


def test_torn_segment_header_is_removed(tmp_path):
    d = str(tmp_path)
    _write_log(d, [b"a", b"b"])
    with open(os.path.join(d, cl.segment_name(0, 99)), "wb") as f:
        f.write(b"SSCL\x01")
    log, seen = replay_all(d)
    assert [p for _, p, _ in seen] == [b"a", b"b"]
    assert not os.path.exists(os.path.join(d, cl.segment_name(0, 99)))


def test_segments_roll_and_release(tmp_path):
    d = str(tmp_path)

    async def go():
        log = CommitLog(d, 0, sync_mode="batch", segment_size=4096)
        log.replay(lambda *a: None)
        log.start(1)
        positions = [log.append(1, os.urandom(500)) for _ in range(40)]
        await log.sync()
        segs = log.segment_ids()
        assert len(segs) >= 5
        assert positions == sorted(positions)
        # a pinned segment keeps itself and every younger one
        log.release({segs[2]})
        assert log.segment_ids()[0] == segs[2]
        log.release(set())
        assert log.segment_ids() == [segs[-1]]
        await log.close()
        assert len([n for n in os.listdir(d) if n.endswith(".log")]) == 1
    run(go())


def test_batch_mode_group_commit(tmp_path):
    d = str(tmp_path)

    async def go():
        log = CommitLog(d, 0, sync_mode="batch", batch_window_ms=0)
        log.replay(lambda *a: None)
        log.start(1)

        async def writer(i):
            log.append(1, b"x%d" % i)
            await log.sync()
            assert log.synced_total >= log.appended_total or log.synced_total > 0

        await asyncio.gather(*(writer(i) for i in range(200)))
        assert log.synced_total == log.appended_total
        assert 1 <= log.syncs_total < 50     # many writers shared each fsync
        await log.close()
    run(go())


def test_periodic_mode_reaches_page_cache_on_sync(tmp_path):
    d = str(tmp_path)

    async def go():
        log = CommitLog(d, 0, sync_mode="periodic", sync_period_ms=60000)
        log.replay(lambda *a: None)
        log.start(1)
        log.append(1, b"abc")
        assert log.written_total == 0
        await log.sync()
        assert log.written_total == log.appended_total
        # a reader of the file (as after kill -9) sees the record without any fsync
        _, seen = replay_all(d)
        assert [p for _, p, _ in seen] == [b"abc"]
        await log.close()
    run(go())


def fill_the_disk(monkeypatch) -> dict:
    """Commit-log pwrites fail with ENOSPC while the returned dict's "on" is True."""
    real_pwrite = os.pwrite
    full = {"on": True}

    def fake_pwrite(fd, data, off):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, off)

    monkeypatch.setattr(cl.os, "pwrite", fake_pwrite)
    return full


def test_disk_full_fails_cleanly_and_recovers(tmp_path, monkeypatch):
    d = str(tmp_path)

    async def go():
        log = CommitLog(d, 0, sync_mode="batch")
        log.replay(lambda *a: None)
        log.start(1)
        log.append(1, b"before")
        await log.sync()
        full = fill_the_disk(monkeypatch)
        log.append(1, b"during")           # buffered; the write fails at sync
        with pytest.raises(InternalServerError):
            await log.sync()
        with pytest.raises(InternalServerError):
            log.append(1, b"rejected")     # nothing new accepted while the disk is full
        full["on"] = False
        log.append(1, b"after")
        await log.sync()
        await log.close()
    run(go())
    _, seen = replay_all(d)
    assert [p for _, p, _ in seen] == [b"before", b"during", b"after"]


async def _rolled_log(d: str, records: int, size: int) -> CommitLog:
    """A started batch-mode log with 4 KB segments, ``records`` random records synced into it."""
    log = CommitLog(d, 0, sync_mode="batch", batch_window_ms=0.0, segment_size=4096)
    log.replay(lambda *a: None)
    log.start(1)
    for _ in range(records):
        log.append(1, os.urandom(size))
    await log.sync()
    return log


def test_disk_bytes_follows_the_files(tmp_path):
    """disk_bytes() is a running total (it is checked on every write): it must match the
    segment files across rolls, replay and release."""
    d = str(tmp_path)

    def on_disk():
        return sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d) if n.endswith(".log"))

    async def go():
        log = await _rolled_log(d, records=50, size=300)
        assert len(log.segment_ids()) > 2
        assert log.disk_bytes() == on_disk()
        log.release(set())
        await log.deletions_done()              # a worker thread unlinks the files
        assert log.disk_bytes() == on_disk()
        await log.close()
        log = CommitLog(d, 0, sync_mode="batch", batch_window_ms=0.0, segment_size=4096)
        log.replay(lambda *a: None)
        assert log.disk_bytes() == on_disk()
        log.start(1)
        log.append(1, b"x" * 100)
        await log.sync()
        assert log.disk_bytes() == on_disk()
        log.release(set())
        await log.deletions_done()
        assert log.disk_bytes() == on_disk()
        await log.close()

        log = CommitLog(d, 0, enabled=False)       # durable_writes: false
        log.replay(lambda *a: None)
        log.start(1)
        before = on_disk()
        position = log.position()
        log.append(1, b"y" * 100)
        await log.sync()
        assert log.position() == position and on_disk() == before
        log.release(set())
        await log.deletions_done()
        assert log.disk_bytes() == on_disk() == 0
        await log.close()
    run(go())


def test_write_pending_is_the_barrier_before_answers(tmp_path, monkeypatch):
    """Periodic syncs leave the pwrite to write_pending, which the shard runs before any answer
    leaves; it says False while records stay unwritten."""
    d = str(tmp_path)

    async def go():
        log = CommitLog(d, 0, sync_mode="periodic")
        log.replay(lambda *a: None)
        log.start(1)
        log.acks_wait_for_writes = True
        log.append(1, b"one")
        log.append(1, b"two")
        await log.sync()
        assert log.written_total < log.appended_total       # left to the barrier
        assert log.write_pending()
        assert log.written_total == log.appended_total      # both in one write
        assert log.write_pending()                          # nothing pending: nothing to do
        full = fill_the_disk(monkeypatch)
        log.append(1, b"three")
        await log.sync()
        assert not log.write_pending()
        assert not log.write_pending()                      # still unwritten: still refused
        with pytest.raises(InternalServerError):
            log.append(1, b"rejected")
        full["on"] = False
        assert log.write_pending()
        await log.close()
    run(go())
    _, seen = replay_all(d)
    assert [p for _, p, _ in seen] == [b"one", b"two", b"three"]


def test_released_segments_are_unlinked_off_the_loop_and_in_order(tmp_path, monkeypatch):
    """Unlinking a big file can hold the loop for tens of ms: release() hands the files
    to one worker thread, oldest first, and close() waits for it."""
    import threading

    d = str(tmp_path)
    unlinked = []
    real_unlink = os.unlink

    def recording_unlink(path):
        unlinked.append((os.path.basename(path), threading.current_thread() is threading.main_thread()))
        real_unlink(path)

    async def go():
        log = await _rolled_log(d, records=40, size=500)
        names = [os.path.basename(s.path) for s in log._segments]
        monkeypatch.setattr(cl.os, "unlink", recording_unlink)
        log.release(set())
        await log.close()
        return names

    names = run(go())
    assert [n for n, _ in unlinked] == names[:-1]
    assert not any(on_loop for _, on_loop in unlinked)
    assert sorted(n for n in os.listdir(d) if n.endswith(".log")) == names[-1:]
