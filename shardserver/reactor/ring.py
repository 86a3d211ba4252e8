"""One single-producer/single-consumer ring of frames in shared memory.

This module owns the byte layout of a ring (two monotonically increasing u64
counters on their own cache lines, a producer "waiting for space" word and a
power-of-two data area), the frame format carried through it, and the
helpers that create and attach shared-memory segments.  A ring is a byte
stream: a frame may be larger than the data area and is streamed through it
in as many batches as it takes.

It must never block, sleep, ring a doorbell or know about shards: waking the
other side is the fabric's job (shardserver/reactor/smp.py).  It must never
register an attached segment with multiprocessing's resource_tracker: only
the process that created a segment may unlink it.

Memory ordering: counters are read and written through an 8-byte-aligned
``memoryview.cast('Q')`` so that a concurrent reader never sees a torn value.
The producer copies data and then stores the tail; the consumer loads the
tail and then copies data.  x86-64 (TSO) keeps stores in order and loads in
order, which is all this needs; on weakly ordered CPUs ``full_fence`` is also
issued after loading and before storing a counter (untested there).  The one reordering TSO allows (a load
passing an earlier store) matters only for the sleep/wake hand-shakes, which
call ``full_fence`` explicitly.
"""

from __future__ import annotations

import mmap
import os
import platform
import struct
import threading
from collections import deque
from multiprocessing import shared_memory

import _posixshmem  # the primitive under SharedMemory; attaching through it skips resource_tracker

CACHE_LINE = 64

# Word indexes in the ring's control area (u64 words): one cache line each,
# each written by exactly one side.
HEAD = 0  # consumer: bytes consumed so far
TAIL = CACHE_LINE // 8  # producer: bytes published so far
WAIT_SEQ = 2 * CACHE_LINE // 8  # producer: odd while it waits for space
RING_HEADER_BYTES = 4 * CACHE_LINE

MIN_CAPACITY = 4096

# Frame: payload length, kind, verb length, reserved, request id; then the
# verb, then the payload.  The header and the verb are always written in one
# piece (so a consumer never sees half a header); the payload may be split.
FRAME_HEADER = struct.Struct("<IBBHQ")
FRAME_HEADER_BYTES = FRAME_HEADER.size
MAX_VERB_BYTES = 255
# The API accepts 16 MiB requests; the margin covers the forwarded envelope.
MAX_FRAME_PAYLOAD = 64 * 1024 * 1024

_WEAK_MEMORY_ORDER = platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686")
_fence_lock = threading.Lock()


class RingCorrupt(Exception):
    """The ring holds bytes that are not a valid frame: a protocol bug."""


def full_fence() -> None:
    """Issue a full memory barrier (StoreLoad included).

    CPython exposes no fence; an uncontended acquire/release of a private
    lock executes atomic read-modify-write instructions (LOCK-prefixed on
    x86), which order all earlier stores before all later loads.  The lock is
    never shared and never contended: it is used only for that side effect.
    """
    _fence_lock.acquire()
    _fence_lock.release()


def check_capacity(capacity: int) -> None:
    if capacity < MIN_CAPACITY or capacity & (capacity - 1):
        raise ValueError(f"ring capacity must be a power of two >= {MIN_CAPACITY}, got {capacity}")


# --- shared-memory segments ----------------------------------------------------------------


def create_segment(name: str, size: int) -> shared_memory.SharedMemory:
    """Create a zero-filled segment; the creator (the supervisor) owns and unlinks it."""
    return shared_memory.SharedMemory(name=name, create=True, size=size)


class AttachedSegment:
    """A mapping of an existing segment that this process will never unlink.

    Python 3.11's SharedMemory(create=False) registers the name with
    resource_tracker, which then unlinks the segment when the attaching
    process exits (and unregistering afterwards would also drop the
    creator's registration in a forked tracker).  Going through shm_open
    directly avoids the tracker entirely.
    """

    def __init__(self, name: str):
        fd = _posixshmem.shm_open("/" + name.lstrip("/"), os.O_RDWR, mode=0o600)
        try:
            size = os.fstat(fd).st_size
            self._mmap = mmap.mmap(fd, size)
        finally:
            os.close(fd)  # the mapping keeps the segment alive; no fd per segment
        self.name = name
        self.size = size
        self.buf = memoryview(self._mmap)

    def close(self) -> None:
        """Unmap.  Every view derived from ``buf`` must have been released."""
        if self._mmap is None:
            return
        self.buf.release()
        self._mmap.close()
        self._mmap = None


