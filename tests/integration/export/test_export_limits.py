"""Back-pressure, cancellation and deadlines free the connection, the concurrency limit, bad input, PostgreSQL down."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from harness.export_server import CSV, JSONL, SMALL_WINDOW, TEST_SETTINGS, collect, rpc_error, serve, violated_fields
from harness.polling import eventually
from rentscout.common.v1 import common_pb2
from rentscout.devstack.instances import free_port
from rentscout.export.v1 import export_pb2, export_pb2_grpc

Req = export_pb2.ExportPropertiesRequest
APP = "rentscout-test"  # application_name of the in-process server's pool
Probe = Callable[[], Awaitable[object]]  # what `eventually` polls


async def export_queries(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT pid, state, wait_event, query FROM pg_stat_activity "
        "WHERE application_name = $1 AND query LIKE 'COPY%' AND state <> 'idle'",
        APP,
    )


def no_export_query(conn: asyncpg.Connection) -> Probe:
    async def check() -> object:
        return await export_queries(conn) or True

    return check


def pool_released(server) -> Probe:
    async def check() -> object:
        pool = server.host.resources.db.pool
        idle, size = pool.get_idle_size(), pool.get_size()
        return True if idle == size and server.servicer.slots.used == 0 else (idle, size, server.servicer.slots.used)

    return check


def no_running_pump(server) -> Probe:
    async def check() -> object:  # the COPY task ends just after it gave its connection back
        return server.running_pumps() or True

    return check


async def test_postgres_is_read_only_as_fast_as_the_client_consumes(export_server, pg_conn) -> None:
    # A small client window: buffering downstream is ~100 KiB.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{export_server.host.port}", options=SMALL_WINDOW) as ch:
        call = export_pb2_grpc.ExportServiceStub(ch).ExportProperties(Req(format=JSONL, rows_per_chunk=100))
        stream = call.__aiter__()
        assert (await stream.__anext__()).HasField("header")
        assert (await stream.__anext__()).HasField("chunk")
        (pump,) = export_server.running_pumps()
        seen: list[int] = []

        async def stalled() -> object:
            # No progress for 0.5 s, and PostgreSQL is not working on it: either blocked writing to the
            # socket the server does not read (ClientWrite), or done because the whole export fit in the
            # kernel's loopback socket buffers. Either way the server process has read only what the
            # client's window and the one-slot queue allow (a pause while PostgreSQL still runs can be
            # CPU starvation on a loaded machine, not back-pressure).
            seen.append(pump.bytes_read)
            await asyncio.sleep(0.5)
            waits = [a["wait_event"] for a in await export_queries(pg_conn)]
            held = pump.bytes_read == seen[-1] and waits in ([], ["ClientWrite"])
            return True if held else (seen[-1], waits)

        await eventually(stalled, timeout=30)
        assert seen[-1] < 2_000_000  # of a ~9 MB export: PostgreSQL is held back, memory stays small
        rows = 100
        async for msg in stream:  # consuming resumes the COPY, to the end
            rows += msg.chunk.rows
        assert rows == await pg_conn.fetchval("SELECT count(*) FROM properties")


async def test_cancel_stops_the_query_and_frees_the_connection(export_server, pg_conn) -> None:
    stream = await collect(export_server.stub, Req(format=CSV, rows_per_chunk=50), stop_after_chunks=2)
    assert len(stream.chunks) == 2

    await eventually(no_export_query(pg_conn))
    await eventually(pool_released(export_server))
    await eventually(no_running_pump(export_server))

    assert stream.header is not None
    export_id = stream.header.export_id

    async def recorded() -> object:
        status = await pg_conn.fetchval("SELECT status FROM export_runs WHERE export_id = $1::uuid", export_id)
        return True if status == "cancelled" else status

    await eventually(recorded)


async def test_deadline_stops_a_slow_consumer_and_frees_the_connection(export_server, pg_conn) -> None:
    call = export_server.stub.ExportProperties(Req(format=JSONL, rows_per_chunk=20), timeout=1.5)
    export_id = None
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for msg in call:
            export_id = export_id or msg.header.export_id
            await asyncio.sleep(0.5)  # far slower than the deadline allows
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(pool_released(export_server))

    await eventually(no_export_query(pg_conn))

    async def recorded_as_ended() -> object:
        # failed with DEADLINE_EXCEEDED, or cancelled when the client's own timer cancels the call first
        row = await pg_conn.fetchrow("SELECT status, error_code FROM export_runs WHERE export_id = $1::uuid", export_id)
        return True if tuple(row) in (("failed", "DEADLINE_EXCEEDED"), ("cancelled", None)) else row

    await eventually(recorded_as_ended)


async def test_concurrent_exports_past_the_limit_are_resource_exhausted(service_env) -> None:
    settings = dataclasses.replace(TEST_SETTINGS, max_concurrent=1)
    async with serve(service_env, settings) as server:
        holder = server.stub.ExportProperties(Req(format=CSV, rows_per_chunk=10))
        first = holder.__aiter__()
        assert (await first.__anext__()).HasField("header")
        err = await rpc_error(server.stub.ExportProperties(Req(format=CSV, limit=1)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "RENTSCOUT_EXPORT_MAX_CONCURRENT=1" in (err.details() or "")
        holder.cancel()
        await eventually(pool_released(server))
        done = await collect(server.stub, Req(format=CSV, limit=3))
        assert done.rows == 3


BAD = [
    (Req(format=export_pb2.EXPORT_FORMAT_UNSPECIFIED), ["format"]),
    (Req(format=17), ["format"]),  # type: ignore[arg-type]  # an unknown format, on purpose
    (Req(format=CSV, limit=-1), ["limit"]),
    (Req(format=CSV, limit=10**15), ["limit"]),
    (Req(format=CSV, filter=common_pb2.PropertyFilter(min_price=10, max_price=5)), ["filter.min_price"]),
    (Req(format=CSV, filter=common_pb2.PropertyFilter(min_rooms=4, max_rooms=1)), ["filter.min_rooms"]),
    (Req(format=CSV, filter=common_pb2.PropertyFilter(min_price=-1)), ["filter.min_price"]),
    (
        Req(format=CSV, filter=common_pb2.PropertyFilter(property_types=[common_pb2.PROPERTY_TYPE_UNSPECIFIED])),
        ["filter.property_types[0]"],
    ),
    (
        Req(format=CSV, filter=common_pb2.PropertyFilter(sources=[99])),  # type: ignore[list-item]  # unknown, on purpose
        ["filter.sources[0]"],
    ),
    (Req(format=CSV, filter=common_pb2.PropertyFilter(cities=["Omsk", "a\x00b"])), ["filter.cities[1]"]),
    (Req(format=CSV, filter=common_pb2.PropertyFilter(updated_since=Timestamp(seconds=-(10**12)))), ["filter.updated_since"]),
    (Req(format=CSV, columns=["id", "password"]), ["columns[1]"]),
    (Req(format=CSV, columns=["city", "city"]), ["columns[1]"]),
    (Req(format=CSV, rows_per_chunk=-1), ["rows_per_chunk"]),
    (Req(format=CSV, rows_per_chunk=10**7), ["rows_per_chunk"]),
    (Req(format=CSV, bytes_per_chunk=100), ["bytes_per_chunk"]),
    (Req(format=CSV, bytes_per_chunk=4 * 1024 * 1024), ["bytes_per_chunk"]),
    (Req(format=CSV, resume_token="%%%"), ["resume_token"]),
    (Req(format=export_pb2.EXPORT_FORMAT_UNSPECIFIED, limit=-5, rows_per_chunk=-1), ["format", "limit", "rows_per_chunk"]),
]


@pytest.mark.parametrize(("req", "fields"), BAD, ids=[",".join(f) + f"-{i}" for i, (_, f) in enumerate(BAD)])
async def test_bad_input_is_invalid_argument_naming_the_field(export_server, req, fields: list[str]) -> None:
    err = await rpc_error(export_server.stub.ExportProperties(req))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(err) == fields


async def test_statistics_rejects_a_bad_since(export_server) -> None:
    err = await rpc_error(
        export_server.stub.GetExportStatistics(export_pb2.GetExportStatisticsRequest(since=Timestamp(seconds=1, nanos=-1)))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(err) == ["since"]


async def test_postgres_down_is_unavailable_fast(service_env) -> None:
    env = {
        **service_env,
        "RENTSCOUT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/rentscout",
        "RENTSCOUT_DB_CONNECT_TIMEOUT_SECONDS": "1",
    }
    async with serve(env, TEST_SETTINGS) as server:
        for call in (
            server.stub.ExportProperties(Req(format=CSV)),
            server.stub.PlanExport(export_pb2.PlanExportRequest(export=Req(format=CSV), partitions=2)),
            server.stub.GetExportStatistics(export_pb2.GetExportStatisticsRequest()),
        ):
            err = await rpc_error(call)
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
        assert server.servicer.slots.used == 0
        bad = await rpc_error(server.stub.ExportProperties(Req(format=CSV, limit=-1)))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT  # bad input is still named without a database


async def test_statement_timeout_fails_the_export(service_env) -> None:
    settings = dataclasses.replace(TEST_SETTINGS, statement_timeout_ms=1)
    async with serve(service_env, settings) as server:
        err = await rpc_error(server.stub.ExportProperties(Req(format=JSONL)))
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await eventually(pool_released(server))
