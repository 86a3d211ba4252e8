"""The operation registry: one entry per DynamoDB operation.

Each operation is an ``Operation``: ``execute(svc, request) -> bytes`` runs
it on the shard that owns the data and returns the response body, and an
optional ``route(svc, request) -> shard`` names that owner when it is one
shard (single-item operations).  Operations without ``route`` run on the
acceptor and reach other shards themselves through ``svc.submit_to`` /
``svc.broadcast``.  Handlers raise ``shardserver.errors``; they never
format errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    execute: Callable[..., Awaitable[bytes]]
    route: Callable[..., int] | None = None


OPERATIONS: dict[str, Operation] = {}
FABRIC_VERBS: dict[bytes, Callable[..., Awaitable[bytes]]] = {}


def operation(name: str, route=None):
    """Decorator registering ``execute`` for the DynamoDB operation ``name``."""
    def register(execute):
        OPERATIONS[name] = Operation(name, execute, route)
        return execute
    return register


def fabric_verb(verb: bytes):
    """Decorator registering ``handler(svc, src_shard, payload) -> bytes`` for a fabric verb."""
    def register(handler):
        FABRIC_VERBS[verb] = handler
        return handler
    return register


def load_all() -> dict[str, Operation]:
    # Importing the modules registers their operations and fabric verbs.
    from shardserver.shard.executor import (backups, batch, items, partiql, query, streams, tables,  # noqa: F401
                                            transactions, ttl, update, update_table)
    from shardserver.shard.executor import (exports, global_tables, insights, kinesis,  # noqa: F401
                                            resource_policies)
    return OPERATIONS
