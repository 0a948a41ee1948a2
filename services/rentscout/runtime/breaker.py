"""A small asyncio circuit breaker with no gRPC or Redis dependency, shared by services and clients.

Why: when a dependency is down or slow, waiting for it on every call multiplies latency and piles
load on it as it tries to recover. After `failure_threshold` consecutive failures the breaker
OPENs and callers skip the dependency at once (fail fast or fail open, their choice). After
`reset_timeout` seconds it goes HALF_OPEN and lets `half_open_max_calls` trial calls through: a
success CLOSEs it, a failure OPENs it again.

Two ways to use it:

    breaker = CircuitBreaker("redis", failure_threshold=5, reset_timeout=5.0)

    # 1. guard a call (raises CircuitOpenError without calling when open)
    result = await breaker.call(client.get, "key")
    async with breaker.guard():
        await client.get("key")

    # 2. hot paths that must not allocate: ask, then report
    if breaker.allow():
        try:
            value = await client.get("key")
        except ConnectionError:
            breaker.record_failure()
        else:
            breaker.record_success()

Which exceptions count as failures is decided by `is_failure` (default: any Exception); others
(a caller's bad input, say) pass through and count as successes of the dependency.
`on_change(old, new)` listeners see every transition (for logs, metrics, caches to flush).
Cancellation (asyncio.CancelledError) is neither a success nor a failure; a half-open trial slot
abandoned that way is reclaimed after `reset_timeout`.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

_log = logging.getLogger(__name__)
T = TypeVar("T")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """The breaker is open: the call was not attempted."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name!r} is open; next attempt in {retry_after:.2f}s")
        self.name = name
        self.retry_after = retry_after


Listener = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """Consecutive-failure breaker; not thread-safe (one per event loop)."""

    def __init__(self, name: str, *, failure_threshold: int = 5, reset_timeout: float = 5.0,
                 half_open_max_calls: int = 1, is_failure: Callable[[BaseException], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic, on_change: Listener | None = None) -> None:
        if failure_threshold < 1 or half_open_max_calls < 1 or reset_timeout < 0:
            raise ValueError("failure_threshold and half_open_max_calls must be >= 1, reset_timeout >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_max_calls = half_open_max_calls
        self._is_failure = is_failure or (lambda exc: isinstance(exc, Exception))
        self._clock = clock
        self._listeners: list[Listener] = [on_change] if on_change else []
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._trials: list[float] = []  # start times of half-open trial calls in flight
        self.opened_count = 0  # times it went CLOSED/HALF_OPEN -> OPEN

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; an OPEN breaker whose reset timeout passed reads as HALF_OPEN."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
            self._set(BreakerState.HALF_OPEN)
        return self._state

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.reset_timeout - (self._clock() - self._opened_at))

    def _set(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
            self.opened_count += 1
        self._failures = 0
        self._trials.clear()
        if old is not new:
            for listener in list(self._listeners):
                try:
                    listener(old, new)
                except Exception:  # a broken listener must not break the caller's path
                    _log.exception("circuit breaker %s listener failed", self.name)

    # -- ask / report --------------------------------------------------------------------------

    def allow(self) -> bool:
        """May a call go to the dependency now? In HALF_OPEN this reserves a trial slot."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self._clock()
        self._trials = [t for t in self._trials if now - t < max(self.reset_timeout, 0.001)]
        if len(self._trials) < self.half_open_max_calls:
            self._trials.append(now)
            return True
        return False

    def record_success(self) -> None:
        if self._state is BreakerState.CLOSED:
            self._failures = 0
        elif self._state is BreakerState.HALF_OPEN:
            self._set(BreakerState.CLOSED)
        # a late success of a call started before the breaker opened changes nothing

    def record_failure(self) -> None:
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._set(BreakerState.OPEN)
        elif state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._set(BreakerState.OPEN)

    def force_open(self) -> None:
        """Open now (e.g. a health probe saw the dependency die)."""
        self._set(BreakerState.OPEN)

    def reset(self) -> None:
        """Close now, forgetting failures."""
        self._set(BreakerState.CLOSED)

    # -- guarded calls -------------------------------------------------------------------------

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the body if allowed (else raise CircuitOpenError) and record its outcome."""
        if not self.allow():
            raise CircuitOpenError(self.name, self.retry_after())
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, Exception) and self._is_failure(exc):
                self.record_failure()
            elif isinstance(exc, Exception):
                self.record_success()
            raise
        else:
            self.record_success()

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async with self.guard():
            return await fn(*args, **kwargs)
