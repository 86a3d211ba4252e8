"""Per-shard metrics and their Prometheus text rendering.

What it is: `ShardStats`, the counters one shard keeps about itself
(operations and their latency, errors, cross-shard forwards, connections,
event-loop stalls); `LoopStallDetector`, which measures how late the event
loop runs its timers; and `render`, which turns the JSON-able snapshots of
all shards into the Prometheus text exposition format 0.0.4, every series
labelled `shard="<i>"` as Scylla does.

What it owns: metric names, label names, histogram buckets, the snapshot
layout.  Storage and fabric numbers are not counted here: their owners'
`stats()` dicts ride in `snapshot(extra)` and are only renamed and typed.

What it must never do: aggregate across shards (that is the scraper's job),
cost more than a few dictionary operations per request on the hot path, or
block the loop.
"""

from __future__ import annotations

import math
import os
import time
from bisect import bisect_left

# Seconds.  DynamoDB-style operations on one event loop run from tens of
# microseconds (a cached GetItem) to seconds (a 1 MB scan page under load).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

PREFIX = "shardserver_"

# Distinct (op, error type) series kept per shard; later ones count under OTHER_OP.
MAX_ERROR_SERIES = 512
OTHER_OP = "_other"

try:  # psutil is a dependency, but metrics must not die if it misbehaves.
    import psutil as _psutil
except ImportError:  # pragma: no cover - psutil is in pyproject
    _psutil = None


class _OpStats:
    """One operation's latency sum and (non-cumulative) bucket counts; its count is their sum."""

    __slots__ = ("total", "buckets")

    def __init__(self):
        self.total = 0.0
        # One slot per bound plus the +Inf overflow slot.
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    @property
    def count(self) -> int:
        return sum(self.buckets)


class ShardStats:
    """Counters of one shard.  Plain attributes so that hot paths can do
    `stats.forwarded_out += 1` without a call."""

    def __init__(self, shard_id: int):
        self.shard_id = shard_id
        self.ops: dict[str, _OpStats] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.forwarded_out = 0
        self.forwarded_in = 0
        self.open_connections = 0
        self.connections_total = 0
        self.loop_stalls_total = 0
        self.loop_stall_seconds_total = 0.0
        self.loop_stall_max_seconds = 0.0
        self.started_at = time.time()

    def op(self, op: str, seconds: float) -> None:
        """Count one executed operation and its latency."""
        s = self.ops.get(op)
        if s is None:
            s = self.ops[op] = _OpStats()
        s.total += seconds
        s.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def error(self, op: str, type_name: str) -> None:
        """Count one error answer of DynamoDB type `type_name` (short name)."""
        key = (op, type_name)
        n = self.errors.get(key)
        if n is None and len(self.errors) >= MAX_ERROR_SERIES:
            # The op of an UnknownOperationException is whatever the client
            # put in X-Amz-Target: without a cap, a stranger could grow this
            # dict (and every scrape) without bound.
            key = (OTHER_OP, type_name)
            n = self.errors.get(key)
        self.errors[key] = (n or 0) + 1

    def connection_opened(self) -> None:
        self.open_connections += 1
        self.connections_total += 1

    def connection_closed(self) -> None:
        self.open_connections -= 1

    def loop_stall(self, seconds: float) -> None:
        self.loop_stalls_total += 1
        self.loop_stall_seconds_total += seconds
        if seconds > self.loop_stall_max_seconds:
            self.loop_stall_max_seconds = seconds

    def snapshot(self, extra: dict | None = None) -> dict:
        """A JSON-able picture of this shard, to be sent to whoever renders.

        `extra` may carry "storage" (storage.stats()), "fabric"
        (fabric.stats()) and "tables" ({table name: {"items": n, "bytes": n}}
        or {table name: [items, bytes]}); any other key is passed through.
        """
        snap = {
            "shard": self.shard_id,
            "operations": {
                name: {"count": s.count, "sum": s.total, "buckets": list(s.buckets)}
                for name, s in self.ops.items()
            },
            "errors": [
                {"op": op, "type": type_name, "count": n}
                for (op, type_name), n in self.errors.items()
            ],
            "forwarded_out": self.forwarded_out,
            "forwarded_in": self.forwarded_in,
            "open_connections": self.open_connections,
            "connections_total": self.connections_total,
            "loop_stalls_total": self.loop_stalls_total,
            "loop_stall_seconds_total": self.loop_stall_seconds_total,
            "loop_stall_max_seconds": self.loop_stall_max_seconds,
            "process": _process_stats(self.started_at),
        }
        if extra:
            for key, value in extra.items():
                snap.setdefault(str(key), _jsonable(value))
        return snap


