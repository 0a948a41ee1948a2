"""Deadline budget of the current RPC, so database and Redis work never outlives the caller."""

from __future__ import annotations

import time
from contextvars import ContextVar

from rentscout.runtime.errors import DeadlineExceeded

_deadline: ContextVar[float | None] = ContextVar("rpc_deadline", default=None)


def set_from_time_remaining(time_remaining: float | None) -> None:
    """Record the RPC deadline (as grpc's `context.time_remaining()` gives it; None = no deadline)."""
    _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


def remaining(cap: float | None = None) -> float | None:
    """Seconds left for this call, bounded by `cap`; raises DeadlineExceeded when none is left."""
    deadline = _deadline.get()
    if deadline is None:
        return cap
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the call's deadline expired")
    return left if cap is None else min(cap, left)
