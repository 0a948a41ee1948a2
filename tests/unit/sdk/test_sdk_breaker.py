"""Circuit breaker transitions, trips (consecutive, failure rate, slow calls), probes, events; sync, async, threads."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client import REGISTRY

from rentscout.resilience.clock import ManualClock
from rentscout.sdk import codes
from rentscout.sdk.breaker import (
    BreakerConfig,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Outcome,
    StateChange,
)
from rentscout.sdk.errors import CircuitOpenError as SdkCircuitOpenError
from rentscout.sdk.errors import InvalidArgumentError, UnavailableError

_names = iter(range(10_000))


def state(b: CircuitBreaker) -> CircuitState:
    """The breaker's state, read afresh: to mypy, `b.state` stays what an earlier assert narrowed it to."""
    return b.state


def make(clock: ManualClock, **kw: object) -> CircuitBreaker:
    kw.setdefault("classify", codes.breaker_outcome)
    return CircuitBreaker(f"unit-{next(_names)}", BreakerConfig(**kw), clock=clock)  # type: ignore[arg-type]


def fail(b: CircuitBreaker, n: int = 1, exc: BaseException | None = None) -> None:
    for _ in range(n):
        b.on_error(b.acquire(), exc or UnavailableError("down"), 0.01)


def succeed(b: CircuitBreaker, n: int = 1, duration: float = 0.01) -> None:
    for _ in range(n):
        b.on_success(b.acquire(), duration)


def test_consecutive_failures_open_the_breaker_and_it_fails_fast() -> None:
    clock = ManualClock()
    b = make(clock)  # defaults: 5 consecutive failures, 60 s recovery
    fail(b, 4)
    assert state(b) is CircuitState.CLOSED
    fail(b)
    assert state(b) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.retry_after == pytest.approx(60.0)
    assert "5 consecutive failures" in str(info.value)


def test_a_success_resets_the_consecutive_count() -> None:
    b = make(ManualClock(), minimum_calls=100)
    for _ in range(3):
        fail(b, 4)
        succeed(b)
    assert state(b) is CircuitState.CLOSED


def test_failure_rate_over_the_window_with_minimum_calls() -> None:
    b = make(ManualClock(), consecutive_failures=0, window_size=10, minimum_calls=10, failure_rate_threshold=0.5)
    for _ in range(4):
        fail(b)
        succeed(b)
    assert state(b) is CircuitState.CLOSED  # 8 calls < minimum even though the rate is 50%
    fail(b)
    assert state(b) is CircuitState.CLOSED  # 9 calls
    fail(b)
    assert state(b) is CircuitState.OPEN  # 10 calls, 6 failures
    with pytest.raises(CircuitOpenError, match="failure rate 60% over 10 calls"):
        b.acquire()


def test_the_window_slides_old_outcomes_out() -> None:
    b = make(ManualClock(), consecutive_failures=0, window_size=4, minimum_calls=4, failure_rate_threshold=0.75)
    fail(b, 2)
    succeed(b, 2)  # 2/4 failed
    fail(b)  # window: F S S F -> 2/4
    assert state(b) is CircuitState.CLOSED
    assert b.snapshot().calls == 4 and b.snapshot().failures == 2
    fail(b, 2)  # window: S F F F -> 3/4
    assert state(b) is CircuitState.OPEN


def test_time_based_window_forgets_old_seconds() -> None:
    clock = ManualClock(start=100.0)
    b = make(clock, consecutive_failures=0, window_seconds=10, minimum_calls=4, failure_rate_threshold=0.5)
    fail(b, 3)
    clock.advance(11)  # those failures left the window
    succeed(b, 2)
    fail(b)
    assert b.snapshot().calls == 3
    assert state(b) is CircuitState.CLOSED
    fail(b)  # 4 calls, 2 failures
    assert state(b) is CircuitState.OPEN