def _jsonable(value):
    """Dict keys as strings, tuples as lists: the snapshot crosses shards as JSON
    and the owners' stats() use ints for peer numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _process_stats(started_at: float) -> dict:
    """CPU and memory of this shard's process (one process per shard)."""
    t = os.times()
    out = {
        "cpu_user_seconds": t.user,
        "cpu_system_seconds": t.system,
        "start_time_seconds": started_at,
    }
    if _psutil is not None:
        try:
            p = _psutil.Process()
            out["resident_memory_bytes"] = p.memory_info().rss
            out["cpu"] = p.cpu_num()
        except Exception:  # noqa: BLE001 - a metric must never fail a scrape
            pass
    return out


class LoopStallDetector:
    """Measures event-loop lag with one periodic timer.

    Each tick schedules the next one `interval` seconds ahead and, when it
    runs, compares the wall clock with when it should have run.  A loop that
    was blocked (a long callback, a synchronous disk read) runs the tick
    late by about the blocked time; lateness over `threshold_ms` counts as a
    stall.  Cost: one timer callback per interval, no thread, no signal.
    The measure is a lower bound: a stall that started just before a tick was
    due is seen in full, one that started right after is seen minus up to
    one interval — so the interval is kept well under the threshold.
    """

    def __init__(self, loop, threshold_ms: float, stats: ShardStats, interval_ms: float | None = None):
        self.loop = loop
        self.threshold = threshold_ms / 1000.0
        if interval_ms is None:
            interval_ms = min(max(threshold_ms / 4.0, 5.0), 100.0)
        self.interval = interval_ms / 1000.0
        self.stats = stats
        self.max_lag = 0.0
        self.ticks = 0
        self._handle = None
        self._expected = 0.0

    def start(self) -> None:
        if self._handle is None:
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        # time.monotonic, not loop.time(): uvloop's clock is cached at the
        # start of each loop iteration and would hide time spent inside it.
        self._expected = time.monotonic() + self.interval
        self._handle = self.loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        lag = time.monotonic() - self._expected
        self.ticks += 1
        if lag > self.max_lag:
            self.max_lag = lag
        if lag > self.threshold:
            self.stats.loop_stall(lag)
        self._schedule()


# --- Prometheus text rendering ---------------------------------------------------

