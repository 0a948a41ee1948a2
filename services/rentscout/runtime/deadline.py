"""Deadline budget of the current RPC, so database and Redis work never outlives the caller, and the
server's own bound on every wait, so no wait outlives `RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS` either.

`remaining()` is what a single wait on a dependency may take: the call's time left, capped by the
server's bound (which applies even when the client set no deadline). A wait that ends by the bound
while the call still has time left is the dependency's fault (UNAVAILABLE, see `classify.classify`);
one that ends with the call's deadline is DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from rentscout.runtime.errors import DeadlineExceeded

DEFAULT_BOUND_SECONDS = 30.0
_deadline: ContextVar[float | None] = ContextVar("rpc_deadline", default=None)
_bound = [DEFAULT_BOUND_SECONDS]  # process-wide: set once from the runtime settings at start


def configure(bound_seconds: float) -> None:
    """The server's bound on any one wait on a dependency (RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS)."""
    _bound[0] = bound_seconds


def bound() -> float:
    return _bound[0]


def set_from_time_remaining(time_remaining: float | None) -> None:
    """Record the RPC deadline (as grpc's `context.time_remaining()` gives it; None = no deadline)."""
    _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


def call_remaining() -> float | None:
    """Seconds left before the call's own deadline (None: the client set none); raises when none is left.

    Only for waits that may rightly last longer than the bound because progress is watched some other
    way (an export's COPY, whose inactivity is bounded by its pump)."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the call's deadline expired")
    return left


def expired() -> bool:
    """True when the current call had a deadline and it has passed (timers may fire a hair early)."""
    deadline = _deadline.get()
    return deadline is not None and deadline <= time.monotonic() + 0.005


def remaining(cap: float | None = None) -> float:
    """Seconds one wait may take: the call's time left, capped by `cap` and by the server's bound.
    Raises DeadlineExceeded when the call has no time left."""
    limit = _bound[0] if cap is None else min(cap, _bound[0])
    left = call_remaining()
    return limit if left is None else min(limit, left)
