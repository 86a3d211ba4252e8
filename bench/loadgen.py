"""A low-overhead load generator for the DynamoDB JSON protocol.

Owns: keep-alive HTTP/1.1 connections over uvloop, pre-assembled request
bytes (``workloads.BodyBuilder``), per-request latency recording, the worker
processes that share the connections, merging their results, and the parallel
BatchWriteItem load phase.  A run is always bounded by a duration AND a
request count, and a hard deadline after which in-flight requests are
abandoned.  Responses are parsed with httptools and otherwise not decoded,
so the client spends as little CPU as possible next to the server it measures.

It must never sign requests (no target here verifies SigV4; a dummy
Authorization header is sent), never talk to anything but the host it is
given (callers pass 127.0.0.1), and never start or stop servers.

Run standalone:  python bench/loadgen.py --port 8000 --load --items 10000 --workload get
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import http.client
import json
import multiprocessing
import os
import queue
import socket
import sys
import time

import httptools
import numpy as np
import orjson
import uvloop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402  (sibling module; bench/ is a folder of scripts)

OK = 200
# After the duration ends, in-flight requests get this long to finish before
# they are abandoned; slow peers (moto) can hold a request for seconds.
DEFAULT_GRACE_S = 60.0
RETRYABLE_TYPES = (b"ThrottlingException", b"ProvisionedThroughputExceededException",
                   b"RequestLimitExceeded", b"InternalServerError", b"ServiceUnavailable")


@dataclasses.dataclass
class LoadSpec:
    """What one measured run does.  Counts are totals across processes."""

    port: int
    host: str = "127.0.0.1"
    workload: str = "get"
    duration: float = 10.0
    max_requests: int = 2_000_000
    connections: int = 32
    processes: int = 2
    keys: int = 100_000
    item_size: int = workloads.DEFAULT_ITEM_SIZE
    distribution: str = "uniform"
    theta: float = 0.99
    seed: int = 1
    grace: float = DEFAULT_GRACE_S
    kv_table: str = workloads.KV_TABLE
    query_table: str = workloads.QUERY_TABLE


def request_head(host: str, port: int, operation: str) -> bytes:
    return ("POST / HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Content-Type: application/x-amz-json-1.0\r\n"
            f"X-Amz-Target: {workloads.API_VERSION}.{operation}\r\n"
            f"X-Amz-Date: {workloads.DUMMY_DATE}\r\n"
            f"Authorization: {workloads.DUMMY_AUTHORIZATION}\r\n"
            "Content-Length: ").encode()


def frame(head: bytes, body: bytes) -> bytes:
    return head + b"%d\r\n\r\n" % len(body) + body


# ---------------------------------------------------------------- request sources

class WorkloadSource:
    """Endless stream of (operation index, request bytes) for one benchmark workload."""

    CHUNK = 1 << 15

    def __init__(self, spec: LoadSpec, process_index: int):
        self.spec = spec
        self.operations = workloads.WORKLOAD_OPERATIONS[spec.workload]
        self.heads = [request_head(spec.host, spec.port, op) for op in self.operations]
        payload = workloads.PayloadPool(spec.item_size, seed=spec.seed + 1000 * process_index)
        self.builder = workloads.BodyBuilder(payload, spec.kv_table, spec.query_table)
        seed = spec.seed * 7919 + process_index
        n = workloads.query_partitions(spec.keys) if spec.workload == "query" else spec.keys
        self.chooser = workloads.KeyChooser(n, spec.distribution, spec.theta, seed)
        self.op_rng = np.random.default_rng(seed + 1)
        self._keys: list[int] = []
        self._ops: list[int] = []
        self._variant = 0
        self.make = getattr(self, "_" + spec.workload)

    def _next_key(self) -> int:
        if not self._keys:
            self._keys = self.chooser.draw(self.CHUNK).tolist()
            self._keys.reverse()
        return self._keys.pop()

    def next(self) -> tuple[int, bytes]:
        return self.make()

    def _get(self):
        return 0, frame(self.heads[0], self.builder.get_item(workloads.kv_key(self._next_key())))

    def _put(self):
        self._variant += 1
        body = self.builder.put_item(workloads.kv_key(self._next_key()), self._variant)
        return 0, frame(self.heads[0], body)

    def _update(self):
        return 0, frame(self.heads[0], self.builder.update_item(workloads.kv_key(self._next_key())))

    def _query(self):
        pk = workloads.partition_key(self._next_key())
        return 0, frame(self.heads[0], self.builder.query(pk))

    def _batch(self):
        self._variant += 1
        keys = [workloads.kv_key(k) for k in self.chooser.draw_distinct(workloads.BATCH_SIZE)]
        return 0, frame(self.heads[0], self.builder.batch_write(keys, self._variant))

    def _batchget(self):
        keys = [workloads.kv_key(k) for k in self.chooser.draw_distinct(workloads.BATCH_GET_SIZE)]
        return 0, frame(self.heads[0], self.builder.batch_get(keys))

    def _mix50(self):
        if not self._ops:
            self._ops = self.op_rng.integers(0, 2, size=self.CHUNK).tolist()
        if self._ops.pop():
            self._variant += 1
            body = self.builder.put_item(workloads.kv_key(self._next_key()), self._variant)
            return 1, frame(self.heads[1], body)
        return 0, frame(self.heads[0], self.builder.get_item(workloads.kv_key(self._next_key())))

    def retry(self, op: int, request: bytes, status: int, body: bytes) -> bytes | None:
        return None


class LoadSource:
    """This process's share of the BatchWriteItem load, with UnprocessedItems retried."""

    operations = ("BatchWriteItem",)

    def __init__(self, host: str, port: int, items: int, item_size: int, part: int,
                 parts: int, start: int = 0,
                 tables: tuple[str, ...] = (workloads.KV_TABLE, workloads.QUERY_TABLE)):
        self.head = request_head(host, port, "BatchWriteItem")
        self.bodies = workloads.load_batches(items, item_size, part, parts, start, tables)
        self.retries = 0

    def next(self) -> tuple[int, bytes] | None:
        body = next(self.bodies, None)
        return None if body is None else (0, frame(self.head, body))

    def retry(self, op: int, request: bytes, status: int, body: bytes) -> bytes | None:
        if status == OK:
            if b'"UnprocessedItems":{}' in body or b"UnprocessedItems" not in body:
                return None
            unprocessed = orjson.loads(body).get("UnprocessedItems") or {}
            if not unprocessed:
                return None
            self.retries += 1
            return frame(self.head, orjson.dumps({"RequestItems": unprocessed}))
        if status >= 500 or any(t in body for t in RETRYABLE_TYPES):
            self.retries += 1
            if self.retries > 10_000:
                return None
            return request
        return None


