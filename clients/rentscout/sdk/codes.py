"""Which gRPC statuses are worth a retry, and which count against a target's circuit breaker.

Retry (one layer only: the SDK; gRPC's own retries are disabled on SDK channels):
- UNAVAILABLE: always (the request did not reach, or was refused by, a serving replica).
- RESOURCE_EXHAUSTED, ABORTED: only for idempotent methods (repeating them cannot double an effect).
- DEADLINE_EXCEEDED of one *attempt* whose per-attempt timeout ran out while the caller's overall
  deadline still leaves time: only for idempotent methods (the point of a per-attempt timeout).
- Never: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION,
  UNIMPLEMENTED and every other code, and never a call the breaker refused (that is failing fast).

Breaker: the target's own failures (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN, DATA_LOSS)
count as failures; caller errors prove the server answered, so they count as successes; a call the
caller cancelled says nothing and is ignored. RESOURCE_EXHAUSTED is ignored too: a live server refusing
one more call of a limited kind (an export slot) is not a broken target, and opening the breaker would
also fail its other RPCs; the retry policy's backoff and budget are what pace overload.
"""

from __future__ import annotations

import asyncio

import grpc

from rentscout.resilience.breaker import CircuitOpenError, Outcome

ALWAYS_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
IDEMPOTENT_RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED})
NEVER_RETRYABLE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
SERVER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
    }
)


def code_of(exc: BaseException) -> grpc.StatusCode | None:
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.RpcError
        try:
            code = code()
        except Exception:
            return None
    return code if isinstance(code, grpc.StatusCode) else None


def is_retryable(exc: BaseException, idempotent: bool) -> bool:
    """Retry decision for one failed attempt (see the module docstring)."""
    if isinstance(exc, CircuitOpenError):
        return False
    code = code_of(exc)
    if code is None or code in NEVER_RETRYABLE:
        return False
    if code in ALWAYS_RETRYABLE:
        return True
    if code in IDEMPOTENT_RETRYABLE:
        return idempotent
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return idempotent and bool(getattr(exc, "attempt_timeout_expired", False))
    return False


def breaker_outcome(exc: BaseException) -> Outcome:
    """How a failed call counts for the target's breaker."""
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        return Outcome.IGNORE
    code = code_of(exc)
    if code is None:
        return Outcome.FAILURE  # a transport error without a status
    if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return Outcome.IGNORE
    return Outcome.FAILURE if code in SERVER_FAILURES else Outcome.SUCCESS
