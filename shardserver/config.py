"""Server configuration: one table of options, read from a YAML file and the command line.

Every option has one name: ``commitlog_sync`` in the YAML file (as in
scylla.yaml) is ``--commitlog-sync`` on the command line; the command line
wins over the file, the file over the defaults.  This module only parses.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields

import yaml


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


# name, type, default, help
OPTIONS = [
    ("smp", int, 0, "number of shards (0 = the CPUs this process may run on)"),
    ("overprovisioned", _bool, False, "do not pin shards to CPUs nor raise their priority (shared machines)"),
    ("shard_nice", int, -5,
     "CPU priority (nice) each pinned shard takes if started at nice 0 (0 = keep; below 0 needs root)"),
    ("developer_mode", _bool, False, "start even when system settings (aio-max-nr) are short"),
    ("data_dir", str, "./shardserver-data", "data directory"),
    ("alternator_port", int, 8000, "DynamoDB API port"),
    ("alternator_address", str, "127.0.0.1", "address the API listens on"),
    ("alternator_https_port", int, 0, "HTTPS API port (0 = off)"),
    ("alternator_certificate", str, "", "PEM certificate for HTTPS"),
    ("alternator_key", str, "", "PEM private key for HTTPS"),
    ("alternator_write_isolation", str, "always_use_lwt",
     "forbid_rmw | only_rmw_uses_lwt | always_use_lwt | unsafe_rmw (all are safe here: one owner per item)"),
    ("alternator_enforce_authorization", _bool, False, "verify AWS Signature V4 on every request"),
    ("alternator_credentials_file", str, "", "file of 'ACCESS_KEY_ID SECRET' lines"),
    ("prometheus_port", int, 9180, "metrics port (0 = off)"),
    ("prometheus_address", str, "", "metrics address (default: the API address)"),
    ("commitlog_sync", str, "periodic", "periodic | batch"),
    ("commitlog_sync_period_in_ms", int, 10000, "fsync period in periodic mode"),
    ("commitlog_sync_batch_window_in_ms", float, 2.0, "group-commit window in batch mode"),
    ("commitlog_segment_size_in_mb", int, 32, "commit-log segment size"),
    ("durable_writes", _bool, True,
     "write the commit log; false: in memory only until a flush (faster writes, but a crash "
     "loses every acknowledged write not yet flushed to an SSTable; a clean shutdown flushes)"),
    ("memtable_flush_threshold_in_mb", int, 64, "memtable size (per shard) that triggers a flush"),
    ("aio_queue_depth", int, 128, "Linux AIO events reserved per shard"),
    ("compaction_min_threshold", int, 4, "SSTables of similar size that trigger a compaction"),
    ("tombstone_gc_grace_seconds", int, 864000, "age after which compaction may drop tombstones"),
    ("row_cache_in_mb", int, 128, "row cache size per shard (hot items served without any disk read)"),
    ("partition_cache_in_mb", int, 128,
     "partition cache size per shard (whole partitions a Query read, served again without merging; 0 = off)"),
    ("block_cache_in_mb", int, 32, "SSTable block cache size per shard"),
    ("sstable_block_size_in_kb", int, 8, "SSTable data block size"),
    ("ring_size_in_kb", int, 1024, "shared-memory ring size per ordered shard pair"),
    ("fabric_idle_poll_us", int, 0,
     "keep polling the rings this long after traffic before sleeping (lower latency, more CPU)"),
    ("response_compression_threshold", int, 4096, "compress responses over this size when asked"),
    ("log_level", str, "info", "debug | info | warning | error"),
    ("stall_threshold_in_ms", int, 50, "event-loop stalls longer than this are counted"),
    ("ttl_scan_interval_in_s", int, 60, "seconds between Time to Live expiry scans of each shard"),
    ("streams_retention_in_s", int, 86400,
     "seconds a DynamoDB Streams record stays readable (DynamoDB keeps 24 hours)"),
]


@dataclass
class Config:
    smp: int = 0
    overprovisioned: bool = False
    shard_nice: int = -5
    developer_mode: bool = False
    data_dir: str = "./shardserver-data"
    alternator_port: int = 8000
    alternator_address: str = "127.0.0.1"
    alternator_https_port: int = 0
    alternator_certificate: str = ""
    alternator_key: str = ""
    alternator_write_isolation: str = "always_use_lwt"
    alternator_enforce_authorization: bool = False
    alternator_credentials_file: str = ""
    prometheus_port: int = 9180
    prometheus_address: str = ""
    commitlog_sync: str = "periodic"
    commitlog_sync_period_in_ms: int = 10000
    commitlog_sync_batch_window_in_ms: float = 2.0
    commitlog_segment_size_in_mb: int = 32
    durable_writes: bool = True
    memtable_flush_threshold_in_mb: int = 64
    aio_queue_depth: int = 128
    compaction_min_threshold: int = 4
    tombstone_gc_grace_seconds: int = 864000
    row_cache_in_mb: int = 128
    partition_cache_in_mb: int = 128
    block_cache_in_mb: int = 32
    sstable_block_size_in_kb: int = 8
    ring_size_in_kb: int = 1024
    fabric_idle_poll_us: int = 0
    response_compression_threshold: int = 4096
    log_level: str = "info"
    stall_threshold_in_ms: int = 50
    ttl_scan_interval_in_s: int = 60
    streams_retention_in_s: int = 86400

    def validate(self) -> None:
        if self.smp < 0:
            raise ValueError("--smp must be positive")
        if not -20 <= self.shard_nice <= 19:
            raise ValueError("--shard-nice must be between -20 and 19")
        if self.commitlog_sync not in ("periodic", "batch"):
            raise ValueError("--commitlog-sync must be 'periodic' or 'batch'")
        if self.alternator_write_isolation not in ("forbid_rmw", "only_rmw_uses_lwt", "always_use_lwt",
                                                   "unsafe_rmw"):
            raise ValueError("--alternator-write-isolation must be one of forbid_rmw, only_rmw_uses_lwt, "
                             "always_use_lwt, unsafe_rmw")
        if self.alternator_enforce_authorization and not self.alternator_credentials_file:
            raise ValueError("--alternator-enforce-authorization needs --alternator-credentials-file")
        if self.alternator_https_port and not (self.alternator_certificate and self.alternator_key):
            raise ValueError("--alternator-https-port needs --alternator-certificate and --alternator-key")
        if self.ttl_scan_interval_in_s < 1:
            raise ValueError("--ttl-scan-interval-in-s must be at least 1")
        if self.streams_retention_in_s < 1:
            raise ValueError("--streams-retention-in-s must be at least 1")
        if self.memtable_flush_threshold_in_mb < 1 or self.aio_queue_depth < 1:
            raise ValueError("--memtable-flush-threshold-in-mb and --aio-queue-depth must be at least 1")

    @property
    def metrics_address(self) -> str:
        return self.prometheus_address or self.alternator_address


assert [f.name for f in fields(Config)] == [o[0] for o in OPTIONS], "OPTIONS and Config disagree"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (keys as in scylla.yaml)")
    for name, kind, default, text in OPTIONS:
        flag = "--" + name.replace("_", "-")
        if kind is _bool:
            parser.add_argument(flag, nargs="?", const=True, default=None, type=_bool,
                                help=f"{text} (default {default})")
        else:
            parser.add_argument(flag, type=kind, default=None, help=f"{text} (default {default})")


def from_args(args: argparse.Namespace) -> Config:
    values: dict = {}
    if args.config:
        with open(args.config) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping of option: value")
        known = {o[0]: o[1] for o in OPTIONS}
        for key, value in loaded.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ValueError(f"{args.config}: unknown option {key!r}")
            values[name] = known[name](value)
    for name, *_ in OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    config = Config(**values)
    if config.smp == 0:
        config.smp = len(os.sched_getaffinity(0))
    config.data_dir = os.path.abspath(config.data_dir)
    config.validate()
    return config
