"""Storage-engine benchmark of one shard: GetItem from memtable vs SSTables, small vs large
tables, PutItem with and without the commit log (issue #3).

Owns: starting ``python -m shardserver --smp 1 --developer-mode`` on a temporary
data directory with free loopback ports, restarting it on the same directory
(a clean shutdown flushes the memtables, so the data is then read from
SSTables), loading and reading it with bench/loadgen.py, and measuring the
server's CPU (psutil user+sys of its whole process tree) per operation.
Prints a Markdown table; ``--json`` writes every number to a file.

It only ever talks to 127.0.0.1, stops only the processes it started (by the
pids it recorded), deletes only the directories it created, and every phase is
bounded: a duration and a request count per run, a timeout per load.

    python bench/storage_bench.py                       # every scenario, ~10-15 minutes
    python bench/storage_bench.py --scenarios get,put   # just a) b) and d)
    python bench/storage_bench.py --large-items 1000000 # c) with a smaller large table
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)
import loadgen  # noqa: E402
import targets  # noqa: E402
import workloads  # noqa: E402

HOST = "127.0.0.1"


class Server:
    """One shardserver --smp 1 on a data directory this object created; restartable."""

    def __init__(self, extra_args: tuple[str, ...] = ()):
        self.extra_args = tuple(extra_args)
        self.data_dir = tempfile.mkdtemp(prefix="shardserver-storage-bench-")
        self.log_path = os.path.join(self.data_dir + "-logs", "server.log")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.metrics_port = 0
        self._pids: set[int] = set()

    def start(self, extra_args: tuple[str, ...] | None = None, timeout: float = 120.0) -> None:
        if extra_args is not None:
            self.extra_args = tuple(extra_args)
        self.port = targets.free_port()
        self.metrics_port = targets.free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_DIR + os.pathsep + env.get("PYTHONPATH", "")
        argv = [sys.executable, "-m", "shardserver", "--smp", "1", "--developer-mode",
                "--alternator-address", HOST, "--alternator-port", str(self.port),
                "--prometheus-port", str(self.metrics_port), "--data-dir", self.data_dir,
                *self.extra_args]
        with open(self.log_path, "ab") as log:
            log.write(("\n=== %s\n" % " ".join(argv)).encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=REPO_DIR)
        self._pids.add(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s at start; see %s"
                                   % (self.proc.returncode, self.log_path))
            try:
                status, _ = loadgen.call(HOST, self.port, "ListTables", {}, timeout=5)
                if status == 200:
                    self._remember()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server not ready after %.0f s; see %s" % (timeout, self.log_path))

    def _tree(self) -> list[psutil.Process]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return targets.process_tree(self.proc)

    def _remember(self) -> None:
        self._pids.update(p.pid for p in self._tree())

    def cpu(self) -> float:
        """user+sys seconds of the server's process tree."""
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def wait_idle(self, timeout: float = 300.0, busy_fraction: float = 0.05) -> float:
        """Wait until the server uses under busy_fraction of a CPU (flush, compaction done)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            before = self.cpu()
            time.sleep(1.0)
            if self.cpu() - before < busy_fraction:
                break
        return time.monotonic() - t0

    def sstable_files(self) -> int:
        """SSTable files on disk, every table (only the key-value table holds data here)."""
        count = 0
        for _root, _dirs, files in os.walk(self.data_dir):
            count += sum(1 for f in files if f.startswith("sst-") and f.endswith(".db"))
        return count

    def metric(self, name: str) -> float:
        import urllib.request
        try:
            with urllib.request.urlopen("http://%s:%d/metrics" % (HOST, self.metrics_port),
                                        timeout=10) as resp:
                text = resp.read().decode()
        except OSError:
            return float("nan")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, timeout: float = 300.0) -> None:
        """SIGTERM (clean shutdown: memtables are flushed), then SIGKILL what is left of ours."""
        if self.proc is None:
            return
        self._remember()
        targets.stop_process_tree(self.proc, self._pids, timeout)
        self._pids.clear()
        self.proc = None

    def restart(self, extra_args: tuple[str, ...] | None = None) -> None:
        self.stop()
        self.start(extra_args)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(os.path.dirname(self.log_path), ignore_errors=True)


def measure(server: Server, workload: str, keys: int, item_size: int, args) -> dict:
    """One bounded loadgen run; server CPU between the workers' start and their report."""
    marks = {}
    spec = loadgen.LoadSpec(port=server.port, host=HOST, workload=workload,
                            duration=args.duration, max_requests=args.max_requests,
                            connections=args.connections, processes=args.processes,
                            keys=keys, item_size=item_size, grace=30.0)
    server.wait_idle()
    s = loadgen.run(spec, on_start=lambda: marks.setdefault("cpu0", server.cpu()),
                    on_finish=lambda: marks.setdefault("cpu1", server.cpu()))
    cpu = marks["cpu1"] - marks["cpu0"]
    if s["errors"] or not s["ok"]:
        raise RuntimeError("%s run failed: %s" % (workload, s["error_samples"][:2]))
    return {"ops": s["ok"], "ops_per_s": s["ops_per_s"], "cpu_us_per_op": cpu / s["ok"] * 1e6,
            "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"]}


