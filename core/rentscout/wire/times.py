"""PostgreSQL timestamptz values on the wire, including the ones google.protobuf.Timestamp cannot hold.

Timestamp covers 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z. PostgreSQL also stores
'infinity', '-infinity', BC dates and years past 9999. Servers read a timestamptz as microseconds since
the Unix epoch (`epoch_micros_sql`, with PostgreSQL's own int64 sentinels for the infinities) and put it
either in the Timestamp field or, out of its range, in the field's `OutOfRangeTime` twin (see
common.proto). Clients turn either back into one text (`describe`), PostgreSQL-style for what ISO 8601
cannot spell.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rentscout.common.v1 import common_pb2

MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
POSITIVE_INFINITY_MICROS = 2**63 - 1  # PostgreSQL's DT_NOEND
NEGATIVE_INFINITY_MICROS = -(2**63)  # PostgreSQL's DT_NOBEGIN
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 0001-01-01 is day 1 of the proleptic Gregorian calendar; earlier days are years 1 BC (0), 2 BC (-1) ...
_DAYS_400_YEARS = 146_097
_SECONDS_400_YEARS = _DAYS_400_YEARS * 86_400


def epoch_micros_sql(column: str) -> str:
    """A SELECT expression giving `column` (a timestamptz) as int8 microseconds since the Unix epoch,
    with int8's extremes for 'infinity' and '-infinity' (exact: extract(epoch) is numeric)."""
    return (f"CASE WHEN {column} = 'infinity' THEN {POSITIVE_INFINITY_MICROS}::int8 "
            f"WHEN {column} = '-infinity' THEN ({NEGATIVE_INFINITY_MICROS})::int8 "
            f"ELSE (extract(epoch FROM {column}) * 1000000)::int8 END")


def set_time(message: Any, field: str, micros: int) -> None:
    """Set `field` (a Timestamp) of `message`, or its `<field>_out_of_range` twin when no Timestamp can hold it."""
    seconds, rest = divmod(micros, 1_000_000)
    if micros not in (POSITIVE_INFINITY_MICROS, NEGATIVE_INFINITY_MICROS) and MIN_SECONDS <= seconds <= MAX_SECONDS:
        ts = getattr(message, field)
        ts.seconds = seconds
        ts.nanos = rest * 1000
        return
    twin = getattr(message, f"{field}_out_of_range")
    if micros == POSITIVE_INFINITY_MICROS:
        twin.infinity = common_pb2.INFINITY_POSITIVE
    elif micros == NEGATIVE_INFINITY_MICROS:
        twin.infinity = common_pb2.INFINITY_NEGATIVE
    else:
        twin.unix_micros = micros


def micros_text(micros: int) -> str:
    """ISO 8601 in UTC for years 1-9999; beyond, PostgreSQL's own spelling ('0045-03-15T00:00:00Z BC',
    '10000-01-01T00:00:00Z') since ISO 8601 has none a datetime parser would accept."""
    if micros == POSITIVE_INFINITY_MICROS:
        return "infinity"
    if micros == NEGATIVE_INFINITY_MICROS:
        return "-infinity"
    seconds = micros // 1_000_000
    if MIN_SECONDS <= seconds <= MAX_SECONDS:
        return (_EPOCH + timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")
    # shift by whole 400-year cycles (the Gregorian calendar repeats) into datetime's range
    cycles = (MIN_SECONDS - seconds) // _SECONDS_400_YEARS + 1 if seconds < MIN_SECONDS else \
        -((seconds - MAX_SECONDS) // _SECONDS_400_YEARS + 1)
    shifted = _EPOCH + timedelta(microseconds=micros + cycles * _SECONDS_400_YEARS * 1_000_000)
    year = shifted.year - 400 * cycles
    body = shifted.isoformat().replace("+00:00", "Z")[shifted.isoformat().index("-"):]
    if year <= 0:
        return f"{1 - year:04d}{body} BC"
    return f"{year:04d}{body}"


def describe(message: Any, field: str) -> str | None:
    """The text of a Timestamp field or of its out-of-range twin; None when neither is set."""
    if message.HasField(f"{field}_out_of_range"):
        twin = getattr(message, f"{field}_out_of_range")
        if twin.infinity == common_pb2.INFINITY_POSITIVE:
            return "infinity"
        if twin.infinity == common_pb2.INFINITY_NEGATIVE:
            return "-infinity"
        return micros_text(int(twin.unix_micros))
    if message.HasField(field):
        ts = getattr(message, field)
        return micros_text(int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000)
    return None