# ---------------------------------------------------------------- connections

class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    __slots__ = ("driver", "parser", "transport", "body", "sent_at", "op", "request",
                 "in_flight", "closed")

    def __init__(self, driver: "Driver"):
        self.driver = driver
        self.parser = httptools.HttpResponseParser(self)
        self.transport = None
        self.body: list[bytes] = []
        self.sent_at = 0
        self.op = 0
        self.request = b""
        self.in_flight = False
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def send(self, op: int, request: bytes) -> None:
        self.op = op
        self.request = request
        self.in_flight = True
        self.sent_at = time.perf_counter_ns()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.driver.failed(self, "bad HTTP response: %s" % exc)
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        now = time.perf_counter_ns()
        body = b"".join(self.body) if self.body else b""
        self.body = []
        self.in_flight = False
        self.driver.completed(self, now, self.parser.get_status_code(), body,
                              self.parser.should_keep_alive())

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.driver.lost(self)


class Driver:
    """Keeps ``connections`` busy with requests from ``source`` until a bound is hit."""

    def __init__(self, loop, host: str, port: int, source, connections: int,
                 duration: float, max_requests: int, grace: float, record: bool = True):
        self.loop = loop
        self.host = host
        self.port = port
        self.source = source
        self.n_connections = connections
        self.duration = duration
        self.max_requests = max_requests
        self.grace = grace
        self.record = record
        self.connections: list[Connection] = []
        self.sent = 0
        self.latencies: list[int] = []
        self.ops: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.error_samples: list[str] = []
        self.abandoned = 0
        self.first_send = 0
        self.last_done = 0
        self.deadline = 0
        self.exhausted = False
        self.reconnecting = 0
        self.stopping = False
        self.done: asyncio.Future | None = None

    async def connect(self) -> None:
        for _ in range(self.n_connections):
            _, conn = await self.loop.create_connection(
                lambda: Connection(self), self.host, self.port)
            self.connections.append(conn)

    def _note_error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])

    def _send_next(self, conn: Connection) -> None:
        if self.exhausted or conn.closed:
            self._maybe_done()
            return
        if self.sent >= self.max_requests or time.perf_counter_ns() >= self.deadline:
            self.exhausted = True
            self._maybe_done()
            return
        item = self.source.next()
        if item is None:
            self.exhausted = True
            self._maybe_done()
            return
        self.sent += 1
        conn.send(*item)

    def _maybe_done(self) -> None:
        if self.done is not None and not self.done.done() and not self.reconnecting:
            if not any(c.in_flight for c in self.connections):
                self.done.set_result(None)

    def completed(self, conn: Connection, now: int, status: int, body: bytes,
                  keep_alive: bool) -> None:
        self.last_done = now
        if self.record:
            self.latencies.append(now - conn.sent_at)
            self.ops.append(conn.op)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        again = self.source.retry(conn.op, conn.request, status, body)
        if status != OK and again is None:
            self._note_error("HTTP %d: %s" % (status, body[:200].decode("utf-8", "replace")))
        if not keep_alive:
            # Servers without keep-alive (moto's werkzeug answers "Connection: close")
            # cost a new connection per request; that time counts in the next latency.
            conn.transport.close()
            self._replace(conn, again)
            return
        if again is not None:
            conn.send(conn.op, again)
        else:
            self._send_next(conn)

    def failed(self, conn: Connection, reason: str) -> None:
        self._note_error(reason)

    def lost(self, conn: Connection) -> None:
        if self.stopping:
            return
        if conn.in_flight:
            conn.in_flight = False
            self._note_error("connection closed with a request in flight")
            self._replace(conn, None)
        self._maybe_done()

    def _replace(self, old: Connection, resend: bytes | None) -> None:
        try:
            self.connections.remove(old)
        except ValueError:
            return
        if self.done is None or self.done.done():
            return
        if resend is None and (self.exhausted or self.sent >= self.max_requests
                               or time.perf_counter_ns() >= self.deadline):
            self.exhausted = True
            self._maybe_done()
            return
        self.reconnecting += 1
        self.loop.create_task(self._reconnect(old.op, resend))

    async def _reconnect(self, op: int, resend: bytes | None) -> None:
        started = time.perf_counter_ns()
        try:
            _, conn = await self.loop.create_connection(
                lambda: Connection(self), self.host, self.port)
        except OSError as exc:
            self.reconnecting -= 1
            self._note_error("reconnect failed: %s" % exc)
            self._maybe_done()
            return
        self.reconnecting -= 1
        self.connections.append(conn)
        if self.stopping or self.done is None or self.done.done():
            conn.transport.close()
            return
        if resend is not None:
            conn.send(op, resend)
        else:
            self._send_next(conn)
        if conn.in_flight:
            conn.sent_at = started

    async def run(self) -> None:
        self.done = self.loop.create_future()
        self.first_send = time.perf_counter_ns()
        self.deadline = self.first_send + int(self.duration * 1e9)
        for conn in list(self.connections):
            self._send_next(conn)
        self._maybe_done()
        try:
            await asyncio.wait_for(asyncio.shield(self.done), self.duration + self.grace)
        except asyncio.TimeoutError:
            self.abandoned = sum(1 for c in self.connections if c.in_flight)
            self.errors += self.abandoned
            if self.abandoned and len(self.error_samples) < 5:
                self.error_samples.append("%d requests abandoned after the %.0f s grace period"
                                          % (self.abandoned, self.grace))
        self.stopping = True
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.close()
        if not self.last_done:
            self.last_done = time.perf_counter_ns()

    def result(self) -> dict:
        return {
            "sent": self.sent,
            "latencies_ns": np.asarray(self.latencies, dtype=np.int64),
            "ops": np.asarray(self.ops, dtype=np.int8),
            "statuses": self.statuses,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "abandoned": self.abandoned,
            "first_send": self.first_send,
            "last_done": self.last_done,
            "retries": getattr(self.source, "retries", 0),
        }