# (snapshot key in storage.stats(), metric name, type, help): one key per number.
_STORAGE_METRICS = (
    (("memtable_bytes",), "memtable_bytes", "gauge",
     "Bytes held in memtables (active and flushing) on the shard."),
    (("memtables_flushing",), "memtables_flushing", "gauge",
     "Memtables being flushed to SSTables on the shard."),
    (("sstables_count",), "sstables", "gauge",
     "Live SSTables on the shard."),
    (("sstables_bytes",), "sstable_bytes", "gauge",
     "Bytes of live SSTables on disk on the shard."),
    (("flushes_total",), "flushes_total", "counter",
     "Memtables flushed to SSTables."),
    (("flush_bytes_total",), "flush_bytes_total", "counter",
     "Bytes written by memtable flushes."),
    (("flush_waits_total",), "flush_waits_total", "counter",
     "Writes that waited for a flush because the memtables held twice the flush threshold."),
    (("flush_wait_seconds_total",), "flush_wait_seconds_total", "counter",
     "Time writes spent waiting for a flush (memtables at twice the flush threshold)."),
    (("compactions_total",), "compactions_total", "counter",
     "Compactions completed."),
    (("compaction_bytes_out_total",), "compaction_bytes_total", "counter",
     "Bytes written by compactions."),
    (("compaction_bytes_in_total",), "compaction_read_bytes_total", "counter",
     "Bytes of SSTables merged by compactions."),
    (("tombstones_purged_total",), "tombstones_purged_total", "counter",
     "Tombstones dropped by compaction after the grace period."),
    (("commitlog_bytes_total",), "commitlog_bytes_total", "counter",
     "Bytes appended to the commit log."),
    (("commitlog_syncs_total",), "commitlog_syncs_total", "counter",
     "fsync calls on the commit log (group commits)."),
    (("commitlog_segments",), "commitlog_segments", "gauge",
     "Commit-log segments on disk (not yet deletable)."),
    (("corrupt_records_total",), "commitlog_corrupt_records_total", "counter",
     "Torn or corrupt commit-log records truncated at replay."),
    (("commitlog_write_errors_total",), "commitlog_write_errors_total", "counter",
     "Failed commit-log writes (disk full, I/O errors); writes fail until they succeed again."),
    (("checksum_errors_total",), "sstable_checksum_errors_total", "counter",
     "SSTable blocks whose checksum did not match on read."),
    (("bloom_filter_negatives_total",), "bloom_filter_negatives_total", "counter",
     "SSTables a read skipped because their bloom filter ruled its partition out."),
    (("sstable_reads_total",), "sstable_reads_total", "counter",
     "Point reads that looked into an SSTable's data block."),
    (("row_cache_hits_total",), "cache_hits_total", "counter",
     "Point reads answered by the row cache."),
    (("row_cache_misses_total",), "cache_misses_total", "counter",
     "Point reads that missed the row cache."),
    (("row_cache_bytes",), "row_cache_bytes", "gauge",
     "Bytes held by the row cache (bounded by --row-cache-in-mb)."),
    (("row_cache_evictions_total",), "row_cache_evictions_total", "counter",
     "Rows evicted from the row cache to stay within its limits."),
    (("partition_cache_hits_total",), "partition_cache_hits_total", "counter",
     "One-partition range reads (Query) answered by the partition cache."),
    (("partition_cache_misses_total",), "partition_cache_misses_total", "counter",
     "One-partition range reads that missed the partition cache."),
    (("partition_cache_bytes",), "partition_cache_bytes", "gauge",
     "Bytes held by the partition cache (bounded by --partition-cache-in-mb)."),
    (("partition_cache_partitions",), "partition_cache_partitions", "gauge",
     "Partitions held by the partition cache."),
    (("partition_cache_evictions_total",), "partition_cache_evictions_total", "counter",
     "Partitions evicted from the partition cache to stay within its limit."),
    (("block_cache_bytes",), "block_cache_bytes", "gauge",
     "Bytes held by the SSTable block cache (bounded by --block-cache-in-mb)."),
    (("block_cache_hits_total",), "block_cache_hits_total", "counter",
     "SSTable data-block reads answered by the block cache."),
    (("block_cache_misses_total",), "block_cache_misses_total", "counter",
     "SSTable data-block reads that went to the file (page cache or disk)."),
    (("sstables_memory_bytes",), "sstables_memory_bytes", "gauge",
     "Memory kept by open SSTables (sparse indexes and bloom filters)."),
    (("heap_trims_total",), "heap_trims_total", "counter",
     "Times freed memory was handed back to the operating system after a flush or compaction."),
    (("heap_trim_seconds_total",), "heap_trim_seconds_total", "counter",
     "Time spent handing freed memory back to the operating system."),
    (("background_errors_total",), "storage_background_errors_total", "counter",
     "Flushes or compactions that failed (retried; the data stays in memory and the commit log)."),
    (("aio_reads_total",), "aio_reads_total", "counter",
     "Reads submitted through the shard's AIO context (or its thread fallback)."),
    (("aio_writes_total",), "aio_writes_total", "counter",
     "Writes submitted through the shard's AIO context (or its thread fallback)."),
    (("aio_syncs_total",), "aio_syncs_total", "counter",
     "fdatasync requests submitted through the shard's AIO context (or a thread)."),
    (("aio_read_bytes_total",), "aio_read_bytes_total", "counter",
     "Bytes read through the shard's AIO context (or its thread fallback)."),
    (("aio_write_bytes_total",), "aio_write_bytes_total", "counter",
     "Bytes written through the shard's AIO context (or its thread fallback)."),
    (("aio_queue_depth",), "aio_queue_depth", "gauge",
     "AIO events reserved by the shard (its share of fs.aio-nr)."),
)

