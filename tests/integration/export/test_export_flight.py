"""Arrow Flight on the export port, read by pyarrow.flight's own client against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from harness.export_server import (
    EDGE_CITY,
    INT64_MAX,
    TEST_SETTINGS,
    TRICKY_CITY,
    ExportServer,
    adbc_table,
    arrow_values,
    insert_edge_rows,
    insert_tricky_rows,
    serve,
)
from harness.polling import eventually
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2

pa = pytest.importorskip("pyarrow")
fl = pytest.importorskip("pyarrow.flight")

pytestmark = pytest.mark.integration
INT64_MIN = -(2**63)
ADBC_PLUS_INFINITY = INT64_MAX + 946_684_800_000_000 - 2**64  # ADBC's wrapped 'infinity' (its known overflow)
ADBC_MINUS_INFINITY = INT64_MIN + 946_684_800_000_000
ENDPOINT_ROWS = 5000  # the session's 20,000 rows make 4 endpoints
SETTINGS = TEST_SETTINGS.__class__(
    **{
        **TEST_SETTINGS.__dict__,
        "flight_rows_per_endpoint": ENDPOINT_ROWS,
        "flight_max_endpoints": 6,
        "max_concurrent": 8,
        "advertised_address": "grpc://export.test:50051",
    }
)


@pytest.fixture(scope="module")
async def flight_server(service_env: dict[str, str]) -> AsyncIterator[ExportServer]:
    async with serve(service_env, SETTINGS) as server:
        yield server


@pytest.fixture(scope="module")
async def edge_rows(database: str) -> AsyncIterator[list[int]]:
    conn = await asyncpg.connect(database)
    ids = await insert_edge_rows(conn) + await insert_tricky_rows(conn)
    try:
        yield ids
    finally:
        await conn.execute("DELETE FROM properties WHERE id = ANY($1::bigint[])", ids)
        await conn.close()


def client(server: ExportServer, **options: Any) -> Any:
    return fl.connect(f"grpc://127.0.0.1:{server.host.port}", **options)


def read_all(c: Any, info: Any, parallel: bool = True) -> Any:
    """Every endpoint of `info`, read at once (one thread each), in endpoint order."""
    with concurrent.futures.ThreadPoolExecutor(len(info.endpoints)) as pool:
        tables = (
            list(pool.map(lambda ep: c.do_get(ep.ticket).read_all(), info.endpoints))
            if parallel
            else [c.do_get(ep.ticket).read_all() for ep in info.endpoints]
        )
    return pa.concat_tables(tables)


def expected(sql: str, dsn: str) -> dict[str, list[Any]]:
    """ADBC's read of `sql`, its wrapped infinities put back to the IPC format's sentinels."""
    values = arrow_values(adbc_table(dsn, sql))
    for name in ("created_at", "updated_at"):
        if name in values:
            values[name] = [
                INT64_MAX if v == ADBC_PLUS_INFINITY else INT64_MIN if v == ADBC_MINUS_INFINITY else v for v in values[name]
            ]
    return values


def flight_in_thread(fn: Any, *args: Any) -> Any:
    return asyncio.to_thread(fn, *args)


async def test_whole_table_equals_adbc_every_column(flight_server: ExportServer, edge_rows: list[int], database: str) -> None:
    def run() -> Any:
        c = client(flight_server)
        info = c.get_flight_info(fl.FlightDescriptor.for_path("properties"))
        return info, read_all(c, info), c.get_schema(fl.FlightDescriptor.for_path("properties")).schema

    info, table, schema = await flight_in_thread(run)
    assert len(info.endpoints) > 1 and all(
        [loc.uri.decode() for loc in ep.locations] == ["grpc://export.test:50051"] for ep in info.endpoints
    )
    assert info.schema == schema == table.schema
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("rooms").type == pa.int16() and table.schema.field("currency").type == pa.utf8()
    want = expected("SELECT * FROM properties ORDER BY id", database)
    got = arrow_values(table)
    assert list(got) == list(want)
    for name in want:  # every column, NULLs and edge rows included (NaN compares by its text)
        assert [str(v) for v in got[name]] == [str(v) for v in want[name]], name
    edge = arrow_values(table.filter(pa.compute.equal(table["city"], EDGE_CITY)))
    assert edge["created_at"][2] == INT64_MAX and edge["updated_at"][2] == INT64_MIN  # infinity, -infinity
    assert edge["created_at"][1] == -63_517_780_800_000_000 + 500_000  # 0044-03-15 12:00:00.5 BC, exact
    assert edge["title"][0] is not None and edge["district"][0] is None and edge["rooms"][0] is None


async def test_filtered_command_equals_adbc(flight_server: ExportServer, edge_rows: list[int], database: str) -> None:
    request = export_pb2.ExportPropertiesRequest(
        filter=common_pb2.PropertyFilter(cities=[TRICKY_CITY, "Omsk"], min_price=20_000),
        columns=["id", "title", "address", "rooms", "area", "updated_at"],
        limit=700,
    )

    def run() -> Any:
        c = client(flight_server)
        info = c.get_flight_info(fl.FlightDescriptor.for_command(request.SerializeToString()))
        assert info.total_records > 0 and info.schema.names == list(request.columns)
        return read_all(c, info)

    table = await flight_in_thread(run)
    want = expected(
        "SELECT id, title, address, rooms, area, updated_at FROM properties WHERE city IN "
        f"('{TRICKY_CITY}', 'Omsk') AND price >= 20000 ORDER BY id LIMIT 700",
        database,
    )
    assert table.column_names == list(want)
    assert {k: [str(x) for x in v] for k, v in arrow_values(table).items()} == {k: [str(x) for x in v] for k, v in want.items()}
    assert 0 < table.num_rows <= 700


@pytest.mark.parametrize("filtered", [False, True], ids=["histogram-cut", "planned-cut"])
async def test_every_row_exactly_once_over_parallel_endpoints_and_one_stream(
    flight_server: ExportServer, database: str, filtered: bool
) -> None:
    """The whole table is cut by the key's histogram (ANALYZE made one); a filtered export by PlanExport's ntile."""
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("ANALYZE properties")
        want = [r["id"] for r in await conn.fetch("SELECT id FROM properties ORDER BY id")]
    finally:
        await conn.close()
    every_price = export_pb2.ExportPropertiesRequest(filter=common_pb2.PropertyFilter(min_price=0))
    descriptor = (
        fl.FlightDescriptor.for_command(every_price.SerializeToString())
        if filtered
        else fl.FlightDescriptor.for_path("properties")
    )

    def run() -> Any:
        c = client(flight_server)
        info = c.get_flight_info(descriptor)
        return len(info.endpoints), read_all(c, info)["id"].to_pylist(), info.total_records

    endpoints, ids, total = await flight_in_thread(run)
    assert endpoints == min(6, -(-len(want) // ENDPOINT_ROWS))  # the planner's estimate is exact after ANALYZE
    assert total == len(want) if filtered else abs(total - len(want)) < len(want) // 10  # counted, or estimated
    assert ids == want  # in endpoint order, each row once


async def test_one_window_read_over_several_connections_stays_in_order(service_env: dict[str, str], database: str) -> None:
    settings = SETTINGS.__class__(**{**SETTINGS.__dict__, "flight_rows_per_endpoint": 10**9, "flight_readers": 3})
    conn = await asyncpg.connect(database)
    ids = list(range(30_000_001, 30_000_001 + 3))
    try:  # far ids make the window wide enough (100,000+ ids per reader) to be cut
        for pid in ids:
            await conn.execute(
                "INSERT INTO properties (id, source, external_id, title, city, property_type, price, "
                "currency, views, is_active) VALUES ($1, 'cian', $2, 't', 'Zz Far', 'room', 1, 'RUB', 0, "
                "true)",
                pid,
                f"zz-far-{pid}",
            )
        want = [r["id"] for r in await conn.fetch("SELECT id FROM properties ORDER BY id")]
        async with serve(service_env, settings) as server:

            def run() -> Any:
                c = client(server)
                info = c.get_flight_info(fl.FlightDescriptor.for_path("properties"))
                return len(info.endpoints), c.do_get(info.endpoints[0].ticket).read_all()["id"].to_pylist()

            endpoints, got = await flight_in_thread(run)
    finally:
        await conn.execute("DELETE FROM properties WHERE id = ANY($1::bigint[])", ids)
        await conn.close()
    assert endpoints == 1 and got == want


async def test_cut_mid_doget_resumes_from_app_metadata_exactly_once(flight_server: ExportServer) -> None:
    request = export_pb2.ExportPropertiesRequest(columns=["id", "price"], bytes_per_chunk=4096)

    def run() -> tuple[list[int], list[int], list[int]]:
        c = client(flight_server)
        info = c.get_flight_info(fl.FlightDescriptor.for_command(request.SerializeToString()))
        ticket = info.endpoints[0].ticket
        whole = c.do_get(ticket).read_all()["id"].to_pylist()
        reader = c.do_get(ticket)
        first: list[int] = []
        metadata = None
        for _ in range(3):  # three batches, then the connection is "cut"
            chunk = reader.read_chunk()
            first += chunk.data["id"].to_pylist()
            metadata = chunk.app_metadata
        reader.cancel()
        assert metadata is not None
        rest = c.do_get(fl.Ticket(metadata.to_pybytes())).read_all()["id"].to_pylist()
        return whole, first, rest

    whole, first, rest = await flight_in_thread(run)
    assert len(whole) > len(first) > 0
    assert first + rest == whole


async def test_bad_forged_and_foreign_tickets_are_invalid_argument(flight_server: ExportServer) -> None:
    mine = export_pb2.ExportPropertiesRequest(filter=common_pb2.PropertyFilter(cities=["Omsk"]))
    other = export_pb2.ExportPropertiesRequest(filter=common_pb2.PropertyFilter(cities=["Kazan"]))
    # a resume token ExportService signed for this very request: no Flight ticket (another domain)
    plan = await flight_server.stub.PlanExport(
        export_pb2.PlanExportRequest(
            export=export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_ARROW, filter=mine.filter), partitions=1
        )
    )

    def run() -> list[tuple[type, str]]:
        c = client(flight_server)
        ticket = c.get_flight_info(fl.FlightDescriptor.for_command(mine.SerializeToString())).endpoints[0].ticket.ticket
        parsed = export_pb2.ExportPropertiesRequest.FromString(ticket)
        token = parsed.resume_token
        variants = []
        for field, value in (
            ("resume_token", token[:10] + ("A" if token[10] != "A" else "B") + token[11:]),
            ("resume_token", plan.partitions[0].resume_token),
            ("filter", other.filter),
        ):
            bad = export_pb2.ExportPropertiesRequest()
            bad.CopyFrom(parsed)
            if field == "filter":
                assert isinstance(value, common_pb2.PropertyFilter)
                bad.filter.CopyFrom(value)  # the ticket's token with another request
            else:
                assert isinstance(value, str)
                bad.resume_token = value
            variants.append(bad.SerializeToString())
        out = []
        for bad_ticket in (b"\x00garbage\xff", b"", *variants):
            with pytest.raises(pa.ArrowInvalid) as err:  # pyarrow's mapping of INVALID_ARGUMENT
                c.do_get(fl.Ticket(bad_ticket)).read_all()
            out.append((type(err.value), str(err.value)))
        return out

    found = await flight_in_thread(run)
    assert len(found) == 5
    for _, message in found:
        assert "invalid argument" in message and "ticket" in message and "Traceback" not in message


async def test_other_rpcs_are_unimplemented_with_a_clear_message(flight_server: ExportServer) -> None:
    def run() -> list[tuple[type, str]]:
        c = client(flight_server)
        out = []
        for call in (
            lambda: list(c.list_actions()),
            lambda: list(c.do_action(fl.Action("drop", b""))),
            lambda: c.do_put(fl.FlightDescriptor.for_path("properties"), pa.schema([("a", pa.int64())]))[0].close(),
        ):
            with pytest.raises(NotImplementedError) as err:  # pyarrow's mapping of UNIMPLEMENTED
                call()
            out.append((type(err.value), str(err.value)))
        return out

    for kind, message in await flight_in_thread(run):
        assert issubclass(kind, NotImplementedError), (kind, message)
        assert "not served here" in message


async def test_unknown_dataset_and_bad_command_name_the_field(flight_server: ExportServer) -> None:
    def run() -> list[str]:
        c = client(flight_server)
        out = []
        for descriptor in (
            fl.FlightDescriptor.for_path("flats"),
            fl.FlightDescriptor.for_command(b"\xff\xff"),
            fl.FlightDescriptor.for_command(export_pb2.ExportPropertiesRequest(limit=-1).SerializeToString()),
            fl.FlightDescriptor.for_command(export_pb2.ExportPropertiesRequest(columns=["id", "nope"]).SerializeToString()),
        ):
            with pytest.raises(pa.ArrowInvalid) as err:
                c.get_flight_info(descriptor)
            out.append(str(err.value))
        return out

    path, cmd, limit, columns = await flight_in_thread(run)
    assert "path: unknown dataset 'flats'" in path
    assert "cmd: is not a serialized" in cmd
    assert "cmd.limit: must not be negative" in limit
    assert "cmd.columns[1]: unknown column 'nope'" in columns


async def test_reader_tokens_allowed_none_or_bad_unauthenticated(service_env: dict[str, str]) -> None:
    env = {**service_env, "RENTSCOUT_AUTH_TOKENS": "reader-token-123:reader,admin-token-456:admin"}
    async with serve(env, SETTINGS) as server:

        def run() -> tuple[int, list[type]]:
            c = client(server)
            ok = fl.FlightCallOptions(headers=[(b"authorization", b"Bearer reader-token-123")])
            info = c.get_flight_info(fl.FlightDescriptor.for_path("properties"), ok)
            rows = c.do_get(info.endpoints[0].ticket, ok).read_all().num_rows
            errors = []
            for options in (fl.FlightCallOptions(), fl.FlightCallOptions(headers=[(b"authorization", b"Bearer wrong")])):
                for call in (
                    lambda o=options: c.get_flight_info(fl.FlightDescriptor.for_path("properties"), o),
                    lambda o=options: c.do_get(info.endpoints[0].ticket, o).read_all(),
                ):
                    with pytest.raises(fl.FlightError) as err:
                        call()
                    errors.append(type(err.value))
            return rows, errors

        rows, errors = await flight_in_thread(run)
    assert rows > 0
    assert errors == [fl.FlightUnauthenticatedError] * 4


async def test_a_stalled_reader_paces_postgresql_and_ends_with_its_deadline(flight_server: ExportServer, database: str) -> None:
    request = export_pb2.ExportPropertiesRequest(bytes_per_chunk=4096)  # one endpoint's share of the table
    c = client(flight_server, generic_options=[("grpc.http2.bdp_probe", 0)])  # a small HTTP/2 window
    info = await flight_in_thread(c.get_flight_info, fl.FlightDescriptor.for_command(request.SerializeToString()))
    reader = await flight_in_thread(c.do_get, info.endpoints[0].ticket, fl.FlightCallOptions(timeout=3))
    first = await flight_in_thread(reader.read_chunk)
    assert first.data.num_rows > 0
    conn = await asyncpg.connect(database)
    try:
        held = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rentscout-export-flight'"
        total = await conn.fetchval("SELECT count(*) FROM properties")
        await asyncio.sleep(1.0)  # the client reads nothing more
        assert await conn.fetchval(held) == 1  # the stream's connection is held while the client stalls ...
        runs = list(flight_server.servicer.runs.open.values())
        assert len(runs) == 1 and 0 < runs[0].rows < total  # ... and gRPC's flow control holds the sender back
        assert flight_server.servicer.slots.used == 1

        async def ended() -> bool:  # the call's deadline ends the stalled stream: connection and slot given back
            return flight_server.servicer.slots.used == 0 and await conn.fetchval(held) == 0

        await eventually(ended, timeout=15)
    finally:
        await conn.close()
    with pytest.raises(fl.FlightError):
        await flight_in_thread(reader.read_all)


async def test_postgresql_silent_mid_doget_is_unavailable_within_the_bound(service_env: dict[str, str], database: str) -> None:
    env = {**service_env, "RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS": "1"}
    request = export_pb2.ExportPropertiesRequest(limit=100)
    async with serve(env, SETTINGS) as server:
        c = client(server)
        info = await flight_in_thread(c.get_flight_info, fl.FlightDescriptor.for_command(request.SerializeToString()))
        locker = await asyncpg.connect(database)
        conn = await asyncpg.connect(database)
        try:
            async with locker.transaction():  # the COPY waits for this lock: PostgreSQL says nothing
                await locker.execute("LOCK TABLE properties IN ACCESS EXCLUSIVE MODE")
                started = asyncio.get_running_loop().time()
                with pytest.raises(fl.FlightUnavailableError, match="PostgreSQL sent nothing for 1s"):
                    await flight_in_thread(lambda: c.do_get(info.endpoints[0].ticket).read_all())
                assert asyncio.get_running_loop().time() - started < 15
                held = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rentscout-export-flight'"

                async def cancelled() -> bool:  # the stuck query was cancelled and its connection closed
                    return bool(await conn.fetchval(held) == 0) and server.servicer.slots.used == 0

                await eventually(cancelled, timeout=15)
        finally:
            await locker.close()
            await conn.close()
