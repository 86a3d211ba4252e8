"""Per-shard metrics: counters, histogram, loop-stall detection, and the
Prometheus text output as prometheus_client's own parser reads it."""

import asyncio
import time

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shardserver.logs import parse_levels, setup_logging
from shardserver.shard.stats import LATENCY_BUCKETS, LoopStallDetector, ShardStats, render


def parse(text):
    """{(sample name, frozenset(labels)): value} plus {family: type}."""
    samples, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples, types


def L(**labels):
    return frozenset(labels.items())


def wire(snapshot):
    # Snapshots travel between shards as JSON: the renderer must take that form.
    return orjson.loads(orjson.dumps(snapshot))


def busy_shard(shard_id):
    s = ShardStats(shard_id)
    for seconds in (0.00005, 0.0003, 0.0003, 0.004, 0.2, 30.0):
        s.op("PutItem", seconds)
    s.op("GetItem", 0.001)
    s.error("PutItem", "ConditionalCheckFailedException")
    s.error("PutItem", "ConditionalCheckFailedException")
    s.error("GetItem", "ResourceNotFoundException")
    s.forwarded_out += 3
    s.forwarded_in += 5
    s.connection_opened()
    s.connection_opened()
    s.connection_closed()
    s.loop_stall(0.05)
    s.loop_stall(0.2)
    return s


EXTRA = {
    "storage": {
        "memtable_bytes": 1234, "sstables_count": 3, "sstables_bytes": 99999,
        "flushes_total": 4, "compactions_total": 1, "commitlog_bytes_total": 5555,
        "commitlog_syncs_total": 17, "commitlog_segments": 2, "corrupt_records_total": 0,
        "checksum_errors_total": 0, "aio_mode": "linux-aio",
        "something_new": 12, "a_string": "ignored",
    },
    "fabric": {
        "ring_depth_bytes": {"0": 128, "2": 0},
        "ring_full_waits_total": 7,
        "doorbells_total": 9,
        "peers": {"0": {"sent": 10, "received": 11}, "2": {"sent": 1, "received": 0}},
    },
    "tables": {"users": {"items": 10, "bytes": 2048}, 'we"ird\\name': [1, 2]},
}


