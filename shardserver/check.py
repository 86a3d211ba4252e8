"""`shardserver check`: the host settings a bare-metal shardserver needs.

What it is: reads kernel settings under /proc/sys (the root is a parameter,
so tests and containers can point it elsewhere), the CPUs this process may
run on and its open-file limit, and compares them with what the configured
shards need.  `aio_check` is the one test the supervisor runs before it
starts shards; `main` is the command line.

What it owns: the list of recommended sysctl values (which must agree with
sysctl/99-shardserver.conf, a test enforces it), the AIO arithmetic, and the
`--apply` writer.

What it must never do: write anything unless asked with --apply by root,
lower a setting that is already better than recommended, or guess: a value
it cannot read is reported as unknown.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from dataclasses import dataclass

from shardserver.config import Config

SYSCTL_FILE = "sysctl/99-shardserver.conf"
PROC_SYS = "/proc/sys"
# Must match the storage engine's default per-shard AIO queue depth.
DEFAULT_AIO_QUEUE_DEPTH = 128
DEFAULT_SHARD_NICE = Config.shard_nice
NOFILE_RECOMMENDED = 65536
# Below this a shard with a few thousand clients and its SSTables runs out of
# descriptors; between it and the recommendation the server still works.
NOFILE_REQUIRED = 4096


@dataclass(frozen=True)
class Setting:
    name: str          # sysctl name, dotted ("fs.aio-max-nr")
    recommended: int
    direction: str     # "min": current must be >= recommended; "max": <=
    required: bool     # short -> `check` exits non-zero
    why: str

    def ok(self, current: int) -> bool:
        if self.direction == "min":
            return current >= self.recommended
        return current <= self.recommended


SETTINGS: tuple[Setting, ...] = (
    Setting("fs.aio-max-nr", 1048576, "min", True,
            "each shard reserves a fixed Linux AIO queue depth (io_setup) for SSTable reads "
            "and commit-log writes; the sum over every process on the host is capped here"),
    Setting("fs.file-max", 1048576, "min", False,
            "system-wide cap on open files: client sockets, SSTables and commit-log "
            "segments of all shards"),
    Setting("fs.nr_open", 1048576, "min", False,
            "ceiling for one process's RLIMIT_NOFILE, so the open-file limit can be raised"),
    Setting("net.core.somaxconn", 4096, "min", False,
            "accept backlog of each shard's SO_REUSEPORT listening socket; a small one "
            "drops connection bursts"),
    Setting("net.ipv4.tcp_max_syn_backlog", 4096, "min", False,
            "half-open connections queued while clients connect in bursts"),
    Setting("vm.swappiness", 1, "max", False,
            "memtables and caches must stay in RAM: a swapped-out page stalls the whole "
            "shard's event loop"),
)


def _path(root: str, name: str) -> str:
    return os.path.join(root, *name.split("."))


def read_sysctl(name: str, root: str = PROC_SYS) -> int | None:
    """The integer value of a sysctl, or None if absent or unreadable."""
    try:
        with open(_path(root, name)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_sysctl(name: str, value: int, root: str = PROC_SYS) -> None:
    with open(_path(root, name), "w") as f:
        f.write(f"{value}\n")


def aio_events_needed(nshards: int, depth: int) -> int:
    """Events io_setup charges to fs.aio-nr for the whole server.

    Linux accounts each context at the nr_events asked for (the doubling it
    applies internally is not charged); each shard opens one context.
    """
    return nshards * depth


def aio_status(nshards: int, depth: int, root: str = PROC_SYS) -> dict:
    max_nr = read_sysctl("fs.aio-max-nr", root)
    nr = read_sysctl("fs.aio-nr", root)
    needed = aio_events_needed(nshards, depth)
    available = None if max_nr is None or nr is None else max_nr - nr
    return {"needed": needed, "max_nr": max_nr, "nr": nr, "available": available,
            "ok": available is None or available >= needed}


def aio_check(nshards: int, depth: int, root: str = PROC_SYS) -> tuple[bool, str]:
    """Whether the AIO events the shards need are available, and a message.

    Called by the supervisor before any shard starts.  When the kernel
    exposes no AIO accounting the answer is ok: storage then runs its thread
    fallback and says so itself.
    """
    s = aio_status(nshards, depth, root)
    what = f"{s['needed']} AIO events ({nshards} shards x queue depth {depth})"
    if s["available"] is None:
        return True, (f"AIO: cannot read fs.aio-max-nr/fs.aio-nr under {root}; "
                      "Linux AIO looks unavailable, storage will use its thread fallback")
    if s["ok"]:
        return True, (f"AIO: {what} needed, {s['available']} available "
                      f"(fs.aio-max-nr {s['max_nr']} - fs.aio-nr {s['nr']})")
    return False, (
        f"AIO: the server needs {what} but only {s['available']} are available "
        f"(fs.aio-max-nr {s['max_nr']} - fs.aio-nr {s['nr']} already in use). "
        f"Raise fs.aio-max-nr: install {SYSCTL_FILE} (see sysctl/README.md) or run "
        "`shardserver check --apply` as root; --developer-mode starts anyway with a warning."
    )


def raise_nofile_limit(target: int = NOFILE_RECOMMENDED) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE toward `target` (up to the hard
    limit, which an unprivileged process cannot pass).  Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft, hard


@dataclass
class Host:
    """What check looks at; tests build one by hand instead of the real host."""

    root: str = PROC_SYS
    cpu_count: int | None = None
    allowed_cpus: tuple[int, ...] | None = None
    nofile: tuple[int, int] | None = None
    is_root: bool | None = None
    niceness: int | None = None          # this process's, which the shards inherit
    nice_limit: int | None = None        # RLIMIT_NICE's soft limit: may go down to 20 - it

    def fill(self) -> "Host":
        if self.cpu_count is None:
            self.cpu_count = os.cpu_count() or 1
        if self.allowed_cpus is None:
            try:
                self.allowed_cpus = tuple(sorted(os.sched_getaffinity(0)))
            except (AttributeError, OSError):
                self.allowed_cpus = tuple(range(self.cpu_count))
        if self.nofile is None:
            self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
        if self.is_root is None:
            self.is_root = os.geteuid() == 0
        if self.niceness is None:
            self.niceness = os.getpriority(os.PRIO_PROCESS, 0)
        if self.nice_limit is None:
            self.nice_limit = resource.getrlimit(resource.RLIMIT_NICE)[0]
        return self


def _fmt_limit(v: int) -> str:
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)


def _cpu_ranges(cpus) -> str:
    cpus = sorted(cpus)
    parts = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts) or "none"


def apply_settings(nshards: int, depth: int, host: Host, out) -> int:
    """Write every setting that is worse than recommended.  Returns the number
    of writes that failed."""
    failures = 0
    aio = aio_status(nshards, depth, host.root)
    for s in SETTINGS:
        current = read_sysctl(s.name, host.root)
        target = s.recommended
        if s.name == "fs.aio-max-nr" and aio["nr"] is not None:
            # A host already using many events needs more than the default.
            target = max(target, aio["nr"] + aio["needed"])
        if current is not None and (current >= target if s.direction == "min" else current <= target):
            continue
        try:
            write_sysctl(s.name, target, host.root)
        except OSError as e:
            failures += 1
            print(f"apply: could not set {s.name} = {target}: {e.strerror or e}", file=out)
        else:
            was = "unknown" if current is None else str(current)
            print(f"apply: set {s.name} = {target} (was {was})", file=out)
    print("apply: values under /proc/sys last until reboot; to keep them install "
          f"{SYSCTL_FILE} into /etc/sysctl.d/ (see sysctl/README.md)", file=out)
    return failures


def _priority_line(overprovisioned: bool, shard_nice: int, host: Host) -> str:
    """What CPU priority the shards will run at (informational: never a failure)."""
    if overprovisioned:
        return "CPU priority: left alone (--overprovisioned)"
    if shard_nice == 0:
        return f"CPU priority: the shards keep nice {host.niceness} (--shard-nice 0)"
    if host.niceness != 0:
        return f"CPU priority: the shards keep nice {host.niceness}, which this process was started at"
    unlimited = host.nice_limit == resource.RLIM_INFINITY
    if shard_nice > 0 or host.is_root or unlimited or 20 - host.nice_limit <= shard_nice:
        return f"CPU priority: the shards take nice {shard_nice} (--shard-nice)"
    return (f"CPU priority: the shards will keep nice 0: nice {shard_nice} needs root, CAP_SYS_NICE "
            f"or RLIMIT_NICE >= {20 - shard_nice} (systemd: Nice={shard_nice} or LimitNICE=) "
            "(recommended)")


def report(nshards: int, depth: int, overprovisioned: bool, host: Host, out,
           shard_nice: int = DEFAULT_SHARD_NICE) -> int:
    """Print every check; return the number of required checks that failed."""
    host.fill()
    problems = 0
    print(f"shardserver check: {nshards} shard(s), AIO queue depth {depth} per shard, "
          f"/proc/sys read from {host.root}", file=out)
    print("", file=out)
    print(f"{'sysctl':32} {'current':>20} {'recommended':>14}  status", file=out)
    for s in SETTINGS:
        current = read_sysctl(s.name, host.root)
        want = (">= " if s.direction == "min" else "<= ") + str(s.recommended)
        if current is None:
            status = "UNKNOWN (cannot read)"
        elif s.ok(current):
            status = "ok"
        elif s.required:
            status = "SHORT (required)"
            problems += 1
        else:
            status = "short (recommended)" if s.direction == "min" else "high (recommended)"
        shown = "?" if current is None else str(current)
        print(f"{s.name:32} {shown:>20} {want:>14}  {status}", file=out)
        if current is not None and not s.ok(current):
            print(f"    why: {s.why}", file=out)
    print("", file=out)

    ok, message = aio_check(nshards, depth, host.root)
    print(("" if ok else "FAIL ") + message, file=out)
    if not ok:
        problems += 1

    allowed = host.allowed_cpus
    print(f"CPUs: {host.cpu_count} online, this process may run on {len(allowed)} "
          f"({_cpu_ranges(allowed)})", file=out)
    if overprovisioned:
        print(f"pinning: off (--overprovisioned); {nshards} shards share the allowed CPUs",
              file=out)
    elif nshards > len(allowed):
        problems += 1
        print(f"FAIL pinning: {nshards} shards but only {len(allowed)} allowed CPUs; "
              "lower --smp or use --overprovisioned", file=out)
    else:
        pins = ", ".join(f"shard {i} -> cpu {allowed[i]}" for i in range(nshards))
        print(f"pinning: {pins}", file=out)

    print(_priority_line(overprovisioned, shard_nice, host), file=out)

    soft, hard = host.nofile
    line = (f"open files (RLIMIT_NOFILE): soft {_fmt_limit(soft)}, hard {_fmt_limit(hard)}, "
            f"recommended >= {NOFILE_RECOMMENDED}")
    def below(limit: int, n: int) -> bool:
        return limit != resource.RLIM_INFINITY and limit < n

    if below(hard, NOFILE_REQUIRED):
        problems += 1
        print(f"FAIL {line}: the hard limit is under {NOFILE_REQUIRED}; raise it "
              "(LimitNOFILE= in the systemd unit, or /etc/security/limits.conf)", file=out)
    elif below(hard, NOFILE_RECOMMENDED):
        print(f"{line}: short (recommended): raise the hard limit (LimitNOFILE= in the "
              "systemd unit, or /etc/security/limits.conf)", file=out)
    elif below(soft, NOFILE_RECOMMENDED):
        print(f"{line}: ok (the server raises its soft limit up to the hard limit)", file=out)
    else:
        print(f"{line}: ok", file=out)

    print("", file=out)
    if problems:
        print(f"result: {problems} required check(s) failed; see sysctl/README.md and "
              f"{SYSCTL_FILE}", file=out)
    else:
        print("result: ok", file=out)
    return problems


def _load_config(path: str) -> dict:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values")
    # Accept both Scylla's dashed spelling and YAML's underscored one.
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shardserver check",
        description="Report the kernel and process settings shardserver needs on this host.",
    )
    p.add_argument("--smp", type=_positive_int, help="shards to plan for "
                   "(default: the config file's smp, else the CPUs this process may use)")
    p.add_argument("--aio-queue-depth", type=_positive_int,
                   help=f"AIO queue depth per shard (default {DEFAULT_AIO_QUEUE_DEPTH})")
    p.add_argument("--overprovisioned", action="store_true", default=None,
                   help="shards will not be pinned to CPUs")
    p.add_argument("--shard-nice", type=int, default=None,
                   help=f"CPU priority the shards will take (default: the config file's, else "
                        f"{DEFAULT_SHARD_NICE})")
    p.add_argument("--config", metavar="FILE", help="shardserver YAML configuration file")
    p.add_argument("--apply", action="store_true",
                   help="as root, write the recommended values to /proc/sys first")
    p.add_argument("--proc-sys", metavar="DIR", default=None,
                   help="read (and with --apply write) sysctls under DIR instead of /proc/sys")
    return p


def main(argv: list[str] | None = None, host: Host | None = None, out=None) -> int:
    """Entry point of `shardserver check`; returns the exit status
    (0 ok, 1 a required setting is short or --apply failed, 2 usage)."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    host = host or Host()
    if args.proc_sys:
        host.root = args.proc_sys
    host.fill()
    config: dict = {}
    if args.config:
        try:
            config = _load_config(args.config)
        except (OSError, ValueError) as e:
            print(f"shardserver check: cannot read config: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # noqa: BLE001 - yaml's parse errors have no common base we import
            print(f"shardserver check: cannot parse config {args.config}: {e}", file=sys.stderr)
            return 2
    try:
        nshards = args.smp or int(config.get("smp") or 0) or len(host.allowed_cpus)
        depth = (args.aio_queue_depth or int(config.get("aio_queue_depth") or 0)
                 or DEFAULT_AIO_QUEUE_DEPTH)
    except (TypeError, ValueError):
        print("shardserver check: smp and aio_queue_depth in the config must be integers",
              file=sys.stderr)
        return 2
    overprovisioned = bool(args.overprovisioned if args.overprovisioned is not None
                           else config.get("overprovisioned", False))
    try:
        shard_nice = int(args.shard_nice if args.shard_nice is not None
                         else config.get("shard_nice", DEFAULT_SHARD_NICE))
    except (TypeError, ValueError):
        print("shardserver check: shard_nice in the config must be an integer", file=sys.stderr)
        return 2

    apply_failed = 0
    if args.apply:
        if not host.is_root:
            print("apply: needs root (effective uid 0); nothing was written", file=out)
            apply_failed = 1
        else:
            apply_failed = apply_settings(nshards, depth, host, out)
        print("", file=out)
    problems = report(nshards, depth, overprovisioned, host, out, shard_nice)
    return 1 if problems or apply_failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
