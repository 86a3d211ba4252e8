"""The cross-shard door between real forked processes running uvloop.

The test process plays the supervisor: it creates the fabric segments, forks
the shards, and (for the restart test) kills one with SIGKILL and brings a
replacement up with the documented call sequence.  Each shard reports its
result as JSON through a pipe to the test process (test plumbing only; shards
talk to each other through the fabric alone).
"""

import asyncio
import hashlib
import os
import random
import select
import signal
import time
import traceback

import orjson
import pytest
import uvloop

from shardserver.reactor.ring import AttachedSegment
from shardserver.reactor.smp import Fabric, PeerUnavailable, RemoteError

pytestmark = pytest.mark.timeout(60)

CPUS = sorted(os.sched_getaffinity(0))
_STARTED = []  # every shard forked by the current test, killed at teardown if still running


# --- harness ----------------------------------------------------------------------------------


class Shard:
    """A forked shard process running ``scenario(fabric, ctx)`` under uvloop."""

    def __init__(self, segs, shard_id, scenario, cpu=None, **fabric_kw):
        self.shard_id = shard_id
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 1
            try:
                if cpu is not None:
                    os.sched_setaffinity(0, {cpu})
                loop = uvloop.new_event_loop()
                asyncio.set_event_loop(loop)
                result = loop.run_until_complete(_shard_main(segs, shard_id, scenario, loop, fabric_kw))
                data = orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS)
                while data:
                    data = data[os.write(w, data):]
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        self.pid = pid
        self._r = r
        self.exit_code = None
        _STARTED.append(self)

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self._r)
        self.exit_code = -9

    def result(self, timeout=20):
        deadline = time.monotonic() + timeout
        chunks = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError(f"shard {self.shard_id} did not finish in {timeout}s")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        os.close(self._r)
        _, status = os.waitpid(self.pid, 0)
        self.exit_code = os.waitstatus_to_exitcode(status)
        assert self.exit_code == 0, f"shard {self.shard_id} exited with {self.exit_code}"
        return orjson.loads(b"".join(chunks))


class Ctx:
    """What a scenario sees besides its fabric."""

    def __init__(self, shard_id, nshards):
        self.shard_id = shard_id
        self.nshards = nshards
        self.done_from = set()
        self.all_done = asyncio.Event()


async def _shard_main(segs, shard_id, scenario, loop, fabric_kw):
    ctx = Ctx(shard_id, segs.nshards)

    async def handler(src, verb, payload):
        if verb == b"echo":
            return payload
        if verb == b"yield-echo":  # suspends: runs as a Task, not eagerly
            await asyncio.sleep(0)
            await asyncio.sleep(0.0001)
            return payload
        if verb == b"late-boom":
            await asyncio.sleep(0.001)
            raise LookupError("late: " + payload.decode())
        if verb == b"whoami":
            return str(shard_id).encode()
        if verb == b"sha256":
            return hashlib.sha256(payload).digest()
        if verb == b"boom":
            raise ValueError("boom: " + payload.decode())
        if verb == b"reverse":
            return payload[::-1]
        if verb == b"stall":
            time.sleep(float(payload))  # deliberately blocks this shard's loop
            return b""
        if verb == b"done":
            ctx.done_from.add(src)
            if len(ctx.done_from) >= ctx.nshards - 1:
                ctx.all_done.set()
            return b""
        if verb == b"bad-reply":
            return "not bytes"
        if verb in (b"refuse-acks", b"accept-acks"):
            _ACKS_LOGGED[0] = verb == b"accept-acks"
            return b""
        raise KeyError(verb)

    fabric = Fabric(shard_id, segs.nshards, segs, loop, handler, **fabric_kw)
    await fabric.start()
    try:
        result = await scenario(fabric, ctx)
        # Keep serving until every peer has finished with us too.
        for p in range(segs.nshards):
            if p != shard_id and fabric.is_up(p):
                await fabric.submit_to(p, b"done", b"")
        if segs.nshards > 1:
            await asyncio.wait_for(ctx.all_done.wait(), 15)
        return {"result": result, "stats": fabric.stats()}
    finally:
        await fabric.stop()


async def serve_only(fabric, ctx):
    return None


_ACKS_LOGGED = [True]   # what the barrier of barrier_server answers (in its own process)


async def barrier_server(fabric, ctx):
    fabric.before_publish = lambda: _ACKS_LOGGED[0]
    return None


@pytest.fixture
def segments():
    made = []

    def make(nshards, ring_bytes):
        segs = Fabric.create_segments(nshards, ring_bytes)
        made.append(segs)
        return segs

    yield make
    for shard in _STARTED:
        if shard.exit_code is None:  # the test failed before collecting it
            shard.kill()
    _STARTED.clear()
    for segs in made:
        # Shards attached and exited: the segments must still be there to unlink.
        for name in segs.names:
            AttachedSegment(name).close()
        segs.unlink()


