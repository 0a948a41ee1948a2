"""Bounds on the work of one analysis: a single budget for the whole call, and a cap on how many run at once.

The budget is one deadline that every step of the call shares (pool wait, checks, the statement, the
counts): each wait on PostgreSQL gets what is left of it, and each statement's statement_timeout is no
longer. A per-step timeout let a call whose message said "10000 ms" run for 25 s.

Memory has no per-backend limit in PostgreSQL: work_mem, hash_mem_multiplier and temp_file_limit bound
sorts, hashes and temporary files (`session.memory_limits`), but a single value can take up to 1 GB. So
the number of statements that execute at once is capped per server: the worst case is that number
times one statement's worst case (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar

from rentscout.analyzer_service import metrics
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.runtime import deadline
from rentscout.runtime.errors import DeadlineExceeded, ResourceExhausted, Unavailable


class Slots:
    """At most `size` analyses at once in this process; the next is refused at once, never queued (a queue
    would hold callers beyond their budget while the database is the bottleneck)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        if self.busy >= self.size:
            metrics.REFUSED.inc()
            raise ResourceExhausted(
                f"{self.size} analyses are already running on this server (RENTSCOUT_ANALYZER_MAX_CONCURRENT_STATEMENTS); "
                "retry later"
            )
        self.busy += 1
        metrics.RUNNING.set(self.busy)
        try:
            yield
        finally:
            self.busy -= 1
            metrics.RUNNING.set(self.busy)


# How long past the budget the analyzer waits for PostgreSQL to cancel a statement itself (its
# statement_timeout is the budget): a server that has not answered by then is stuck, not slow.
GRACE_SECONDS = 2.0
_budget_end: ContextVar[float | None] = ContextVar("analyzer_budget_end", default=None)


def statement_timeout_ms(configured_ms: int) -> int:
    """What is left of the budget (at most `configured_ms`, at least 1 ms): the statement_timeout of the next
    statements, so that PostgreSQL cancels them itself when the budget runs out."""
    end = _budget_end.get()
    left = deadline.remaining() if end is None else min(end - time.monotonic(), deadline.remaining())
    return max(1, min(configured_ms, int(left * 1000)))


@contextlib.contextmanager
def budget(settings: AnalyzerSettings) -> Iterator[int]:
    """One budget for the rest of the call; yields it (ms).

    PostgreSQL enforces it (statement_timeout, kept to what is left: `statement_timeout_ms`); the server's
    waits end `GRACE_SECONDS` later. So a statement cancelled at the budget is DEADLINE_EXCEEDED naming the
    budget really in force (the configured one, or the caller's deadline when that is shorter), and a
    PostgreSQL that did not answer even then is UNAVAILABLE, as any frozen dependency."""
    configured = settings.statement_timeout_ms / 1000
    left = deadline.call_remaining()
    by_caller = left is not None and left <= configured
    seconds = left if by_caller and left is not None else configured
    budget_ms = max(1, math.floor(seconds * 1000))
    if not by_caller:
        deadline.set_from_time_remaining(configured + GRACE_SECONDS if left is None else min(left, configured + GRACE_SECONDS))
    caller_bound = left is not None and left < configured + GRACE_SECONDS
    token = _budget_end.set(time.monotonic() + seconds)
    source = "the call's deadline" if by_caller else "RENTSCOUT_ANALYZER_STATEMENT_TIMEOUT_MS"
    exceeded = (
        f"the analysis ran longer than its budget of {budget_ms} ms ({source}), for all of its steps together, and was cancelled"
    )
    try:
        yield budget_ms
    except DeadlineExceeded:
        raise DeadlineExceeded(exceeded) from None
    except TimeoutError:
        if not deadline.expired():
            raise  # the server's own bound on a wait (a stuck dependency): UNAVAILABLE, not the budget
        if caller_bound:
            raise DeadlineExceeded(exceeded) from None
        raise Unavailable(
            f"PostgreSQL did not cancel the analysis at its budget of {budget_ms} ms nor answer "
            f"{GRACE_SECONDS:g} s later: it is stuck or unreachable"
        ) from None
    finally:
        _budget_end.reset(token)
