"""Validated conversion of protobuf Timestamps: clients can send any seconds/nanos, and
Timestamp.ToDatetime raises on out-of-range values, which must be the caller's error, not ours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(ts: Timestamp, *, round_up: bool = False) -> datetime:
    """An aware UTC datetime at microsecond precision (rounded up with `round_up`, so that `>=`
    keeps its meaning). Raises ValueError with a message fit for a field violation."""
    if not 0 <= ts.nanos < 1_000_000_000:
        raise ValueError("nanos must be from 0 to 999999999")
    micros = -(-ts.nanos // 1000) if round_up else ts.nanos // 1000
    try:
        when = _EPOCH + timedelta(seconds=ts.seconds, microseconds=micros)
    except OverflowError:
        raise ValueError("must be between years 0001 and 9999") from None
    return when
