"""Side-by-side benchmark: the same data and workloads against every DynamoDB target.

Owns the comparison run: for each target (``targets.py``) it starts the
server on 127.0.0.1, creates and loads the benchmark tables, runs every
workload with the load generator (``loadgen.py``) after a short warm-up, and
records ops/s, latency percentiles, server CPU microseconds per operation
(user+sys of the server's whole process tree over the measured window),
shard-to-shard forwards per request, commit-log fsyncs per second and RSS per
shard.  ``--scaling`` adds CPU/op and RSS as items per shard grow and as
``--smp`` grows.  Results go to ``<out>/<timestamp>/`` as results.json,
report.md and report.png (``report.py``).

It must never leave a server running, target anything but loopback, or
run unbounded: every phase has a duration, a request count and a timeout.

Run:  python bench/compare.py                       (full comparison, ~10 minutes)
      python bench/compare.py --quick --targets null (seconds; CI smoke)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402
import report  # noqa: E402
import targets  # noqa: E402
import workloads  # noqa: E402

DEFAULT_WORKLOADS = ("get", "put", "update", "query", "mix50", "batch", "batchget")


def log(msg: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure(target: targets.RunningTarget, args, workload: str, keys: int) -> dict:
    """Warm-up, then one measured run of ``workload``, with server-side figures."""
    spec = loadgen.LoadSpec(
        port=target.port, workload=workload, duration=args.duration,
        max_requests=args.max_requests, connections=args.connections,
        processes=args.processes, keys=keys, item_size=args.item_size,
        distribution=args.distribution, theta=args.theta, grace=args.grace)
    idle_s = target.wait_idle(args.idle_timeout)
    if args.warmup > 0:
        warm = loadgen.LoadSpec(**{**spec.__dict__, "duration": args.warmup,
                                   "max_requests": max(1, args.max_requests // 10)})
        loadgen.run(warm)
        idle_s += target.wait_idle(args.idle_timeout)
    snap: dict = {}

    def on_start():
        snap["m0"] = target.metrics()
        snap["cpu0"] = target.cpu_snapshot()

    def on_finish():
        snap["cpu1"] = target.cpu_snapshot()
        snap["m1"] = target.metrics()

    client0 = children_cpu()
    s = loadgen.run(spec, on_start, on_finish)
    client = children_cpu() - client0
    completed = max(s["completed"], 1)
    cpu = target.cpu_delta(snap["cpu0"], snap["cpu1"])
    s["server_cpu_s"] = cpu
    s["cpu_us_per_op"] = cpu * 1e6 / completed if s["completed"] else None
    s["client_cpu_us_per_op"] = client * 1e6 / completed if s["completed"] else None
    m0, m1 = snap.get("m0", {}), snap.get("m1", {})
    if "forwarded" in m0 and "forwarded" in m1:
        s["forwards_per_request"] = (m1["forwarded"] - m0["forwarded"]) / completed
    if "forwarded" in m0 and "forwarded" in m1:
        # A single shard has no rings, so no ring counters: none sent.
        s["ring_messages_per_request"] = (m1.get("ring_messages", 0) - m0.get("ring_messages", 0)) / completed
    if "commitlog_syncs" in m0 and "commitlog_syncs" in m1 and s["elapsed_s"] > 0:
        s["commitlog_syncs_per_s"] = (m1["commitlog_syncs"] - m0["commitlog_syncs"]) / s["elapsed_s"]
    s["memory"] = target.memory()
    s["idle_wait_s"] = idle_s
    return s


def run_target(spec: targets.TargetSpec, args, log_dir: str) -> dict:
    out: dict = {"name": spec.name, "kind": spec.kind, "smp": spec.smp,
                 "args": list(spec.extra_args), "workloads": {}}
    target = targets.RunningTarget(spec, log_dir, args.item_size)
    try:
        log("%s: starting" % spec.name)
        target.start(timeout=args.start_timeout)
        out["version"] = target.version
        loadgen.ensure_tables(targets.HOST, target.port)
        log("%s: loading %d items into each table" % (spec.name, args.items))
        ld = loadgen.load(targets.HOST, target.port, args.items, args.item_size,
                          connections=min(args.connections, 16), processes=args.processes,
                          timeout=args.load_timeout)
        out["load"] = {k: ld[k] for k in ("seconds", "items", "items_per_s", "retries")}
        out["memory_after_load"] = target.memory()
        for workload in args.workloads:
            if spec.only_workloads and workload not in spec.only_workloads:
                continue
            s = measure(target, args, workload, args.items)
            out["workloads"][workload] = s
            log("%s: %s" % (spec.name, loadgen.format_summary(s))
                + ("  cpu %.1f us/op" % s["cpu_us_per_op"] if s["cpu_us_per_op"] else ""))
    except targets.TargetUnavailable as exc:
        out["skipped"] = str(exc)
        log(str(exc))
    except Exception as exc:  # one target's failure must not lose the others' results
        out["failed"] = "%s: %s" % (type(exc).__name__, exc)
        out["log_tail"] = target.log_tail(10)
        log("%s failed: %s" % (spec.name, out["failed"]))
    finally:
        target.stop()
    return out


# ---------------------------------------------------------------- scaling

def scaling_items(args, log_dir: str) -> list[dict]:
    """CPU/op and RSS per shard of one shard as its table grows through --scaling-items."""
    steps = []
    spec = targets.TargetSpec("shardserver-smp1", "shardserver", smp=1)
    target = targets.RunningTarget(spec, log_dir, args.scaling_item_size)
    budget_end = time.monotonic() + args.scaling_budget
    loaded = 0
    rate = None
    try:
        target.start(timeout=args.start_timeout)
        loadgen.ensure_tables(targets.HOST, target.port)
        for count in args.scaling_items:
            step: dict = {"items_per_shard": count}
            steps.append(step)
            remaining = budget_end - time.monotonic()
            if rate and (count - loaded) / rate > remaining:
                step["skipped"] = ("loading %d more items would take ~%.0f s at %.0f items/s; "
                                   "%.0f s of --scaling-budget left"
                                   % (count - loaded, (count - loaded) / rate, rate, remaining))
                log("scaling: " + step["skipped"])
                continue
            if remaining <= 0:
                step["skipped"] = "--scaling-budget exhausted"
                continue
            log("scaling: loading to %d items (one shard)" % count)
            t0 = time.perf_counter()
            loadgen.load(targets.HOST, target.port, count, args.scaling_item_size,
                         connections=min(args.connections, 16), processes=args.processes,
                         start=loaded, timeout=max(remaining, 1.0), tables=(workloads.KV_TABLE,))
            rate = (count - loaded) / max(time.perf_counter() - t0, 1e-6)
            loaded = count
            step["load_items_per_s"] = rate
            step["memory"] = target.memory()
            step["workloads"] = {}
            for workload in args.scaling_workloads:
                s = measure(target, args, workload, count)
                step["workloads"][workload] = _brief(s)
                log("scaling %d items: %s cpu %.1f us/op" % (count, workload, s["cpu_us_per_op"] or 0))
            step["memory_after"] = target.memory()
    except targets.TargetUnavailable as exc:
        steps.append({"skipped": str(exc)})
    except Exception as exc:
        steps.append({"failed": "%s: %s" % (type(exc).__name__, exc), "log_tail": target.log_tail(10)})
        log("scaling (items) failed: %s" % exc)
    finally:
        target.stop()
    return steps


def scaling_smp(args, log_dir: str) -> list[dict]:
    """CPU/op, forwards and RSS per shard as --smp goes 1..the CPUs we may use."""
    steps = []
    for smp in range(1, targets.cpu_count() + 1):
        spec = targets.TargetSpec("shardserver-smp%d" % smp, "shardserver", smp=smp)
        target = targets.RunningTarget(spec, log_dir, args.item_size)
        step: dict = {"smp": smp, "workloads": {}}
        steps.append(step)
        try:
            target.start(timeout=args.start_timeout)
            loadgen.ensure_tables(targets.HOST, target.port)
            loadgen.load(targets.HOST, target.port, args.items, args.item_size,
                         connections=min(args.connections, 16), processes=args.processes,
                         timeout=args.load_timeout, tables=(workloads.KV_TABLE,))
            for workload in args.scaling_workloads:
                s = measure(target, args, workload, args.items)
                step["workloads"][workload] = _brief(s)
                log("scaling smp %d: %s cpu %.1f us/op" % (smp, workload, s["cpu_us_per_op"] or 0))
            step["memory"] = target.memory()
        except targets.TargetUnavailable as exc:
            step["skipped"] = str(exc)
        except Exception as exc:
            step["failed"] = "%s: %s" % (type(exc).__name__, exc)
            log("scaling smp %d failed: %s" % (smp, exc))
        finally:
            target.stop()
    return steps


def _brief(s: dict) -> dict:
    keep = ("ops_per_s", "p50_ms", "p99_ms", "p999_ms", "cpu_us_per_op", "client_cpu_us_per_op",
            "forwards_per_request", "ring_messages_per_request", "completed", "errors", "memory")
    return {k: s[k] for k in keep if k in s}


# ---------------------------------------------------------------- command line

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Compare DynamoDB implementations on this machine.")
    ap.add_argument("--targets", default=",".join(targets.default_target_names()),
                    help="comma-separated: null, shardserver-smp<k>, shardserver-smpN, "
                         "shardserver-batch, shardserver-nice0, dynalite, moto (default: %(default)s)")
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                    help="comma-separated, of: " + ", ".join(workloads.WORKLOADS))
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per workload")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each workload")
    ap.add_argument("--max-requests", type=int, default=2_000_000, help="request bound per workload")
    ap.add_argument("--items", type=int, default=100_000, help="items loaded into each table")
    ap.add_argument("--item-size", type=int, default=workloads.DEFAULT_ITEM_SIZE)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--processes", type=int, default=2, help="load generator processes")
    ap.add_argument("--distribution", choices=("uniform", "zipfian"), default="uniform")
    ap.add_argument("--theta", type=float, default=0.99, help="zipfian skew")
    ap.add_argument("--grace", type=float, default=loadgen.DEFAULT_GRACE_S,
                    help="seconds in-flight requests may take after the duration")
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--idle-timeout", type=float, default=120.0,
                    help="before each warm-up and measured run, wait up to this long for the "
                         "server to finish earlier work (CPU under 10%% of a core)")
    ap.add_argument("--load-timeout", type=float, default=900.0, help="seconds the load phase may take")
    ap.add_argument("--out", default=os.path.join(targets.BENCH_DIR, "results"),
                    help="results folder (a timestamped subfolder is created)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny run for a smoke test: 200 items, 4 connections, 0.5 s per workload")
    ap.add_argument("--scaling", action="store_true",
                    help="also measure CPU/op and RSS as items per shard and --smp grow")
    ap.add_argument("--scaling-items", default="10000,1000000,5000000",
                    help="items per shard at each step of the growth measurement")
    ap.add_argument("--scaling-item-size", type=int, default=workloads.DEFAULT_ITEM_SIZE)
    ap.add_argument("--scaling-workloads", default="get,put")
    ap.add_argument("--scaling-budget", type=float, default=1800.0,
                    help="seconds the growth measurement may spend loading; steps that would "
                         "exceed it are skipped and reported")
    ap.add_argument("--no-chart", action="store_true", help="skip report.png")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 0.5)
        args.warmup = min(args.warmup, 0.2)
        args.items = min(args.items, 200)
        args.connections = min(args.connections, 4)
        args.processes = 1
        args.max_requests = min(args.max_requests, 5000)
        args.grace = min(args.grace, 5.0)
        args.idle_timeout = min(args.idle_timeout, 5.0)
        args.scaling_items = "1000,5000"
        args.scaling_budget = min(args.scaling_budget, 60.0)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    args.scaling_workloads = [w.strip() for w in args.scaling_workloads.split(",") if w.strip()]
    args.scaling_items = [int(x) for x in args.scaling_items.split(",") if x.strip()]
    for w in args.workloads + args.scaling_workloads:
        if w not in workloads.WORKLOADS:
            ap.error("unknown workload %r (one of %s)" % (w, ", ".join(workloads.WORKLOADS)))
    try:
        args.target_specs = [targets.parse_target(t) for t in args.targets]
    except ValueError as exc:
        ap.error(str(exc))
    return args


def machine_info() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": targets.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform()}


def main(argv=None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every started server is stopped and its data dir removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = os.path.join(args.out, stamp)
    os.makedirs(out_dir, exist_ok=True)
    log_dir = os.path.join(out_dir, "logs")
    config = {k: v for k, v in vars(args).items() if k != "target_specs"}
    results = {"started": stamp, "machine": machine_info(), "config": config, "targets": []}
    t0 = time.monotonic()
    for spec in args.target_specs:
        results["targets"].append(run_target(spec, args, log_dir))
        _write(out_dir, results, args)
    if args.scaling:
        results["scaling"] = {"items": scaling_items(args, log_dir), "smp": scaling_smp(args, log_dir)}
    results["seconds"] = time.monotonic() - t0
    paths = _write(out_dir, results, args)
    log("wrote " + ", ".join(paths))
    print(os.path.join(out_dir, "report.md"))
    return 0


def _write(out_dir: str, results: dict, args) -> list[str]:
    paths = [os.path.join(out_dir, "results.json"), os.path.join(out_dir, "report.md")]
    with open(paths[0], "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(paths[1], "w") as f:
        f.write(report.markdown(results))
    if not args.no_chart:
        try:
            report.chart(results, os.path.join(out_dir, "report.png"))
            paths.append(os.path.join(out_dir, "report.png"))
        except ImportError as exc:
            log("report.png skipped: %s (pip install matplotlib, or the bench extra)" % exc)
    return paths


if __name__ == "__main__":
    sys.exit(main())