# --- scenarios ---------------------------------------------------------------------------------


async def echo_both_ways(fabric, ctx):
    peer = 1 - ctx.shard_id
    n = 10_000
    payloads = [f"{ctx.shard_id}:{i}:".encode() * (1 + i % 7) for i in range(n)]
    verbs = [b"yield-echo" if i % 10 == 0 else b"echo" for i in range(n)]
    replies = await asyncio.gather(*(fabric.submit_to(peer, v, p) for v, p in zip(verbs, payloads)))
    local = await fabric.submit_to(ctx.shard_id, b"echo", b"local")
    return {"ok": replies == payloads, "local": local.decode()}


def test_ten_thousand_concurrent_submit_to_between_two_processes(segments):
    segs = segments(2, 1 << 16)
    shards = [Shard(segs, i, echo_both_ways) for i in range(2)]
    out = [s.result() for s in shards]
    for o in out:
        assert o["result"] == {"ok": True, "local": "local"}
        peer = o["stats"]["peers"][str(1 - o["stats"]["shard"])]
        assert peer["forwards_sent"] == 10_001  # + the final "done"
        assert peer["forwards_received"] == 10_001
        assert peer["pending"] == 0
        # Batching: far fewer tail publications and doorbells than messages.
        assert o["stats"]["batches_flushed"] < 5_000
        assert o["stats"]["doorbells_rung"] < 5_000


def test_full_ring_applies_backpressure_and_drops_nothing(segments):
    segs = segments(2, 4096)

    async def client(fabric, ctx):
        n, size = 400, 1000
        # Block the receiver's loop so that nothing drains the ring for a while.
        stall = asyncio.ensure_future(fabric.submit_to(1, b"stall", b"0.4"))
        await asyncio.sleep(0.05)
        payloads = [bytes([i % 251]) * size + i.to_bytes(4, "little") for i in range(n)]
        calls = [asyncio.ensure_future(fabric.submit_to(1, b"reverse", p)) for p in payloads]
        lag = 0.0
        for _ in range(30):
            t = time.monotonic()
            await asyncio.sleep(0.005)
            lag = max(lag, time.monotonic() - t - 0.005)
        held = fabric.stats()["peers"][1]
        replies = await asyncio.gather(*calls)
        await stall
        return {
            "ok": replies == [p[::-1] for p in payloads],
            "backlog_while_held": held["backlog_bytes"],
            "depth_while_held": held["ring_depth_out"],
            "lag": lag,
            "waits": fabric.stats()["peers"][1]["ring_full_waits"],
        }

    a = Shard(segs, 0, client)
    b = Shard(segs, 1, serve_only)
    res = a.result()["result"]
    b.result()
    assert res["ok"]
    assert res["depth_while_held"] > 4096 - 1100  # the ring is (nearly) full
    assert 0 < res["backlog_while_held"] <= 4096 + 1100  # the rest waits, bounded, in the producer
    assert res["waits"] > 0  # submit_to itself awaited space
    assert res["lag"] < 0.2  # and the producer's loop kept running (the receiver stalls 0.4 s)


def test_sixteen_megabyte_frame_through_a_one_megabyte_ring(segments):
    segs = segments(2, 1 << 20)

    async def client(fabric, ctx):
        big = random.Random(5).randbytes(16 * 1024 * 1024)
        t = time.monotonic()
        digest = await fabric.submit_to(1, b"sha256", big)
        back = await fabric.submit_to(1, b"echo", big)
        return {
            "digest_ok": digest == hashlib.sha256(big).digest(),
            "echo_ok": back == big,
            "seconds": time.monotonic() - t,
        }

    a = Shard(segs, 0, client)
    b = Shard(segs, 1, serve_only)
    res = a.result()["result"]
    b.result()
    assert res["digest_ok"] and res["echo_ok"]
    print(f"\n32 MiB through a 1 MiB ring (16 MiB each way): {res['seconds'] * 1000:.0f} ms")


def test_handler_exception_becomes_remote_error(segments):
    segs = segments(2, 1 << 16)

    async def client(fabric, ctx):
        seen = []
        for shard in (1, 0):
            try:
                await fabric.submit_to(shard, b"boom", b"bad input")
            except RemoteError as exc:
                seen.append([exc.shard, exc.remote_type, exc.remote_message])
        for verb in (b"bad-reply", b"late-boom"):
            try:
                await fabric.submit_to(1, verb, b"after a suspension")
            except RemoteError as exc:
                seen.append([exc.shard, exc.remote_type, exc.remote_message])
        after = await fabric.submit_to(1, b"echo", b"still fine")
        return {"seen": seen, "after": after.decode()}

    a = Shard(segs, 0, client)
    b = Shard(segs, 1, serve_only)
    res = a.result()["result"]
    b.result()
    assert res["seen"][0] == [1, "ValueError", "boom: bad input"]
    assert res["seen"][1] == [0, "ValueError", "boom: bad input"]
    assert res["seen"][2][:2] == [1, "TypeError"]
    assert res["seen"][3] == [1, "LookupError", "late: after a suspension"]
    assert res["after"] == "still fine"


