"""Turns a comparison's results (compare.py's results.json dict) into report.md and report.png.

Owns: the report's layout, the issue's performance targets and reference
figures, and how each target is judged (met / not met / not measured).
It must never run anything or measure anything: it only formats numbers it
is given, and says "not measured" rather than inventing one.
"""

from __future__ import annotations

import re

from shardserver.config import OPTIONS

OPERATION_TITLES = {
    "get": "GetItem",
    "put": "PutItem",
    "update": "UpdateItem (SET #c = if_not_exists(#c, :zero) + :one)",
    "query": "Query (10-item partition)",
    "mix50": "50/50 GetItem/PutItem (YCSB-A-like)",
    "batch": "BatchWriteItem (25 items per request; one op = one request)",
    "batchget": "BatchGetItem (100 keys per request; one op = one request)",
}

# Reference figures of issue 7 (measured by the project on its 2-core machine):
# workload -> target -> (ops/s text, server CPU us/op or None).
ISSUE_REFERENCE = {
    "get": {"null": ("60-110k", 8.4), "dynalite": ("15,100", 51), "moto": ("509", 1745)},
    "put": {"null": ("", 8.6), "dynalite": ("12,600-15,400", 65), "moto": ("559", 1471)},
    "update": {"null": ("", 9.2), "dynalite": ("8,200-11,400", "90-100"), "moto": ("308", 2939)},
    "query": {"null": ("", 8.7), "dynalite": ("4,200-5,900", 205), "moto": ("7", None)},
    "mix50": {"null": ("", 8.5), "dynalite": ("13,000-16,900", 62), "moto": ("565", 1480)},
}

# Issue 7's targets for shardserver --smp 2: workload -> (max CPU/op ratio vs null,
# min ops/s ratio vs dynalite).
TARGETS = {
    "get": (2.5, 3.0),
    "put": (3.0, 3.0),
    "update": (3.5, 3.0),
    "query": (5.0, 4.0),
}
P99_LIMIT_MS = 2.0
P99_WORKLOADS = ("get", "put")
MB = 1024 * 1024


def _fmt(v, digits=1, none="–"):
    if v is None:
        return none
    if isinstance(v, float) and abs(v) >= 1000:
        return "{:,.0f}".format(v)
    if isinstance(v, int):
        return "{:,}".format(v)
    return "%.*f" % (digits, v)


def _ms(v):
    if v is None:
        return "–"
    return "%.2f" % v if v < 100 else "{:,.0f}".format(v)


def _rss(mem: dict | None) -> str:
    if not mem or not mem.get("shards_rss"):
        return "–"
    return " / ".join("%.0f" % (r / MB) for r in mem["shards_rss"])


def _by_name(results: dict) -> dict[str, dict]:
    return {t["name"]: t for t in results.get("targets", [])}


def subject(results: dict) -> dict | None:
    """The shardserver run the issue's targets are judged on: --smp 2, else the largest --smp."""
    runs = [t for t in results.get("targets", [])
            if t.get("kind") == "shardserver" and not t.get("args") and t.get("workloads")]
    if not runs:
        return None
    for t in runs:
        if t.get("smp") == 2:
            return t
    return max(runs, key=lambda t: t.get("smp", 0))


def _workload(t: dict | None, w: str) -> dict | None:
    if not t:
        return None
    s = t.get("workloads", {}).get(w)
    if not s or not s.get("completed"):
        return None
    return s


