"""The servers a benchmark compares: how to start, watch, measure and stop each one.

Owns: the target names (``null``, ``shardserver-smp<k>``, ``shardserver-batch``,
``shardserver-nice0``, ``moto``, ``dynalite``), their command lines on 127.0.0.1 and free ports,
installing dynalite from the npm registry into a bench-local folder, readiness
checks, and the three server-side measurements: CPU seconds of the server's
whole process tree (psutil, user+sys), resident memory per process, and the
counters scraped from shardserver's Prometheus endpoint.

It must never touch a process it did not start: every stop goes by the pids
recorded from its own child and that child's descendants.  It never binds
anything but loopback and deletes only the temporary folders it created.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
PEERS_DIR = os.path.join(BENCH_DIR, ".peers")
DYNALITE_SPEC = "dynalite@4"
HOST = "127.0.0.1"

sys.path.insert(0, BENCH_DIR)
import loadgen  # noqa: E402


def process_tree(proc: subprocess.Popen | None) -> list[psutil.Process]:
    """Our child and all its descendants, as they are now ([] once it is gone)."""
    if proc is None:
        return []
    try:
        root = psutil.Process(proc.pid)
        return [root] + root.children(recursive=True)
    except psutil.Error:
        return []


def stop_process_tree(proc: subprocess.Popen, known_pids: set[int], timeout: float) -> None:
    """SIGTERM our child and wait, then SIGKILL any of its recorded descendants still left.

    Only pids this harness recorded from its own child's tree are touched, and
    none that started before the child (the pid was reused meanwhile)."""
    try:
        started = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        started = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    deadline = time.monotonic() + 5
    for pid in sorted(known_pids - {proc.pid}):
        try:
            p = psutil.Process(pid)
            if started is not None and p.create_time() < started - 1:
                continue   # older than our child: a reused pid, not its descendant
            while p.is_running() and p.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.05)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
        except psutil.Error:
            pass


class TargetUnavailable(Exception):
    """The target cannot run on this machine; the comparison skips it with this message."""


@dataclasses.dataclass
class TargetSpec:
    name: str
    kind: str                       # null | shardserver | moto | dynalite
    smp: int = 1
    extra_args: tuple[str, ...] = ()
    only_workloads: tuple[str, ...] = ()   # empty: every workload of the run


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def default_target_names() -> list[str]:
    n = cpu_count()
    names = ["null", "shardserver-smp1"]
    if n > 1:
        names.append("shardserver-smp%d" % n)
    names += ["shardserver-batch", "shardserver-nice0", "dynalite", "moto"]
    return names


def parse_target(name: str) -> TargetSpec:
    n = cpu_count()
    if name == "null":
        return TargetSpec(name, "null", smp=n)
    if name in ("moto", "dynalite"):
        return TargetSpec(name, name)
    if name == "shardserver-batch":
        # Group commit changes only the write path; reads would repeat the periodic figures.
        return TargetSpec(name, "shardserver", smp=n,
                          extra_args=("--commitlog-sync", "batch"), only_workloads=("put",))
    if name == "shardserver-nice0":
        # The shards at the priority they inherit: what --shard-nice's default buys.
        return TargetSpec(name, "shardserver", smp=n, extra_args=("--shard-nice", "0"),
                          only_workloads=("get", "put"))
    m = re.fullmatch(r"shardserver-smp(\d+|N)", name)
    if m:
        smp = n if m.group(1) == "N" else int(m.group(1))
        if smp < 1:
            raise ValueError("--smp must be at least 1")
        return TargetSpec("shardserver-smp%d" % smp, "shardserver", smp=smp)
    raise ValueError("unknown target %r: use null, shardserver-smp<k>, shardserver-smpN, "
                     "shardserver-batch, shardserver-nice0, dynalite, moto" % name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- dynalite

def dynalite_cli(install: bool = True) -> str:
    """Path of dynalite's cli.js, installing ``dynalite@4`` with npm on first use."""
    cli = os.path.join(PEERS_DIR, "node_modules", "dynalite", "cli.js")
    if os.path.exists(cli):
        return cli
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise TargetUnavailable("dynalite skipped: node/npm not found (install Node.js to compare with dynalite)")
    if not install:
        raise TargetUnavailable("dynalite skipped: not installed in %s" % PEERS_DIR)
    os.makedirs(PEERS_DIR, exist_ok=True)
    print("installing %s into %s ..." % (DYNALITE_SPEC, PEERS_DIR), file=sys.stderr)
    proc = subprocess.run(
        ["npm", "install", "--prefix", PEERS_DIR, "--no-audit", "--no-fund", "--no-save",
         DYNALITE_SPEC], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not os.path.exists(cli):
        raise TargetUnavailable("dynalite skipped: npm install failed: %s"
                                % (proc.stderr.strip().splitlines() or ["?"])[-1])
    return cli


def dynalite_version() -> str:
    try:
        with open(os.path.join(PEERS_DIR, "node_modules", "dynalite", "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


# ---------------------------------------------------------------- running targets

class RunningTarget:
    """One started server: its process tree, ports, and measurements."""

    def __init__(self, spec: TargetSpec, log_dir: str, item_size: int):
        self.spec = spec
        self.log_dir = log_dir
        self.item_size = item_size
        self.port = 0
        self.metrics_port = 0
        self.proc: subprocess.Popen | None = None
        self.data_dir: str | None = None
        self.log_path = os.path.join(log_dir, spec.name + ".log")
        self.version = "?"
        self._known_pids: set[int] = set()

    # -- lifecycle

    def command(self) -> tuple[list[str], dict]:
        spec = self.spec
        env = dict(os.environ)
        if spec.kind == "null":
            self.version = "bench/nullserver.py"
            return ([sys.executable, os.path.join(BENCH_DIR, "nullserver.py"), "--host", HOST,
                     "--port", str(self.port), "--workers", str(spec.smp),
                     "--item-size", str(self.item_size)], env)
        if spec.kind == "shardserver":
            self.data_dir = tempfile.mkdtemp(prefix="shardserver-bench-")
            self.metrics_port = free_port()
            # A fresh clone runs without being installed: put the repo first on the path.
            env["PYTHONPATH"] = REPO_DIR + os.pathsep + env.get("PYTHONPATH", "")
            self.version = _shardserver_version()
            return ([sys.executable, "-m", "shardserver", "--smp", str(spec.smp),
                     "--alternator-address", HOST, "--alternator-port", str(self.port),
                     "--data-dir", self.data_dir, "--developer-mode",
                     "--prometheus-port", str(self.metrics_port), *spec.extra_args], env)
        if spec.kind == "moto":
            try:
                self.version = "moto " + importlib.metadata.version("moto")
                import moto.server  # noqa: F401
                import flask  # noqa: F401  (moto's server extra)
            except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
                raise TargetUnavailable("moto skipped: moto[server] is not installed (%s); "
                                        "pip install 'moto[server]'" % exc)
            return ([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)], env)
        if spec.kind == "dynalite":
            cli = dynalite_cli()
            self.version = "dynalite " + dynalite_version()
            # In memory, like moto; tables become ACTIVE at once so setup stays short.
            return (["node", cli, "--host", HOST, "--port", str(self.port),
                     "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"], env)
        raise ValueError(spec.kind)

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        argv, env = self.command()
        os.makedirs(self.log_dir, exist_ok=True)
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=REPO_DIR)
        finally:
            log.close()
        self._known_pids.add(self.proc.pid)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise TargetUnavailable("%s skipped: exited with status %s at start: %s"
                                        % (self.spec.name, self.proc.returncode, self.log_tail()))
            try:
                status, doc = loadgen.call(HOST, self.port, "ListTables", {}, timeout=5)
                if status == 200:
                    self._remember_tree()
                    if self.spec.kind == "shardserver":
                        self.version += self._niceness()
                    return
                last = "HTTP %d %s" % (status, doc)
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        self.stop()
        raise TargetUnavailable("%s skipped: not ready after %.0f s (%s); log: %s"
                                % (self.spec.name, timeout, last, self.log_tail()))

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to our child, then SIGKILL to any of its recorded descendants left."""
        if self.proc is not None:
            self._remember_tree()
            stop_process_tree(self.proc, self._known_pids, timeout)
        if self.data_dir and os.path.isdir(self.data_dir):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def _niceness(self) -> str:
        """The shards' CPU priority, for the report: they raise it by default (--shard-nice)."""
        try:
            nices = sorted({p.nice() for p in self._tree() if p.pid != self.proc.pid
                            and "resource_tracker" not in " ".join(p.cmdline())})
        except psutil.Error:
            return ""
        return " (shards at nice %s)" % "/".join(map(str, nices)) if nices else ""

    def _remember_tree(self) -> None:
        for p in self._tree():
            self._known_pids.add(p.pid)

    def log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path, "rb") as f:
                text = f.read()[-4000:].decode("utf-8", "replace")
            return " | ".join(text.strip().splitlines()[-lines:])
        except OSError:
            return ""

    # -- measurements

    def _tree(self) -> list[psutil.Process]:
        return process_tree(self.proc)

    def cpu_snapshot(self) -> dict[int, float]:
        """user+sys CPU seconds of every process in the server's tree, by pid."""
        out = {}
        for p in self._tree():
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        self._known_pids.update(out)
        return out

    def wait_idle(self, timeout: float, busy_fraction: float = 0.1, window: float = 0.5) -> float:
        """Waits until the server tree uses under ``busy_fraction`` of one CPU; returns seconds waited.

        A slow server may still be working on requests a previous run abandoned,
        and shardserver may still be flushing what the load phase wrote; neither
        belongs to the next measured window.  Gives up after ``timeout``.
        """
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            before = self.cpu_snapshot()
            time.sleep(window)
            if self.cpu_delta(before, self.cpu_snapshot()) < busy_fraction * window:
                break
        return time.monotonic() - t0

    @staticmethod
    def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(v - before.get(pid, 0.0) for pid, v in after.items())

    def memory(self) -> dict:
        """RSS of the server's processes: the root and each worker (shard) process."""
        tree = self._tree()
        if not tree:
            return {"root_rss": 0, "shards_rss": [], "total_rss": 0}
        rss = {}
        for p in tree:
            try:
                rss[p.pid] = (p.memory_info().rss, p.ppid(), p.name())
            except psutil.Error:
                pass
        root = self.proc.pid
        shards = [v[0] for pid, v in sorted(rss.items())
                  if v[1] == root and "resource_tracker" not in " ".join(_cmdline(pid))]
        if self.spec.kind in ("moto", "dynalite") or not shards:
            shards = [rss.get(root, (0,))[0]]
        return {"root_rss": rss.get(root, (0,))[0], "shards_rss": shards,
                "total_rss": sum(v[0] for v in rss.values())}

    def metrics(self) -> dict[str, float]:
        """Sums over shards of the scraped counters this benchmark reports (shardserver only)."""
        if not self.metrics_port:
            return {}
        try:
            with urllib.request.urlopen("http://%s:%d/metrics" % (HOST, self.metrics_port),
                                        timeout=10) as resp:
                text = resp.read().decode("utf-8", "replace")
        except OSError:
            return {}
        return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    """Forwarded requests and ring messages (direction="out" only, so a hop counts once) and commit-log syncs.

    A forward is a whole API request sent to its owner; ring messages are
    every request the shards send each other (those, and the parts batch
    operations, scans and indexes scatter; replies are not counted).
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        if not rest:
            name, _, value = line.partition(" ")
            labels = ""
        else:
            labels, _, value = rest.partition("}")
        try:
            number = float(value.split()[0])
        except (ValueError, IndexError):
            continue
        if name == "shardserver_forwarded_requests_total":
            if 'direction="in"' in labels:
                continue
            out["forwarded"] = out.get("forwarded", 0.0) + number
        elif name == "shardserver_ring_messages_total":
            if 'direction="out"' in labels:
                out["ring_messages"] = out.get("ring_messages", 0.0) + number
        elif name == "shardserver_commitlog_syncs_total":
            out["commitlog_syncs"] = out.get("commitlog_syncs", 0.0) + number
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def _shardserver_version() -> str:
    try:
        rev = subprocess.run(["git", "-C", REPO_DIR, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    return "shardserver " + (rev or "(uncommitted)")
