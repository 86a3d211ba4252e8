"""Logging setup for the supervisor and the shards.

What it is: `setup_logging(level, shard)`, called once per process (the
supervisor with shard=None, each shard with its number) to send one line per
event to stderr, each line naming its process: "shard 3: flushed ..." or
"supervisor: shard 3 exited ...".

What it owns: the line format, the level syntax (a default level plus
per-logger overrides, like Scylla's --logger-log-level), and the rule that
per-request logging (logger "shardserver.requests") stays off unless asked
for by name.

What it must never do: log request bodies, credentials or secrets (callers
own their messages; this module only formats), or let a message with
newlines spread one event over several lines.
"""

from __future__ import annotations

import logging
import sys
import time

REQUEST_LOGGER = "shardserver.requests"

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_OURS = "_shardserver_handler"
# Loggers given their own level by the previous call, reset on the next one.
_overridden: set[str] = set()


class ShardFormatter(logging.Formatter):
    """`2025-01-31T12:00:00.123Z INFO  shard 1: [storage] message`.

    UTC with milliseconds, so lines from different shards sort and merge.
    Newlines inside a message are escaped; a traceback keeps its lines, each
    prefixed with the same header, so `grep 'shard 1:'` still finds all.
    """

    def __init__(self, shard: int | None):
        super().__init__()
        self.who = "supervisor" if shard is None else f"shard {shard}"

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"
        name = record.name
        if name.startswith("shardserver."):
            name = name[len("shardserver."):]
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        head = f"{stamp} {record.levelname:<5} {self.who}:"
        line = f"{head} [{name}] {message}"
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "".join(f"\n{head}   {tb}" for tb in record.exc_text.splitlines())
        return line


def parse_levels(spec: str) -> tuple[int, dict[str, int]]:
    """"info" or "info,shardserver.storage=debug,requests=info" ->
    (default level, {logger name: level}).  Logger names without a dot are
    taken inside the shardserver package."""
    default = logging.INFO
    per_logger: dict[str, int] = {}
    for part in (spec or "info").split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, level_name = part.partition("=")
        if not eq:
            name, level_name = "", part
        level = _LEVELS.get(level_name.strip().lower())
        if level is None:
            raise ValueError(
                f"unknown log level {level_name.strip()!r}; use one of "
                + ", ".join(sorted(_LEVELS))
            )
        name = name.strip()
        if not name:
            default = level
        else:
            if "." not in name and name != "shardserver":
                name = "shardserver." + name
            per_logger[name] = level
    return default, per_logger


def setup_logging(level: str = "info", shard: int | None = None, stream=None) -> None:
    """Route all logging of this process to one stderr line per event.

    Safe to call again (after fork, or to change the level): the handler
    installed by a previous call is replaced, others are left alone.
    """
    default, per_logger = parse_levels(level)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _OURS, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _OURS, True)
    handler.setFormatter(ShardFormatter(shard))
    root.addHandler(handler)
    root.setLevel(default)
    # One line per request is too much for a server doing 100k requests/s;
    # it is only on when named explicitly.
    logging.getLogger(REQUEST_LOGGER).setLevel(
        per_logger.pop(REQUEST_LOGGER, logging.WARNING)
    )
    for name in _overridden - set(per_logger):
        logging.getLogger(name).setLevel(logging.NOTSET)
    _overridden.clear()
    for name, lvl in per_logger.items():
        logging.getLogger(name).setLevel(lvl)
        _overridden.add(name)
    logging.captureWarnings(True)