def test_counters_and_histogram():
    samples, types = parse(render([wire(busy_shard(1).snapshot(EXTRA))]))
    assert types["shardserver_alternator_op_latency_seconds"] == "histogram"
    assert types["shardserver_alternator_operations"] == "counter"
    assert samples[("shardserver_alternator_operations_total", L(op="PutItem", shard="1"))] == 6
    assert samples[("shardserver_alternator_operations_total", L(op="GetItem", shard="1"))] == 1
    h = "shardserver_alternator_op_latency_seconds"
    assert samples[(h + "_count", L(op="PutItem", shard="1"))] == 6
    assert samples[(h + "_sum", L(op="PutItem", shard="1"))] == pytest.approx(30.20465)
    assert samples[(h + "_bucket", L(op="PutItem", shard="1", le="0.0001"))] == 1
    assert samples[(h + "_bucket", L(op="PutItem", shard="1", le="0.0005"))] == 3
    assert samples[(h + "_bucket", L(op="PutItem", shard="1", le="0.005"))] == 4
    assert samples[(h + "_bucket", L(op="PutItem", shard="1", le="0.25"))] == 5
    assert samples[(h + "_bucket", L(op="PutItem", shard="1", le="10.0"))] == 5
    assert samples[(h + "_bucket", L(op="PutItem", shard="1", le="+Inf"))] == 6
    # Cumulative buckets never decrease.
    values = [samples[(h + "_bucket", L(op="PutItem", shard="1", le=le))]
              for le in [repr(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]]
    assert values == sorted(values)
    e = "shardserver_alternator_errors_total"
    assert samples[(e, L(op="PutItem", type="ConditionalCheckFailedException", shard="1"))] == 2
    assert samples[(e, L(op="GetItem", type="ResourceNotFoundException", shard="1"))] == 1
    f = "shardserver_forwarded_requests_total"
    assert samples[(f, L(direction="out", shard="1"))] == 3
    assert samples[(f, L(direction="in", shard="1"))] == 5
    assert samples[("shardserver_open_connections", L(shard="1"))] == 1
    assert samples[("shardserver_connections_total", L(shard="1"))] == 2
    assert samples[("shardserver_loop_stalls_total", L(shard="1"))] == 2
    assert samples[("shardserver_loop_stall_max_seconds", L(shard="1"))] == 0.2
    assert samples[("shardserver_loop_stall_seconds_total", L(shard="1"))] == pytest.approx(0.25)


def test_storage_fabric_tables():
    samples, types = parse(render([wire(busy_shard(1).snapshot(EXTRA))]))
    one = L(shard="1")
    assert samples[("shardserver_memtable_bytes", one)] == 1234
    assert samples[("shardserver_sstables", one)] == 3
    assert samples[("shardserver_sstable_bytes", one)] == 99999
    assert samples[("shardserver_flushes_total", one)] == 4
    assert samples[("shardserver_compactions_total", one)] == 1
    assert samples[("shardserver_commitlog_bytes_total", one)] == 5555
    assert samples[("shardserver_commitlog_syncs_total", one)] == 17
    assert samples[("shardserver_commitlog_segments", one)] == 2
    assert samples[("shardserver_aio_mode", L(mode="linux-aio", shard="1"))] == 1
    assert samples[("shardserver_ring_depth_bytes", L(peer="0", shard="1"))] == 128
    assert samples[("shardserver_ring_depth_bytes", L(peer="2", shard="1"))] == 0
    assert samples[("shardserver_ring_full_waits_total", one)] == 7
    assert samples[("shardserver_ring_doorbells_total", one)] == 9
    m = "shardserver_ring_messages_total"
    assert samples[(m, L(peer="0", direction="out", shard="1"))] == 10
    assert samples[(m, L(peer="0", direction="in", shard="1"))] == 11
    assert samples[("shardserver_table_items", L(table="users", shard="1"))] == 10
    assert samples[("shardserver_table_bytes", L(table="users", shard="1"))] == 2048
    assert samples[("shardserver_table_items", L(table='we"ird\\name', shard="1"))] == 1
    assert types["shardserver_memtable_bytes"] == "gauge"
    assert types["shardserver_flushes"] == "counter"


def test_every_series_labelled_with_its_shard_and_help_once():
    snaps = [wire(busy_shard(i).snapshot(EXTRA)) for i in (2, 0, 1)]
    text = render(snaps)
    seen_help = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in seen_help, f"HELP twice for {name}"
            seen_help.add(name)
        elif line.startswith("# TYPE "):
            assert line.split()[2] in seen_help
        else:
            assert 'shard="' in line, line
    samples, _ = parse(text)
    for shard in ("0", "1", "2"):
        assert samples[("shardserver_alternator_operations_total",
                        L(op="PutItem", shard=shard))] == 6


def test_missing_extra_keys_are_fine():
    samples, _ = parse(render([wire(ShardStats(0).snapshot({"storage": {}, "fabric": {}}))]))
    assert ("shardserver_open_connections", L(shard="0")) in samples
    assert not any(name == "shardserver_memtable_bytes" for name, _ in samples)
    assert render([]) == ""


def test_process_metrics_present():
    samples, _ = parse(render([wire(ShardStats(0).snapshot())]))
    assert samples[("shardserver_cpu_seconds_total", L(mode="user", shard="0"))] >= 0
    assert samples[("shardserver_resident_memory_bytes", L(shard="0"))] > 0


def test_op_is_cheap():
    s = ShardStats(0)
    n = 100_000
    t0 = time.perf_counter()
    for i in range(n):
        s.op("GetItem", 0.0002)
    per_call = (time.perf_counter() - t0) / n
    assert s.ops["GetItem"].count == n
    # Generous bound for slow CI machines; typical is well under 1 us.
    assert per_call < 20e-6


def test_loop_stall_detector_counts_a_blocked_loop():
    stats = ShardStats(0)

    async def run():
        loop = asyncio.get_running_loop()
        det = LoopStallDetector(loop, threshold_ms=100, stats=stats, interval_ms=10)
        det.start()
        await asyncio.sleep(0.05)
        before = stats.loop_stalls_total
        time.sleep(0.4)           # block the loop on purpose
        await asyncio.sleep(0.05)
        det.stop()
        return before, det

    before, det = asyncio.run(run())
    assert stats.loop_stalls_total - before >= 1
    assert 0.3 < stats.loop_stall_max_seconds < 2.0
    assert det._handle is None


def test_loop_stall_detector_quiet_loop_counts_nothing():
    stats = ShardStats(0)

    async def run():
        det = LoopStallDetector(asyncio.get_running_loop(), threshold_ms=1000, stats=stats,
                                interval_ms=5)
        det.start()
        await asyncio.sleep(0.1)
        det.stop()
        return det

    det = asyncio.run(run())
    assert stats.loop_stalls_total == 0
    # It did run: ~20 ticks, each measuring a small lag.
    assert det.ticks >= 5
    assert det.max_lag < 1.0


def test_loop_stall_detector_under_uvloop():
    uvloop = pytest.importorskip("uvloop")
    stats = ShardStats(0)

    async def run():
        det = LoopStallDetector(asyncio.get_running_loop(), threshold_ms=50, stats=stats)
        det.start()
        await asyncio.sleep(0.05)
        time.sleep(0.2)
        await asyncio.sleep(0.05)
        det.stop()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    assert stats.loop_stalls_total >= 1
    assert stats.loop_stall_max_seconds > 0.1


# --- logging (shardserver/logs.py) ---------------------------------------------------

@pytest.fixture
def restore_logging():
    """setup_logging changes process-wide state; give other tests theirs back."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {n: logging.getLogger(n).level
             for n in ("shardserver.requests", "shardserver.storage")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for n, lvl in named.items():
        logging.getLogger(n).setLevel(lvl)
    logging.captureWarnings(False)


def test_log_lines_name_the_shard(restore_logging):
    import io
    import logging

    buf = io.StringIO()
    setup_logging("info", shard=3, stream=buf)
    try:
        logging.getLogger("shardserver.storage").info("flushed memtable of %s", "t1")
        logging.getLogger("shardserver.requests").info("PutItem t1")  # off by default
        logging.getLogger("shardserver.storage").debug("not shown")
        logging.getLogger("shardserver.x").warning("two\nlines")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("shardserver.x").exception("failed")
    finally:
        setup_logging("warning", shard=None, stream=io.StringIO())
    lines = buf.getvalue().splitlines()
    assert "INFO  shard 3: [storage] flushed memtable of t1" in lines[0]
    assert not any("PutItem" in x or "not shown" in x for x in lines)
    assert lines[1].endswith("shard 3: [x] two\\nlines")
    assert all(" shard 3: " in x for x in lines)
    assert any("RuntimeError: boom" in x for x in lines)


def test_log_levels_per_logger(restore_logging):
    import io
    import logging

    buf = io.StringIO()
    setup_logging("warning,storage=debug,shardserver.requests=info", shard=None, stream=buf)
    try:
        logging.getLogger("shardserver.storage").debug("d1")
        logging.getLogger("shardserver.requests").info("r1")
        logging.getLogger("shardserver.other").info("hidden")
    finally:
        setup_logging("warning", shard=None, stream=io.StringIO())
    text = buf.getvalue()
    assert "supervisor: [storage] d1" in text and "r1" in text and "hidden" not in text
    # The override is gone after the next setup.
    assert logging.getLogger("shardserver.storage").level == logging.NOTSET
    with pytest.raises(ValueError, match="unknown log level"):
        parse_levels("loud")
    assert parse_levels("debug") == (logging.DEBUG, {})


def test_fabric_stats_shape_of_the_smp_module():
    """The shape shardserver.reactor.smp.Fabric.stats() returns."""
    fabric = {
        "shard": 1,
        "peers": {
            0: {"up": True, "forwards_sent": 4, "forwards_received": 6, "pending": 1,
                "ring_depth_out": 256, "ring_depth_in": 64, "backlog_bytes": 0,
                "ring_full_waits": 2},
            2: {"up": False, "forwards_sent": 0, "forwards_received": 0, "pending": 0,
                "ring_depth_out": 0, "ring_depth_in": 0, "backlog_bytes": 0,
                "ring_full_waits": 0},
        },
        "doorbells_rung": 3, "batches_flushed": 5, "wakeups": 8,
    }
    storage = {"aio_mode": "threads", "aio_queue_depth": 128, "aio_reads_total": 9,
               "aio_read_bytes_total": 36864}
    samples, _ = parse(render([wire(ShardStats(1).snapshot({"fabric": fabric,
                                                            "storage": storage}))]))
    assert samples[("shardserver_ring_depth_bytes", L(peer="0", shard="1"))] == 256
    assert samples[("shardserver_ring_full_waits_total", L(peer="0", shard="1"))] == 2
    assert ("shardserver_ring_full_waits_total", L(shard="1")) not in samples
    assert samples[("shardserver_peer_up", L(peer="2", shard="1"))] == 0
    assert samples[("shardserver_ring_pending_requests", L(peer="0", shard="1"))] == 1
    assert samples[("shardserver_ring_messages_total",
                    L(peer="0", direction="in", shard="1"))] == 6
    assert samples[("shardserver_ring_doorbells_total", L(shard="1"))] == 3
    assert samples[("shardserver_ring_batches_flushed_total", L(shard="1"))] == 5
    assert samples[("shardserver_ring_wakeups_total", L(shard="1"))] == 8
    assert samples[("shardserver_aio_mode", L(mode="threads", shard="1"))] == 1
    assert samples[("shardserver_aio_queue_depth", L(shard="1"))] == 128
    assert samples[("shardserver_aio_read_bytes_total", L(shard="1"))] == 36864
