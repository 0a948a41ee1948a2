"""Retries with backoff, jitter, deadlines, server pushback and a retry budget; sync and async.

Pure Python, no gRPC: what counts as retryable is a predicate (the SDK passes a status-code aware
one, see `rentscout.sdk.codes`). One policy object serves three uses:

    policy = RetryPolicy(max_attempts=5, strategy=RetryStrategy.FIBONACCI)
    policy.execute(lambda: fetch())                 # sync, returns fetch()'s result
    await policy.aexecute(lambda: afetch())         # async
    @policy                                         # decorator, sync or async function
    def fetch(): ...

`retry_advanced(...)` builds the same policy from keyword arguments, for use as a decorator.

Delays (before jitter, capped at `max_delay`; retry n = 1 is the first retry):
EXPONENTIAL initial*factor^(n-1); LINEAR initial*n; FIBONACCI initial*fib(n) with fib = 1,1,2,3,5..;
RANDOM uniform(initial, max_delay) (already random, so not jittered). Jitter FULL (the default)
picks uniformly in [0, delay] (AWS "full jitter"), EQUAL in [delay/2, delay], NONE keeps delay.
A server pushback (`grpc-retry-pushback-ms`, exposed by exceptions as `retry_pushback` seconds)
replaces the computed delay; a negative pushback means "do not retry".
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from rentscout.resilience.clock import SYSTEM_CLOCK, Clock

_log = logging.getLogger(__name__)
T = TypeVar("T")

# Exceptions that end a call at once, whatever the policy says.
_NEVER_RETRY = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)


class RetryStrategy(StrEnum):
    EXPONENTIAL = "exponential"
    LINEAR = "linear"
    FIBONACCI = "fibonacci"
    RANDOM = "random"


class Jitter(StrEnum):
    NONE = "none"
    FULL = "full"
    EQUAL = "equal"


@dataclass(frozen=True)
class RetryEvent:
    """Passed to `on_retry` before each wait: the attempt that failed and what happens next."""

    attempt: int  # attempts made so far (1 means the first call failed)
    delay: float  # seconds until the next attempt
    error: BaseException
    elapsed: float  # seconds since the first attempt started
    pushback: bool = False  # the delay came from the server


class RetryBudget:
    """Token bucket that stops retry storms (the algorithm of gRPC's `retryThrottling`).

    Each retryable failure takes one token, each success gives back `token_ratio`; retries are
    allowed only while more than half of `max_tokens` remain. When a target is down, every call
    fails once and stops, instead of multiplying the load by `max_attempts`. Thread-safe.
    """

    def __init__(self, max_tokens: float = 10.0, token_ratio: float = 0.1) -> None:
        if max_tokens <= 0 or token_ratio <= 0:
            raise ValueError("max_tokens and token_ratio must be positive")
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self._tokens = self.max_tokens
        self._lock = threading.Lock()

    @property
    def tokens(self) -> float:
        return self._tokens

    def record_failure(self) -> None:
        with self._lock:
            self._tokens = max(0.0, self._tokens - 1.0)

    def record_success(self) -> None:
        if self._tokens >= self.max_tokens:  # the common case costs no lock
            return
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.token_ratio)

    def allows_retry(self) -> bool:
        return self._tokens > self.max_tokens / 2


def _retry_any_exception(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


def pushback_attribute(exc: BaseException) -> float | None:
    """Server-requested delay in seconds carried by an exception (`retry_pushback`), if any."""
    value = getattr(exc, "retry_pushback", None)
    return float(value) if isinstance(value, (int, float)) else None


def _as_predicate(retry_on: Any) -> Callable[[BaseException], bool]:
    if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
        retry_on = (retry_on,)
    if isinstance(retry_on, tuple):
        types = retry_on
        return lambda exc: isinstance(exc, types)
    if callable(retry_on):
        predicate: Callable[[BaseException], bool] = retry_on
        return predicate
    raise TypeError("retry_on must be an exception type, a tuple of them, or a predicate")


def fibonacci(n: int) -> int:
    """fib(1) = fib(2) = 1."""
    a, b = 1, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return a


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; see the module docstring for the delay formulas."""

    max_attempts: int = 4
    initial_delay: float = 0.1
    max_delay: float = 5.0
    backoff_factor: float = 2.0
    strategy: RetryStrategy = RetryStrategy.EXPONENTIAL
    jitter: Jitter = Jitter.FULL
    # Exception types, or a predicate: which failures are worth another attempt.
    retry_on: Any = _retry_any_exception
    on_retry: Callable[[RetryEvent], object] | None = None
    pushback: Callable[[BaseException], float | None] = pushback_attribute
    budget: RetryBudget | None = None
    # Overall time for all attempts, from the first one (None: only an explicit deadline bounds it).
    timeout: float | None = None
    clock: Clock = SYSTEM_CLOCK
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.backoff_factor < 1:
            raise ValueError("backoff_factor must be at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")
        object.__setattr__(self, "strategy", RetryStrategy(self.strategy))
        object.__setattr__(self, "jitter", Jitter(self.jitter))
        object.__setattr__(self, "retry_on", _as_predicate(self.retry_on))

    def replace(self, **changes: Any) -> RetryPolicy:
        return dataclasses.replace(self, **changes)

    # -- delays ------------------------------------------------------------------------------

    def base_delay(self, retry: int) -> float:
        """Delay before retry number `retry` (1-based), before jitter, capped at max_delay."""
        if retry < 1:
            raise ValueError("retry numbers start at 1")
        if self.strategy is RetryStrategy.RANDOM:
            return self.rng.uniform(min(self.initial_delay, self.max_delay), self.max_delay)
        if self.strategy is RetryStrategy.LINEAR:
            value = self.initial_delay * retry
        elif self.strategy is RetryStrategy.FIBONACCI:
            value = self.initial_delay * fibonacci(min(retry, 1400))  # fib(1400) is already ~1e292
        else:
            try:
                value = self.initial_delay * self.backoff_factor ** (retry - 1)
            except OverflowError:
                value = float("inf")
        return min(value, self.max_delay)

    def delay(self, retry: int) -> float:
        """The jittered delay actually slept before retry number `retry`."""
        base = self.base_delay(retry)
        if self.strategy is RetryStrategy.RANDOM or self.jitter is Jitter.NONE:
            return base
        if self.jitter is Jitter.EQUAL:
            return base / 2 + self.rng.uniform(0, base / 2)
        return self.rng.uniform(0, base)

    # -- the decision after a failed attempt --------------------------------------------------

    def _deadline(self, deadline: float | None, started: float) -> float | None:
        if self.timeout is None:
            return deadline
        own = started + self.timeout
        return own if deadline is None else min(own, deadline)

    def _next_delay(self, attempt: int, exc: BaseException, started: float, deadline: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None to give up (a note on `exc` says why)."""
        if isinstance(exc, _NEVER_RETRY) or not self.retry_on(exc):
            return None
        if self.budget is not None:
            self.budget.record_failure()
        reason = None
        pushback = self.pushback(exc)
        if attempt >= self.max_attempts:
            reason = f"all {self.max_attempts} attempts failed"
        elif pushback is not None and pushback < 0:
            reason = "the server asked not to retry (negative retry pushback)"
        elif self.budget is not None and not self.budget.allows_retry():
            reason = "the retry budget of this target is exhausted (too many recent failures)"
        if reason is None:
            delay = pushback if pushback is not None else self.delay(attempt)
            now = self.clock.monotonic()
            if deadline is not None and now + delay >= deadline:
                reason = f"the deadline leaves no time for attempt {attempt + 1}"
            else:
                self._notify(RetryEvent(attempt, delay, exc, now - started, pushback is not None))
                return delay
        _annotate(exc, attempt, reason)
        return None

    def _notify(self, event: RetryEvent) -> None:
        if self.on_retry is None:
            return
        try:
            self.on_retry(event)
        except Exception:  # a broken callback must not turn a retryable failure into a crash
            _log.exception("on_retry callback failed")

    def _succeeded(self) -> None:
        if self.budget is not None:
            self.budget.record_success()

    # -- running -------------------------------------------------------------------------------

    def execute(self, fn: Callable[[], T], *, deadline: float | None = None) -> T:
        """Call `fn` until it succeeds or the policy gives up (then its last error is raised).

        `deadline` is an absolute `clock.monotonic()` time no attempt may start after.
        """
        started = self.clock.monotonic()
        deadline = self._deadline(deadline, started)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = fn()
            except BaseException as exc:
                delay = self._next_delay(attempt, exc, started, deadline)
                if delay is None:
                    raise
                self.clock.sleep(delay)
            else:
                self._succeeded()
                return result

    async def aexecute(self, fn: Callable[[], Awaitable[T]], *, deadline: float | None = None) -> T:
        """`execute` for coroutines: waits with the clock's async sleep, never blocks the loop."""
        started = self.clock.monotonic()
        deadline = self._deadline(deadline, started)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await fn()
            except BaseException as exc:
                delay = self._next_delay(attempt, exc, started, deadline)
                if delay is None:
                    raise
                await self.clock.async_sleep(delay)
            else:
                self._succeeded()
                return result

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Use the policy as a decorator of a sync or async function."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self.aexecute(lambda: fn(*args, **kwargs))

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return self.execute(lambda: fn(*args, **kwargs))

        return wrapper


def _annotate(exc: BaseException, attempts: int, reason: str) -> None:
    try:
        exc.retry_attempts = attempts  # type: ignore[attr-defined]
    except AttributeError:
        pass
    exc.add_note(f"retry gave up after {attempts} attempt(s): {reason}")


def retry_advanced(
    max_attempts: int = 3,
    strategy: RetryStrategy | str = RetryStrategy.EXPONENTIAL,
    initial_delay: float = 1.0,
    max_delay: float = 60.0,
    backoff_factor: float = 2.0,
    jitter: bool | Jitter = True,
    exceptions: Any = (Exception,),
    on_retry: Callable[[RetryEvent], object] | None = None,
    timeout: float | None = None,
    budget: RetryBudget | None = None,
    clock: Clock = SYSTEM_CLOCK,
    rng: random.Random | None = None,
) -> RetryPolicy:
    """A RetryPolicy from keyword arguments, usable as a decorator:
    `@retry_advanced(max_attempts=5, strategy=RetryStrategy.LINEAR)`.

    `jitter=True` means full jitter; `exceptions` is a type, tuple of types or predicate.
    """
    if isinstance(jitter, bool):
        jitter = Jitter.FULL if jitter else Jitter.NONE
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_delay=initial_delay,
        max_delay=max_delay,
        backoff_factor=backoff_factor,
        strategy=RetryStrategy(strategy),
        jitter=jitter,
        retry_on=exceptions,
        on_retry=on_retry,
        timeout=timeout,
        budget=budget,
        clock=clock,
        rng=rng or random.Random(),
    )