_FABRIC_SCALARS = (
    (("ring_full_waits_total", "ring_full_waits", "full_waits"), "ring_full_waits_total", "counter",
     "Times a sender waited because its ring to a peer was full (backpressure)."),
    (("doorbells_total", "doorbells_rung", "doorbells_rung_total"), "ring_doorbells_total", "counter",
     "Doorbells (eventfd writes) rung to wake a sleeping peer."),
    (("batches_flushed_total", "batches_flushed", "flushes_total"), "ring_batches_flushed_total",
     "counter", "Batches of messages published to the rings."),
    (("wakeups_total", "wakeups"), "ring_wakeups_total", "counter",
     "Times this shard was woken by a doorbell after sleeping."),
    (("watchdog_recoveries",), "ring_watchdog_recoveries_total", "counter",
     "Times the fabric's slow re-check timer found work no doorbell had announced (a lost wake-up)."),
)

# Per-peer maps inside fabric.stats(): (aliases, metric, type, help, extra labels)
_MESSAGES_HELP = ("Requests this shard forwarded to the peer (direction=out) or received "
                  "from it (direction=in) over the rings.")
_FABRIC_PER_PEER = (
    (("ring_depth_out", "ring_depth_bytes", "depth_bytes", "ring_depth"), "ring_depth_bytes",
     "gauge", "Bytes in the ring from this shard to the peer, not yet consumed by the peer.", {}),
    (("backlog_bytes",), "ring_backlog_bytes", "gauge",
     "Bytes waiting for space in the ring to the peer (backpressure queue).", {}),
    (("ring_full_waits", "ring_full_waits_total", "full_waits"), "ring_full_waits_total",
     "counter", "Times a sender waited because its ring to a peer was full (backpressure).", {}),
    (("pending",), "ring_pending_requests", "gauge",
     "Requests sent to the peer still waiting for a reply.", {}),
    (("up",), "peer_up", "gauge", "1 when the peer shard is up and serving its rings.", {}),
    (("forwards_sent", "sent", "messages_sent", "sent_total"), "ring_messages_total", "counter",
     _MESSAGES_HELP, {"direction": "out"}),
    (("forwards_received", "received", "messages_received", "received_total"),
     "ring_messages_total", "counter", _MESSAGES_HELP, {"direction": "in"}),
)


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _number(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    return None


def _pick(d: dict, aliases):
    for key in aliases:
        if key in d:
            v = _number(d[key])
            if v is not None:
                return v
    return None


class _Exposition:
    """Collects samples per family so HELP/TYPE come once, samples grouped."""

    def __init__(self):
        self.families: dict[str, tuple[str, str]] = {}
        self.samples: dict[str, list[str]] = {}

    def family(self, name: str, mtype: str, help_text: str | None) -> None:
        full = PREFIX + name
        if full not in self.families:
            self.families[full] = (mtype, help_text or "")
            self.samples[full] = []

    def add(self, name: str, labels: dict, value, suffix: str = "") -> None:
        full = PREFIX + name
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        self.samples[full].append(f"{full}{suffix}{{{label_text}}} {_fmt(value)}")

    def text(self) -> str:
        lines = []
        for full, (mtype, help_text) in self.families.items():
            if not self.samples[full]:
                continue
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {mtype}")
            lines.extend(self.samples[full])
        return "\n".join(lines) + "\n" if lines else ""


def render(snapshots: list[dict]) -> str:
    """Prometheus text format 0.0.4 of the shards' snapshots."""
    ex = _Exposition()
    _declare_core(ex)
    for snap in sorted(snapshots, key=lambda s: s.get("shard", 0)):
        _render_core(ex, snap)
        storage = snap.get("storage")
        if isinstance(storage, dict):
            _render_storage(ex, snap["shard"], storage)
        fabric = snap.get("fabric")
        if isinstance(fabric, dict):
            _render_fabric(ex, snap["shard"], fabric)
        tables = snap.get("tables")
        if isinstance(tables, dict):
            _render_tables(ex, snap["shard"], tables)
        transactions = snap.get("transactions")
        if isinstance(transactions, dict):
            _render_transactions(ex, snap["shard"], transactions)
        streams = snap.get("streams")
        if isinstance(streams, dict):
            _render_counters(ex, snap["shard"], streams, _STREAM_METRICS)
    return ex.text()


_TRANSACTION_METRICS = (
    ("transaction_intents", "transaction_intents", "gauge",
     "Items locked by a prepared, undecided transaction on this shard."),
    ("transaction_decisions", "transaction_decisions", "gauge",
     "Committed transactions this shard coordinates whose participants have not all acknowledged."),
    ("transaction_commits_total", "transaction_commits_total", "counter",
     "Transactions this shard coordinated that committed."),
    ("transaction_aborts_total", "transaction_aborts_total", "counter",
     "Transactions this shard coordinated that were cancelled or aborted."),
    ("transaction_conflicts_total", "transaction_conflicts_total", "counter",
     "Writes and transactional reads refused because an item was locked by another transaction."),
)


_STREAM_METRICS = (
    ("stream_records_written_total", "stream_records_written_total", "counter",
     "DynamoDB Streams records this shard wrote (one per item change on a table with a stream)."),
    ("stream_records_read_total", "stream_records_read_total", "counter",
     "DynamoDB Streams records this shard returned from GetRecords."),
    ("stream_records_trimmed_total", "stream_records_trimmed_total", "counter",
     "DynamoDB Streams records this shard deleted past the retention period."),
)


def _render_counters(ex: _Exposition, shard, values: dict, metrics) -> None:
    for key, name, mtype, help_text in metrics:
        value = _number(values.get(key))
        if value is not None:
            ex.family(name, mtype, help_text)
            ex.add(name, {"shard": str(shard)}, value)


def _render_transactions(ex: _Exposition, shard, transactions: dict) -> None:
    for key, name, mtype, help_text in _TRANSACTION_METRICS:
        value = _number(transactions.get(key))
        if value is not None:
            ex.family(name, mtype, help_text)
            ex.add(name, {"shard": str(shard)}, value)


def _declare_core(ex: _Exposition) -> None:
    ex.family("alternator_operations_total", "counter",
              "DynamoDB API operations executed on this shard (the owner of the key).")
    ex.family("alternator_op_latency_seconds", "histogram",
              "Execution time of DynamoDB API operations on this shard.")
    ex.family("alternator_errors_total", "counter",
              "DynamoDB API errors returned, by operation and error type.")
    ex.family("forwarded_requests_total", "counter",
              "Requests forwarded to the owning shard (direction=out) "
              "or received from an acceptor shard (direction=in).")
    ex.family("open_connections", "gauge", "Client connections currently open on this shard.")
    ex.family("connections_total", "counter", "Client connections accepted by this shard.")
    ex.family("loop_stalls_total", "counter",
              "Times the shard's event loop ran a timer later than the stall threshold.")
    ex.family("loop_stall_seconds_total", "counter", "Sum of the measured event-loop stalls.")
    ex.family("loop_stall_max_seconds", "gauge", "Longest event-loop stall seen since start.")
    ex.family("cpu_seconds_total", "counter", "CPU time used by the shard's process, by mode.")
    ex.family("resident_memory_bytes", "gauge", "Resident memory of the shard's process.")
    ex.family("process_start_time_seconds", "gauge",
              "Start time of the shard's process since the Unix epoch.")
    ex.family("shard_cpu", "gauge", "CPU the shard's process last ran on.")


def _render_core(ex: _Exposition, snap: dict) -> None:
    shard = str(snap.get("shard", 0))
    for op, s in sorted((snap.get("operations") or {}).items()):
        labels = {"op": op, "shard": shard}
        ex.add("alternator_operations_total", labels, s["count"])
        cumulative = 0
        for bound, n in zip(LATENCY_BUCKETS, s["buckets"]):
            cumulative += n
            ex.add("alternator_op_latency_seconds",
                   {"op": op, "shard": shard, "le": _fmt(float(bound))}, cumulative, "_bucket")
        ex.add("alternator_op_latency_seconds",
               {"op": op, "shard": shard, "le": "+Inf"}, s["count"], "_bucket")
        ex.add("alternator_op_latency_seconds", labels, s["sum"], "_sum")
        ex.add("alternator_op_latency_seconds", labels, s["count"], "_count")
    for e in sorted(snap.get("errors") or (), key=lambda e: (e["op"], e["type"])):
        ex.add("alternator_errors_total", {"op": e["op"], "type": e["type"], "shard": shard},
               e["count"])
    ex.add("forwarded_requests_total", {"direction": "out", "shard": shard},
           snap.get("forwarded_out", 0))
    ex.add("forwarded_requests_total", {"direction": "in", "shard": shard},
           snap.get("forwarded_in", 0))
    for key in ("open_connections", "connections_total", "loop_stalls_total",
                "loop_stall_seconds_total", "loop_stall_max_seconds"):
        if key in snap:
            ex.add(key, {"shard": shard}, snap[key])
    proc = snap.get("process") or {}
    if "cpu_user_seconds" in proc:
        ex.add("cpu_seconds_total", {"mode": "user", "shard": shard}, proc["cpu_user_seconds"])
        ex.add("cpu_seconds_total", {"mode": "system", "shard": shard}, proc["cpu_system_seconds"])
    if "resident_memory_bytes" in proc:
        ex.add("resident_memory_bytes", {"shard": shard}, proc["resident_memory_bytes"])
    if "start_time_seconds" in proc:
        ex.add("process_start_time_seconds", {"shard": shard}, proc["start_time_seconds"])
    if "cpu" in proc:
        ex.add("shard_cpu", {"shard": shard}, proc["cpu"])


def _render_storage(ex: _Exposition, shard, storage: dict) -> None:
    shard = str(shard)
    for aliases, name, mtype, help_text in _STORAGE_METRICS:
        value = _pick(storage, aliases)
        if value is not None:
            ex.family(name, mtype, help_text)
            ex.add(name, {"shard": shard}, value)
    mode = storage.get("aio_mode")
    if isinstance(mode, str):
        ex.family("aio_mode", "gauge",
                  "1 for the I/O mode the shard's storage runs in (linux-aio or threads).")
        ex.add("aio_mode", {"mode": mode, "shard": shard}, 1)


def _render_fabric(ex: _Exposition, shard, fabric: dict) -> None:
    shard = str(shard)
    per_peer = _per_peer_maps(fabric)
    emitted = set()
    for aliases, name, mtype, help_text, extra_labels in _FABRIC_PER_PEER:
        values = None
        for key in aliases:
            if isinstance(per_peer.get(key), dict):
                values = per_peer[key]
                break
        if not values:
            continue
        ex.family(name, mtype, help_text)
        for peer in sorted(values, key=_peer_order):
            v = _number(values[peer])
            if v is not None:
                ex.add(name, {"peer": str(peer), **extra_labels, "shard": shard}, v)
                emitted.add(name)
    for aliases, name, mtype, help_text in _FABRIC_SCALARS:
        if name in emitted:
            continue  # already broken down by peer; a total would double count
        value = _pick(fabric, aliases)
        if value is not None:
            ex.family(name, mtype, help_text)
            ex.add(name, {"shard": shard}, value)


def _per_peer_maps(fabric: dict) -> dict:
    """Accept both {"ring_depth_bytes": {peer: n}} and {"peers": {peer: {"ring_depth_bytes": n}}}."""
    maps = {k: v for k, v in fabric.items() if isinstance(v, dict) and k != "peers"}
    peers = fabric.get("peers")
    if isinstance(peers, dict):
        for peer, fields in peers.items():
            if isinstance(fields, dict):
                for key, value in fields.items():
                    maps.setdefault(key, {})[peer] = value
    return maps


def _peer_order(peer):
    try:
        return (0, int(peer), "")
    except (TypeError, ValueError):
        return (1, 0, str(peer))


def _render_tables(ex: _Exposition, shard, tables: dict) -> None:
    shard = str(shard)
    ex.family("table_items", "gauge", "Live items of the table owned by this shard.")
    ex.family("table_bytes", "gauge",
              "Bytes of the live items of the table owned by this shard (stored encoding).")
    for table in sorted(tables):
        t = tables[table]
        if isinstance(t, dict):
            items, nbytes = t.get("items"), t.get("bytes")
        elif isinstance(t, (list, tuple)) and len(t) == 2:
            items, nbytes = t
        else:
            continue
        if _number(items) is not None:
            ex.add("table_items", {"table": table, "shard": shard}, items)
        if _number(nbytes) is not None:
            ex.add("table_bytes", {"table": table, "shard": shard}, nbytes)
