"""Request builders, friendly enums, CLI parameter parsing and the sync machinery (no servers)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from rentscout.cli.analyze import parse_param
from rentscout.cli.clientargs import EXIT_AUTH, EXIT_DEADLINE, EXIT_PRECONDITION, EXIT_UNAVAILABLE, EXIT_USAGE, exit_code
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2
from rentscout.sdk import errors, export_request
from rentscout.sdk.analyzer import query_param
from rentscout.sdk.sync import LoopThread, sync_methods
from rentscout.wire.enums import PROPERTY_TYPE, enum_value, name_of


def test_export_request_from_plain_values() -> None:
    since = dt.datetime(2026, 1, 31, 12, 0)
    r = export_request(
        "csv",
        cities=["Moscow", "Kazan"],
        property_types=["apartment", "STUDIO"],
        sources=["avito"],
        min_price=0,
        max_rooms=3,
        active_only=True,
        updated_since=since,
        columns=["id", "price"],
        limit=10,
        rows_per_chunk=500,
    )
    assert r.format == export_pb2.EXPORT_FORMAT_CSV
    assert list(r.filter.property_types) == [common_pb2.PROPERTY_TYPE_APARTMENT, common_pb2.PROPERTY_TYPE_STUDIO]
    assert list(r.filter.sources) == [common_pb2.LISTING_SOURCE_AVITO]
    assert r.filter.HasField("min_price") and r.filter.min_price == 0  # an explicit 0 is a bound, not "unset"
    assert not r.filter.HasField("max_price") and r.filter.max_rooms == 3
    assert r.filter.updated_since.ToDatetime(tzinfo=dt.UTC) == since.replace(tzinfo=dt.UTC)
    assert list(r.columns) == ["id", "price"] and r.limit == 10 and r.rows_per_chunk == 500


def test_enum_names_and_errors() -> None:
    assert enum_value(PROPERTY_TYPE, "townhouse") == common_pb2.PROPERTY_TYPE_TOWNHOUSE
    assert enum_value(PROPERTY_TYPE, None) == 0 and enum_value(PROPERTY_TYPE, 2) == 2
    assert name_of(PROPERTY_TYPE, common_pb2.PROPERTY_TYPE_ROOM) == "room" and name_of(PROPERTY_TYPE, 99) == "99"
    with pytest.raises(ValueError, match="expected one of apartment, room"):
        enum_value(PROPERTY_TYPE, "castle")
    with pytest.raises(ValueError):
        enum_value(PROPERTY_TYPE, 42)


def test_query_params_and_cli_parsing() -> None:
    assert query_param(None).null_value and query_param(True).bool_value
    assert query_param(7).WhichOneof("value") == "int_value" and query_param(7.5).double_value == 7.5
    assert query_param(dt.datetime(2026, 1, 1)).timestamp_value.seconds > 0
    with pytest.raises(TypeError):
        query_param(object())
    assert [parse_param(v) for v in ("42", "4.5", "TRUE", "null", "str:42", "Moscow")] == [42, 4.5, True, None, "42", "Moscow"]


def test_exit_codes_by_status() -> None:
    assert exit_code(errors.InvalidArgumentError("x")) == EXIT_USAGE
    assert exit_code(errors.UnavailableError("x")) == EXIT_UNAVAILABLE
    assert exit_code(errors.ResourceExhaustedError("x")) == EXIT_UNAVAILABLE
    assert exit_code(errors.PermissionDeniedError("x")) == EXIT_AUTH
    assert exit_code(errors.DeadlineExceededError("x")) == EXIT_DEADLINE
    assert exit_code(errors.FailedPreconditionError("x")) == EXIT_PRECONDITION
    assert exit_code(errors.InternalError("x")) == 1


class AsyncThing:
    def __init__(self) -> None:
        self.closed = False

    async def double(self, x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def numbers(self):  # an async generator, not wrapped by sync_methods
        try:
            for i in range(100):
                yield i
        finally:
            self.closed = True


@sync_methods(AsyncThing)
class SyncThing:
    def __init__(self) -> None:
        self._loop = LoopThread.shared()
        self._async = AsyncThing()


def test_sync_twin_runs_on_the_loop_thread_and_closes_early_stopped_iterators() -> None:
    thing = SyncThing()
    assert thing.double(21) == 42  # type: ignore[attr-defined]
    assert not hasattr(thing, "numbers")
    taken = []
    for n in thing._loop.iterate(thing._async.numbers()):
        taken.append(n)
        if n == 2:
            break
    assert taken == [0, 1, 2] and thing._async.closed  # the async generator was closed on its loop