# ---------------------------------------------------------------- processes

def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _child(make_source, host, port, connections, duration, max_requests, grace, record,
           start_event, ready_q, result_q, index):
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        source = make_source(index)
        driver = Driver(loop, host, port, source, connections, duration, max_requests,
                        grace, record)
        loop.run_until_complete(driver.connect())
    except Exception as exc:  # reported to the parent, which fails the run
        ready_q.put((index, "%s: %s" % (type(exc).__name__, exc)))
        return
    ready_q.put((index, None))
    if not start_event.wait(120):
        return
    # A collector pause in the client would show up as server latency; a run
    # allocates few containers, so memory stays flat without it.
    gc.disable()
    loop.run_until_complete(driver.run())
    result_q.put((index, driver.result()))
    loop.close()


def run_processes(make_source, host: str, port: int, connections: int, processes: int,
                  duration: float, max_requests: int, grace: float, record: bool = True,
                  on_start=None, on_finish=None) -> list[dict]:
    """Runs ``processes`` workers sharing ``connections``; returns their raw results.

    ``on_start`` runs in this process after every worker has connected and
    just before they are released; ``on_finish`` right after the last one
    reports.  Callers put their CPU and metrics snapshots there, so the
    measured window holds only the measured requests.
    """
    processes = max(1, min(processes, connections))
    ctx = multiprocessing.get_context("fork")
    start_event = ctx.Event()
    ready_q, result_q = ctx.Queue(), ctx.Queue()
    conns = _split(connections, processes)
    reqs = _split(max_requests, processes)
    procs = [ctx.Process(target=_child, daemon=True,
                         args=(make_source, host, port, conns[i], duration, reqs[i], grace,
                               record, start_event, ready_q, result_q, i))
             for i in range(processes)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            index, error = ready_q.get(timeout=120)
            if error:
                raise RuntimeError("load generator process %d failed: %s" % (index, error))
        if on_start:
            on_start()
        start_event.set()
        results = []
        wait_until = time.monotonic() + duration + grace + 60
        while len(results) < len(procs):
            try:
                results.append(result_q.get(timeout=max(1.0, wait_until - time.monotonic())))
            except queue.Empty:
                raise RuntimeError("load generator processes did not report in time")
        if on_finish:
            on_finish()
        return [r for _, r in sorted(results, key=lambda x: x[0])]
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()


def summarize(raw: list[dict], operations: tuple[str, ...]) -> dict:
    """Merges per-process results into one summary (latencies in milliseconds)."""
    lat = np.concatenate([r["latencies_ns"] for r in raw]) if raw else np.zeros(0, np.int64)
    ops = np.concatenate([r["ops"] for r in raw]) if raw else np.zeros(0, np.int8)
    statuses: dict[int, int] = {}
    for r in raw:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    completed = int(sum(statuses.values()))
    ok = statuses.get(OK, 0)
    starts = [r["first_send"] for r in raw if r["first_send"]]
    ends = [r["last_done"] for r in raw if r["last_done"]]
    elapsed = (max(ends) - min(starts)) / 1e9 if starts and ends else 0.0
    summary = {
        "operations": list(operations),
        "sent": int(sum(r["sent"] for r in raw)),
        "completed": completed,
        "ok": ok,
        "errors": int(sum(r["errors"] for r in raw)),
        "abandoned": int(sum(r["abandoned"] for r in raw)),
        "retries": int(sum(r["retries"] for r in raw)),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "error_samples": [s for r in raw for s in r["error_samples"]][:5],
        "elapsed_s": elapsed,
        "ops_per_s": ok / elapsed if elapsed > 0 else 0.0,
    }
    summary.update(latency_summary(lat))
    if len(operations) > 1:
        summary["per_operation"] = {
            name: latency_summary(lat[ops == i]) for i, name in enumerate(operations)}
    return summary


def latency_summary(lat_ns: np.ndarray) -> dict:
    if lat_ns.size == 0:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None,
                "p999_ms": None, "max_ms": None, "mean_ms": None}
    p50, p90, p99, p999 = np.percentile(lat_ns, [50, 90, 99, 99.9]) / 1e6
    return {"count": int(lat_ns.size), "p50_ms": float(p50), "p90_ms": float(p90),
            "p99_ms": float(p99), "p999_ms": float(p999),
            "max_ms": float(lat_ns.max() / 1e6), "mean_ms": float(lat_ns.mean() / 1e6)}


