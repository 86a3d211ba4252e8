"""Doorbells: one non-blocking eventfd per shard, to wake a sleeping loop.

The supervisor creates every doorbell before it forks the shards, so each
shard inherits all of them: it watches its own in its event loop and rings
the others'.  This module owns creating, ringing and clearing those eventfds.

It must never decide when to ring (that is the fabric's sleep/wake
hand-shake in smp.py) and must never block: a full counter or an empty read
is not an error.  The receiving side clears its doorbell *before* it drains
its rings, never after, or a ring that arrives in between is lost.
"""

from __future__ import annotations

import os


def create() -> int:
    """A new doorbell.  Close-on-exec: forked shards inherit it, exec'd tools do not."""
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def ring(fd: int) -> None:
    try:
        os.eventfd_write(fd, 1)
    except BlockingIOError:
        # The counter is saturated, so the receiver has a wake-up pending anyway.
        pass


def clear(fd: int) -> bool:
    """Reset the counter; True if the doorbell had been rung."""
    try:
        os.eventfd_read(fd)
        return True
    except BlockingIOError:
        return False


def close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