# --- the ring -------------------------------------------------------------------------------


class Ring:
    """The shared part of one ring: counters and data area inside a segment.

    ``buf`` is the whole segment, ``offset`` where this ring starts (a
    multiple of the cache line).  Both sides build their own Ring over the
    same bytes; RingWriter and RingReader hold the per-side cursors.
    """

    __slots__ = ("capacity", "mask", "ctl", "data")

    def __init__(self, buf: memoryview, offset: int, capacity: int):
        check_capacity(capacity)
        if offset % CACHE_LINE:
            raise ValueError("ring offset must be cache-line aligned")
        self.capacity = capacity
        self.mask = capacity - 1
        self.ctl = buf[offset:offset + RING_HEADER_BYTES].cast("Q")
        self.data = buf[offset + RING_HEADER_BYTES:offset + RING_HEADER_BYTES + capacity]
        if len(self.data) != capacity:
            raise ValueError("segment too small for ring")

    @staticmethod
    def region_bytes(capacity: int) -> int:
        check_capacity(capacity)
        return RING_HEADER_BYTES + capacity

    def reset(self) -> None:
        """Empty the ring.  Only safe while neither side touches it."""
        self.ctl[HEAD] = 0
        self.ctl[TAIL] = 0
        self.ctl[WAIT_SEQ] = 0

    def depth(self) -> int:
        """Bytes published and not yet consumed (a racy snapshot)."""
        return self.ctl[TAIL] - self.ctl[HEAD]

    def write_at(self, pos: int, src) -> None:
        """Copy ``src`` into the data area at stream position ``pos``, wrapping."""
        n = len(src)
        off = pos & self.mask
        first = self.capacity - off
        if n <= first:
            self.data[off:off + n] = src
        else:
            src = memoryview(src)
            self.data[off:] = src[:first]
            self.data[:n - first] = src[first:]

    def read_at(self, pos: int, n: int) -> bytes:
        off = pos & self.mask
        end = off + n
        if end <= self.capacity:
            return self.data[off:end].tobytes()
        return self.data[off:].tobytes() + self.data[:end - self.capacity].tobytes()

    def read_into(self, pos: int, dst: memoryview) -> None:
        n = len(dst)
        off = pos & self.mask
        first = self.capacity - off
        if n <= first:
            dst[:] = self.data[off:off + n]
        else:
            dst[:first] = self.data[off:]
            dst[first:] = self.data[:n - first]

    def release(self) -> None:
        self.ctl.release()
        self.data.release()