def evaluate(results: dict) -> list[dict]:
    """Each of the issue's targets with the measured figure and a verdict."""
    rows = []
    by = _by_name(results)
    subj = subject(results)
    null, dyn = by.get("null"), by.get("dynalite")
    sname = subj["name"] if subj else "shardserver --smp 2"
    for w, (cpu_max, ops_min) in TARGETS.items():
        title = OPERATION_TITLES[w].split(" (")[0]
        s, n, d = _workload(subj, w), _workload(null, w), _workload(dyn, w)
        if s and n and s.get("cpu_us_per_op") and n.get("cpu_us_per_op"):
            ratio = s["cpu_us_per_op"] / n["cpu_us_per_op"]
            rows.append({"target": "%s: server CPU/op vs null" % title,
                         "measured": "%s us vs %s us = %.2fx" % (_fmt(s["cpu_us_per_op"]), _fmt(n["cpu_us_per_op"]), ratio),
                         "required": "<= %.1fx" % cpu_max, "met": ratio <= cpu_max})
        else:
            rows.append({"target": "%s: server CPU/op vs null" % title, "measured": "not measured",
                         "required": "<= %.1fx" % cpu_max, "met": None})
        if s and d and d.get("ops_per_s"):
            ratio = s["ops_per_s"] / d["ops_per_s"]
            rows.append({"target": "%s: ops/s vs dynalite" % title,
                         "measured": "%s vs %s = %.2fx" % (_fmt(s["ops_per_s"]), _fmt(d["ops_per_s"]), ratio),
                         "required": ">= %.1fx" % ops_min, "met": ratio >= ops_min})
        else:
            rows.append({"target": "%s: ops/s vs dynalite" % title, "measured": "not measured",
                         "required": ">= %.1fx" % ops_min, "met": None})
    for w in P99_WORKLOADS:
        title = OPERATION_TITLES[w].split(" (")[0]
        s = _workload(subj, w)
        conns = results.get("config", {}).get("connections")
        rows.append({"target": "%s: p99 latency at %s connections" % (title, conns),
                     "measured": ("%s ms" % _ms(s["p99_ms"])) if s else "not measured",
                     "required": "<= %.0f ms" % P99_LIMIT_MS,
                     "met": (s["p99_ms"] <= P99_LIMIT_MS) if s else None})
    rows += _read_cost_rows(subj)
    batch = _workload(by.get("shardserver-batch"), "put")
    rows.append({"target": "PutItem with commitlog_sync: batch (report only)",
                 "measured": ("%s ops/s, %s fsyncs/s, p99 %s ms" % (
                     _fmt(batch["ops_per_s"]), _fmt(batch.get("commitlog_syncs_per_s")),
                     _ms(batch["p99_ms"]))) if batch else "not measured",
                 "required": "report", "met": None if not batch else "reported"})
    rows.append(_memory_row(results))
    for r in rows:
        r["subject"] = sname
    return rows


# Issue 5's CPU targets, judged on the same shardserver run: (workload, per how
# many GetItems, at most this many times their CPU, what it says).
READ_COST_TARGETS = (
    ("query", 1, 2.0, "Query of a 10-item partition: server CPU vs one GetItem"),
    ("batchget", 100, 0.25, "BatchGetItem of 100 keys: server CPU vs 100 GetItems"),
)


def _read_cost_rows(subj: dict | None) -> list[dict]:
    rows = []
    get = _workload(subj, "get")
    for workload, gets, limit, title in READ_COST_TARGETS:
        w = _workload(subj, workload)
        row = {"target": title, "required": "<= %.2fx" % limit, "measured": "not measured", "met": None}
        if w and get and w.get("cpu_us_per_op") and get.get("cpu_us_per_op"):
            ratio = w["cpu_us_per_op"] / (gets * get["cpu_us_per_op"])
            row["measured"] = "%s us vs %s%s us = %.2fx" % (
                _fmt(w["cpu_us_per_op"]), "%d x " % gets if gets > 1 else "", _fmt(get["cpu_us_per_op"]), ratio)
            row["met"] = ratio <= limit
        rows.append(row)
    return rows


def _memory_row(results: dict) -> dict:
    steps = [s for s in (results.get("scaling") or {}).get("items", [])
             if s.get("memory") and s.get("items_per_shard")]
    row = {"target": "RSS per shard bounded from 10k to 5M items per shard",
           "required": "bounded (memtable threshold + caches)"}
    if len(steps) < 2:
        row.update(measured="not measured (run with --scaling)", met=None)
        return row
    first, last = steps[0], steps[-1]
    # Both after the step's workloads: the same point in a step's life.
    a = max((first.get("memory_after") or first["memory"])["shards_rss"]) / MB
    b = max((last.get("memory_after") or last["memory"])["shards_rss"]) / MB
    row["measured"] = "%s items: %.0f MB; %s items: %.0f MB" % (
        "{:,}".format(first["items_per_shard"]), a, "{:,}".format(last["items_per_shard"]), b)
    if last["items_per_shard"] < 5_000_000:
        row["measured"] += " (largest step reached: %s)" % "{:,}".format(last["items_per_shard"])
        row["met"] = None
    else:
        # The issue's bound, with the server's default budgets: the smallest shard plus two
        # memtables (one flushing) and every cache full.
        budget = memory_budget_mb()
        row["met"] = b <= a + budget
        row["required"] += "; judged as <= the 10k-item RSS + %d MB (2 memtables + row, " \
                           "partition and block caches, at their defaults)" % budget
    return row


def memory_budget_mb() -> int:
    defaults = {name: default for name, _, default, _ in OPTIONS}
    return (2 * defaults["memtable_flush_threshold_in_mb"] + defaults["row_cache_in_mb"]
            + defaults["partition_cache_in_mb"] + defaults["block_cache_in_mb"])


def _verdict(met) -> str:
    if met is None:
        return "not measured"
    if met == "reported":
        return "reported"
    return "**met**" if met else "**not met**"