def test_slow_calls_trip_the_breaker() -> None:
    b = make(ManualClock(), minimum_calls=5, slow_call_duration=1.0, slow_call_rate_threshold=0.6)
    succeed(b, 2, duration=0.1)
    succeed(b, 2, duration=2.0)
    assert state(b) is CircuitState.CLOSED
    succeed(b, 1, duration=1.5)  # 3 of 5 slow
    assert state(b) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError, match="slow-call rate"):
        b.acquire()


def test_untimed_calls_never_count_as_slow() -> None:
    b = make(ManualClock(), minimum_calls=1, slow_call_duration=0.001, slow_call_rate_threshold=0.1)
    b.on_success(b.acquire(), None)
    assert state(b) is CircuitState.CLOSED


def test_caller_errors_never_count_as_failures() -> None:
    b = make(ManualClock(), minimum_calls=2)
    fail(b, 20, InvalidArgumentError("bad", violations=[("city", "empty")]))
    assert state(b) is CircuitState.CLOSED
    assert b.snapshot().failures == 0


def test_half_open_probes_close_the_breaker_after_recovery_timeout() -> None:
    clock = ManualClock()
    events: list[StateChange] = []
    b = make(clock, recovery_timeout=30, half_open_probes=2)
    b.add_listener(events.append)
    fail(b, 5)
    clock.advance(29.9)
    with pytest.raises(CircuitOpenError):
        b.acquire()
    clock.advance(0.2)
    assert state(b) is CircuitState.HALF_OPEN  # reported lazily, no timer
    p1 = b.acquire()
    p2 = b.acquire()
    with pytest.raises(CircuitOpenError) as info:  # only 2 probes at a time
        b.acquire()
    assert info.value.state is CircuitState.HALF_OPEN
    b.on_success(p1, 0.01)
    assert state(b) is CircuitState.HALF_OPEN
    b.on_success(p2, 0.01)
    assert state(b) is CircuitState.CLOSED
    assert [(e.old, e.new) for e in events] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_a_failed_probe_reopens_for_a_full_recovery_timeout() -> None:
    clock = ManualClock()
    b = make(clock, recovery_timeout=10, half_open_probes=3)
    fail(b, 5)
    clock.advance(10)
    probe = b.acquire()
    b.on_error(probe, UnavailableError("still down"))
    assert state(b) is CircuitState.OPEN
    clock.advance(9)
    with pytest.raises(CircuitOpenError):
        b.acquire()
    clock.advance(1)
    assert state(b) is CircuitState.HALF_OPEN


def test_a_slow_probe_reopens() -> None:
    clock = ManualClock()
    b = make(clock, recovery_timeout=1, slow_call_duration=2.0)
    fail(b, 5)
    clock.advance(1)
    b.on_success(b.acquire(), 3.0)
    assert state(b) is CircuitState.OPEN


def test_cancelled_probe_frees_its_slot() -> None:
    clock = ManualClock()
    b = make(clock, recovery_timeout=1, half_open_probes=1)
    fail(b, 5)
    clock.advance(1)
    permit = b.acquire()
    b.on_error(permit, asyncio.CancelledError())
    assert state(b) is CircuitState.HALF_OPEN
    b.on_success(b.acquire())
    assert state(b) is CircuitState.CLOSED


def test_outcomes_from_before_a_state_change_are_ignored() -> None:
    clock = ManualClock()
    b = make(clock, recovery_timeout=1, half_open_probes=1)
    old = b.acquire()  # admitted while CLOSED, finishes much later
    fail(b, 5)
    clock.advance(1)
    probe = b.acquire()
    b.on_error(old, UnavailableError("late failure of an old call"))
    assert state(b) is CircuitState.HALF_OPEN
    b.on_success(probe)
    assert state(b) is CircuitState.CLOSED


def test_sync_decorator_and_guard() -> None:
    clock = ManualClock()
    b = make(clock, consecutive_failures=2)
    calls = 0

    @b
    def work(ok: bool) -> str:
        nonlocal calls
        calls += 1
        if not ok:
            raise UnavailableError("down")
        return "done"

    assert work(True) == "done"
    for _ in range(2):
        with pytest.raises(UnavailableError):
            work(False)
    with pytest.raises(CircuitOpenError):
        work(True)
    assert calls == 3  # the last call never ran