class RingWriter:
    """The producer side: owns the tail and the frames not yet in the ring.

    Frames are copied into free space as soon as it exists, but become
    visible only at ``publish()``, once per batch.  What does not fit waits
    in ``backlog`` (nothing is ever dropped) and goes in on later ``pump()``s.
    """

    __slots__ = ("ring", "tail", "published", "_limit", "_frames", "backlog_bytes", "wait_seq")

    def __init__(self, ring: Ring):
        self.ring = ring
        self.tail = ring.ctl[TAIL]
        self.published = self.tail
        self._limit = ring.ctl[HEAD] + ring.capacity
        self._frames: deque = deque()
        self.backlog_bytes = 0
        self.wait_seq = ring.ctl[WAIT_SEQ]

    def put(self, kind: int, request_id: int, verb: bytes, payload) -> None:
        """Append one frame (kept in order behind any backlog)."""
        plen = len(payload)
        if plen > MAX_FRAME_PAYLOAD:
            raise ValueError(f"frame payload of {plen} bytes exceeds {MAX_FRAME_PAYLOAD}")
        vlen = len(verb)
        if not self._frames:
            tail = self.tail
            hlen = FRAME_HEADER_BYTES + vlen
            need = hlen + plen
            if tail + need > self._limit:
                self._limit = self.ring.ctl[HEAD] + self.ring.capacity
                if _WEAK_MEMORY_ORDER:
                    full_fence()  # no overwrite before the consumer's reads are done
            if tail + need <= self._limit:
                ring = self.ring
                off = tail & ring.mask
                if off + need <= ring.capacity:
                    # The usual frame, in one piece: header, verb and payload
                    # go straight into the ring, with no bytes of their own.
                    data = ring.data
                    FRAME_HEADER.pack_into(data, off, plen, kind, vlen, 0, request_id)
                    if vlen:    # replies have none
                        data[off + FRAME_HEADER_BYTES:off + hlen] = verb
                    data[off + hlen:off + need] = payload
                else:
                    ring.write_at(tail, FRAME_HEADER.pack(plen, kind, vlen, 0, request_id) + verb)
                    if plen:
                        ring.write_at(tail + hlen, payload)
                self.tail = tail + need
                return
        head = FRAME_HEADER.pack(plen, kind, vlen, 0, request_id) + verb
        self._frames.append([head, memoryview(payload).cast("B") if plen else None])
        self.backlog_bytes += len(head) + plen

    def pump(self) -> int:
        """Move backlog into free space; returns bytes moved (unpublished)."""
        frames = self._frames
        if not frames:
            return 0
        ring = self.ring
        self._limit = ring.ctl[HEAD] + ring.capacity
        if _WEAK_MEMORY_ORDER:
            full_fence()
        moved = 0
        while frames:
            frame = frames[0]
            head = frame[0]
            if head is not None:
                if self.tail + len(head) > self._limit:
                    break
                ring.write_at(self.tail, head)
                self.tail += len(head)
                moved += len(head)
                frame[0] = None
            payload = frame[1]
            if payload is not None:
                room = self._limit - self.tail
                if room <= 0:
                    break
                if len(payload) > room:
                    ring.write_at(self.tail, payload[:room])
                    self.tail += room
                    moved += room
                    frame[1] = payload[room:]
                    break
                ring.write_at(self.tail, payload)
                self.tail += len(payload)
                moved += len(payload)
            frames.popleft()
        self.backlog_bytes -= moved
        return moved

    def has_backlog(self) -> bool:
        return bool(self._frames)

    def publish(self) -> bool:
        """Make everything written so far visible; True if the tail moved."""
        if self.tail == self.published:
            return False
        if _WEAK_MEMORY_ORDER:
            full_fence()
        self.ring.ctl[TAIL] = self.tail
        self.published = self.tail
        return True

    def arm_wait(self) -> bool:
        """Announce "waiting for space", then re-check; True if space appeared.

        The consumer publishes its head and then reads WAIT_SEQ; this side
        stores WAIT_SEQ and then reads the head.  The fence between makes
        sure at least one side sees the other's store, so a wake-up is never
        lost.
        """
        # Every arming is a new episode (a new odd value): the consumer rings
        # once per episode, and it may have rung for the previous one already.
        self.wait_seq += 2 if self.wait_seq & 1 else 1
        self.ring.ctl[WAIT_SEQ] = self.wait_seq
        full_fence()
        return self.ring.ctl[HEAD] + self.ring.capacity > self.tail

    def disarm_wait(self) -> None:
        if self.wait_seq & 1:
            self.wait_seq += 1
            self.ring.ctl[WAIT_SEQ] = self.wait_seq

    def discard(self) -> None:
        """Forget the backlog (the consumer is gone)."""
        self._frames.clear()
        self.backlog_bytes = 0

    def resync(self) -> None:
        """Adopt the shared counters after the ring was reset."""
        self.discard()
        self.tail = self.published = self.ring.ctl[TAIL]
        self._limit = self.ring.ctl[HEAD] + self.ring.capacity
        self.wait_seq = self.ring.ctl[WAIT_SEQ]