def markdown(results: dict) -> str:
    cfg = results.get("config", {})
    mach = results.get("machine", {})
    out = []
    out.append("# Benchmark report %s\n" % results.get("started", ""))
    out.append("Machine: %s CPUs (%s), Python %s. Load generator: bench/loadgen.py, %s processes x "
               "%s keep-alive connections in total, on the same machine as the servers.\n"
               % (mach.get("cpus"), mach.get("cpu_model") or "?", mach.get("python"),
                  cfg.get("processes"), cfg.get("connections")))
    out.append("Data: %s items of ~%s bytes in `bench_kv` and as many in `bench_query` "
               "(10-item partitions); keys %s; %s s measured per workload after %s s of warm-up, "
               "at most %s requests.\n"
               % ("{:,}".format(cfg.get("items", 0)), cfg.get("item_size"), cfg.get("distribution"),
                  cfg.get("duration"), cfg.get("warmup"), "{:,}".format(cfg.get("max_requests", 0))))
    out.append("*server CPU us/op* = user+sys CPU of the server's whole process tree during the "
               "measured window / requests completed. *client us/op* = the load generator's CPU. "
               "*fwd/req* = whole requests forwarded to their owner shard, per request; *msgs/req* = "
               "requests the shards sent each other over the rings (forwards and the parts batch "
               "operations scatter; replies not counted), per request (shardserver's metrics). "
               "RSS in MB per shard process (one figure for single-process servers).\n")

    out.append("## Targets\n")
    out.append("| target | version | status | load items/s | RSS after load (MB) |")
    out.append("|---|---|---|---:|---|")
    for t in results.get("targets", []):
        status = "ok"
        if t.get("skipped"):
            status = "skipped: " + t["skipped"]
        elif t.get("failed"):
            status = "failed: " + t["failed"]
        load = t.get("load") or {}
        out.append("| %s | %s | %s | %s | %s |" % (
            t["name"], t.get("version", "–"), status.replace("|", "/"),
            _fmt(load.get("items_per_s"), 0), _rss(t.get("memory_after_load"))))
    out.append("")

    workloads = cfg.get("workloads") or list(OPERATION_TITLES)
    for w in workloads:
        # Runs that completed nothing stay in the table: "0 ops/s, N errors" is a result.
        rows = [(t, t.get("workloads", {}).get(w)) for t in results.get("targets", [])]
        rows = [(t, s) for t, s in rows if s]
        if not rows:
            continue
        out.append("## %s\n" % OPERATION_TITLES.get(w, w))
        out.append("| target | ops/s | p50 ms | p99 ms | p99.9 ms | server CPU us/op | client us/op "
                   "| fwd/req | msgs/req | fsyncs/s | errors | RSS/shard MB |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for t, s in rows:
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t["name"], _fmt(s["ops_per_s"], 0), _ms(s["p50_ms"]), _ms(s["p99_ms"]),
                _ms(s["p999_ms"]), _fmt(s.get("cpu_us_per_op")), _fmt(s.get("client_cpu_us_per_op")),
                _fmt(s.get("forwards_per_request"), 2), _fmt(s.get("ring_messages_per_request"), 2),
                _fmt(s.get("commitlog_syncs_per_s"), 0),
                _fmt(s["errors"]) + (" (e.g. `%s`)" % _short(s["error_samples"][0]) if s["error_samples"] else ""),
                _rss(s.get("memory"))))
        out.append("")

    out.append("## Performance targets of issues 5 and 7 (shardserver: %s)\n"
               % (subject(results) or {}).get("name", "not run"))
    out.append("| target | measured in this run | required | verdict |")
    out.append("|---|---|---|---|")
    for r in evaluate(results):
        out.append("| %s | %s | %s | %s |" % (r["target"], r["measured"], r["required"], _verdict(r["met"])))
    out.append("")

    out.append("## Issue 7's reference figures next to this run\n")
    out.append("ops/s and server CPU us/op; *issue* = the figures quoted in issue 7, *here* = this run.\n")
    out.append("| workload | null (issue) | null (here) | dynalite (issue) | dynalite (here) "
               "| moto (issue) | moto (here) |")
    out.append("|---|---|---|---|---|---|---|")
    by = _by_name(results)
    for w, ref in ISSUE_REFERENCE.items():
        cells = []
        for name in ("null", "dynalite", "moto"):
            ops, cpu = ref[name]
            cells.append(", ".join(x for x in (ops and ops + " ops/s", cpu and "%s us/op" % cpu) if x) or "–")
            s = (by.get(name) or {}).get("workloads", {}).get(w)
            cells.append("%s ops/s, %s us/op" % (_fmt(s["ops_per_s"], 0), _fmt(s.get("cpu_us_per_op")))
                         if s else "not run")
        out.append("| %s | %s |" % (OPERATION_TITLES[w].split(" (")[0], " | ".join(cells)))
    out.append("")

    scaling = results.get("scaling")
    if scaling:
        out.extend(_scaling_markdown(scaling))
    else:
        out.append("## Scaling\n\nNot run (add `--scaling`).\n")
    return "\n".join(out) + "\n"


