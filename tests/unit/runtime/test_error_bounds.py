"""Error answers stay small whatever the input echoed: texts clipped and marked, violations counted, the
encoded trailers well under a default client's 8 KiB metadata limit; overload carries a retry pushback."""

from __future__ import annotations

import base64

import grpc
import pytest

from rentscout.runtime.errors import InvalidArgument, ResourceExhausted, Unavailable
from rentscout.wire.badrequest import MAX_VIOLATIONS, bad_request_violations, bounded, clip, clip_bytes
from rentscout.wire.metadata import PUSHBACK_HEADER


def trailer_bytes(status: grpc.Status) -> int:
    """Bytes the status puts on the wire as metadata (binary values base64-encoded, message percent-encoded)."""
    size = len(status.details.encode()) * 3
    for key, value in status.trailing_metadata:
        size += len(key) + (len(base64.b64encode(value)) if isinstance(value, bytes) else len(value))
    return size


CASES = {
    "10k sql": [("sql", "syntax error at or near " + "x" * 10_000)],
    "1 MB column": [("columns[0]", "unknown column " + "c" * 1_000_000)],
    "1000 long cities": [(f"cities[{i}]", "unknown city " + "Москва" * 100) for i in range(1000)],
    "multibyte field paths": [("😀" * 10_000, "é" * 10_000)] * 50,
}


@pytest.mark.parametrize("violations", CASES.values(), ids=CASES.keys())
def test_invalid_argument_answers_are_bounded(violations: list[tuple[str, str]]) -> None:
    status = InvalidArgument(violations).to_status()
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer_bytes(status) < 6 * 1024
    listed = bad_request_violations(status.trailing_metadata)
    assert 1 <= len(listed) <= MAX_VIOLATIONS + 1
    assert all(len(f) <= 240 and len(d) <= 240 for f, d in listed)
    if len(violations) > len(listed):
        assert listed[-1][0] == "request" and f"{len(violations) - len(listed) + 1} more" in listed[-1][1]


def test_short_violations_pass_unchanged() -> None:
    v = [("city", "must not be empty"), ("limit", "must be from 1 to 100")]
    assert bounded(v) == v
    assert InvalidArgument(v).message == "city: must not be empty; limit: must be from 1 to 100"


def test_clipping_marks_what_was_cut() -> None:
    assert clip("a" * 200) == "a" * 200
    cut = clip("a" * 201)
    assert cut.startswith("a" * 200) and cut.endswith("[truncated, 201 chars]")
    text = clip_bytes("ж" * 1000, 100)
    assert len(text.encode()) <= 100 and text.endswith("[truncated, 2000 bytes]")


def test_every_service_error_message_is_bounded() -> None:
    assert len(Unavailable("x" * 100_000).to_status().details.encode()) <= 512


def test_resource_exhausted_carries_a_retry_pushback() -> None:
    status = ResourceExhausted("busy", retry_after=0.25).to_status()
    assert (PUSHBACK_HEADER, "250") in status.trailing_metadata
    assert all(key != PUSHBACK_HEADER for key, _ in ResourceExhausted("busy").to_status().trailing_metadata)
