"""The BadRequest codec: field violations as a `google.rpc.BadRequest` detail of a gRPC status.

Servers encode (`bad_request`), clients decode the trailing metadata of a failed call
(`bad_request_violations`).

Bounds: a violation may echo what the caller sent (a 1 MB column name, a 10,000-character statement),
and the details travel in trailing metadata, which a default client caps (8 KiB soft, 16 KiB hard):
past it the caller would see RESOURCE_EXHAUSTED instead of its INVALID_ARGUMENT. So every echoed text
is cut at MAX_TEXT_CHARS (marked), at most MAX_VIOLATIONS are listed (then one line says how many more),
and the encoded details stay under MAX_DETAILS_BYTES; `clip_message` bounds the status message likewise.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.rpc import error_details_pb2, status_pb2

from rentscout.wire.metadata import STATUS_DETAILS_KEY

Violation = tuple[str, str]  # (field path, description)

MAX_TEXT_CHARS = 200  # of one field path or description
MAX_VIOLATIONS = 20  # listed in one answer
MAX_DETAILS_BYTES = 2048  # the encoded violations, all together (with the message, base64: < 4 KiB)
MAX_MESSAGE_BYTES = 512  # the status message (percent-encoded in metadata: at most 1.5 KiB)
_OVERHEAD = 8  # protobuf tags and lengths of one violation
_MORE_RESERVE = 80  # kept for the "... more" line


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text`, or its first `limit` characters marked as cut, with the original length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[truncated, {len(text)} chars]"


def clip_bytes(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`text` cut so that its UTF-8 form (marker included) fits in `limit` bytes."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    marker = f"...[truncated, {len(raw)} bytes]"
    return raw[: max(limit - len(marker), 0)].decode(errors="ignore") + marker


def bounded(violations: Iterable[Violation]) -> list[Violation]:
    """The violations to send: each text clipped, at most MAX_VIOLATIONS, within MAX_DETAILS_BYTES; what
    is left out is counted on one last ("request", "... more") line."""
    out: list[Violation] = []
    size = left_out = 0
    for field, description in violations:
        if left_out == 0 and len(out) < MAX_VIOLATIONS:
            item = (clip(field), clip(description))
            cost = len(item[0].encode()) + len(item[1].encode()) + _OVERHEAD
            if size + cost <= MAX_DETAILS_BYTES - _MORE_RESERVE:
                out.append(item)
                size += cost
                continue
        left_out += 1
    if left_out:
        out.append(
            (
                "request",
                f"{left_out} more problem(s) not listed (an answer lists at most {MAX_VIOLATIONS}, "
                f"within {MAX_DETAILS_BYTES} bytes)",
            )
        )
    return out


def bad_request(violations: Iterable[Violation]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in bounded(violations)]
    )


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
