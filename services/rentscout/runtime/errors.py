"""Domain errors and the one place that turns any failure into a precise gRPC status.

Services raise these (or let driver errors propagate); the interceptor calls `to_status()`.
No traceback ever reaches a client: unexpected errors become INTERNAL with the correlation id.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from rentscout.wire.badrequest import bad_request, bounded, clip_bytes
from rentscout.wire.metadata import PUSHBACK_HEADER

LOCKED_RETRY_AFTER_SECONDS = 1.0  # pushback when a table was locked or the pool had no free connection


class ServiceError(Exception):
    """An error with a gRPC status code and a message safe to show to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        message = clip_bytes(message)  # it may echo input; it travels in a size-limited header
        super().__init__(message)
        self.message = message

    def details(self) -> list[Message]:
        return []

    def trailing(self) -> tuple[tuple[str, str], ...]:
        """Metadata of this error beside its status details (a retry pushback)."""
        return ()

    def to_status(self) -> grpc.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        for detail in self.details():
            status.details.add().Pack(detail)
        converted = rpc_status.to_status(status)
        extra = self.trailing()
        return _Status(converted.code, converted.details, (*converted.trailing_metadata, *extra)) if extra else converted


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    """A grpc.Status with more trailing metadata than the details (grpc_status builds only those)."""


class InvalidArgument(ServiceError):
    """Bad input; carries `BadRequest` field violations (field path, description)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Iterable[tuple[str, str]] | str, description: str | None = None) -> None:
        if isinstance(violations, str):
            violations = [(violations, description or "is invalid")]
        self.violations = bounded(violations)  # clipped and counted: see rentscout.wire.badrequest
        super().__init__("; ".join(f"{f}: {d}" for f, d in self.violations))

    def details(self) -> list[Message]:
        return [bad_request(self.violations)]


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """Overload: retryable; with `retry_after` (seconds) the client is told when (gRPC retry pushback)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def trailing(self) -> tuple[tuple[str, str], ...]:
        if self.retry_after is None:
            return ()
        return ((PUSHBACK_HEADER, str(max(int(self.retry_after * 1000), 1))),)


class Aborted(ServiceError):
    """The server ended the call for a reason the caller may retry at a higher level (a stalled export
    consumer: resume from the last token)."""

    code = grpc.StatusCode.ABORTED


class ConsumerStalled(Aborted):
    """A response stream's consumer took no message for `seconds`: the server ended the stream to free what it
    held; the caller resumes from the last message it received."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the client took no message for {seconds:g}s: the server ended the stream to free its "
            "resources; resume from the last message received"
        )
        self.seconds = seconds


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(ServiceError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Violations:
    """Collects every field problem of a request so the caller learns them all at once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.items.append((field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        if not ok:
            self.add(field, description)
        return ok

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
