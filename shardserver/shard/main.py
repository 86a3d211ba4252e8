"""A shard process: pin to a CPU, open storage, attach the rings, serve.

``run_shard`` is what the supervisor forks.  It pins the process to its
CPU (unless overprovisioned), runs a uvloop event loop, replays its storage
before it listens, listens on the API (and metrics) port with SO_REUSEPORT,
and on SIGTERM stops accepting, finishes in-flight requests, flushes its
memtables and exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time

import uvloop

from shardserver.protocol.server import ApiFrontend, ApiProtocol
from shardserver.protocol.tls import make_server_context
from shardserver.shard.stats import LoopStallDetector, ShardStats

log = logging.getLogger("shardserver.shard")

DRAIN_SECONDS = 10.0


def pin_to_cpu(shard_id: int, cpus: list[int]) -> int | None:
    cpu = cpus[shard_id % len(cpus)]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("could not pin to cpu %d: %s", cpu, exc)
        return None
    return cpu


def take_priority(nice: int) -> int | None:
    """Give the shard a dedicated server's CPU priority; the niceness set, or None.

    On a machine it shares with clients, the kernel otherwise preempts a busy
    shard whenever one of them wakes (~0.4 times per request at --smp 2 with
    the load generator on the same cores), and requests wait out the switch.
    ScyllaDB's packages do the same with a systemd slice of ten times the
    default CPU weight.  Only when nobody chose a niceness (the process is at
    0); without the privilege to go below 0, the shard keeps its priority.
    """
    if nice == 0:
        return None
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != 0:
            return None
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        log.info("kept the default CPU priority: could not set nice %d (%s)", nice, exc)
        return None
    return nice


def listen_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((address, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def storage_options(config):
    from shardserver.shard.storage import StorageOptions
    names = {f for f in StorageOptions.__dataclass_fields__}
    return StorageOptions(**{name: getattr(config, name) for name in names if hasattr(config, name)})


class Shard:
    def __init__(self, shard_id: int, config, segments, cpus: list[int]):
        self.shard_id = shard_id
        self.config = config
        self.segments = segments
        self.cpus = cpus
        self.stop_requested = asyncio.Event()
        self.servers = []

    async def run(self) -> None:
        from shardserver.reactor.smp import Fabric
        from shardserver.shard.service import ShardService
        from shardserver.shard.executor.ttl import ExpiryScanner
        from shardserver.shard import streams
        from shardserver.shard.storage import ShardStorage
        from shardserver.shard.transactions import TransactionTable
        config, shard_id = self.config, self.shard_id
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_credentials)

        stats = _make_stats(shard_id, loop, config)
        started = time.monotonic()
        directory = os.path.join(config.data_dir, f"shard-{shard_id}")
        os.makedirs(directory, exist_ok=True)
        storage = ShardStorage(directory, shard_id, storage_options(config), log=log)
        # Before open(): transaction intents and decisions are replayed from the commit log.
        transactions = TransactionTable(storage, shard_id)
        await storage.open()
        service = ShardService(shard_id, config.smp, config, storage, stats)
        service.transactions = transactions
        service.load_catalog()
        await streams.recover(service)      # sequence numbers go on above the replayed records
        self.service = service
        fabric = Fabric(shard_id, config.smp, self.segments, loop, service.on_message,
                        idle_poll_us=config.fabric_idle_poll_us)
        service.fabric = fabric
        await fabric.start()
        transactions.start(service)
        expiry = ExpiryScanner(service, config.ttl_scan_interval_in_s)
        expiry.start()
        streams.start_trimming(service, config.streams_retention_in_s)
        # Everything allocated so far lives as long as the shard: keep the
        # collector from re-scanning it (full passes were the loop stalls
        # seen during flushes), and collect young objects less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        # The expression parser recurses ~5 frames per nested group and allows
        # 301 of them (parser.MAX_GROUP_DEPTH); Python calls take no C stack in 3.11+.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 4000))
        log.info("storage open and commit log replayed in %.2fs", time.monotonic() - started)

        self.front = ApiFrontend(service, config, authenticator=_make_authenticator(config),
                                 codec=_codec(config))
        front = self.front
        commitlog = storage.commitlog
        if commitlog.enabled and commitlog.sync_mode == "periodic":
            # Every answer and every ring message passes the commit log's
            # barrier, so periodic syncs leave the pwrite to it: one per loop
            # iteration instead of one per write (see docs/commitlog_format.md).
            fabric.before_publish = front.before_send = commitlog.write_pending
            commitlog.acks_wait_for_writes = True
        self.servers.append(await loop.create_server(
            lambda: ApiProtocol(front), sock=listen_socket(config.alternator_address, config.alternator_port)))
        if config.alternator_https_port:
            context = make_server_context(config.alternator_certificate, config.alternator_key)
            self.servers.append(await loop.create_server(
                lambda: ApiProtocol(front),
                sock=listen_socket(config.alternator_address, config.alternator_https_port), ssl=context))
        if config.prometheus_port:
            from shardserver.shard.metrics_http import MetricsProtocol
            self.servers.append(await loop.create_server(
                lambda: MetricsProtocol(service),
                sock=listen_socket(config.metrics_address, config.prometheus_port)))
        log.info("serving on %s:%d", config.alternator_address, config.alternator_port)

        await self.stop_requested.wait()
        log.info("stopping")
        # Drain before storage closes: this shard's clients get the answers
        # being made (their connections then close), other shards' forwarded
        # requests running here finish, and later ones get a retryable refusal.
        for server in self.servers:
            server.close()
        front.stop_serving()
        deadline = time.monotonic() + DRAIN_SECONDS
        while (front.connections or front.in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        service.refusing_forwarded = True
        while service.forwarded_running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await expiry.stop()
        await streams.stop_trimming(service)
        await transactions.stop()
        await storage.close()
        await fabric.stop()
        log.info("stopped")

    def _reload_credentials(self) -> None:
        authenticator = getattr(getattr(self, "front", None), "authenticator", None)
        if authenticator is not None and hasattr(authenticator, "reload"):
            authenticator.reload()


def _make_stats(shard_id, loop, config):
    stats = ShardStats(shard_id)
    stats.stall_detector = LoopStallDetector(loop, config.stall_threshold_in_ms, stats)
    stats.stall_detector.start()
    return stats


def _make_authenticator(config):
    if not config.alternator_enforce_authorization:
        return None
    from shardserver.protocol.auth import Authenticator
    return Authenticator(config.alternator_credentials_file)


def _codec(config):
    from shardserver.protocol import compression
    return compression


def run_shard(shard_id: int, config, segments, cpus: list[int]) -> int:
    """Entry point of a forked shard process; returns the exit status."""
    from shardserver.logs import setup_logging
    setup_logging(config.log_level, shard_id)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    if not config.overprovisioned:
        cpu = pin_to_cpu(shard_id, cpus)
        nice = take_priority(config.shard_nice)
        if cpu is not None:
            log.info("pinned to cpu %d (pid %d)%s", cpu, os.getpid(),
                     f", nice {nice}" if nice is not None else "")
    shard = Shard(shard_id, config, segments, cpus)
    try:
        uvloop.run(shard.run())
    except Exception:
        log.exception("fatal error")
        return 1
    return 0
