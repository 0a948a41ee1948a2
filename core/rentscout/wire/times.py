"""PostgreSQL timestamptz values on the wire, including the ones google.protobuf.Timestamp cannot hold.

Timestamp covers 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z. PostgreSQL also stores
'infinity', '-infinity', BC dates (back to 4713 BC) and years up to 294276. Servers read a timestamptz as
its exact epoch (`epoch_sql`: numeric seconds since 1970, PostgreSQL's numeric Infinity for the
infinities) and put it either in the Timestamp field or, out of its range, in the field's `OutOfRangeTime`
twin (see common.proto), with the same seconds and nanos. Clients turn either back into one text
(`describe`): ISO 8601 in UTC, PostgreSQL-style beyond year 9999 and for BC dates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rentscout.common.v1 import common_pb2

MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_400_YEARS = 146_097 * 86_400  # the Gregorian calendar repeats every 400 years


def epoch_sql(column: str) -> str:
    """A SELECT expression giving `column` (a timestamptz) as exact numeric seconds since the Unix epoch
    (microseconds in its fraction; +-Infinity for 'infinity' and '-infinity')."""
    return f"extract(epoch FROM {column})"


def split(epoch: Decimal) -> tuple[int, int]:
    """(seconds, nanos) of a finite epoch, nanos in 0..999,999,999."""
    seconds = int(epoch // 1)
    return seconds, int((epoch - seconds) * 1_000_000_000)


def set_time(message: Any, field: str, epoch: Decimal) -> None:
    """Set `field` (a Timestamp) of `message`, or its `<field>_out_of_range` twin when no Timestamp can hold it."""
    if epoch.is_infinite():
        getattr(message, f"{field}_out_of_range").infinity = (
            common_pb2.INFINITY_POSITIVE if epoch > 0 else common_pb2.INFINITY_NEGATIVE
        )
        return
    seconds, nanos = split(epoch)
    target = getattr(message, field if MIN_SECONDS <= seconds <= MAX_SECONDS else f"{field}_out_of_range")
    target.seconds = seconds
    target.nanos = nanos


def text(seconds: int, nanos: int = 0) -> str:
    """ISO 8601 in UTC for years 1-9999; beyond, PostgreSQL's spelling of the year ('0045-03-15T00:00:00Z BC',
    '10000-01-01T00:00:00Z'), which no ISO 8601 parser would accept anyway."""
    micros = nanos // 1000
    if MIN_SECONDS <= seconds <= MAX_SECONDS:
        return (_EPOCH + timedelta(seconds=seconds, microseconds=micros)).isoformat().replace("+00:00", "Z")
    # shift by whole 400-year cycles into datetime's range, then name the real year
    cycles = (
        (MIN_SECONDS - seconds) // _SECONDS_400_YEARS + 1
        if seconds < MIN_SECONDS
        else -((seconds - MAX_SECONDS) // _SECONDS_400_YEARS + 1)
    )
    shifted = _EPOCH + timedelta(seconds=seconds + cycles * _SECONDS_400_YEARS, microseconds=micros)
    year = shifted.year - 400 * cycles
    iso = shifted.isoformat().replace("+00:00", "Z")
    body = iso[iso.index("-") :]
    return f"{1 - year:04d}{body} BC" if year <= 0 else f"{year:04d}{body}"


def describe(message: Any, field: str) -> str | None:
    """The text of a Timestamp field or of its out-of-range twin; None when neither is set."""
    if message.HasField(f"{field}_out_of_range"):
        twin = getattr(message, f"{field}_out_of_range")
        if twin.infinity == common_pb2.INFINITY_POSITIVE:
            return "infinity"
        if twin.infinity == common_pb2.INFINITY_NEGATIVE:
            return "-infinity"
        return text(int(twin.seconds), int(twin.nanos))
    if message.HasField(field):
        ts = getattr(message, field)
        return text(int(ts.seconds), int(ts.nanos))
    return None