def best_of(server: Server, workload: str, keys: int, item_size: int, args) -> dict:
    """The run with the lowest CPU/op of --repeat runs (other load on the machine only adds)."""
    runs = [measure(server, workload, keys, item_size, args) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["cpu_us_per_op"])
    best["runs_cpu_us_per_op"] = [round(r["cpu_us_per_op"], 1) for r in runs]
    return best


def load(server: Server, items: int, item_size: int, timeout: float) -> float:
    t0 = time.monotonic()
    loadgen.ensure_tables(HOST, server.port)
    loadgen.load(HOST, server.port, items, item_size, connections=16, processes=2,
                 timeout=timeout, tables=(workloads.KV_TABLE,))
    return time.monotonic() - t0


def scenario_get(args, results: list) -> None:
    """a) memtable vs b) SSTables with the row cache off, same data set."""
    for items in args.get_items:
        server = Server()
        try:
            # a memtable big enough to hold the whole set, so a) never reads an SSTable
            server.start(("--row-cache-in-mb", "0", "--memtable-flush-threshold-in-mb", "1024"))
            load(server, items, args.item_size, args.load_timeout)
            r = best_of(server, "get", items, args.item_size, args)
            results.append({"scenario": "a) GetItem from memtable", "items": items,
                            "item_size": args.item_size, **r})
            server.restart()   # clean shutdown flushed everything to SSTables
            r = best_of(server, "get", items, args.item_size, args)
            r["sstables"] = server.sstable_files()
            results.append({"scenario": "b) GetItem from SSTables, row cache off", "items": items,
                            "item_size": args.item_size, **r})
        finally:
            server.remove()


def scenario_size(args, results: list) -> None:
    """c) random GetItem at 10k items vs a large table, row cache off and default."""
    base = tuple(args.size_server_args.split())
    for items in (args.small_items, args.large_items):
        server = Server()
        try:
            server.start(base)
            seconds = load(server, items, args.size_item_size, args.load_timeout)
            server.restart(base + ("--row-cache-in-mb", "0"))
            server.wait_idle()
            for label, extra in (("row cache off", base + ("--row-cache-in-mb", "0")),
                                 ("default row cache", base)):
                if extra != server.extra_args:
                    server.restart(extra)
                r = best_of(server, "get", items, args.size_item_size, args)
                r["sstables"] = server.sstable_files()
                r["load_s"] = round(seconds, 1)
                if base:
                    label += " (%s)" % " ".join(base)
                results.append({"scenario": "c) GetItem random key, %s" % label, "items": items,
                                "item_size": args.size_item_size, **r})
        finally:
            server.remove()


def scenario_put(args, results: list) -> None:
    """d) PutItem with the commit log in periodic mode vs without a commit log."""
    modes = [("periodic commit log", ())]
    if args.no_commitlog_flag:
        modes.append(("no commit log", tuple(args.no_commitlog_flag.split())))
    for label, extra in modes:
        server = Server()
        try:
            server.start(extra)
            loadgen.ensure_tables(HOST, server.port)
            r = best_of(server, "put", args.put_items, args.item_size, args)
            results.append({"scenario": "d) PutItem, %s" % label, "items": args.put_items,
                            "item_size": args.item_size, **r})
        finally:
            server.remove()


def table(results: list) -> str:
    lines = ["| scenario | items | item size | SSTables | ops/s | server CPU us/op | p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        sst = r.get("sstables")
        lines.append("| %s | %d | %d | %s | %.0f | %.1f | %.3f | %.3f |" % (
            r["scenario"], r["items"], r["item_size"], "-" if sst is None else "%d" % sst,
            r["ops_per_s"], r["cpu_us_per_op"], r["p50_ms"], r["p99_ms"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="get,size,put", help="comma-separated: get, size, put")
    ap.add_argument("--get-items", default="10000,100000",
                    help="item counts for a) and b) (comma-separated; 10k fits the block cache, "
                         "100k of 1 KB does not)")
    ap.add_argument("--item-size", type=int, default=1024, help="item size for a), b), d)")
    ap.add_argument("--small-items", type=int, default=10_000, help="c) small table")
    ap.add_argument("--large-items", type=int, default=5_000_000, help="c) large table")
    ap.add_argument("--size-item-size", type=int, default=100, help="item size for c)")
    ap.add_argument("--size-server-args", default="",
                    help="extra server flags for c), e.g. '--compaction-min-threshold 1' (no "
                         "compaction: one SSTable per flush, every one probed by each read)"),
    ap.add_argument("--put-items", type=int, default=100_000, help="key range of d)")
    ap.add_argument("--no-commitlog-flag", default="--durable-writes false",
                    help="server flags of d)'s in-memory-only mode ('' to skip it)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    ap.add_argument("--max-requests", type=int, default=300_000, help="requests per measured run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the lowest CPU/op is kept")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--processes", type=int, default=1, help="load-generator processes")
    ap.add_argument("--load-timeout", type=float, default=900.0, help="seconds per load phase")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    args.get_items = [int(x) for x in args.get_items.split(",") if x]
    results: list = []
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name in wanted:
        {"get": scenario_get, "size": scenario_size, "put": scenario_put}[name](args, results)
        print(table(results), flush=True)
        print(flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
