"""Smoke tests of bench/: the request bytes, the load generator, the comparison and locust.

Everything runs on 127.0.0.1 with tiny counts; the whole file stays well
under a minute.  Servers started here are stopped by pid.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import orjson
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
sys.path.insert(0, BENCH)

import loadgen  # noqa: E402
import report  # noqa: E402
import targets  # noqa: E402
import workloads  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server on port %d not ready" % port)


@pytest.fixture
def null_server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(BENCH, "nullserver.py"),
                             "--port", str(port), "--workers", "1"])
    try:
        wait_ready(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- request bytes

def test_bodies_are_the_json_they_claim():
    payload = workloads.PayloadPool(1024, variants=3)
    b = workloads.BodyBuilder(payload)
    get = orjson.loads(b.get_item("k000000001"))
    assert get == {"TableName": "bench_kv", "Key": {"pk": {"S": "k000000001"}}}
    put = orjson.loads(b.put_item("k000000002", 1))
    assert put["Item"]["pk"] == {"S": "k000000002"}
    size = sum(len(k) + len(v["S"]) for k, v in put["Item"].items())
    assert 950 <= size <= 1100, size
    upd = orjson.loads(b.update_item("k000000003"))
    assert upd["UpdateExpression"] == "SET #c = if_not_exists(#c, :zero) + :one"
    assert upd["ExpressionAttributeValues"] == {":zero": {"N": "0"}, ":one": {"N": "1"}}
    q = orjson.loads(b.query("p000000004"))
    assert q["ExpressionAttributeValues"][":p"] == {"S": "p000000004"}
    keys = ["k%09d" % i for i in range(25)]
    batch = orjson.loads(b.batch_write(keys))
    puts = batch["RequestItems"]["bench_kv"]
    assert [p["PutRequest"]["Item"]["pk"]["S"] for p in puts] == keys
    get_keys = ["k%09d" % i for i in range(100)]
    batch_get = orjson.loads(b.batch_get(get_keys))
    assert batch_get == {"RequestItems": {"bench_kv": {"Keys": [{"pk": {"S": k}} for k in get_keys]}}}


def test_load_plan_covers_every_item_once_across_loaders():
    items, parts = 1234, 3
    seen_kv, seen_q = [], []
    for part in range(parts):
        for body in workloads.load_batches(items, 200, part, parts):
            req = orjson.loads(body)["RequestItems"]
            (table, writes), = req.items()
            assert 1 <= len(writes) <= 25
            for w in writes:
                item = w["PutRequest"]["Item"]
                if table == "bench_kv":
                    seen_kv.append(item["pk"]["S"])
                else:
                    seen_q.append((item["pk"]["S"], item["sk"]["N"]))
    assert sorted(seen_kv) == [workloads.kv_key(i) for i in range(items)]
    assert len(set(seen_q)) == len(seen_q) == (items // 10) * 10
    # Growing the data set only writes the new keys.
    grown = [orjson.loads(b) for b in workloads.load_batches(1300, 200, start=1234,
                                                             tables=(workloads.KV_TABLE,))]
    new = [w["PutRequest"]["Item"]["pk"]["S"] for r in grown for w in r["RequestItems"]["bench_kv"]]
    assert new == [workloads.kv_key(i) for i in range(1234, 1300)]


def test_zipfian_is_skewed_and_uniform_is_not():
    n, draws = 10_000, 200_000
    zipf = np.bincount(workloads.KeyChooser(n, "zipfian", seed=3).draw(draws), minlength=n)
    uni = np.bincount(workloads.KeyChooser(n, "uniform", seed=3).draw(draws), minlength=n)
    assert zipf.max() > 0.05 * draws           # one hot key takes several percent
    assert uni.max() < 0.001 * draws
    assert zipf.argmax() != 0                  # ranks are scrambled over the key space
    distinct = workloads.KeyChooser(n, "zipfian", seed=4).draw_distinct(25)
    assert len(set(distinct)) == 25


def test_summary_percentiles():
    raw = [{"latencies_ns": np.arange(1, 1001, dtype=np.int64) * 1000, "ops": np.zeros(1000, np.int8),
            "statuses": {200: 990, 400: 10}, "errors": 10, "error_samples": ["x"], "abandoned": 0,
            "first_send": 5_000, "last_done": 2_000_005_000, "retries": 0, "sent": 1000}]
    s = loadgen.summarize(raw, ("GetItem",))
    assert s["completed"] == 1000 and s["ok"] == 990 and s["errors"] == 10
    assert s["ops_per_s"] == pytest.approx(495.0)
    assert s["p50_ms"] == pytest.approx(0.5, rel=0.01)
    assert s["p99_ms"] == pytest.approx(0.99, rel=0.01)


def test_metrics_parsing_counts_each_forward_once():
    text = textwrap.dedent("""\
        # TYPE shardserver_forwarded_requests_total counter
        shardserver_forwarded_requests_total{direction="out",shard="0"} 5
        shardserver_forwarded_requests_total{direction="in",shard="1"} 5
        shardserver_forwarded_requests_total{direction="out",shard="1"} 7
        shardserver_ring_messages_total{peer="1",direction="out",shard="0"} 30
        shardserver_ring_messages_total{peer="1",direction="in",shard="0"} 20
        shardserver_ring_messages_total{peer="0",direction="out",shard="1"} 20
        shardserver_ring_messages_total{peer="0",direction="in",shard="1"} 30
        shardserver_commitlog_syncs_total{shard="0"} 3
        shardserver_commitlog_syncs_total{shard="1"} 4
        """)
    assert targets.parse_metrics(text) == {"forwarded": 12.0, "ring_messages": 50.0, "commitlog_syncs": 7.0}


# ---------------------------------------------------------------- load generator

def test_loadgen_bounds_and_reconnects_on_connection_close(tmp_path):
    # A server that closes every connection after one answer, as moto's does.
    script = tmp_path / "closing.py"
    script.write_text(textwrap.dedent("""\
        import sys
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            def log_message(self, *a):
                pass
        ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
        """))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        wait_ready(port, proc)
        spec = loadgen.LoadSpec(port=port, workload="put", duration=5.0, max_requests=300,
                                connections=4, processes=2, keys=100, item_size=200)
        s = loadgen.run(spec)
    finally:
        proc.terminate()
        proc.wait(10)
    assert s["ok"] == 300 and s["errors"] == 0, s["error_samples"]
    assert s["sent"] == 300                   # the request bound holds across processes


def test_loadgen_against_null_server(null_server):
    loadgen.ensure_tables("127.0.0.1", null_server)
    spec = loadgen.LoadSpec(port=null_server, workload="mix50", duration=0.3, max_requests=100_000,
                            connections=4, processes=2, keys=100, item_size=300)
    t0 = time.monotonic()
    s = loadgen.run(spec)
    assert time.monotonic() - t0 < 10
    assert s["errors"] == 0 and s["ok"] > 100
    assert 0.2 < s["elapsed_s"] < 2.0          # the duration bound holds
    assert set(s["per_operation"]) == {"GetItem", "PutItem"}
    assert s["per_operation"]["GetItem"]["count"] > 0 and s["per_operation"]["PutItem"]["count"] > 0


# ---------------------------------------------------------------- compare.py and locust

def test_compare_quick(tmp_path):
    cmd = [sys.executable, os.path.join(BENCH, "compare.py"), "--quick",
           "--targets", "null,shardserver-smp1", "--workloads", "get,put,query,batchget",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    names = ["report.md", "results.json"]
    if importlib.util.find_spec("matplotlib") is not None:
        names.append("report.png")
    for name in names:
        assert (run_dir / name).stat().st_size > 0, name
    results = json.loads((run_dir / "results.json").read_text())
    by = {t["name"]: t for t in results["targets"]}
    null = by["null"]["workloads"]
    for w in ("get", "put", "query"):
        assert null[w]["ops_per_s"] > 0 and null[w]["errors"] == 0
        assert null[w]["p99_ms"] > 0
        assert null[w]["cpu_us_per_op"] > 0
    md = (run_dir / "report.md").read_text()
    assert re.search(r"^\| null \| [\d,]+ \| [\d.]+ \|", md, re.M), md[:2000]
    assert "## Performance targets of issues 5 and 7" in md
    ss = by["shardserver-smp1"]
    assert "failed" not in ss, (ss.get("failed"), ss.get("log_tail"))
    if "skipped" not in ss:
        for w in ("get", "put", "query", "batchget"):
            assert ss["workloads"][w]["ok"] > 0, ss["workloads"][w]["error_samples"]
            assert ss["workloads"][w]["errors"] == 0, ss["workloads"][w]["error_samples"]
        assert ss["workloads"]["get"]["memory"]["shards_rss"][0] > 0
        assert ss["workloads"]["get"]["forwards_per_request"] == 0   # one shard forwards nothing


def test_report_judges_targets_from_numbers():
    def wl(ops, cpu, p99):
        return {"ops_per_s": ops, "cpu_us_per_op": cpu, "p99_ms": p99, "completed": 100}
    results = {"config": {"connections": 32}, "targets": [
        {"name": "null", "kind": "null", "workloads": {"get": wl(90000, 10.0, 0.5)}},
        {"name": "dynalite", "kind": "dynalite", "workloads": {"get": wl(15000, 50.0, 3.0)}},
        {"name": "shardserver-smp2", "kind": "shardserver", "smp": 2, "args": [],
         "workloads": {"get": wl(50000, 24.0, 2.5)}},
    ]}
    rows = {r["target"]: r for r in report.evaluate(results)}
    assert rows["GetItem: server CPU/op vs null"]["met"] is True        # 2.4x <= 2.5x
    assert rows["GetItem: ops/s vs dynalite"]["met"] is True            # 3.33x >= 3x
    assert rows["GetItem: p99 latency at 32 connections"]["met"] is False
    assert rows["PutItem: server CPU/op vs null"]["met"] is None        # not measured
    assert rows["Query of a 10-item partition: server CPU vs one GetItem"]["met"] is None
    results["targets"][2]["workloads"].update(query=wl(20000, 47.0, 3.0), batchget=wl(2000, 700.0, 9.0))
    rows = {r["target"]: r for r in report.evaluate(results)}
    assert rows["Query of a 10-item partition: server CPU vs one GetItem"]["met"] is True    # 1.96x
    assert rows["BatchGetItem of 100 keys: server CPU vs 100 GetItems"]["met"] is False     # 0.29x


def test_locust_headless_against_null_server(null_server):
    # Only look for locust: importing it here would monkey-patch this test process (gevent).
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (pip install -e '.[bench]')")
    cmd = [sys.executable, "-m", "locust", "-f", os.path.join(BENCH, "locustfile.py"),
           "--headless", "-u", "2", "-r", "2", "-t", "3s", "--only-summary",
           "--host", "http://127.0.0.1:%d" % null_server,
           "--ddb-workload", "mix50", "--ddb-keys", "50", "--ddb-item-size", "200"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for op in ("GetItem", "PutItem"):
        m = re.search(r"POST\s+%s\s+(\d+)\s+0\(" % op, out)
        assert m and int(m.group(1)) > 0, out[-3000:]