class _WorkloadFactory:
    """Builds each worker's request source inside the worker, after fork."""

    def __init__(self, spec: LoadSpec):
        self.spec = spec

    def __call__(self, index: int) -> WorkloadSource:
        return WorkloadSource(self.spec, index)


class _LoadFactory:
    def __init__(self, host, port, items, item_size, parts, start, tables):
        self.args = (host, port, items, item_size, parts, start, tables)

    def __call__(self, index: int) -> LoadSource:
        host, port, items, item_size, parts, start, tables = self.args
        return LoadSource(host, port, items, item_size, index, parts, start, tables)


def run(spec: LoadSpec, on_start=None, on_finish=None) -> dict:
    """One measured run of ``spec``; returns the merged summary."""
    if spec.workload not in workloads.WORKLOADS:
        raise ValueError("unknown workload %r (one of %s)" % (spec.workload, ", ".join(workloads.WORKLOADS)))
    raw = run_processes(_WorkloadFactory(spec), spec.host, spec.port, spec.connections,
                        spec.processes, spec.duration, spec.max_requests, spec.grace,
                        True, on_start, on_finish)
    summary = summarize(raw, workloads.WORKLOAD_OPERATIONS[spec.workload])
    summary.update(workload=spec.workload, connections=spec.connections,
                   processes=min(spec.processes, spec.connections), keys=spec.keys,
                   item_size=spec.item_size, distribution=spec.distribution,
                   duration_s=spec.duration, max_requests=spec.max_requests)
    return summary


