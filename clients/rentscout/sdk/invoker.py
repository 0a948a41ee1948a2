"""The resilient call path every typed client uses.

One unary call is: overall deadline -> retry (with the target's retry budget) -> circuit breaker
-> one attempt with its own timeout. Every attempt of a call carries the same metadata: the
bearer token, `x-correlation-id` (the caller's, from `rentscout.wire.correlation`, else a new one)
and the W3C `traceparent` of a client span; retries add `grpc-previous-rpc-attempts`.
Failures come out as the typed exceptions of `rentscout.sdk.errors`.

Breakers and retry budgets are per target and shared by every client of that target in the
process, so a dead replica set trips one breaker, whichever client noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from opentelemetry import propagate, trace

from rentscout.resilience.breaker import BreakerConfig, CircuitBreaker
from rentscout.resilience.retry import RetryBudget, RetryEvent, RetryPolicy
from rentscout.sdk import codes, errors, metrics
from rentscout.sdk.breaker import BreakerRegistry
from rentscout.sdk.channel import ChannelConfig, create_channel
from rentscout.wire.correlation import correlation_id as current_correlation_id
from rentscout.wire.correlation import new_correlation_id
from rentscout.wire.metadata import AUTHORIZATION_HEADER, CORRELATION_HEADER, PREVIOUS_ATTEMPTS_HEADER

_log = logging.getLogger("rentscout.sdk")
_tracer = trace.get_tracer("rentscout.sdk")
_NO_SPAN = contextlib.nullcontext()


_tracing = {"on": False, "checked": -1.0}


def _tracing_on() -> bool:
    """A real TracerProvider is installed (else client spans would be no-ops costing microseconds).

    Once installed it stays (OpenTelemetry allows setting it once); until then, look again at most
    once a second, since the lookup reads the environment.
    """
    if _tracing["on"]:
        return True
    now = time.monotonic()
    if now - _tracing["checked"] >= 1.0:
        _tracing["checked"] = now
        _tracing["on"] = not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    return bool(_tracing["on"])


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()  # "use the client's configured value"


def default_retry_policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, initial_delay=0.05, max_delay=2.0)


def default_breaker_config() -> BreakerConfig:
    return BreakerConfig(classify=codes.breaker_outcome, open_error=errors.CircuitOpenError)


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs besides the request. `timeout` is the overall deadline of a call."""

    target: str
    token: str | None = None
    timeout: float | None = 30.0
    attempt_timeout: float | None = None
    retry: RetryPolicy = field(default_factory=default_retry_policy)
    breaker: BreakerConfig = field(default_factory=default_breaker_config)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    metadata: tuple[tuple[str, str], ...] = ()
    # Before a retry, wait up to this long for the channel to (re)connect. A channel that lost its
    # server fails calls at once while it backs off reconnecting, so retrying blindly would burn
    # every attempt in milliseconds during a brief restart. First attempts never wait (fail fast).
    reconnect_wait: float = 1.0
    # False: plain calls without retry or breaker (for comparison in benchmarks, or debugging).
    resilience: bool = True

    def replace(self, **changes: Any) -> ClientConfig:
        return replace(self, **changes)


# -- per-target state shared by every client in the process ------------------------------------

