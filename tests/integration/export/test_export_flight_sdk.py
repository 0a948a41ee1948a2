"""The SDK's Arrow Flight reader against the real export server and PostgreSQL: the same table as ADBC reads, endpoints
read in parallel in id order, a stream cut by the network resumed from app_metadata (every row once), and the
reader fed to DuckDB and polars."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import duckdb
import polars
import pytest

from harness.export_server import TEST_SETTINGS, adbc_table, serve
from harness.flakyproxy import FlakyProxy
from rentscout.sdk import SyncExportClient, export_request

pa = pytest.importorskip("pyarrow")
pytest.importorskip("pyarrow.flight")
pytestmark = pytest.mark.integration

CITY = "Moscow"
COLUMNS = ["id", "title", "price", "area", "is_active", "created_at"]
SETTINGS = TEST_SETTINGS.__class__(**{**TEST_SETTINGS.__dict__, "flight_rows_per_endpoint": 1000, "max_concurrent": 8})


@pytest.fixture
async def expected(database: str) -> Any:
    return await asyncio.to_thread(
        adbc_table, database, f"SELECT {', '.join(COLUMNS)} FROM properties WHERE city = '{CITY}' ORDER BY id"
    )


def same(table: Any, expected: Any) -> None:
    assert table.num_rows == expected.num_rows > 300
    assert table.equals(expected.cast(table.schema))


async def test_export_arrow_over_flight_one_stream_and_parallel(service_env: dict[str, str], expected: Any) -> None:
    async with serve(service_env, SETTINGS) as server:

        def read() -> tuple[Any, Any, list[tuple[Any, ...]], int]:
            with SyncExportClient(f"127.0.0.1:{server.host.port}") as client:
                one = client.export_arrow(cities=[CITY], columns=COLUMNS, flight=True).read_all()
                request = export_request("arrow", cities=[CITY], columns=COLUMNS)
                parallel = client.export_arrow(request, parallel=3).read_all()
                reader = client.export_arrow(request, flight=True)
                assert reader.schema.names == COLUMNS
                relation = duckdb.sql("SELECT count(*), sum(price) FROM reader")
                assert relation is not None  # a query, so a relation
                counted = relation.fetchall()
                frame = polars.from_arrow(client.export_arrow(request, parallel=2).read_all())
                assert isinstance(frame, polars.DataFrame)  # from a table, so a frame
                rows = frame.height
                return one, parallel, counted, rows

        one, parallel, counted, rows = await asyncio.to_thread(read)
    same(one, expected)
    same(parallel, expected)  # in id order, each row once, though endpoints were read at once
    assert counted == [(expected.num_rows, pa.compute.sum(expected.column("price")).as_py())]
    assert rows == expected.num_rows


async def test_a_cut_stream_resumes_from_app_metadata(service_env: dict[str, str], expected: Any) -> None:
    loop = asyncio.get_running_loop()
    async with serve(service_env, SETTINGS) as server, FlakyProxy(server.host.port, mode="forward") as proxy:

        def read() -> tuple[list[Any], int]:
            cut = threading.Event()
            batches = []

            def cut_now() -> None:
                proxy.cut()
                cut.set()

            with SyncExportClient(proxy.target) as client:
                request = export_request("arrow", cities=[CITY], columns=COLUMNS, bytes_per_chunk=2048)
                for batch in client.export_arrow(request, flight=True):
                    batches.append(batch)
                    if len(batches) in (2, 5):  # cut the network twice, after batches the client has seen
                        cut.clear()
                        loop.call_soon_threadsafe(cut_now)
                        cut.wait(5)
                return batches, client.flights.resumes

        batches, resumes = await asyncio.to_thread(read)
    assert proxy.cuts >= 2 and resumes >= 1
    same(pa.Table.from_batches(batches), expected)