def _short(text: str) -> str:
    return re.sub(r"[|`\n]", " ", text)[:80]


def _scaling_markdown(scaling: dict) -> list[str]:
    out = ["## Scaling: items per shard (shardserver --smp 1)\n"]
    steps = scaling.get("items", [])
    wl = sorted({w for s in steps for w in s.get("workloads", {})})
    out.append("| items per shard | load items/s | " + " | ".join(
        "%s ops/s | %s us/op | %s p99 ms" % (w, w, w) for w in wl) + " | RSS/shard MB |")
    out.append("|---:|---:|" + "---:|---:|---:|" * len(wl) + "---|")
    for s in steps:
        if "items_per_shard" not in s:
            out.append("| %s |" % (s.get("skipped") or s.get("failed")))
            continue
        if s.get("skipped"):
            out.append("| %s | skipped: %s |" % ("{:,}".format(s["items_per_shard"]), s["skipped"]))
            continue
        cells = []
        for w in wl:
            r = s.get("workloads", {}).get(w, {})
            cells += [_fmt(r.get("ops_per_s"), 0), _fmt(r.get("cpu_us_per_op")), _ms(r.get("p99_ms"))]
        out.append("| %s | %s | %s | %s |" % ("{:,}".format(s["items_per_shard"]),
                                              _fmt(s.get("load_items_per_s"), 0), " | ".join(cells),
                                              _rss(s.get("memory_after") or s.get("memory"))))
    out.append("")
    out.append("## Scaling: --smp\n")
    steps = scaling.get("smp", [])
    wl = sorted({w for s in steps for w in s.get("workloads", {})})
    out.append("| smp | " + " | ".join("%s ops/s | %s us/op | %s fwd/req | %s us per forward (est.)"
                                       % (w, w, w, w) for w in wl) + " | RSS/shard MB |")
    out.append("|---:|" + "---:|---:|---:|---:|" * len(wl) + "---|")
    base = {w: (steps[0].get("workloads", {}).get(w) or {}).get("cpu_us_per_op") for w in wl} if steps else {}
    for s in steps:
        if s.get("skipped") or s.get("failed"):
            out.append("| %d | %s |" % (s["smp"], s.get("skipped") or s.get("failed")))
            continue
        cells = []
        for w in wl:
            r = s.get("workloads", {}).get(w, {})
            fwd = r.get("forwards_per_request")
            cost = None
            if fwd and base.get(w) and r.get("cpu_us_per_op"):
                cost = (r["cpu_us_per_op"] - base[w]) / fwd
            cells += [_fmt(r.get("ops_per_s"), 0), _fmt(r.get("cpu_us_per_op")), _fmt(fwd, 2), _fmt(cost)]
        out.append("| %d | %s | %s |" % (s["smp"], " | ".join(cells), _rss(s.get("memory"))))
    out.append("")
    out.append("*us per forward (est.)* = (CPU/op at this --smp − CPU/op at --smp 1) / forwards per "
               "request: the extra server CPU a request costs when it crosses two processes.\n")
    return out


def chart(results: dict, path: str) -> None:
    """report.png: ops/s, p99 latency and server CPU/op per workload, one bar per target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tnames = [t["name"] for t in results.get("targets", []) if t.get("workloads")]
    workloads = [w for w in (results.get("config", {}).get("workloads") or OPERATION_TITLES)
                 if any(_workload(t, w) for t in results.get("targets", []))]
    fig, axes = plt.subplots(3, 1, figsize=(max(8, 1.6 * len(workloads) + 4), 11))
    panels = (("ops_per_s", "throughput (ops/s, log)"), ("p99_ms", "p99 latency (ms, log)"),
              ("cpu_us_per_op", "server CPU per op (us, log)"))
    width = 0.8 / max(1, len(tnames))
    by = _by_name(results)
    for ax, (key, label) in zip(axes, panels):
        for i, name in enumerate(tnames):
            xs, ys = [], []
            for j, w in enumerate(workloads):
                s = _workload(by[name], w)
                if s and s.get(key):
                    xs.append(j + i * width - 0.4 + width / 2)
                    ys.append(s[key])
            ax.bar(xs, ys, width, label=name)
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels([OPERATION_TITLES.get(w, w).split(" (")[0] for w in workloads])
        ax.set_ylabel(label)
        if any(ax.patches):
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))), fontsize="small")
    fig.suptitle("DynamoDB API benchmark %s (%s connections)"
                 % (results.get("started", ""), results.get("config", {}).get("connections")))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
