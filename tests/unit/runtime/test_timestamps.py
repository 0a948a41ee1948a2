"""Timestamps from clients: every out-of-range value is a ValueError with a usable message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from rentscout.analyzer.v1 import analyzer_pb2
from rentscout.analyzer_service.params import ParamError, from_proto
from rentscout.runtime.timestamps import to_datetime


def test_valid_and_rounding() -> None:
    assert to_datetime(Timestamp(seconds=0, nanos=1500)) == datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert to_datetime(Timestamp(seconds=0, nanos=1500), round_up=True).microsecond == 2


@pytest.mark.parametrize(
    ("seconds", "nanos", "problem"), [(0, -1, "nanos"), (0, 10**9, "nanos"), (2**62, 0, "years"), (-(2**62), 0, "years")]
)
def test_out_of_range(seconds: int, nanos: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        to_datetime(Timestamp(seconds=seconds, nanos=nanos))


def test_analyzer_param_names_the_placeholder() -> None:
    # found by the reliability suite's hostile inputs: this used to surface as INTERNAL
    bad = analyzer_pb2.QueryParam(timestamp_value=Timestamp(seconds=0, nanos=-1))
    with pytest.raises(ParamError, match=r"^\$1: timestamp_value nanos"):
        from_proto([bad])