def load(host: str, port: int, items: int, item_size: int = workloads.DEFAULT_ITEM_SIZE,
         connections: int = 16, processes: int = 2, start: int = 0,
         timeout: float = 3600.0,
         tables: tuple[str, ...] = (workloads.KV_TABLE, workloads.QUERY_TABLE)) -> dict:
    """Fills both benchmark tables with keys ``start..items-1`` in parallel.

    Raises RuntimeError if any batch failed for good: a benchmark on a
    partially loaded table would measure misses, not reads.
    """
    batches = len(workloads.load_ranges(items, start, tables))
    processes = max(1, min(processes, connections))
    t0 = time.perf_counter()
    raw = run_processes(_LoadFactory(host, port, items, item_size, processes, start, tables),
                        host, port, connections, processes, timeout, 10**12, 30.0, False)
    summary = summarize(raw, ("BatchWriteItem",))
    summary["seconds"] = time.perf_counter() - t0
    written = sum(end - first for _, first, end in workloads.load_ranges(items, start, tables))
    summary["items"] = written
    summary["items_per_s"] = written / summary["seconds"] if summary["seconds"] else 0
    if summary["errors"]:
        raise RuntimeError("load failed: %d errors, e.g. %s" % (summary["errors"], summary["error_samples"][:2]))
    if summary["sent"] < batches:
        raise RuntimeError("load stopped after %d of %d batches (time bound %.0f s)"
                           % (summary["sent"], batches, timeout))
    return summary


