"""Circuit breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED/OPEN; thread-safe and asyncio-friendly.

Pure Python (no gRPC, no metrics): what a failure is comes from `classify`, which the SDK sets to a
status-code aware function (caller errors such as INVALID_ARGUMENT never count against the server).
Who publishes what about a breaker is up to its owner: pass a `BreakerObserver` (the SDK's publishes
`rentscout_client_breaker_*`; the cache service reports its Redis breaker in its own metrics).

- CLOSED: calls pass. Outcomes go into a sliding window (the last `window_size` calls, or the last
  `window_seconds` seconds). The breaker opens when, with at least `minimum_calls` in the window,
  the failure rate reaches `failure_rate_threshold` or the slow-call rate (calls longer than
  `slow_call_duration`) reaches `slow_call_rate_threshold`; or at once after
  `consecutive_failures` failures in a row (5 by default).
- OPEN: calls fail fast with `CircuitOpenError` (it says when the next probe is allowed) until
  `recovery_timeout` has passed; then the next call moves the breaker to HALF_OPEN. No timers run.
- HALF_OPEN: `half_open_probes` calls go through; all succeeding closes the breaker, the first
  failure (or slow call) re-opens it; further calls fail fast while probes are in flight.

The state check of a closed breaker is one attribute read (well under a microsecond); recording an
outcome takes a short lock that never spans an await, so one breaker is safe from threads and from
coroutines at once. Outcomes of calls admitted before a state change are ignored (a slow call
started while CLOSED cannot close a breaker that opened meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Protocol, TypeVar

from rentscout.resilience.clock import SYSTEM_CLOCK, Clock

_log = logging.getLogger(__name__)
T = TypeVar("T")


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    IGNORE = "ignore"  # neither (e.g. the caller cancelled): frees a probe slot, touches no counter


class CircuitOpenError(Exception):
    """The breaker of `name` is not letting calls through; retry after `retry_after` seconds."""

    def __init__(self, name: str, state: CircuitState, retry_after: float, reason: str = "") -> None:
        self.name = name
        self.state = state
        self.retry_after = max(0.0, retry_after)
        self.reason = reason
        super().__init__(open_message(name, state, self.retry_after, reason))


def open_message(name: str, state: CircuitState, retry_after: float, reason: str) -> str:
    what = "open" if state is CircuitState.OPEN else "half-open with all probe calls in flight"
    why = f" ({reason})" if reason else ""
    return f"circuit breaker for {name} is {what}{why}; failing fast, next probe in {retry_after:.1f}s"


def default_classify(exc: BaseException) -> Outcome:
    """Any exception is a failure, except cancellation (the caller gave up, not the callee)."""
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit)):
        return Outcome.IGNORE
    return Outcome.FAILURE


@dataclass(frozen=True)
class BreakerConfig:
    failure_rate_threshold: float = 0.5
    window_size: int = 50
    # When set, the window is the last N seconds (1-second buckets) instead of the last N calls.
    window_seconds: int | None = None
    minimum_calls: int = 10
    consecutive_failures: int = 5  # 0 disables the consecutive-failure trip
    slow_call_duration: float | None = 10.0  # None disables slow-call detection
    slow_call_rate_threshold: float = 0.8
    recovery_timeout: float = 60.0
    half_open_probes: int = 3
    classify: Callable[[BaseException], Outcome] = default_classify
    # Exception type raised when failing fast (the SDK uses a subclass that is also UnavailableError).
    open_error: type[CircuitOpenError] = CircuitOpenError

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate_threshold <= 1 or not 0 < self.slow_call_rate_threshold <= 1:
            raise ValueError("rate thresholds must be in (0, 1]")
        if self.window_size < 1 or self.minimum_calls < 1 or self.half_open_probes < 1:
            raise ValueError("window_size, minimum_calls and half_open_probes must be at least 1")
        if self.window_seconds is not None and self.window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")
        if self.consecutive_failures < 0 or self.recovery_timeout < 0:
            raise ValueError("consecutive_failures and recovery_timeout must not be negative")


@dataclass(frozen=True)
class StateChange:
    name: str
    old: CircuitState
    new: CircuitState
    reason: str
    at: float  # clock.monotonic()


@dataclass(frozen=True)
class WindowSnapshot:
    calls: int
    failures: int
    slow: int

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_rate(self) -> float:
        return self.slow / self.calls if self.calls else 0.0


class _CountWindow:
    """The last `size` outcomes in a ring, with running totals (O(1) per call)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reset()

    def reset(self) -> None:
        self.ring = [-1] * self.size  # bit 1: failure, bit 2: slow; -1: empty slot
        self.pos = self.calls = self.failures = self.slow = 0

    def add(self, failed: bool, slow: bool, now: float) -> None:
        old = self.ring[self.pos]
        if old >= 0:
            self.calls -= 1
            self.failures -= old & 1
            self.slow -= (old >> 1) & 1
        self.ring[self.pos] = int(failed) | (int(slow) << 1)
        self.pos = (self.pos + 1) % self.size
        self.calls += 1
        self.failures += int(failed)
        self.slow += int(slow)

    def counts(self, now: float) -> tuple[int, int, int]:
        return self.calls, self.failures, self.slow

    def snapshot(self, now: float) -> WindowSnapshot:
        return WindowSnapshot(self.calls, self.failures, self.slow)


