"""Retry policy: delay sequences, jitter bounds, caps, deadlines, pushback, budget; sync and async (fake clock)."""

from __future__ import annotations

import random

import grpc
import pytest

from rentscout.resilience.clock import ManualClock
from rentscout.resilience.retry import Jitter, RetryBudget, RetryEvent, RetryPolicy, RetryStrategy, retry_advanced
from rentscout.sdk import codes
from rentscout.sdk.errors import InvalidArgumentError, ResourceExhaustedError, UnavailableError


class Flaky:
    """Fails with the given errors in order, then returns "ok"; counts calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self) -> str:
        return self()


NEVER_RETRYABLE = sorted(codes.NEVER_RETRYABLE, key=lambda c: c.name)


def unavailable() -> UnavailableError:
    return UnavailableError("down")


def policy(**kw: object) -> RetryPolicy:
    kw.setdefault("jitter", Jitter.NONE)
    kw.setdefault("clock", ManualClock())
    return RetryPolicy(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (RetryStrategy.EXPONENTIAL, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]),
        (RetryStrategy.LINEAR, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        (RetryStrategy.FIBONACCI, [0.1, 0.1, 0.2, 0.3, 0.5, 0.8]),
    ],
)
def test_delay_sequence_of_each_strategy(strategy: RetryStrategy, expected: list[float]) -> None:
    p = policy(strategy=strategy, initial_delay=0.1, max_delay=100)
    assert [round(p.base_delay(n), 6) for n in range(1, 7)] == expected


def test_exponential_uses_backoff_factor_and_max_delay_caps_every_strategy() -> None:
    p = policy(initial_delay=1, backoff_factor=3, max_delay=20)
    assert [p.base_delay(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]
    for strategy in RetryStrategy:
        capped = policy(strategy=strategy, initial_delay=1, max_delay=2.5)
        assert all(capped.base_delay(n) <= 2.5 for n in range(1, 50))
    huge = policy(initial_delay=1, backoff_factor=10, max_delay=7)
    assert huge.base_delay(5000) == 7  # no OverflowError


def test_random_strategy_stays_between_initial_and_max_delay() -> None:
    p = policy(strategy=RetryStrategy.RANDOM, initial_delay=0.5, max_delay=2.0, rng=random.Random(7))
    values = [p.delay(n) for n in range(1, 200)]
    assert all(0.5 <= v <= 2.0 for v in values)
    assert len(set(values)) > 100  # actually random, not a constant


def test_full_jitter_is_default_and_bounded_by_the_base_delay() -> None:
    p = RetryPolicy(initial_delay=0.1, max_delay=1.0, rng=random.Random(1))
    assert p.jitter is Jitter.FULL
    for n in range(1, 8):
        samples = [p.delay(n) for _ in range(300)]
        base = p.base_delay(n)
        assert all(0 <= s <= base for s in samples)
        assert min(samples) < base * 0.2 and max(samples) > base * 0.8  # spread over the whole range


def test_equal_jitter_keeps_at_least_half_the_delay() -> None:
    p = RetryPolicy(initial_delay=0.4, jitter=Jitter.EQUAL, rng=random.Random(3))
    samples = [p.delay(1) for _ in range(300)]
    assert all(0.2 <= s <= 0.4 for s in samples)


def test_sync_retry_sleeps_the_sequence_and_calls_on_retry() -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    p = policy(clock=clock, max_attempts=4, initial_delay=0.1, on_retry=events.append)
    fn = Flaky(unavailable(), unavailable(), unavailable())
    assert p.execute(fn) == "ok"
    assert fn.calls == 4
    assert [round(s, 6) for s in clock.sleeps] == [0.1, 0.2, 0.4]
    assert [e.attempt for e in events] == [1, 2, 3]
    assert [round(e.elapsed, 6) for e in events] == [0, 0.1, 0.3]
    assert all(isinstance(e.error, UnavailableError) for e in events)


async def test_async_retry_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = ManualClock()
    p = policy(clock=clock, max_attempts=3)
    last = UnavailableError("third")
    fn = Flaky(unavailable(), unavailable(), last, unavailable())
    with pytest.raises(UnavailableError) as info:
        await p.aexecute(fn.acall)
    assert info.value is last
    assert fn.calls == 3 and len(clock.sleeps) == 2
    assert info.value.retry_attempts == 3  # type: ignore[attr-defined]
    assert any("all 3 attempts failed" in n for n in info.value.__notes__)


def test_non_retryable_errors_are_raised_at_once() -> None:
    p = policy(retry_on=lambda e: codes.is_retryable(e, idempotent=True))
    fn = Flaky(InvalidArgumentError("bad", violations=[("city", "empty")]))
    with pytest.raises(InvalidArgumentError):
        p.execute(fn)
    assert fn.calls == 1


def test_retry_on_accepts_exception_types() -> None:
    p = policy(retry_on=(KeyError,))
    assert p.execute(Flaky(KeyError("x"))) == "ok"
    with pytest.raises(ValueError):
        p.execute(Flaky(ValueError("x")))


def test_deadline_stops_retrying_before_it_would_pass() -> None:
    clock = ManualClock(start=0.0)
    p = policy(clock=clock, max_attempts=10, initial_delay=1.0, max_delay=100)
    fn = Flaky(*[unavailable() for _ in range(10)])
    # delays 1, 2, 4: after the third failure (t=3) the next wait (4s) would end at t=7 > deadline 6
    with pytest.raises(UnavailableError) as info:
        p.execute(fn, deadline=6.0)
    assert fn.calls == 3
    assert clock.now <= 6.0
    assert any("deadline" in n for n in info.value.__notes__)


def test_policy_timeout_is_an_overall_deadline_from_the_first_attempt() -> None:
    clock = ManualClock(start=50.0)
    p = policy(clock=clock, max_attempts=10, initial_delay=1.0, timeout=2.5)
    fn = Flaky(*[unavailable() for _ in range(10)])
    with pytest.raises(UnavailableError):
        p.execute(fn)
    assert fn.calls == 2 and clock.sleeps == [1.0]  # 1 + 2 would end at 53 > 52.5


def test_server_pushback_replaces_the_delay_and_negative_pushback_stops() -> None:
    clock = ManualClock()
    p = policy(clock=clock, initial_delay=0.1)
    pushed = UnavailableError("busy", retry_pushback=1.5)
    assert p.execute(Flaky(pushed)) == "ok"
    assert clock.sleeps == [1.5]
    stop = UnavailableError("go away", retry_pushback=-1.0)
    fn = Flaky(stop)
    with pytest.raises(UnavailableError):
        p.execute(fn)
    assert fn.calls == 1


def test_retry_budget_stops_a_retry_storm_and_refills_on_success() -> None:
    budget = RetryBudget(max_tokens=4, token_ratio=0.5)
    p = policy(max_attempts=5, budget=budget)
    fn = Flaky(*[unavailable() for _ in range(20)])
    with pytest.raises(UnavailableError) as info:
        p.execute(fn)
    # tokens 4 -> 3 -> 2: the second failure leaves 2, which is not > 4/2, so retrying stops
    assert fn.calls == 2
    assert any("budget" in n for n in info.value.__notes__)
    fn2 = Flaky(unavailable())
    with pytest.raises(UnavailableError):  # still throttled: one attempt only
        p.execute(fn2)
    assert fn2.calls == 1
    for _ in range(6):
        p.execute(lambda: "ok")  # 6 successes give back 3 tokens
    assert budget.tokens > 2
    assert p.execute(Flaky(unavailable())) == "ok"


def test_idempotency_decides_resource_exhausted() -> None:
    exhausted = ResourceExhaustedError("full")
    assert codes.is_retryable(exhausted, idempotent=True)
    assert not codes.is_retryable(exhausted, idempotent=False)
    assert codes.is_retryable(unavailable(), idempotent=False)


def test_decorator_form_sync_and_async() -> None:
    clock = ManualClock()
    fn = Flaky(unavailable(), unavailable())

    @retry_advanced(max_attempts=3, strategy="linear", initial_delay=2, jitter=False, clock=clock)
    def work(x: int) -> str:
        return fn() + str(x)

    assert work(1) == "ok1"
    assert clock.sleeps == [2, 4]
    assert work.__name__ == "work"


async def test_async_decorator_uses_async_sleep() -> None:
    clock = ManualClock()
    fn = Flaky(unavailable())

    @policy(clock=clock, initial_delay=0.3)
    async def work() -> str:
        return fn()

    assert await work() == "ok"
    assert clock.sleeps == [0.3]


def test_broken_on_retry_callback_does_not_break_the_call() -> None:
    def boom(_: RetryEvent) -> None:
        raise RuntimeError("callback bug")

    assert policy(on_retry=boom).execute(Flaky(unavailable())) == "ok"


def test_invalid_configuration_is_rejected() -> None:
    for bad in ({"max_attempts": 0}, {"initial_delay": -1}, {"backoff_factor": 0.5}, {"timeout": 0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)
    with pytest.raises(TypeError):
        RetryPolicy(retry_on=42)


def test_never_retries_cancellation_even_if_the_predicate_says_so() -> None:
    import asyncio

    fn = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        policy(retry_on=lambda e: True).execute(fn)
    assert fn.calls == 1


@pytest.mark.parametrize("code", NEVER_RETRYABLE)
def test_never_retryable_codes(code: grpc.StatusCode) -> None:
    from rentscout.sdk.errors import error_class

    exc = error_class(code)("x")
    assert not codes.is_retryable(exc, idempotent=True)


def test_attempt_deadline_is_retryable_only_for_idempotent_calls() -> None:
    from rentscout.sdk.errors import DeadlineExceededError

    overall = DeadlineExceededError("caller deadline")
    attempt = DeadlineExceededError("attempt deadline")
    attempt.attempt_timeout_expired = True  # type: ignore[attr-defined]
    assert not codes.is_retryable(overall, idempotent=True)
    assert codes.is_retryable(attempt, idempotent=True)
    assert not codes.is_retryable(attempt, idempotent=False)
    assert not codes.is_retryable(ValueError("not an rpc error"), idempotent=True)
