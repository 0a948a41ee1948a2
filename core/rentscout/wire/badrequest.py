"""The BadRequest codec: field violations as a `google.rpc.BadRequest` detail of a gRPC status.

Servers encode (`bad_request`), clients decode the trailing metadata of a failed call
(`bad_request_violations`).
"""

from __future__ import annotations

from collections.abc import Iterable

from google.rpc import error_details_pb2, status_pb2

from rentscout.wire.metadata import STATUS_DETAILS_KEY

Violation = tuple[str, str]  # (field path, description)


def bad_request(violations: Iterable[Violation]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations])


def bad_request_violations(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> list[Violation]:
    """The (field, description) pairs of a BadRequest detail in trailing metadata."""
    status = None
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
    out: list[Violation] = []
    for detail in status.details if status else ():
        if detail.TypeName() == error_details_pb2.BadRequest.DESCRIPTOR.full_name:
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out += [(v.field, v.description) for v in br.field_violations]
    return out
