"""Status -> typed exception mapping, BadRequest violations and pushback parsing."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from rentscout.sdk import errors

Metadata = tuple[tuple[str, str | bytes], ...]


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: Metadata = (), initial: Metadata = ()) -> None:
        self._code, self._details, self._trailing, self._initial = code, details, trailing, initial

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Metadata:  # type: ignore[override]  # types-grpcio says _Metadatum: a pair, as here
        return self._trailing

    def initial_metadata(self) -> Metadata:
        return self._initial


def test_invalid_argument_carries_field_violations_and_correlation_id() -> None:
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad")
    status.details.add().Pack(
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field="limit", description="must be >= 0")]
        )
    )
    rpc = FakeRpcError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "limit: must be >= 0",
        trailing=(("grpc-status-details-bin", status.SerializeToString()),),
        initial=(("x-correlation-id", "cid-1"),),
    )
    exc = errors.from_rpc_error(rpc, method="/rentscout.export.v1.ExportService/PlanExport")
    assert isinstance(exc, errors.InvalidArgumentError)
    assert exc.violations == [("limit", "must be >= 0")]
    assert exc.correlation_id == "cid-1"
    assert "PlanExport INVALID_ARGUMENT" in str(exc) and "limit: must be >= 0" in str(exc)


def test_every_code_maps_to_its_class_and_pushback_is_parsed() -> None:
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        exc = errors.from_rpc_error(FakeRpcError(code, "x"))
        assert exc.code is code
        assert type(exc) is errors.error_class(code)
    busy = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "busy", trailing=(("grpc-retry-pushback-ms", "250"),)))
    assert busy.retry_pushback == 0.25
    assert errors.parse_pushback((("grpc-retry-pushback-ms", "-5"),)) == -1.0
    assert errors.parse_pushback((("grpc-retry-pushback-ms", "soon"),)) == -1.0
    assert errors.parse_pushback(()) is None


def test_circuit_open_error_is_unavailable_and_readable() -> None:
    from rentscout.sdk.breaker import CircuitState

    exc = errors.CircuitOpenError("dns:///cache:50052", CircuitState.OPEN, 12.34, "5 consecutive failures")
    assert isinstance(exc, errors.UnavailableError)
    assert exc.code is grpc.StatusCode.UNAVAILABLE
    assert str(exc) == (
        "circuit breaker for dns:///cache:50052 is open (5 consecutive failures); failing fast, next probe in 12.3s"
    )


def test_new_correlation_ids_are_unique_version_4_uuids() -> None:
    import uuid

    from rentscout.wire.correlation import new_correlation_id

    ids = [new_correlation_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    for value in ids[:200]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
