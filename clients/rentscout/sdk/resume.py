"""When a broken stream is re-opened, and when a reader gives up: by progress, never by count.

Long streams get cut by routine network events (a load balancer's stream timeout, a proxy recycling
connections, the server's `max_connection_age` GOAWAY). Such a cut says nothing bad about the target,
so every stream reader (`ExportStream` under `export()`, `export_arrow()` and `download()`, and the
Flight reader) paces and bounds resuming with one `ResumeBudget`:

- An attempt that delivered at least one whole chunk is a success for the target's breaker (recorded
  at that first chunk) and resets the backoff: the next attempt starts at once.
- Only an attempt that delivered nothing is a failure: for the breaker (so a target that really fails
  still opens it), for the retry budget, and for the backoff (`policy.delay(n)` for the n-th in a row).
  The first one right after a cut that followed progress is re-opened at once too: started the
  instant the old stream broke, it often meets the dying connection (a "Broken pipe" before the
  request left) and says nothing of the target; backing it off cost 0.5 s in 103 cuts of
  `bench/export_bench.py --flaky`. The one after it backs off as usual.
- The reader gives up only when no chunk arrived for `max_stall` seconds (the CLI's `--resume-timeout`),
  however many times it was cut while advancing; an open breaker is waited out within that budget.

Usage, per attempt: `attempt = budget.attempt()` (raises the breaker's open error when it refuses),
`attempt.chunk()` for every whole chunk, then exactly one of `attempt.finished()`, `attempt.abandoned()`
(the consumer stopped) or `delay = budget.broke(attempt, failure)` (raises `failure` when giving up).
"""

from __future__ import annotations

from rentscout.resilience.breaker import CircuitBreaker, CircuitOpenError
from rentscout.resilience.clock import Clock
from rentscout.resilience.retry import RetryBudget, RetryPolicy


class StreamAttempt:
    """One attempt of a stream under the target's breaker: a success at its first whole chunk."""

    __slots__ = ("_budget", "_permit", "chunks", "recorded")

    def __init__(self, budget: ResumeBudget, permit: int) -> None:
        self._budget = budget
        self._permit = permit
        self.chunks = 0
        self.recorded = False  # the breaker already has this attempt's outcome

    @property
    def progressed(self) -> bool:
        return self.chunks > 0

    def chunk(self) -> None:
        """A whole chunk arrived (the caller has taken its rows and resume token)."""
        self.chunks += 1
        if self.chunks == 1:
            self._record_success()
            self._budget.progress()

    def finished(self) -> None:
        """The stream ended normally (an empty export too: the server answered)."""
        self._record_success()

    def abandoned(self) -> None:
        """The consumer stopped reading, or the attempt never ran: says nothing about the target."""
        if not self.recorded:
            self.recorded = True
            self._budget.breaker.release(self._permit)

    def failed(self, failure: BaseException) -> None:
        """The attempt ended in `failure`; only an attempt that delivered nothing counts against the breaker."""
        if not self.recorded:
            self.recorded = True
            self._budget.breaker.on_error(self._permit, failure, None)

    def _record_success(self) -> None:
        if not self.recorded:
            self.recorded = True
            self._budget.breaker.on_success(self._permit, None)  # a stream's duration is never "slow"


class ResumeBudget:
    """Pacing and the no-progress limit of one resumable stream; see the module docstring."""

    def __init__(
        self,
        policy: RetryPolicy,
        max_stall: float,
        *,
        breaker: CircuitBreaker,
        retry_budget: RetryBudget | None = None,
        clock: Clock | None = None,
    ) -> None:
        if max_stall <= 0:
            raise ValueError("max_stall must be positive")
        self.policy = policy
        self.max_stall = max_stall
        self.breaker = breaker
        self.retry_budget = retry_budget
        self.clock = clock or policy.clock
        self.stuck = 0  # attempts in a row that delivered nothing
        self._cut_after_progress = False  # the last break was of an attempt that had delivered
        self.resumes = 0  # breaks that were resumed
        self.last_progress = self.clock.monotonic()

    def progress(self) -> None:
        """A whole chunk arrived: the no-progress clock and the backoff start over."""
        self.stuck = 0
        self.last_progress = self.clock.monotonic()
        if self.retry_budget is not None:
            self.retry_budget.record_success()

    def stalled_for(self) -> float:
        return self.clock.monotonic() - self.last_progress

    def remaining(self) -> float:
        """Seconds left before the no-progress limit (0 when reached)."""
        return max(0.0, self.max_stall - self.stalled_for())

    @property
    def routine(self) -> bool:
        """Whether the break `broke` just resumed is routine, for the reader's log line (info, not warning): a
        cut after progress (GOAWAY, a proxy's RST, a load balancer's stream timeout), or one empty attempt
        after it (re-opened at once, it may still meet the dying connection); more in a row is not."""
        return self._cut_after_progress or self.stuck <= 1

    def attempt(self) -> StreamAttempt:
        """Admit one attempt through the target's breaker (raises its open error when refused)."""
        return StreamAttempt(self, self.breaker.acquire())

    def broke(
        self,
        attempt: StreamAttempt | None,
        failure: BaseException,
        *,
        deadline: float | None = None,
        context: str = "gave up resuming",
    ) -> float:
        """Seconds to wait before the next attempt; raises `failure` with a note "<context>: <why>" when giving up.

        `attempt` is None when the breaker refused one (`failure` is its open error): not an attempt.
        A break after progress is resumed at once (unless the server pushed back); from the first
        attempt that delivered nothing on, the policy's backoff applies, slowed to `max_delay` while
        the target's retry budget is exhausted.
        """
        reason: str | None = None
        if attempt is not None:
            attempt.failed(failure)
        pushback = getattr(failure, "retry_pushback", None)
        if isinstance(failure, CircuitOpenError):
            delay = max(failure.retry_after, 0.001)
        elif attempt is not None and attempt.progressed:
            delay = pushback if pushback is not None and pushback >= 0 else 0.0
            self.last_progress = self.clock.monotonic()  # the stall clock starts at the break, not the last chunk
        else:
            self.stuck += 1
            if self.retry_budget is not None:
                self.retry_budget.record_failure()
            if pushback is not None and pushback >= 0:
                delay = pushback
            elif self.stuck == 1 and self._cut_after_progress:
                delay = 0.0  # it may have met the dying connection
            else:
                delay = self.policy.delay(self.stuck)
            if self.stuck > 1 and self.retry_budget is not None and not self.retry_budget.allows_retry():
                delay = max(delay, self.policy.max_delay)
        if pushback is not None and pushback < 0:
            reason = "the server asked not to retry"
        now = self.clock.monotonic()
        stalled = now - self.last_progress
        if reason is None and stalled + delay > self.max_stall:
            if isinstance(failure, CircuitOpenError):
                reason = (
                    f"no progress for {stalled:.1f}s and the circuit breaker stays open for another "
                    f"{delay:.1f}s, past the resume timeout ({self.max_stall:g}s)"
                )
            else:
                reason = (
                    f"no progress for {stalled:.1f}s; the next attempt (in {delay:.1f}s) would fall past the "
                    f"resume timeout ({self.max_stall:g}s)"
                )
        if reason is None and deadline is not None and now + delay >= deadline:
            reason = "the deadline leaves no time to resume"
        if reason is not None:
            failure.add_note(f"{context}: {reason}")
            raise failure
        self._cut_after_progress = attempt is not None and attempt.progressed
        self.resumes += 1
        return delay