def test_replies_wait_for_the_barrier_and_fail_when_it_fails(segments):
    """A reply may acknowledge a write: it leaves only after before_publish said the write is
    logged, and becomes an error when it was not."""
    segs = segments(2, 1 << 16)

    async def client(fabric, ctx):
        seen = []
        for verb in (b"echo", b"refuse-acks", b"echo", b"yield-echo", b"accept-acks", b"echo"):
            try:
                seen.append((await fabric.submit_to(1, verb, b"x")).decode())
            except RemoteError as exc:
                seen.append(f"{exc.remote_type}: {exc.remote_message}")
        return seen

    a = Shard(segs, 0, client)
    b = Shard(segs, 1, barrier_server)
    seen = a.result()["result"]
    b.result()
    failed = "InternalServerError: Internal server error: commit log write failed"
    assert seen == ["x", failed, failed, failed, "", "x"]


def test_broadcast_reaches_every_shard_in_order(segments):
    segs = segments(3, 1 << 16)

    async def client(fabric, ctx):
        replies = await fabric.broadcast(b"whoami", b"")
        return [r.decode() for r in replies]

    shards = [Shard(segs, 0, client), Shard(segs, 1, serve_only), Shard(segs, 2, serve_only)]
    out = [s.result() for s in shards]
    assert out[0]["result"] == ["0", "1", "2"]


def test_broadcast_and_submit_to_a_down_shard_fail_fast(segments):
    segs = segments(3, 1 << 16)
    segs.mark_down(2)  # shard 2 never comes up

    async def client(fabric, ctx):
        ctx.all_done.set()  # shard 2 will never say done
        t = time.monotonic()
        errors = []
        for call in (fabric.broadcast(b"whoami", b""), fabric.submit_to(2, b"echo", b"x")):
            try:
                await call
            except PeerUnavailable as exc:
                errors.append(exc.shard)
        ok = await fabric.submit_to(1, b"echo", b"y")
        return {"errors": errors, "ok": ok.decode(), "seconds": time.monotonic() - t}

    async def other(fabric, ctx):
        ctx.done_from.add(2)
        return None

    a, b = Shard(segs, 0, client), Shard(segs, 1, other)
    res = a.result()["result"]
    b.result()
    assert res["errors"] == [2, 2]
    assert res["ok"] == "y"
    assert res["seconds"] < 1.0


def test_peer_killed_mid_traffic_then_restarted(segments):
    segs = segments(2, 1 << 16)

    async def client(fabric, ctx):
        rnd = random.Random(11)
        ok_before = ok_after = failures = 0
        first_failure = resumed = None
        slowest_failure = 0.0
        bad = 0
        deadline = time.monotonic() + 15

        async def one():
            nonlocal ok_before, ok_after, failures, first_failure, resumed, slowest_failure, bad
            while time.monotonic() < deadline and ok_after < 2000:
                payload = rnd.randbytes(rnd.randrange(1, 20_000))  # partial frames in flight
                t = time.monotonic()
                try:
                    reply = await fabric.submit_to(1, b"echo", payload)
                except PeerUnavailable:
                    now = time.monotonic()
                    failures += 1
                    if first_failure is None:
                        first_failure = now
                    if resumed is None:
                        slowest_failure = max(slowest_failure, now - t)
                    await asyncio.sleep(0.001)
                    continue
                bad += reply != payload
                if first_failure is None:
                    ok_before += 1
                else:
                    if resumed is None:
                        resumed = time.monotonic()
                    ok_after += 1

        await asyncio.gather(*(one() for _ in range(32)))
        return {"ok_before": ok_before, "ok_after": ok_after, "failures": failures, "bad": bad,
                "first_failure": first_failure, "resumed": resumed}

    a = Shard(segs, 0, client)
    victim = Shard(segs, 1, serve_only)
    time.sleep(0.5)
    killed_at = time.monotonic()
    victim.kill()
    # The supervisor's side of the restart protocol, as documented in FabricSegments.
    segs.mark_down(1)
    assert segs.wait_acks(1, timeout=2.0) == []
    acked_at = time.monotonic()
    segs.reset_peer(1)
    time.sleep(0.2)  # requests made while shard 1 is down must fail, not wait

    async def new_incarnation(fabric, ctx):
        # Sent at once, possibly before mark_up: it must wait in the ring, not vanish.
        reply = await fabric.submit_to(0, b"echo", b"hello from the new shard 1")
        return reply.decode()

    replacement = Shard(segs, 1, new_incarnation)
    segs.mark_up(1)
    res = a.result()["result"]
    assert replacement.result()["result"] == "hello from the new shard 1"
    assert res["bad"] == 0
    assert res["ok_before"] > 0
    assert res["failures"] > 0
    assert res["first_failure"] - killed_at < 1.0
    assert acked_at - killed_at < 1.0
    assert res["ok_after"] >= 2000
    assert res["resumed"] is not None


