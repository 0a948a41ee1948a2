"""The generic asyncio circuit breaker in rentscout.runtime.breaker (no network needed)."""

from __future__ import annotations

import asyncio

import pytest

from rentscout.runtime.breaker import BreakerState, CircuitBreaker, CircuitOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_recovers_through_half_open() -> None:
    clock = Clock()
    changes: list[tuple[BreakerState, BreakerState]] = []
    b = CircuitBreaker("dep", failure_threshold=3, reset_timeout=5, clock=clock, on_change=lambda o, n: changes.append((o, n)))
    b.record_failure()
    b.record_failure()
    b.record_success()  # resets the consecutive count
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.retry_after() == pytest.approx(5)
    clock.now += 5
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()  # the one trial call
    assert not b.allow()  # no second trial while the first runs
    b.record_failure()
    assert b.state is BreakerState.OPEN and b.opened_count == 2
    clock.now += 5
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN), (BreakerState.OPEN, BreakerState.HALF_OPEN),
                       (BreakerState.HALF_OPEN, BreakerState.OPEN), (BreakerState.OPEN, BreakerState.HALF_OPEN),
                       (BreakerState.HALF_OPEN, BreakerState.CLOSED)]


def test_abandoned_trial_slot_is_reclaimed_after_reset_timeout() -> None:
    clock = Clock()
    b = CircuitBreaker("dep", failure_threshold=1, reset_timeout=2, clock=clock)
    b.record_failure()
    clock.now += 2
    assert b.allow()  # a trial that never reports (its caller was cancelled)
    assert not b.allow()
    clock.now += 2
    assert b.allow()


async def test_guard_counts_only_failures_chosen_by_is_failure() -> None:
    b = CircuitBreaker("dep", failure_threshold=1, reset_timeout=60,
                       is_failure=lambda exc: isinstance(exc, ConnectionError))
    with pytest.raises(ValueError):
        async with b.guard():
            raise ValueError("the caller's own problem")
    assert b.state is BreakerState.CLOSED

    async def down() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        await b.call(down)
    assert b.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        await b.call(asyncio.sleep, 0)
    assert info.value.retry_after > 59


async def test_cancellation_is_neither_success_nor_failure() -> None:
    b = CircuitBreaker("dep", failure_threshold=1, reset_timeout=60)
    task = asyncio.create_task(b.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state is BreakerState.CLOSED


def test_listener_errors_do_not_break_the_caller() -> None:
    def broken(_old: BreakerState, _new: BreakerState) -> None:
        raise RuntimeError("listener bug")

    b = CircuitBreaker("dep", failure_threshold=1, on_change=broken)
    b.record_failure()
    assert b.state is BreakerState.OPEN
    b.reset()
    assert b.state is BreakerState.CLOSED


def test_rejects_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("dep", failure_threshold=0)