class _TimeWindow:
    """Outcomes of the last `seconds` seconds in per-second buckets."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.reset()

    def reset(self) -> None:
        # each bucket: [epoch_second, calls, failures, slow]
        self.buckets = [[-1, 0, 0, 0] for _ in range(self.seconds)]

    def add(self, failed: bool, slow: bool, now: float) -> None:
        second = int(now)
        bucket = self.buckets[second % self.seconds]
        if bucket[0] != second:
            bucket[:] = [second, 0, 0, 0]
        bucket[1] += 1
        bucket[2] += int(failed)
        bucket[3] += int(slow)

    def counts(self, now: float) -> tuple[int, int, int]:
        oldest = int(now) - self.seconds + 1
        calls = failures = slow = 0
        for second, c, f, s in self.buckets:
            if second >= oldest:
                calls, failures, slow = calls + c, failures + f, slow + s
        return calls, failures, slow

    def snapshot(self, now: float) -> WindowSnapshot:
        return WindowSnapshot(*self.counts(now))


STATE_VALUE = {CircuitState.CLOSED: 0, CircuitState.OPEN: 1, CircuitState.HALF_OPEN: 2}  # for gauges


class BreakerObserver(Protocol):
    """What a breaker reports as it works (e.g. to metrics); every method must be cheap and never raise."""

    def state(self, state: CircuitState) -> None: ...

    def call(self, outcome: Outcome, slow: bool) -> None: ...

    def rejected(self) -> None: ...

    def transition(self, change: StateChange) -> None: ...


class CircuitBreaker:
    """One breaker guards one dependency (the SDK keeps one per target: `rentscout.sdk.breaker.BreakerRegistry`)."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        observer: BreakerObserver | None = None,
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self.clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._window: _CountWindow | _TimeWindow = (
            _TimeWindow(self.config.window_seconds) if self.config.window_seconds else _CountWindow(self.config.window_size)
        )
        self._consecutive = 0
        self._opened_at = 0.0
        self._open_reason = ""
        self._probes_admitted = 0
        self._probes_succeeded = 0
        self._listeners: list[Callable[[StateChange], object]] = []
        self._observer = observer
        if observer is not None:
            observer.state(CircuitState.CLOSED)

    # -- observation ---------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; an OPEN breaker whose recovery timeout passed reports HALF_OPEN."""
        if self._state is CircuitState.OPEN and self.clock.monotonic() >= self._opened_at + self.config.recovery_timeout:
            return CircuitState.HALF_OPEN
        return self._state

    def snapshot(self) -> WindowSnapshot:
        with self._lock:
            return self._window.snapshot(self.clock.monotonic())

    def add_listener(self, listener: Callable[[StateChange], object]) -> None:
        """Called after every state change (outside the breaker's lock)."""
        self._listeners.append(listener)

    # -- the call protocol: acquire, then exactly one of on_success / on_error / release ------

    def acquire(self) -> int:
        """Admit a call or raise `CircuitOpenError`; returns a permit for the outcome methods."""
        if self._state is CircuitState.CLOSED:  # the hot path: one read, no lock
            return self._generation
        changes: list[StateChange] = []
        with self._lock:
            now = self.clock.monotonic()
            if self._state is CircuitState.OPEN:
                if now < self._opened_at + self.config.recovery_timeout:
                    self._rejected()
                    raise self.config.open_error(
                        self.name, CircuitState.OPEN, self._opened_at + self.config.recovery_timeout - now, self._open_reason
                    )
                changes.append(self._transition(CircuitState.HALF_OPEN, "recovery timeout elapsed", now))
            if self._state is CircuitState.HALF_OPEN:
                if self._probes_admitted >= self.config.half_open_probes:
                    self._rejected()
                    raise self.config.open_error(self.name, CircuitState.HALF_OPEN, 0.0, "probing recovery")
                self._probes_admitted += 1
            permit = self._generation
        self._dispatch(changes)
        return permit

    def on_success(self, permit: int, duration: float | None = None) -> None:
        """`duration` in seconds (None: not timed, e.g. a long stream; never counts as slow)."""
        self._record(permit, Outcome.SUCCESS, duration)

    def on_error(self, permit: int, exc: BaseException, duration: float | None = None) -> Outcome:
        outcome = self.config.classify(exc)
        self._record(permit, outcome, duration)
        return outcome

    def release(self, permit: int) -> None:
        """The admitted call never ran (or its outcome says nothing about the target)."""
        self._record(permit, Outcome.IGNORE, None)

    # -- conveniences ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """`with breaker.guard(): ...` (also around an `await` inside a coroutine)."""
        permit = self.acquire()
        started = self.clock.monotonic()
        try:
            yield
        except BaseException as exc:
            self.on_error(permit, exc, self.clock.monotonic() - started)
            raise
        self.on_success(permit, self.clock.monotonic() - started)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.guard():
            return fn(*args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        with self.guard():
            return await fn(*args, **kwargs)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a sync or async function."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return self.call(fn, *args, **kwargs)

        return wrapper

    def reset(self) -> None:
        """Force CLOSED with an empty window (operator action)."""
        with self._lock:
            change = self._transition(CircuitState.CLOSED, "reset", self.clock.monotonic())
        self._dispatch([change])

    # -- internals (called with or taking the lock) ------------------------------------------------

    def _record(self, permit: int, outcome: Outcome, duration: float | None) -> None:
        cfg = self.config
        slow = duration is not None and cfg.slow_call_duration is not None and duration >= cfg.slow_call_duration
        if self._observer is not None:
            self._observer.call(outcome, slow)
        change: StateChange | None = None
        with self._lock:
            if permit != self._generation:
                return  # admitted under an earlier state: says nothing about the current one
            now = self.clock.monotonic()
            if self._state is CircuitState.CLOSED:
                if outcome is not Outcome.IGNORE:
                    failed = outcome is Outcome.FAILURE
                    self._window.add(failed, slow, now)
                    self._consecutive = self._consecutive + 1 if failed else 0
                    reason = self._trip_reason(now)
                    if reason:
                        change = self._transition(CircuitState.OPEN, reason, now)
            elif self._state is CircuitState.HALF_OPEN:
                if outcome is Outcome.IGNORE:
                    self._probes_admitted -= 1
                elif outcome is Outcome.FAILURE or slow:
                    change = self._transition(
                        CircuitState.OPEN, "a probe call was slow" if outcome is Outcome.SUCCESS else "a probe call failed", now
                    )
                else:
                    self._probes_succeeded += 1
                    if self._probes_succeeded >= cfg.half_open_probes:
                        change = self._transition(CircuitState.CLOSED, f"{cfg.half_open_probes} probe call(s) succeeded", now)
        if change is not None:
            self._dispatch([change])

    def _trip_reason(self, now: float) -> str | None:
        """Why the breaker must open now (None: stay closed). Called on every outcome, so no allocations."""
        cfg = self.config
        if cfg.consecutive_failures and self._consecutive >= cfg.consecutive_failures:
            return f"{self._consecutive} consecutive failures"
        calls, failures, slow = self._window.counts(now)
        if calls < cfg.minimum_calls:
            return None
        if failures >= cfg.failure_rate_threshold * calls:
            return f"failure rate {failures / calls:.0%} over {calls} calls"
        if cfg.slow_call_duration is not None and slow >= cfg.slow_call_rate_threshold * calls:
            return f"slow-call rate {slow / calls:.0%} over {calls} calls (>= {cfg.slow_call_duration}s)"
        return None

    def _transition(self, new: CircuitState, reason: str, now: float) -> StateChange:
        old = self._state
        self._state = new
        self._generation += 1
        self._window.reset()
        self._consecutive = 0
        self._probes_admitted = self._probes_succeeded = 0
        if new is CircuitState.OPEN:
            self._opened_at = now
            self._open_reason = reason
        return StateChange(self.name, old, new, reason, now)

    def _rejected(self) -> None:
        if self._observer is not None:
            self._observer.rejected()

    def _dispatch(self, changes: list[StateChange]) -> None:
        for change in changes:
            if self._observer is not None:
                self._observer.transition(change)
            level = logging.WARNING if change.new is CircuitState.OPEN else logging.INFO
            _log.log(
                level,
                "circuit breaker %s: %s -> %s (%s)",
                change.name,
                change.old.value,
                change.new.value,
                change.reason,
                extra={"fields": {"breaker.name": change.name, "breaker.state": change.new.value}},
            )
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:
                    _log.exception("circuit breaker listener failed")