async def test_async_call_and_sdk_error_type() -> None:
    clock = ManualClock()
    b = make(clock, consecutive_failures=1, open_error=SdkCircuitOpenError)

    async def down() -> None:
        raise UnavailableError("down")

    with pytest.raises(UnavailableError):
        await b.acall(down)
    with pytest.raises(UnavailableError) as info:  # the SDK's open error is also an UnavailableError
        await b.acall(down)
    assert isinstance(info.value, SdkCircuitOpenError) and isinstance(info.value, CircuitOpenError)
    assert info.value.target == b.name and "failing fast" in str(info.value)


def test_reset_closes() -> None:
    b = make(ManualClock())
    fail(b, 5)
    b.reset()
    assert state(b) is CircuitState.CLOSED and b.snapshot().calls == 0


def test_thread_safety_counts_every_outcome() -> None:
    b = CircuitBreaker("unit-threads", BreakerConfig(consecutive_failures=0, window_size=100_000, minimum_calls=100_000))

    def hammer() -> None:
        for i in range(2000):
            permit = b.acquire()
            if i % 2:
                b.on_success(permit, 0.0)
            else:
                b.on_error(permit, RuntimeError("x"), 0.0)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = b.snapshot()
    assert snap.calls == 16_000 and snap.failures == 8000


def test_metrics_follow_state_and_outcomes() -> None:
    clock = ManualClock()
    b = make(clock, recovery_timeout=5)
    succeed(b, 3)
    fail(b, 5)
    with pytest.raises(CircuitOpenError):
        b.acquire()

    def value(metric: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(metric, {"target": b.name, **labels})

    assert value("rentscout_client_breaker_state") == 1
    assert value("rentscout_client_breaker_calls_total", outcome="success") == 3
    assert value("rentscout_client_breaker_calls_total", outcome="failure") == 5
    assert value("rentscout_client_breaker_calls_total", outcome="rejected") == 1
    assert value("rentscout_client_breaker_transitions_total", from_state="closed", to_state="open") == 1
    clock.advance(5)
    b.acquire()
    assert value("rentscout_client_breaker_state") == 2


def test_registry_gives_one_breaker_per_target() -> None:
    reg = BreakerRegistry(BreakerConfig(consecutive_failures=1), metrics=False)
    a = reg.get("dns:///a:1")
    assert reg.get("dns:///a:1") is a
    assert reg.get("dns:///b:1") is not a
    fail(a)
    assert a.state is CircuitState.OPEN and reg.get("dns:///b:1").state is CircuitState.CLOSED


def test_outcome_classification() -> None:
    from rentscout.sdk.errors import (
        CallCancelledError,
        DeadlineExceededError,
        InternalError,
        NotFoundError,
        ResourceExhaustedError,
    )

    assert codes.breaker_outcome(UnavailableError("x")) is Outcome.FAILURE
    assert codes.breaker_outcome(DeadlineExceededError("x")) is Outcome.FAILURE
    assert codes.breaker_outcome(InternalError("x")) is Outcome.FAILURE
    assert codes.breaker_outcome(NotFoundError("x")) is Outcome.SUCCESS
    assert codes.breaker_outcome(CallCancelledError("x")) is Outcome.IGNORE
    assert codes.breaker_outcome(ResourceExhaustedError("x")) is Outcome.IGNORE  # busy, not broken
    assert codes.breaker_outcome(asyncio.CancelledError()) is Outcome.IGNORE


def test_invalid_configuration_is_rejected() -> None:
    for bad in (
        {"failure_rate_threshold": 0},
        {"window_size": 0},
        {"half_open_probes": 0},
        {"window_seconds": 0},
        {"recovery_timeout": -1},
    ):
        with pytest.raises(ValueError):
            BreakerConfig(**bad)  # type: ignore[arg-type]