class RingReader:
    """The consumer side: owns the head and reassembles frames.

    ``drain(on_frame)`` calls ``on_frame(kind, request_id, verb, payload)``
    for every complete frame published so far; a frame larger than what is
    available is collected across calls.  The head is published once per
    drain.
    """

    __slots__ = ("ring", "head", "_rung_seq", "_body", "_view", "_filled", "_frame")

    def __init__(self, ring: Ring):
        self.ring = ring
        self.head = ring.ctl[HEAD]
        self._rung_seq = 0
        self._body = None
        self._view = None
        self._filled = 0
        self._frame = None

    def readable(self) -> bool:
        return self.ring.ctl[TAIL] != self.head

    def drain(self, on_frame) -> int:
        """Consume everything published; returns bytes consumed (0: nothing new).

        ``on_frame`` may raise; the frames before it stay consumed and the
        rest stay in the ring for the next drain.
        """
        ring = self.ring
        tail = ring.ctl[TAIL]
        head = start = self.head
        if head == tail:
            return 0
        if _WEAK_MEMORY_ORDER:
            full_fence()  # the frames must not be read before the tail that covers them
        data = ring.data
        cap = ring.capacity
        mask = ring.mask
        unpack_from = FRAME_HEADER.unpack_from
        while head < tail:
            if self._body is not None:
                take = min(tail - head, len(self._body) - self._filled)
                ring.read_into(head, self._view[self._filled:self._filled + take])
                head += take
                self._filled += take
                if self._filled == len(self._body):
                    kind, request_id, verb = self._frame
                    payload = bytes(self._body)
                    self._view.release()
                    self._body = self._view = self._frame = None
                    self.head = head
                    on_frame(kind, request_id, verb, payload)
                continue
            if tail - head < FRAME_HEADER_BYTES:
                raise RingCorrupt("partial frame header published")
            off = head & mask
            if off + FRAME_HEADER_BYTES <= cap:
                plen, kind, vlen, _, request_id = unpack_from(data, off)
                end = head + FRAME_HEADER_BYTES + vlen + plen
                if end <= tail and off + (end - head) <= cap and plen <= MAX_FRAME_PAYLOAD:
                    # The usual frame: whole, published and in one piece.
                    start_payload = off + FRAME_HEADER_BYTES + vlen
                    verb = data[off + FRAME_HEADER_BYTES:start_payload].tobytes() if vlen else b""
                    payload = data[start_payload:start_payload + plen].tobytes() if plen else b""
                    head = self.head = end   # before the callback, as below
                    on_frame(kind, request_id, verb, payload)
                    continue
            else:
                plen, kind, vlen, _, request_id = FRAME_HEADER.unpack(ring.read_at(head, FRAME_HEADER_BYTES))
            head += FRAME_HEADER_BYTES
            if plen > MAX_FRAME_PAYLOAD:
                raise RingCorrupt(f"frame payload length {plen} exceeds {MAX_FRAME_PAYLOAD}")
            if vlen:
                if tail - head < vlen:
                    raise RingCorrupt("partial frame verb published")
                verb = ring.read_at(head, vlen)
                head += vlen
            else:
                verb = b""
            if tail - head >= plen:
                payload = ring.read_at(head, plen) if plen else b""
                head += plen
                # Recorded before the callback: if it raises, this frame is
                # consumed, not delivered twice.
                self.head = head
                on_frame(kind, request_id, verb, payload)
            else:
                self._body = bytearray(plen)
                self._view = memoryview(self._body)
                self._filled = 0
                self._frame = (kind, request_id, verb)
        self.head = head
        return head - start

    def publish(self) -> None:
        if _WEAK_MEMORY_ORDER:
            full_fence()
        self.ring.ctl[HEAD] = self.head

    def producer_waiting(self) -> bool:
        """After ``publish()`` and a ``full_fence()``: does the producer wait for space?

        Answers True once per waiting episode of the producer, so one freed
        batch costs at most one doorbell.
        """
        seq = self.ring.ctl[WAIT_SEQ]
        if seq & 1 and seq != self._rung_seq:
            self._rung_seq = seq
            return True
        return False

    def discard(self) -> None:
        """Forget a half-received frame (the producer is gone)."""
        if self._view is not None:
            self._view.release()
        self._body = self._view = self._frame = None
        self._filled = 0

    def resync(self) -> None:
        """Adopt the shared counters after the ring was reset."""
        self.discard()
        self.head = self.ring.ctl[HEAD]
        self._rung_seq = 0