def test_measure_round_trip_and_throughput(segments):
    """Prints numbers for docs/rings.md; asserts only that the traffic was right."""
    segs = segments(2, 1 << 20)

    async def client(fabric, ctx):
        for _ in range(500):
            await fabric.submit_to(1, b"echo", b"w")
        rtts = []
        for i in range(3000):
            t = time.perf_counter_ns()
            await fabric.submit_to(1, b"echo", b"0123456789abcdef" * 4)
            rtts.append(time.perf_counter_ns() - t)
        rtts.sort()
        n, window = 60_000, 1000
        payload = b"x" * 64
        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(n // window):
            replies = await asyncio.gather(*(fabric.submit_to(1, b"echo", payload) for _ in range(window)))
            assert replies[-1] == payload
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        return {"p50_us": rtts[len(rtts) // 2] / 1000, "p99_us": rtts[len(rtts) * 99 // 100] / 1000,
                "msgs_per_s": n / seconds, "client_cpu_us": cpu / n * 1e6}

    pin = len(CPUS) >= 2
    a = Shard(segs, 0, client, cpu=CPUS[0] if pin else None)
    b = Shard(segs, 1, serve_only, cpu=CPUS[1] if pin else None)
    res = a.result()["result"]
    b.result()
    print(f"\nsubmit_to, 64-byte echo, {'pinned to 2 CPUs' if pin else 'unpinned'}: "
          f"round trip p50 {res['p50_us']:.1f} us, p99 {res['p99_us']:.1f} us; "
          f"throughput {res['msgs_per_s']:,.0f} req/s (1000 in flight), "
          f"caller CPU {res['client_cpu_us']:.1f} us/req")


def test_no_lost_wake_ups_when_every_message_needs_a_doorbell(segments):
    """idle_poll_us=0: both shards arm their doorbell after every tick."""
    segs = segments(2, 4096)

    async def pinger(fabric, ctx):
        peer = 1 - ctx.shard_id
        rnd = random.Random(ctx.shard_id)
        slowest = 0.0
        done = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and done < 3000:
            # Vary the gap so that sends land before, during and after the
            # peer arms its sleeping flag.
            gap = rnd.choice([0, 0, 0, 0.00002, 0.0002])
            if gap:
                await asyncio.sleep(gap)
            size = rnd.choice([1, 100, 3000, 5000])  # 5000 > ring: streamed
            payload = rnd.randbytes(size)
            t = time.monotonic()
            reply = await asyncio.wait_for(fabric.submit_to(peer, b"echo", payload), 2.0)
            slowest = max(slowest, time.monotonic() - t)
            assert reply == payload
            done += 1
        return {"done": done, "slowest": slowest, "doorbells": fabric.stats()["doorbells_rung"]}

    shards = [Shard(segs, i, pinger, idle_poll_us=0) for i in range(2)]
    for o in [s.result() for s in shards]:
        assert o["result"]["done"] > 500
        assert o["result"]["doorbells"] > 0


def test_callers_waiting_for_ring_space_fail_when_the_peer_dies(segments):
    segs = segments(2, 4096)

    async def client(fabric, ctx):
        ctx.all_done.set()  # the victim never comes back in this test
        asyncio.ensure_future(fabric.submit_to(1, b"stall", b"30"))  # its loop stops draining
        await asyncio.sleep(0.05)
        calls = [asyncio.ensure_future(fabric.submit_to(1, b"echo", bytes(1000))) for _ in range(50)]
        await asyncio.sleep(0.2)
        waiting = fabric.stats()["peers"][1]["ring_full_waits"]
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        return {"waiting": waiting, "failed_at": time.monotonic(),
                "all_unavailable": all(isinstance(o, PeerUnavailable) for o in outcomes)}

    a = Shard(segs, 0, client)
    victim = Shard(segs, 1, serve_only)
    time.sleep(0.5)
    killed_at = time.monotonic()
    victim.kill()
    segs.mark_down(1)
    assert segs.wait_acks(1, timeout=2.0) == []
    res = a.result()["result"]
    assert res["waiting"] > 0
    assert res["all_unavailable"]
    assert res["failed_at"] - killed_at < 1.0
