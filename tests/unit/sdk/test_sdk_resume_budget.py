"""ResumeBudget: progress is a breaker success and resets the backoff; only empty attempts fail; give up by time."""

from __future__ import annotations

import random

import pytest

from rentscout.resilience.clock import ManualClock
from rentscout.resilience.retry import Jitter, RetryBudget, RetryPolicy
from rentscout.sdk import codes
from rentscout.sdk.breaker import BreakerConfig, CircuitBreaker, CircuitState
from rentscout.sdk.errors import CircuitOpenError, UnavailableError
from rentscout.sdk.resume import ResumeBudget

_names = iter(range(10_000))


def setup(clock: ManualClock, max_stall: float = 30.0) -> tuple[ResumeBudget, CircuitBreaker]:
    breaker = CircuitBreaker(
        f"resume-{next(_names)}", BreakerConfig(classify=codes.breaker_outcome, open_error=CircuitOpenError), clock=clock
    )
    policy = RetryPolicy(initial_delay=0.2, max_delay=10.0, jitter=Jitter.NONE, clock=clock, rng=random.Random(1))
    return ResumeBudget(policy, max_stall, breaker=breaker, retry_budget=RetryBudget(), clock=clock), breaker


def cut() -> UnavailableError:
    return UnavailableError("Stream removed (recvmsg:Connection reset by peer)")


def test_cuts_after_progress_never_open_the_breaker_nor_back_off_nor_give_up() -> None:
    clock = ManualClock()
    budget, breaker = setup(clock, max_stall=5.0)
    changes: list[object] = []
    breaker.add_listener(changes.append)
    for _ in range(200):  # far more cuts than consecutive_failures, over far more time than max_stall
        attempt = budget.attempt()
        clock.advance(1.0)
        attempt.chunk()
        clock.advance(1.0)
        assert budget.broke(attempt, cut()) == 0.0
    assert changes == [] and breaker.state is CircuitState.CLOSED
    assert budget.resumes == 200 and budget.stuck == 0
    assert breaker.snapshot().failures == 0 and breaker.snapshot().calls == 50  # the window: all successes


def test_empty_attempts_are_failures_back_off_and_open_the_breaker() -> None:
    clock = ManualClock()
    budget, breaker = setup(clock, max_stall=300.0)
    delays = []
    for _ in range(5):
        attempt = budget.attempt()
        delays.append(budget.broke(attempt, cut()))
        clock.advance(delays[-1])
    assert delays == [0.2, 0.4, 0.8, 1.6, 10.0]  # the fifth: the target's retry budget is spent, so max_delay
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as refused:
        budget.attempt()
    # An open breaker is waited out, within the budget, and is not an attempt of its own.
    assert budget.broke(None, refused.value) == pytest.approx(50.0)  # opened 10 s ago
    assert budget.stuck == 5


def test_progress_resets_the_backoff() -> None:
    clock = ManualClock()
    budget, _ = setup(clock)
    for _ in range(3):
        budget.broke(budget.attempt(), cut())
    attempt = budget.attempt()
    attempt.chunk()
    assert budget.broke(attempt, cut()) == 0.0
    # the first empty attempt after a cut that followed progress may have met the dying connection: at once
    assert budget.broke(budget.attempt(), cut()) == 0.0
    assert budget.broke(budget.attempt(), cut()) == 0.4  # then the backoff goes on from where it is
    assert budget.stuck == 2


def test_only_the_first_empty_attempt_after_progress_is_reopened_at_once() -> None:
    clock = ManualClock()
    budget, breaker = setup(clock)
    # from the start, without progress: the backoff applies from the first empty attempt
    assert budget.broke(budget.attempt(), cut()) == 0.2
    attempt = budget.attempt()
    attempt.chunk()
    budget.broke(attempt, cut())
    assert budget.routine  # a cut after progress: logged at info
    delays, routine = [], []
    for _ in range(4):
        delays.append(budget.broke(budget.attempt(), cut()))
        routine.append(budget.routine)
    assert delays == [0.0, 0.4, 0.8, 1.6]
    assert routine == [True, False, False, False]  # one empty attempt after the cut is routine, more are warned of
    assert breaker.snapshot().failures == 5  # every empty attempt still counts against the breaker


def test_gives_up_after_max_stall_without_progress_saying_so() -> None:
    clock = ManualClock()
    budget, _ = setup(clock, max_stall=5.0)
    attempt = budget.attempt()
    attempt.chunk()
    budget.broke(attempt, cut())
    failure = cut()
    with pytest.raises(UnavailableError) as info:
        while True:
            clock.advance(1.0 + budget.broke(budget.attempt(), failure, context="export stopped"))
    assert info.value is failure
    assert any(n.startswith("export stopped: no progress for") and "resume timeout (5s)" in n for n in info.value.__notes__)
    assert clock.now - budget.last_progress <= 5.0 + 1.0


def test_an_open_breaker_past_the_budget_gives_up_at_once() -> None:
    clock = ManualClock()
    budget, _ = setup(clock, max_stall=20.0)
    for _ in range(5):
        budget.broke(budget.attempt(), cut())
    with pytest.raises(CircuitOpenError) as refused:
        budget.attempt()
    with pytest.raises(CircuitOpenError) as info:
        budget.broke(None, refused.value)
    assert any("circuit breaker stays open" in n and "resume timeout (20s)" in n for n in info.value.__notes__)


def test_a_probe_that_delivers_closes_the_breaker_even_if_its_stream_is_cut() -> None:
    clock = ManualClock()
    budget, breaker = setup(clock)
    for _ in range(5):
        budget.broke(budget.attempt(), cut())
    clock.advance(60.0)
    for _ in range(3):  # half_open_probes
        attempt = budget.attempt()
        attempt.chunk()
        budget.broke(attempt, cut())
    assert breaker.state is CircuitState.CLOSED


def test_an_abandoned_attempt_says_nothing_and_a_finished_empty_one_is_a_success() -> None:
    clock = ManualClock()
    budget, breaker = setup(clock)
    budget.attempt().abandoned()
    assert breaker.snapshot().calls == 0
    budget.attempt().finished()
    assert breaker.snapshot().calls == 1 and breaker.snapshot().failures == 0
