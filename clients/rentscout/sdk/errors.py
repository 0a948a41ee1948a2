"""Typed exceptions for RPC failures, built from a gRPC status and its trailing metadata.

Every SDK call raises a `RentScoutError` subclass, never a raw `grpc.RpcError`:

    try:
        client.price_stats(city="")
    except InvalidArgumentError as exc:
        exc.violations        # [("city", "must not be empty")], from the BadRequest detail
    except UnavailableError:  # includes CircuitOpenError (the breaker failed fast)
        ...
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc

from rentscout.resilience.breaker import CircuitOpenError as _BreakerOpen
from rentscout.resilience.breaker import CircuitState, open_message
from rentscout.wire.badrequest import bad_request_violations
from rentscout.wire.metadata import CORRELATION_HEADER, PUSHBACK_HEADER

Metadata = Sequence[tuple[str, str | bytes]]


class RentScoutError(Exception):
    """A failed call: status `code`, the server's `details`, and where to look it up."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        details: str,
        *,
        code: grpc.StatusCode | None = None,
        method: str = "",
        target: str = "",
        correlation_id: str | None = None,
        violations: Iterable[tuple[str, str]] = (),
        trailing_metadata: Metadata = (),
        retry_pushback: float | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.details = details
        self.method = method
        self.target = target
        self.correlation_id = correlation_id
        self.violations = list(violations)
        self.trailing_metadata = tuple(trailing_metadata)
        # Seconds the server asked us to wait before retrying (negative: do not retry); see retry.py.
        self.retry_pushback = retry_pushback
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.method.rsplit('/', 1)[-1]} " if self.method else ""
        text = f"{where}{self.code.name}: {self.details}"
        if self.violations:
            text += " [" + "; ".join(f"{f}: {d}" for f, d in self.violations) + "]"
        if self.correlation_id:
            text += f" (correlation id {self.correlation_id})"
        return text


class InvalidArgumentError(RentScoutError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(RentScoutError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(RentScoutError):
    code = grpc.StatusCode.ALREADY_EXISTS


class UnauthenticatedError(RentScoutError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(RentScoutError):
    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPreconditionError(RentScoutError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRangeError(RentScoutError):
    code = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhaustedError(RentScoutError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class AbortedError(RentScoutError):
    code = grpc.StatusCode.ABORTED


class UnavailableError(RentScoutError):
    code = grpc.StatusCode.UNAVAILABLE


def gave_up_unavailable(exc: BaseException, *, method: str, target: str, correlation_id: str | None = None) -> UnavailableError:
    """A stream reader's give-up while the target's breaker is open, said as the call's UNAVAILABLE (the
    breaker's own error reads as "failing fast"), keeping the notes that say why it gave up."""
    raised = UnavailableError(str(exc), method=method, target=target, correlation_id=correlation_id)
    for note in getattr(exc, "__notes__", ()):
        raised.add_note(note)
    return raised


class DeadlineExceededError(RentScoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CallCancelledError(RentScoutError):
    code = grpc.StatusCode.CANCELLED


class UnimplementedError(RentScoutError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(RentScoutError):
    code = grpc.StatusCode.INTERNAL


class DataLossError(RentScoutError):
    code = grpc.StatusCode.DATA_LOSS


class ExportIntegrityError(DataLossError):
    """The export stream contradicted itself (row counts after a resume); refusing to guess."""


class CircuitOpenError(UnavailableError, _BreakerOpen):
    """The client's breaker for a target is open: the call was not attempted."""

    def __init__(self, name: str, state: CircuitState, retry_after: float, reason: str = "") -> None:
        # Both bases are plain Exceptions; set their attributes here rather than chaining __init__s.
        self.name, self.state, self.retry_after, self.reason = name, state, max(0.0, retry_after), reason
        self.details = open_message(name, state, self.retry_after, reason)
        self.method, self.target, self.correlation_id = "", name, None
        self.violations, self.trailing_metadata, self.retry_pushback = [], (), None
        Exception.__init__(self, self.details)


_BY_CODE: dict[grpc.StatusCode, type[RentScoutError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        UnauthenticatedError,
        PermissionDeniedError,
        FailedPreconditionError,
        OutOfRangeError,
        ResourceExhaustedError,
        AbortedError,
        UnavailableError,
        DeadlineExceededError,
        CallCancelledError,
        UnimplementedError,
        InternalError,
        DataLossError,
    )
}


def error_class(code: grpc.StatusCode) -> type[RentScoutError]:
    return _BY_CODE.get(code, RentScoutError)


def parse_pushback(trailing: Metadata) -> float | None:
    """`grpc-retry-pushback-ms` as seconds; -1.0 when present but negative or malformed (gRPC A6: do not retry)."""
    for key, value in trailing:
        if key == PUSHBACK_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            try:
                ms = int(text.strip())
            except ValueError:
                return -1.0
            return -1.0 if ms < 0 else ms / 1000.0
    return None


def _metadata(call_md: object) -> tuple[tuple[str, str | bytes], ...]:
    return tuple(call_md) if isinstance(call_md, Iterable) else ()


def from_rpc_error(
    exc: grpc.RpcError, *, method: str = "", target: str = "", correlation_id: str | None = None
) -> RentScoutError:
    """The typed exception for a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`)."""
    code: grpc.StatusCode | None = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    trailing = _metadata(exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else ())
    initial = _metadata(exc.initial_metadata() if hasattr(exc, "initial_metadata") else ())
    echoed = next((v for k, v in initial + trailing if k == CORRELATION_HEADER and isinstance(v, str)), None)
    cls = error_class(code or grpc.StatusCode.UNKNOWN)
    return cls(
        details,
        code=code,
        method=method,
        target=target,
        correlation_id=echoed or correlation_id,
        violations=bad_request_violations(trailing),
        trailing_metadata=trailing,
        retry_pushback=parse_pushback(trailing),
    )
