"""The only door between shards: ``submit_to`` and ``broadcast`` (Seastar's smp).

This module owns the fabric of a shard-per-core server: one SPSC ring per
ordered pair of shards, a doorbell per shard, a small control segment (peer
state words, sleeping flags, acknowledgements), request ids and pending
futures, per-iteration batching, backpressure and the peer-restart protocol.
Every cross-shard hop in the code base goes through ``Fabric.submit_to`` or
``Fabric.broadcast``; grep those names to find them all.

It must never pickle, use multiprocessing queues, sockets or locks between
shards, block or spin the event loop, drop a message while both shards are
up, or leave a caller waiting forever on a shard that is down.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import deque
from functools import partial

from shardserver.errors import InternalServerError, ServiceUnavailableException
from shardserver.reactor import doorbell
from shardserver.reactor.ring import (
    CACHE_LINE,
    MAX_VERB_BYTES,
    AttachedSegment,
    Ring,
    RingReader,
    RingWriter,
    check_capacity,
    create_segment,
    full_fence,
)

KIND_REQUEST = 1
KIND_REPLY = 2
KIND_ERROR = 3

DEFAULT_RING_BYTES = 1 << 20
WATCHDOG_SECONDS = 0.005
# How long a shard keeps polling its rings after the last traffic before it
# arms its doorbell and lets the loop sleep (Seastar polls similarly).
DEFAULT_IDLE_POLL_US = 100

_WORDS_PER_LINE = CACHE_LINE // 8


class PeerUnavailable(ServiceUnavailableException):
    """The target shard is down, or went down before it replied.  Retryable."""

    def __init__(self, shard: int, message: str | None = None):
        super().__init__(message or f"shard {shard} is unavailable")
        self.shard = shard


class RemoteError(InternalServerError):
    """The handler on the target shard raised; carries its type name and message."""

    def __init__(self, shard: int, remote_type: str, remote_message: str):
        super().__init__(f"shard {shard}: {remote_type}: {remote_message}")
        self.shard = shard
        self.remote_type = remote_type
        self.remote_message = remote_message


def _encode_error(exc: BaseException) -> bytes:
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    return f"{type(exc).__name__}\n{message}".encode("utf-8", "replace")


def _decode_error(shard: int, payload: bytes) -> RemoteError:
    remote_type, _, message = payload.decode("utf-8", "replace").partition("\n")
    return RemoteError(shard, remote_type, message)


class _ControlLayout:
    """Word indexes into the control segment (u64 words, one writer per cache line).

    line 0                 epoch: bumped by the supervisor after any state change
    line 1 + p             state word of shard p (supervisor): odd = up; every
                           transition adds one, so a value names one incarnation
    line 1 + n + p         shard p's own line: [sleeping flag, pid]
    lines 1 + 2n ...       shard p's acknowledgement row: word q = the state
                           word of q that p has seen and acted on
    """

    def __init__(self, nshards: int):
        self.nshards = nshards
        self.epoch = 0
        self.row_words = -(-nshards // _WORDS_PER_LINE) * _WORDS_PER_LINE
        self.words = (1 + 2 * nshards) * _WORDS_PER_LINE + nshards * self.row_words

    def state(self, p: int) -> int:
        return (1 + p) * _WORDS_PER_LINE

    def sleeping(self, p: int) -> int:
        return (1 + self.nshards + p) * _WORDS_PER_LINE

    def pid(self, p: int) -> int:
        return self.sleeping(p) + 1

    def ack(self, p: int, q: int) -> int:
        return (1 + 2 * self.nshards) * _WORDS_PER_LINE + p * self.row_words + q


def _ring_offset(nshards: int, ring_bytes: int, src: int, dst: int) -> int:
    """Rings are laid out by producer, then consumer, skipping src == dst."""
    index = src * (nshards - 1) + (dst if dst < src else dst - 1)
    return index * Ring.region_bytes(ring_bytes)


class FabricSegments:
    """Everything the supervisor creates for the fabric, and its side of the protocol.

    Holds the names of two shared-memory segments (control, rings) and the
    doorbell eventfds.  Shards inherit this object through fork (the
    eventfds are inherited by number; with exec, pass them in pass_fds) and
    attach to the segments by name without registering them anywhere.

    Supervisor call sequences:

    start:     segs = Fabric.create_segments(n, ring_bytes)   # every shard starts "up"
               fork shard i for each i; the child builds Fabric(i, n, segs, loop, handler)
    restart of shard p after it died (waitpid says so):
               segs.mark_down(p)           # survivors fail p's pending futures, stop using p's rings
               laggards = segs.wait_acks(p, timeout=2.0)   # or poll segs.acked(p)
               # a laggard is a shard whose loop has been stuck for `timeout`; its
               # rings with p are about to be reset under it, so restart it too.
               segs.reset_peer(p)          # head = tail = 0 on every ring to and from p
               fork the replacement of p   # it builds a new Fabric(p, ...) and start()s it
               segs.mark_up(p)             # survivors resume traffic with p; call it
                                           # right after the fork, or (to keep callers failing
                                           # fast while p replays its commit log) once
                                           # segs.attached_pid(p) == the replacement's pid
    shutdown:  after every shard has exited: segs.unlink()

    A shard that exits for good should be marked down too, so that callers
    still waiting on it fail instead of waiting.
    """

    def __init__(self, nshards: int, ring_bytes: int, ctl_name: str, rings_name: str, fds: list[int]):
        self.nshards = nshards
        self.ring_bytes = ring_bytes
        self.ctl_name = ctl_name
        self.rings_name = rings_name
        self.fds = list(fds)
        self._creator_pid = os.getpid()
        self._ctl_shm = None
        self._rings_shm = None
        self._ctl = None
        self._layout = _ControlLayout(nshards)

    @classmethod
    def create(cls, nshards: int, ring_bytes: int = DEFAULT_RING_BYTES) -> "FabricSegments":
        if nshards < 1:
            raise ValueError("nshards must be >= 1")
        check_capacity(ring_bytes)
        layout = _ControlLayout(nshards)
        prefix = f"shardserver-{os.getpid()}-{secrets.token_hex(4)}"
        ctl_shm = create_segment(prefix + "-ctl", layout.words * 8)
        npairs = max(1, nshards * (nshards - 1))
        try:
            rings_shm = create_segment(prefix + "-rings", npairs * Ring.region_bytes(ring_bytes))
        except BaseException:
            ctl_shm.close()
            ctl_shm.unlink()
            raise
        fds = [doorbell.create() for _ in range(nshards)]
        self = cls(nshards, ring_bytes, ctl_shm.name, rings_shm.name, fds)
        self._ctl_shm = ctl_shm
        self._rings_shm = rings_shm
        self._ctl = ctl_shm.buf.cast("Q")
        for p in range(nshards):
            self._ctl[layout.state(p)] = 1
        return self

    @property
    def names(self) -> tuple[str, str]:
        return (self.ctl_name, self.rings_name)

    def _require_owner(self) -> None:
        if self._ctl is None or os.getpid() != self._creator_pid:
            raise RuntimeError("only the supervisor that created the fabric segments may do this")

    def _announce(self) -> None:
        self._ctl[self._layout.epoch] += 1
        # Ring every doorbell unconditionally: a peer's sleeping flag says
        # nothing about whether it has seen a state change.
        for fd in self.fds:
            doorbell.ring(fd)

    def state(self, p: int) -> int:
        return self._ctl[self._layout.state(p)]

    def is_up(self, p: int) -> bool:
        return bool(self.state(p) & 1)

    def mark_down(self, p: int) -> None:
        """Declare shard p dead: every survivor fails its futures for p and stops using p's rings."""
        self._require_owner()
        v = self.state(p)
        if v & 1:
            self._ctl[self._layout.state(p)] = v + 1
            self._announce()

    def acked(self, p: int) -> bool:
        """Has every other up shard acknowledged p's current state word?"""
        self._require_owner()
        return not self.laggards(p)

    def laggards(self, p: int) -> list[int]:
        layout = self._layout
        v = self.state(p)
        return [q for q in range(self.nshards)
                if q != p and self.state(q) & 1 and self._ctl[layout.ack(q, p)] != v]

    def wait_acks(self, p: int, timeout: float = 2.0, gone=None) -> list[int]:
        """Block up to ``timeout`` seconds for the acks; returns the shards that did not ack.

        ``gone(q)``, if given, says that shard q's process has exited: it
        will never acknowledge, and is not waited for (nor returned).
        """
        self._require_owner()
        deadline = time.monotonic() + timeout
        while True:
            late = self.laggards(p)
            if gone is not None:
                late = [q for q in late if not gone(q)]
            if not late or time.monotonic() >= deadline:
                return late
            time.sleep(0.001)

    def reset_peer(self, p: int) -> None:
        """Empty every ring to and from p.  Only while p is marked down and acknowledged."""
        self._require_owner()
        if self.is_up(p):
            raise RuntimeError(f"shard {p} must be marked down before its rings are reset")
        buf = self._rings_shm.buf
        for q in range(self.nshards):
            if q == p:
                continue
            for src, dst in ((p, q), (q, p)):
                ring = Ring(buf, _ring_offset(self.nshards, self.ring_bytes, src, dst), self.ring_bytes)
                ring.reset()
                ring.release()
        layout = self._layout
        # The replacement drains at start whatever arrives before it watches its doorbell.
        self._ctl[layout.sleeping(p)] = 1
        self._ctl[layout.pid(p)] = 0
        doorbell.clear(self.fds[p])

    def mark_up(self, p: int) -> None:
        """Declare shard p's replacement live: survivors adopt the reset rings and resume."""
        self._require_owner()
        v = self.state(p)
        if not v & 1:
            self._ctl[self._layout.state(p)] = v + 1
            self._announce()

    def attached_pid(self, p: int) -> int:
        """Pid of the process whose fabric is attached as shard p (0 before it attaches)."""
        return self._ctl[self._layout.pid(p)]

    def close(self) -> None:
        """Drop this process's mappings (the segments stay)."""
        if self._ctl is not None:
            self._ctl.release()
            self._ctl = None
        for shm in (self._ctl_shm, self._rings_shm):
            if shm is not None:
                shm.close()
        self._ctl_shm = self._rings_shm = None

    def unlink(self) -> None:
        """Supervisor, at shutdown: remove the segments and close the doorbells."""
        self._require_owner()
        ctl_shm, rings_shm = self._ctl_shm, self._rings_shm
        self.close()
        for shm in (ctl_shm, rings_shm):
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
        for fd in self.fds:
            doorbell.close(fd)


