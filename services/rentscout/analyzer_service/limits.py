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
from collections.abc import Iterator

from rentscout.analyzer_service import metrics
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.runtime import deadline
from rentscout.runtime.errors import DeadlineExceeded, ResourceExhausted


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
                "retry later")
        self.busy += 1
        metrics.RUNNING.set(self.busy)
        try:
            yield
        finally:
            self.busy -= 1
            metrics.RUNNING.set(self.busy)


@contextlib.contextmanager
def budget(settings: AnalyzerSettings) -> Iterator[int]:
    """The call's deadline shortened to the analysis budget for the rest of the call; yields the budget (ms).

    A deadline, a timeout or a statement_timeout that ends the call becomes DEADLINE_EXCEEDED naming the
    budget that was really in force (the configured one, or the caller's deadline when that was shorter)."""
    configured = settings.statement_timeout_ms / 1000
    left = deadline.call_remaining()
    by_caller = left is not None and left < configured
    seconds = left if by_caller and left is not None else configured
    deadline.set_from_time_remaining(seconds)
    budget_ms = max(1, math.floor(seconds * 1000))
    try:
        yield budget_ms
    except (DeadlineExceeded, TimeoutError) as exc:
        if isinstance(exc, TimeoutError) and not deadline.expired():
            raise  # the server's own bound on a wait (a stuck dependency): UNAVAILABLE, not the budget
        source = "the call's deadline" if by_caller else "RENTSCOUT_ANALYZER_STATEMENT_TIMEOUT_MS"
        raise DeadlineExceeded(f"the analysis ran longer than its budget of {budget_ms} ms ({source}), for all of "
                               "its steps together, and was cancelled") from None
