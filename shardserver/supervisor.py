"""The supervisor: checks the system, owns the shared memory, starts and watches shards.

It is the parent process.  It never serves requests: it validates the
configuration and the data directory, creates every shared-memory segment
and doorbell (so only it unlinks them), forks one shard per CPU, restarts a
shard that dies (after the survivors have let go of its rings), and on
SIGTERM/SIGINT stops every shard and exits 0.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time

import orjson

log = logging.getLogger("shardserver.supervisor")

META_FILE = "shardserver.json"
DATA_FORMAT = 1
STOP_TIMEOUT_SECONDS = 60.0
RESTART_BACKOFF_SECONDS = 0.2
# A shard that dies this soon after starting, this many times in a row, is
# failing to start (bad file, full disk): stop rather than restart forever.
EARLY_DEATH_SECONDS = 10.0
MAX_EARLY_DEATHS = 5


class StartupError(Exception):
    """A condition that forbids starting, with a message for the operator."""


LOCK_FILE = "shardserver.lock"


def lock_data_dir(config) -> int:
    """Takes the data directory for this server: a second server on it would corrupt both.

    An exclusive flock on ``shardserver.lock``, held by the returned descriptor
    for as long as this process or a shard forked from it lives, so it is
    released by any exit, a crash included.  (A second server on another data
    directory is kept off this one's ports by check_ports.)
    """
    import fcntl
    os.makedirs(config.data_dir, exist_ok=True)
    path = os.path.join(config.data_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StartupError(f"the data directory {config.data_dir} is in use by another shardserver "
                           f"(pid {holder}); stop it first, or give this one another --data-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_ports(config) -> None:
    """Refuses ports another process listens on.

    Shards bind with SO_REUSEPORT, which the kernel grants to every socket of
    the same user that asks for it: a second server on another data directory
    would share the port, and connections would reach either set of tables at
    random.  A probe bound without SO_REUSEPORT fails on a port that anyone is
    listening on (a TIME_WAIT connection of an earlier run does not count).
    """
    import errno
    import socket
    ports = [(config.alternator_address, config.alternator_port, "--alternator-port"),
             (config.alternator_address, config.alternator_https_port, "--alternator-https-port"),
             (config.metrics_address, config.prometheus_port, "--prometheus-port")]
    for address, port, option in ports:
        if not port:
            continue
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise StartupError(f"cannot listen on {address}:{port} ({option}): {exc.strerror}") from None
                raise StartupError(f"port {port} is in use on {address} ({option}), perhaps by another "
                                   f"shardserver; stop it first, or give this one another {option}") from None


def _stop_with_supervisor(supervisor: int) -> None:
    """In a shard just forked: get SIGTERM (a clean stop) when the supervisor dies.

    A supervisor killed with SIGKILL cannot stop its shards, and they would
    go on serving, unwatched, holding the port and the data directory lock,
    so that the next server on either is refused.
    """
    import ctypes
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return      # not Linux: no parent-death signal
    if os.getppid() != supervisor:      # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def check_data_dir(config) -> None:
    """Creates the data directory, or checks it was written with the same number of shards."""
    os.makedirs(config.data_dir, exist_ok=True)
    path = os.path.join(config.data_dir, META_FILE)
    try:
        with open(path, "rb") as f:
            meta = orjson.loads(f.read())
    except FileNotFoundError:
        with open(path + ".tmp", "wb") as f:
            f.write(orjson.dumps({"smp": config.smp, "format": DATA_FORMAT}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
        return
    if meta.get("smp") != config.smp:
        raise StartupError(
            f"the data directory {config.data_dir} was written by {meta.get('smp')} shards, and this server "
            f"was started with --smp {config.smp}. Every item lives on the shard that owns its token, so "
            f"changing the shard count needs resharding, which this version does not do: start with "
            f"--smp {meta.get('smp')} (use --overprovisioned if this machine has fewer CPUs), or export the "
            f"data and load it into a fresh data directory.")


def check_files(config) -> None:
    """Credentials and certificates are read once here, so a bad file stops the start cleanly."""
    if config.alternator_enforce_authorization:
        from shardserver.protocol import sigv4
        try:
            credentials = sigv4.load_credentials(config.alternator_credentials_file)
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot read --alternator-credentials-file: {exc}") from None
        if not credentials:
            log.warning("%s holds no credentials: every request will be refused",
                        config.alternator_credentials_file)
    if config.alternator_https_port:
        from shardserver.protocol.tls import make_server_context
        try:
            make_server_context(config.alternator_certificate, config.alternator_key)
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot use the HTTPS certificate or key: {exc}") from None


def check_aio(config) -> None:
    from shardserver.check import aio_check
    ok, message = aio_check(config.smp, config.aio_queue_depth)
    if ok:
        return
    if config.developer_mode:
        log.warning("%s (continuing: --developer-mode)", message)
        return
    raise StartupError(message + " (or start with --developer-mode to continue anyway)")


def remove_stale_segments(directory: str = "/dev/shm") -> int:
    """Unlinks shared memory left by supervisors that died without cleaning up (kill -9)."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        match = re.match(r"shardserver-(\d+)-[0-9a-f]+-", name)
        if not match or _alive(int(match.group(1))):
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed += 1
        except OSError:
            pass
    if removed:
        log.info("removed %d shared-memory segments left by supervisors that are gone", removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Supervisor:
    def __init__(self, config):
        self.config = config
        self.children: dict[int, int] = {}      # shard id -> pid
        self.awaiting_up: dict[int, int] = {}   # restarted shard id -> pid, until its fabric attaches
        self.started_at: dict[int, float] = {}  # shard id -> monotonic start time
        self.early_deaths: dict[int, int] = {}  # shard id -> consecutive deaths soon after start
        self.exit_status = 0
        self.stopping = False
        self.segments = None
        self.cpus = sorted(os.sched_getaffinity(0))

    def _spawn(self, shard_id: int) -> int:
        from shardserver.shard.main import run_shard
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _stop_with_supervisor(supervisor)
                status = run_shard(shard_id, self.config, self.segments, self.cpus)
            finally:
                logging.shutdown()
                os._exit(status)
        self.children[shard_id] = pid
        self.started_at[shard_id] = time.monotonic()
        return pid

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            for pid in self.children.values():
                _kill(pid, signal.SIGHUP)
            return
        self.stopping = True

    def run(self) -> int:
        from shardserver.reactor.smp import Fabric
        config = self.config
        check_files(config)
        self.data_dir_lock = lock_data_dir(config)
        check_ports(config)
        check_data_dir(config)
        check_aio(config)
        from shardserver.check import raise_nofile_limit
        raise_nofile_limit()
        remove_stale_segments()
        self.segments = Fabric.create_segments(config.smp, config.ring_size_in_kb * 1024)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            log.info("starting %d shards (data in %s, API on %s:%d)", config.smp, config.data_dir,
                     config.alternator_address, config.alternator_port)
            for shard_id in range(config.smp):
                self._spawn(shard_id)
            self._watch()
        finally:
            self._stop_children()
            self.segments.unlink()
            log.info("stopped")
        return self.exit_status

    def _watch(self) -> None:
        while not self.stopping:
            try:
                dead = self._reap()
            except ChildProcessError:
                return
            if not dead:
                self._mark_started_shards_up()
                time.sleep(0.05)
                continue
            for shard_id, pid, status in dead:
                del self.children[shard_id]
                self.awaiting_up.pop(shard_id, None)
                if time.monotonic() - self.started_at.get(shard_id, 0.0) < EARLY_DEATH_SECONDS:
                    self.early_deaths[shard_id] = self.early_deaths.get(shard_id, 0) + 1
                else:
                    self.early_deaths[shard_id] = 1
                if self.early_deaths[shard_id] >= MAX_EARLY_DEATHS:
                    log.error("shard %d (pid %d) died (%s) %d times right after starting; stopping the server "
                              "(see the shard's log lines above for the cause)", shard_id, pid,
                              _describe_status(status), self.early_deaths[shard_id])
                    self.exit_status = 1
                    return
                log.error("shard %d (pid %d) died (%s); restarting it", shard_id, pid, _describe_status(status))
            # Every dead shard is marked down before any restart waits for the
            # survivors' acknowledgements: a dead shard never acknowledges.
            for shard_id, _, _ in dead:
                self.segments.mark_down(shard_id)
            for shard_id, _, _ in dead:
                self._restart(shard_id)

    def _reap(self) -> list[tuple[int, int, int]]:
        """(shard id, pid, wait status) of every shard process that has exited; raises
        ChildProcessError when no child is left."""
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                if dead:
                    return dead
                raise
            if pid == 0:
                return dead
            shard_id = next((s for s, p in self.children.items() if p == pid), None)
            if shard_id is not None and not self.stopping:
                dead.append((shard_id, pid, status))

    def _restart(self, shard_id: int) -> None:
        """The restart protocol of ``FabricSegments``: survivors let go, rings reset, replacement up."""
        segments = self.segments
        segments.mark_down(shard_id)
        laggards = segments.wait_acks(shard_id, timeout=5.0, gone=self._exited)
        for laggard in laggards:
            # Its rings with the dead shard are about to be reset under it: restart it too.
            log.error("shard %d did not acknowledge the restart of shard %d in time; restarting it",
                      laggard, shard_id)
            _kill(self.children.get(laggard, 0), signal.SIGKILL)
        segments.reset_peer(shard_id)
        time.sleep(RESTART_BACKOFF_SECONDS)
        if self.stopping:
            return
        pid = self._spawn(shard_id)
        self.awaiting_up[shard_id] = pid

    def _exited(self, shard_id: int) -> bool:
        """Whether shard ``shard_id``'s process has exited (without reaping it: _watch does)."""
        pid = self.children.get(shard_id)
        if pid is None:
            return True
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _mark_started_shards_up(self) -> None:
        """A replacement counts as up once its fabric has attached (it replayed its storage first)."""
        for shard_id, pid in list(self.awaiting_up.items()):
            if self.segments.attached_pid(shard_id) == pid:
                self.segments.mark_up(shard_id)
                del self.awaiting_up[shard_id]
                log.info("shard %d is back (pid %d)", shard_id, pid)

    def _stop_children(self) -> None:
        for pid in self.children.values():
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while self.children and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            self.children = {s: p for s, p in self.children.items() if p != pid}
        for shard_id, pid in self.children.items():
            log.error("shard %d (pid %d) did not stop in time; killing it", shard_id, pid)
            _kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.children.clear()


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def serve(config) -> int:
    from shardserver.logs import setup_logging
    setup_logging(config.log_level, None)
    try:
        return Supervisor(config).run()
    except StartupError as exc:
        print(f"shardserver: {exc}", file=sys.stderr)
        return 2