BREAKERS = BreakerRegistry(default_breaker_config())
_BUDGETS: dict[str, RetryBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def retry_budget(target: str) -> RetryBudget:
    budget = _BUDGETS.get(target)
    if budget is None:
        with _BUDGETS_LOCK:
            budget = _BUDGETS.setdefault(target, RetryBudget())
    return budget


class AttemptTimeout:
    """Marks a DEADLINE_EXCEEDED caused by the per-attempt timeout (retryable) rather than the caller's."""

    @staticmethod
    def mark(exc: errors.RentScoutError) -> None:
        exc.attempt_timeout_expired = True  # type: ignore[attr-defined]


class Invoker:
    """Calls methods of one service on one target through the resilience stack."""

    def __init__(
        self,
        config: ClientConfig,
        service: str,
        stub_factory: Any,
        *,
        channel: grpc.aio.Channel | None = None,
        breakers: BreakerRegistry | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.channel = channel or create_channel(config.target, config.channel)
        self._owns_channel = channel is None
        self.stub = stub_factory(self.channel)
        self.clock = config.retry.clock
        self.breaker: CircuitBreaker = (breakers or BREAKERS).get(config.target, config.breaker)
        self.budget = retry_budget(config.target)
        self._policies = {idem: self._policy(idem) for idem in (True, False)}
        self._static_md: tuple[tuple[str, str], ...] = tuple(config.metadata) + (
            ((AUTHORIZATION_HEADER, f"Bearer {config.token}"),) if config.token else ()
        )

    def _policy(self, idempotent: bool) -> RetryPolicy:
        user_hook = self.config.retry.on_retry
        target = self.config.target

        def on_retry(event: RetryEvent) -> None:
            code = codes.code_of(event.error)
            method = getattr(event.error, "method", "") or ""
            metrics.RETRIES.labels(target, method.rsplit("/", 1)[-1], code.name if code else "UNKNOWN").inc()
            _log.info(
                "retrying %s in %.3fs after attempt %d failed: %s",
                method or target,
                event.delay,
                event.attempt,
                event.error,
                extra={"fields": {"retry.attempt": event.attempt, "retry.delay_s": event.delay, "server.address": target}},
            )
            if user_hook is not None:
                user_hook(event)

        return self.config.retry.replace(
            retry_on=lambda exc: codes.is_retryable(exc, idempotent), on_retry=on_retry, budget=self.budget
        )

    async def wait_ready(self, timeout: float | None) -> bool:
        """True once the channel is READY (connecting if idle), False if not within `timeout`."""
        if self.channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_connected(self, timeout: float | None) -> bool:
        """True once the channel is READY; False when a connection attempt failed, or after `timeout`.

        Unlike `wait_ready`, a target that refuses connections or never completes the HTTP/2 handshake
        ends the wait after about one connection attempt, so each such attempt counts against the
        breaker instead of one long wait: a channel that is idle or connecting is waited for until it
        fails; one already failing (its state stays TRANSIENT_FAILURE while it keeps retrying) for at
        most its longest reconnect backoff, the interval within which it tries again.
        """
        failing = grpc.ChannelConnectivity.TRANSIENT_FAILURE
        state = self.channel.get_state(try_to_connect=True)
        loop = asyncio.get_running_loop()
        limits = [t for t in (timeout, self.config.channel.max_reconnect_backoff if state is failing else None) if t is not None]
        end = loop.time() + min(limits) if limits else None
        tried = False
        while state is not grpc.ChannelConnectivity.READY:
            if state is grpc.ChannelConnectivity.SHUTDOWN or (tried and state is failing):
                return False
            tried = tried or state is grpc.ChannelConnectivity.CONNECTING
            left = None if end is None else end - loop.time()
            if left is not None and left <= 0:
                return False
            try:
                async with asyncio.timeout(left):
                    await self.channel.wait_for_state_change(state)
            except TimeoutError:
                return False
            state = self.channel.get_state(try_to_connect=True)
        return True

    async def close(self) -> None:
        if self._owns_channel:
            await self.channel.close(None)

    # -- metadata ----------------------------------------------------------------------------

    def metadata(
        self, extra: Sequence[tuple[str, str]] | None = None, correlation_id: str | None = None
    ) -> tuple[list[tuple[str, str]], str]:
        """Outgoing metadata (token, correlation id, traceparent of the current span) and the id used."""
        cid = correlation_id or current_correlation_id.get() or new_correlation_id()
        md = [*self._static_md, (CORRELATION_HEADER, cid)]
        if extra:
            md += extra
        if trace.get_current_span().get_span_context().is_valid:  # there is a trace to continue
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            md += carrier.items()
        return md, cid

    def deadline(self, timeout: float | None) -> float | None:
        timeout = self.config.timeout if timeout is DEFAULT else timeout
        return None if timeout is None else self.clock.monotonic() + timeout

    def attempt_timeout(self, deadline: float | None, attempt_timeout: float | None) -> tuple[float | None, bool]:
        """(timeout for this attempt, whether the attempt limit rather than the deadline bounds it)."""
        per = self.config.attempt_timeout if attempt_timeout is DEFAULT else attempt_timeout
        if deadline is None:
            return per, per is not None
        left = deadline - self.clock.monotonic()
        if per is not None and per < left:
            return per, True
        return left, False

    # -- unary calls ---------------------------------------------------------------------------

    async def unary(
        self,
        method: str,
        request: Any,
        *,
        idempotent: bool = True,
        timeout: Any = DEFAULT,
        attempt_timeout: Any = DEFAULT,
        metadata: Sequence[tuple[str, str]] | None = None,
        correlation_id: str | None = None,
    ) -> Any:
        full = f"/{self.service}/{method}"
        multicallable = getattr(self.stub, method)
        deadline = self.deadline(timeout)
        span = (
            _tracer.start_as_current_span(
                f"{self.service}/{method}",
                kind=trace.SpanKind.CLIENT,
                attributes={"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": method},
            )
            if _tracing_on()
            else _NO_SPAN
        )
        with span:
            md, cid = self.metadata(metadata, correlation_id)
            if not self.config.resilience:
                try:
                    return await multicallable(
                        request, timeout=None if deadline is None else deadline - self.clock.monotonic(), metadata=md
                    )
                except grpc.aio.AioRpcError as exc:
                    raise errors.from_rpc_error(exc, method=full, target=self.config.target, correlation_id=cid) from exc
            attempts = 0
            last_error: BaseException | None = None

            async def attempt() -> Any:
                nonlocal attempts, last_error
                attempts += 1
                per, attempt_bound = self.attempt_timeout(deadline, attempt_timeout)
                if per is not None and per <= 0:
                    raise errors.DeadlineExceededError(
                        "the call's deadline expired before the attempt could start",
                        method=full,
                        target=self.config.target,
                        correlation_id=cid,
                    )
                permit = self.breaker.acquire()
                attempt_md = md if attempts == 1 else [*md, (PREVIOUS_ATTEMPTS_HEADER, str(attempts - 1))]
                if attempts > 1:
                    wait = self.config.reconnect_wait if per is None else min(per, self.config.reconnect_wait)
                    if not await self.wait_ready(wait):
                        cause = getattr(last_error, "details", "") or ""
                        unready: errors.RentScoutError = errors.UnavailableError(
                            f"no connection to {self.config.target} within {wait:.2f}s" + (f" ({cause})" if cause else ""),
                            method=full,
                            target=self.config.target,
                            correlation_id=cid,
                        )
                        self.breaker.on_error(permit, unready, None)
                        raise unready
                    per, attempt_bound = self.attempt_timeout(deadline, attempt_timeout)
                started = self.clock.monotonic()
                try:
                    response = await multicallable(request, timeout=per, metadata=attempt_md)
                except grpc.aio.AioRpcError as exc:
                    err = errors.from_rpc_error(exc, method=full, target=self.config.target, correlation_id=cid)
                    if err.code is grpc.StatusCode.DEADLINE_EXCEEDED and attempt_bound:
                        AttemptTimeout.mark(err)
                    last_error = err
                    self.breaker.on_error(permit, err, self.clock.monotonic() - started)
                    raise err from exc
                except asyncio.CancelledError:
                    self.breaker.release(permit)
                    raise
                except BaseException as exc:
                    self.breaker.on_error(permit, exc, self.clock.monotonic() - started)
                    raise
                self.breaker.on_success(permit, self.clock.monotonic() - started)
                return response

            return await self._policies[idempotent].aexecute(attempt, deadline=deadline)