# ---------------------------------------------------------------- table setup

def call(host: str, port: int, operation: str, body: dict, timeout: float = 30.0) -> tuple[int, dict]:
    """One blocking DynamoDB call, for setup (not for measured traffic)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/", orjson.dumps(body), {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "%s.%s" % (workloads.API_VERSION, operation),
            "X-Amz-Date": workloads.DUMMY_DATE,
            "Authorization": workloads.DUMMY_AUTHORIZATION,
        })
        resp = conn.getresponse()
        data = resp.read()
        try:
            doc = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            doc = {"raw": data[:500].decode("utf-8", "replace")}
        return resp.status, doc
    finally:
        conn.close()


def ensure_tables(host: str, port: int, timeout: float = 60.0) -> None:
    """Creates the benchmark tables if missing and waits until they are ACTIVE."""
    for name, definition in workloads.key_schema_definitions().items():
        status, doc = call(host, port, "DescribeTable", {"TableName": name})
        if status != OK:
            status, doc = call(host, port, "CreateTable", definition)
            if status != OK and "ResourceInUse" not in str(doc.get("__type", "")):
                raise RuntimeError("CreateTable %s failed: HTTP %d %s" % (name, status, doc))
        deadline = time.monotonic() + timeout
        while True:
            status, doc = call(host, port, "DescribeTable", {"TableName": name})
            if status == OK and doc.get("Table", {}).get("TableStatus", "ACTIVE") == "ACTIVE":
                break
            if time.monotonic() > deadline:
                raise RuntimeError("table %s not ACTIVE after %.0f s: %s" % (name, timeout, doc))
            time.sleep(0.05)


def drop_tables(host: str, port: int) -> None:
    for name in workloads.key_schema_definitions():
        call(host, port, "DeleteTable", {"TableName": name})


# ---------------------------------------------------------------- command line

def format_summary(s: dict) -> str:
    def ms(v):
        return "-" if v is None else "%.3f" % v
    line = ("%-7s %9.0f ops/s  p50 %s ms  p99 %s ms  p99.9 %s ms  ok %d  errors %d"
            % (s.get("workload", "load"), s["ops_per_s"], ms(s["p50_ms"]), ms(s["p99_ms"]),
               ms(s["p999_ms"]), s["ok"], s["errors"]))
    if s["error_samples"]:
        line += "\n  first error: " + s["error_samples"][0]
    return line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workload", default="get",
                    help="comma-separated, of: " + ", ".join(workloads.WORKLOADS))
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per workload")
    ap.add_argument("--max-requests", type=int, default=2_000_000, help="per workload, all processes")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--items", type=int, default=100_000, help="key count (and items loaded with --load)")
    ap.add_argument("--item-size", type=int, default=workloads.DEFAULT_ITEM_SIZE)
    ap.add_argument("--distribution", choices=("uniform", "zipfian"), default="uniform")
    ap.add_argument("--theta", type=float, default=0.99, help="zipfian skew")
    ap.add_argument("--load", action="store_true", help="create the tables and load --items first")
    ap.add_argument("--json", action="store_true", help="print summaries as JSON")
    args = ap.parse_args(argv)
    if args.load:
        ensure_tables(args.host, args.port)
        s = load(args.host, args.port, args.items, args.item_size,
                 min(args.connections, 16), args.processes)
        print("loaded %d items in %.1f s" % (s["items"], s["seconds"]), file=sys.stderr, flush=True)
    for workload in args.workload.split(","):
        spec = LoadSpec(port=args.port, host=args.host, workload=workload.strip(),
                        duration=args.duration, max_requests=args.max_requests,
                        connections=args.connections, processes=args.processes,
                        keys=args.items, item_size=args.item_size,
                        distribution=args.distribution, theta=args.theta)
        summary = run(spec)
        print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