class Fabric:
    """One per shard process: its end of every ring, its doorbell, its pending requests."""

    @staticmethod
    def create_segments(nshards: int, ring_bytes: int = DEFAULT_RING_BYTES) -> FabricSegments:
        return FabricSegments.create(nshards, ring_bytes)

    def __init__(self, shard_id: int, nshards: int, segments: FabricSegments, loop, handler,
                 idle_poll_us: int = DEFAULT_IDLE_POLL_US):
        if nshards != segments.nshards or not 0 <= shard_id < nshards:
            raise ValueError("shard id / shard count do not match the fabric segments")
        self.shard_id = shard_id
        self.nshards = nshards
        self._loop = loop
        self._handler = handler
        self._idle_poll_s = idle_poll_us / 1e6
        self._last_busy = 0.0
        self._layout = layout = _ControlLayout(nshards)
        self._fds = list(segments.fds)
        self._efd = self._fds[shard_id]
        self._ctl_seg = AttachedSegment(segments.ctl_name)
        self._rings_seg = AttachedSegment(segments.rings_name)
        self._ctl = self._ctl_seg.buf.cast("Q")
        self._sleep_idx = layout.sleeping(shard_id)
        self._sleeping_idx = [layout.sleeping(p) for p in range(nshards)]
        self._peers = [p for p in range(nshards) if p != shard_id]
        self._tx: list[RingWriter | None] = [None] * nshards
        self._rx: list[RingReader | None] = [None] * nshards
        self._rings: list[Ring] = []
        buf = self._rings_seg.buf
        for p in self._peers:
            out = Ring(buf, _ring_offset(nshards, segments.ring_bytes, shard_id, p), segments.ring_bytes)
            inc = Ring(buf, _ring_offset(nshards, segments.ring_bytes, p, shard_id), segments.ring_bytes)
            self._rings += [out, inc]
            self._tx[p] = RingWriter(out)
            self._rx[p] = RingReader(inc)
        self._ring_bytes = segments.ring_bytes
        self._state = [0] * nshards  # last state word seen per peer; 0 = never seen
        self._live: list[int] = []
        self._seen_epoch = -1
        self._pending: list[dict] = [{} for _ in range(nshards)]
        self._space_waiters: list[deque] = [deque() for _ in range(nshards)]
        self._dirty: set[int] = set()
        self._replies: list[tuple] = []     # (src, state, rid, reply, exc) held until the flush
        # Called before anything is published, returns False if the writes the
        # replies acknowledge could not be logged (set by the shard: the commit
        # log's write_pending).
        self.before_publish = None
        self._on_frame = [partial(self._dispatch, p) for p in range(nshards)]
        self._tasks: set = set()
        self._next_id = 1
        self._tick_handle = None        # the next tick, scheduled with call_soon
        self._watchdog = None           # the slow re-check timer, once set until it fires
        self._started = False
        self._stopped = False
        self._sent = [0] * nshards
        self._received = [0] * nshards
        self._full_waits = [0] * nshards
        self._doorbells_rung = 0
        self._batches_flushed = 0
        self._wakeups = 0
        self._watchdog_armed = False
        self._watchdog_recoveries = 0
        self._in_tick = False

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._ctl[self._layout.pid(self.shard_id)] = os.getpid()
        self._ctl[self._sleep_idx] = 0
        doorbell.clear(self._efd)
        self._sync_control()
        self._loop.add_reader(self._efd, self._on_doorbell)
        self._tick()

    async def stop(self) -> None:
        """Stop serving: fail what is pending, cancel running handlers, unmap."""
        if self._stopped:
            return
        if self._started:
            # Replies already produced still reach their callers.
            self._flush_outgoing()
            self._loop.remove_reader(self._efd)
        self._stopped = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for p in self._peers:
            self._fail_peer(p, "fabric stopped")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Peers ring our doorbell from now on; the replacement (if any) clears it.
        self._ctl[self._sleep_idx] = 1
        for ring in self._rings:
            ring.release()
        self._ctl.release()
        for seg in (self._ctl_seg, self._rings_seg):
            seg.close()

    # --- the door -------------------------------------------------------------------------

    async def submit_to(self, shard: int, verb: bytes, payload: bytes) -> bytes:
        """Run the handler on ``shard`` and return its reply bytes.

        Raises PeerUnavailable if that shard is down or goes down before it
        replies, RemoteError if its handler raised.
        """
        if shard == self.shard_id:
            return await self._run_local(verb, payload)
        fut = self.request(shard, verb, payload)
        while fut is None:
            await self._wait_for_space(shard)
            fut = self.request(shard, verb, payload)
        rid = self._next_id - 1
        try:
            return await fut
        finally:
            self._pending[shard].pop(rid, None)

    def request(self, shard: int, verb: bytes, payload: bytes):
        """Send a request to another shard now; the future of its reply bytes.

        ``submit_to`` without the coroutine around it, for the acceptor's
        forwarding path, where two coroutine frames per request were a
        measurable share of the cost.  Returns None, sending nothing, while
        the ring to ``shard`` is full (``submit_to`` waits for space then).
        The request is forgotten when its reply arrives or its peer goes down,
        whether or not anyone still waits.
        """
        if self._stopped:
            raise PeerUnavailable(shard, "fabric stopped")
        if not self._state[shard] & 1:
            raise PeerUnavailable(shard)
        if len(verb) > MAX_VERB_BYTES:
            raise ValueError(f"verb longer than {MAX_VERB_BYTES} bytes")
        tx = self._tx[shard]
        if tx.backlog_bytes >= self._ring_bytes:
            return None
        rid = self._next_id
        self._next_id = rid + 1
        fut = self._loop.create_future()
        self._pending[shard][rid] = fut
        tx.put(KIND_REQUEST, rid, verb, payload)
        self._sent[shard] += 1
        self._dirty.add(shard)
        if self._tick_handle is None and not self._in_tick:    # else a tick will flush it
            self._kick()
        return fut

    async def broadcast(self, verb: bytes, payload: bytes) -> list[bytes]:
        """submit_to every shard, this one included; replies in shard order."""
        results = await asyncio.gather(
            *(self.submit_to(s, verb, payload) for s in range(self.nshards)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results

    def is_up(self, shard: int) -> bool:
        return shard == self.shard_id or bool(self._state[shard] & 1)

    def stats(self) -> dict:
        peers = {}
        for p in self._peers:
            tx, rx = self._tx[p], self._rx[p]
            up = bool(self._state[p] & 1)
            peers[p] = {
                "up": up,
                "forwards_sent": self._sent[p],
                "forwards_received": self._received[p],
                "pending": len(self._pending[p]),
                "ring_depth_out": tx.ring.depth() if up else 0,
                "ring_depth_in": rx.ring.depth() if up else 0,
                "backlog_bytes": tx.backlog_bytes,
                "ring_full_waits": self._full_waits[p],
            }
        return {
            "shard": self.shard_id,
            "peers": peers,
            "doorbells_rung": self._doorbells_rung,
            "batches_flushed": self._batches_flushed,
            "wakeups": self._wakeups,
            "watchdog_recoveries": self._watchdog_recoveries,
        }

    # --- internals ------------------------------------------------------------------------

    async def _run_local(self, verb: bytes, payload: bytes) -> bytes:
        # Same contract as a remote call, so callers need not care where the owner is.
        try:
            return await self._handler(self.shard_id, verb, payload)
        except Exception as exc:
            raise RemoteError(self.shard_id, type(exc).__name__, str(getattr(exc, "message", exc))) from exc

    async def _wait_for_space(self, shard: int) -> None:
        self._full_waits[shard] += 1
        tx = self._tx[shard]
        while tx.backlog_bytes >= self._ring_bytes:
            waiter = self._loop.create_future()
            self._space_waiters[shard].append(waiter)
            await waiter  # PeerUnavailable if the peer goes down meanwhile
            if not self._state[shard] & 1:
                raise PeerUnavailable(shard)

    def _wake_space_waiters(self, p: int) -> None:
        waiters = self._space_waiters[p]
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)

    def _schedule_tick(self) -> None:
        if not self._stopped:
            self._kick()

    def _kick(self) -> None:
        """Run a tick soon: new frames to flush (the watchdog timer is too late)."""
        if self._in_tick:
            return
        if self._tick_handle is None:
            self._watchdog_armed = False
            self._tick_handle = self._loop.call_soon(self._tick)

    def _on_doorbell(self) -> None:
        # Clear first: a ring that lands while we drain re-arms the eventfd.
        doorbell.clear(self._efd)
        self._wakeups += 1
        self._ctl[self._sleep_idx] = 0
        self._sync_control()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self._watchdog_armed = False
        self._tick()

    def _tick(self) -> None:
        """Drain every incoming ring, flush every outgoing one; then poll again or sleep."""
        self._tick_handle = None
        if self._stopped:
            return
        if self._watchdog_armed and doorbell.clear(self._efd):
            # The doorbell was rung; its callback just had not run yet.
            self._watchdog_armed = False
            self._wakeups += 1
            self._ctl[self._sleep_idx] = 0
            self._sync_control()
        # Handlers run eagerly inside the drain; what they send is flushed
        # just below, so their kicks must not schedule another tick.
        self._in_tick = True
        try:
            drained = self._drain_incoming()
            retry = bool(self._dirty) and self._flush_outgoing()
        finally:
            self._in_tick = False
        if drained and self._watchdog_armed:
            self._watchdog_recoveries += 1
        # Keep polling a little after the last traffic: a reply usually
        # comes back within microseconds, and a doorbell wake-up costs tens.
        # Without an idle-poll window, a tick that drained goes straight to
        # arming sleep, whose re-check catches frames that arrived meanwhile.
        poll = False
        if self._idle_poll_s:   # with no window (the server's default), no clock either
            now = time.perf_counter()
            if drained:
                self._last_busy = now
            poll = drained or now - self._last_busy < self._idle_poll_s
        if retry or poll:
            self._tick_handle = self._loop.call_soon(self._tick)
        else:
            self._arm_sleep()
            if self._tick_handle is None and (self._dirty or self._has_pending()):
                # Outstanding work (a backlog waiting for ring space, requests
                # waiting for replies) is re-checked on a slow timer as well as
                # by doorbells, so a wake-up lost anywhere costs milliseconds
                # instead of a hang; recoveries are counted in stats().  The
                # timer stays set until it fires, not re-made for every sleep:
                # firing early for a later sleep costs one tick.
                self._watchdog_armed = True
                if self._watchdog is None:
                    self._watchdog = self._loop.call_later(WATCHDOG_SECONDS, self._on_watchdog)
                return
        self._watchdog_armed = False

    def _on_watchdog(self) -> None:
        self._watchdog = None
        if self._watchdog_armed and self._tick_handle is None:
            self._tick()

    def _drain_incoming(self) -> bool:
        drained = None
        for p in self._live:
            rx = self._rx[p]
            if rx.drain(self._on_frame[p]):
                rx.publish()
                if drained is None:
                    drained = [p]
                else:
                    drained.append(p)
        if drained is None:
            return False
        # Publish-head then read-wait-word, against the producer's
        # store-wait-word then read-head: the fence keeps wake-ups.
        full_fence()
        for p in drained:
            if self._rx[p].producer_waiting():
                doorbell.ring(self._fds[p])
                self._doorbells_rung += 1
        return True

    def _flush_outgoing(self) -> bool:
        """Publish what this iteration produced, one tail store and at most one doorbell per peer.

        Returns True when a full ring got space back meanwhile (retry soon).
        """
        retry = False
        published = None
        acknowledged = self.before_publish is None or self.before_publish()
        if self._replies:
            self._put_replies(acknowledged)
        for p in list(self._dirty):
            tx = self._tx[p]
            if tx.has_backlog():
                tx.pump()
            if tx.publish():
                if published is None:
                    published = [p]
                else:
                    published.append(p)
            if tx.has_backlog():
                # Ring full: stay dirty; the consumer rings us when it frees space.
                if tx.arm_wait():
                    retry = True
            else:
                self._dirty.discard(p)
                tx.disarm_wait()
            if self._space_waiters[p] and tx.backlog_bytes < self._ring_bytes:
                self._wake_space_waiters(p)
        if published is not None:
            if self._idle_poll_s:
                # A reply is likely soon: count sending as traffic for idle polling.
                self._last_busy = time.perf_counter()
            self._batches_flushed += len(published)
            full_fence()  # store-tail then read-sleeping, against the receiver's reverse
            ctl = self._ctl
            sleeping = self._sleeping_idx
            for p in published:
                if ctl[sleeping[p]]:
                    doorbell.ring(self._fds[p])
                    self._doorbells_rung += 1
        return retry

    def _has_pending(self) -> bool:
        for p in self._live:
            if self._pending[p]:
                return True
        return False

    def _arm_sleep(self) -> None:
        ctl = self._ctl
        ctl[self._sleep_idx] = 1
        full_fence()
        # Re-check after arming, or a frame published just before the flag
        # became visible would wait for the next unrelated wake-up.
        for p in self._live:
            if self._rx[p].readable():
                ctl[self._sleep_idx] = 0
                self._tick_handle = self._loop.call_soon(self._tick)
                return

    def _dispatch(self, src: int, kind: int, rid: int, verb: bytes, payload: bytes) -> None:
        if kind == KIND_REQUEST:
            self._received[src] += 1
            self._start_handler(src, rid, verb, payload)
            return
        fut = self._pending[src].pop(rid, None)
        if fut is None or fut.done():
            return  # the caller was cancelled
        if kind == KIND_REPLY:
            fut.set_result(payload)
        else:
            fut.set_exception(_decode_error(src, payload))

    def _start_handler(self, src: int, rid: int, verb: bytes, payload: bytes) -> None:
        """Run the handler eagerly; only one that suspends gets a Task.

        Most requests (a memtable read or write) finish without suspending,
        and a Task per message would be the largest per-message cost.
        """
        state = self._state[src]
        coro = self._handler(src, verb, payload)
        try:
            first = coro.send(None)
        except StopIteration as done:
            self._reply(src, state, rid, done.value, None)
            return
        except Exception as exc:
            self._reply(src, state, rid, None, exc)
            return
        task = self._loop.create_task(self._serve(src, state, rid, _Resume(coro, first)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, src: int, state: int, rid: int, rest) -> None:
        try:
            reply = await rest
        except Exception as exc:
            self._reply(src, state, rid, None, exc)
        else:
            self._reply(src, state, rid, reply, None)

    def _reply(self, src: int, state: int, rid: int, reply, exc: Exception | None) -> None:
        if exc is None and not isinstance(reply, (bytes, bytearray, memoryview)):
            exc = TypeError(f"handler returned {type(reply).__name__}, not bytes")
        if self._stopped or self._state[src] != state:
            return  # the caller's incarnation is gone; its rings may have been reset
        # Held until the flush: a reply may acknowledge a write, and it goes
        # out only after before_publish (the commit log's barrier) has run.
        self._replies.append((src, state, rid, reply, exc))
        self._dirty.add(src)
        if self._tick_handle is None and not self._in_tick:    # else a tick will flush it
            self._kick()

    def _put_replies(self, acknowledged: bool) -> None:
        """Put the held replies on their rings; as errors when ``acknowledged`` is False."""
        replies, self._replies = self._replies, []
        for src, state, rid, reply, exc in replies:
            if self._state[src] != state:
                continue
            tx = self._tx[src]
            if not acknowledged:
                exc = InternalServerError("Internal server error: commit log write failed")
            if exc is None:
                try:
                    tx.put(KIND_REPLY, rid, b"", reply)
                except ValueError as too_big:
                    exc = too_big
            if exc is not None:
                tx.put(KIND_ERROR, rid, b"", _encode_error(exc))

    def _sync_control(self) -> None:
        """Act on state changes announced by the supervisor (down, reset-and-up)."""
        ctl = self._ctl
        layout = self._layout
        epoch = ctl[layout.epoch]
        if epoch == self._seen_epoch:
            return
        self._seen_epoch = epoch
        for p in self._peers:
            v = ctl[layout.state(p)]
            old = self._state[p]
            if v == old:
                continue
            if old & 1:
                # Down, or down-and-up between two looks: that incarnation is gone.
                self._fail_peer(p, None)
            self._state[p] = v
            if v & 1:
                # The supervisor reset these rings before marking p up.
                self._tx[p].resync()
                self._rx[p].resync()
            ctl[layout.ack(self.shard_id, p)] = v
        self._live = [p for p in self._peers if self._state[p] & 1]

    def _fail_peer(self, p: int, why: str | None) -> None:
        """Forget everything in flight with p; touch nothing in shared memory."""
        pending = self._pending[p]
        self._pending[p] = {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(PeerUnavailable(p, why and f"shard {p}: {why}"))
        self._tx[p].discard()
        self._rx[p].discard()
        self._dirty.discard(p)
        waiters = self._space_waiters[p]
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_exception(PeerUnavailable(p))


class _Resume:
    """Awaitable that continues a coroutine already advanced to its first suspension.

    It hands the Task the future the coroutine is blocked on, then relays
    every send/throw to the coroutine, exactly as the Task would have done
    had it run the coroutine from the start.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro, first):
        self._coro = coro
        self._first = first

    def __await__(self):
        coro = self._coro
        yielded = self._first
        self._first = None
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    yielded = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as done:
                    return done.value
