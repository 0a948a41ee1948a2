"""The SDK and CLI on Arrow exports from the real export server over the real PostgreSQL: record batches across a
cut connection (every row exactly once), a RecordBatchReader for DuckDB, download(parallel=N) into one IPC stream
and into Parquet (read back by pyarrow and DuckDB), and `rentscout export --format arrow|parquet`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from harness.export_server import TEST_SETTINGS, adbc_table, serve
from harness.flakyproxy import FlakyProxy
from rentscout.main import main as cli
from rentscout.sdk import ExportClient, ParquetSink, RetryPolicy, SyncExportClient, export_request
from rentscout.sdk.channel import ChannelConfig

CITY = "Moscow"
COLUMNS = ["id", "title", "price", "area", "is_active", "created_at"]
FAST = {
    "resume": RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05),
    "channel": ChannelConfig(initial_reconnect_backoff=0.05, max_reconnect_backoff=0.3),
}


@pytest.fixture
async def expected(database: str) -> pa.Table:
    return await asyncio.to_thread(
        adbc_table, database, f"SELECT {', '.join(COLUMNS)} FROM properties WHERE city = '{CITY}' ORDER BY id"
    )


def same(table: pa.Table, expected: pa.Table) -> None:
    assert table.num_rows == expected.num_rows > 300
    assert table.equals(expected.cast(table.schema))


async def test_batches_survive_cut_connections_every_row_once(service_env: dict[str, str], expected: pa.Table) -> None:
    async with (
        serve(service_env, TEST_SETTINGS) as server,
        FlakyProxy(server.host.port, mode="forward") as proxy,
        ExportClient(proxy.target, **FAST) as client,  # type: ignore[arg-type]
    ):
        arrow = client.export_arrow(cities=[CITY], columns=COLUMNS, rows_per_chunk=50)
        batches = []
        async for batch in arrow:
            batches.append(batch)
            if len(batches) in (2, 5):  # cut the network twice, at chunk boundaries the client has seen
                proxy.cut()
        assert arrow.stream.resumes >= 2 and proxy.cuts == 2
        same(pa.Table.from_batches(batches), expected)
        assert arrow.schema is not None and arrow.schema.names == COLUMNS


async def test_sync_reader_feeds_duckdb(service_env: dict[str, str], expected: pa.Table) -> None:
    async with serve(service_env, TEST_SETTINGS) as server:

        def read() -> tuple[pa.Table, list[tuple[object, ...]]]:
            with SyncExportClient(f"127.0.0.1:{server.host.port}") as client:
                reader = client.export_arrow(cities=[CITY], columns=COLUMNS)
                assert isinstance(reader, pa.RecordBatchReader) and reader.schema.names == COLUMNS
                relation = duckdb.sql("SELECT count(*), sum(price) FROM reader")
                assert relation is not None  # a SELECT always has a result
                counted = relation.fetchall()
                table = client.export_arrow(export_request("arrow", cities=[CITY], columns=COLUMNS)).read_all()
                return table, counted

        table, counted = await asyncio.to_thread(read)
    same(table, expected)
    assert counted == [(expected.num_rows, pa.compute.sum(expected.column("price")).as_py())]


async def test_parallel_download_is_one_ipc_stream_or_one_parquet_file(
    service_env: dict[str, str], expected: pa.Table, tmp_path: Path
) -> None:
    request = export_request("arrow", cities=[CITY], columns=COLUMNS, rows_per_chunk=60)
    async with serve(service_env, TEST_SETTINGS) as server, ExportClient(f"127.0.0.1:{server.host.port}") as client:
        ipc = tmp_path / "moscow.arrows"
        with ipc.open("wb") as f:
            result = await client.download(request, f, parallel=4)
        assert result.partitions == 4 and result.rows == expected.num_rows
        same(pyarrow.ipc.open_stream(ipc.read_bytes()).read_all(), expected)

        parquet = tmp_path / "moscow.parquet"
        with ParquetSink(parquet, row_group_rows=100) as sink:
            result = await client.download(request, sink, parallel=3)
        assert sink.rows == result.rows == expected.num_rows and sink.row_groups == -(-expected.num_rows // 100)
    meta = pq.ParquetFile(parquet).metadata
    assert meta.num_row_groups == sink.row_groups and all(
        meta.row_group(i).num_rows == 100 for i in range(meta.num_row_groups - 1)
    )
    same(pq.read_table(parquet), expected)
    relation = duckdb.sql(f"SELECT count(*), min(id), max(id), sum(price) FROM read_parquet('{parquet}')")
    assert relation is not None  # a SELECT always has a result
    got = relation.fetchall()
    ids = expected.column("id")
    assert got == [
        (
            expected.num_rows,
            pa.compute.min(ids).as_py(),
            pa.compute.max(ids).as_py(),
            pa.compute.sum(expected.column("price")).as_py(),
        )
    ]


async def test_cli_writes_arrow_and_parquet(
    service_env: dict[str, str], expected: pa.Table, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    async with serve(service_env, TEST_SETTINGS) as server:
        target = f"127.0.0.1:{server.host.port}"
        common = ["--city", CITY, "--columns", ",".join(COLUMNS), "--target", target, "--no-progress"]
        arrows, parquet = tmp_path / "m.arrows", tmp_path / "m.parquet"
        assert await asyncio.to_thread(cli, ["export", "--format", "arrow", "-o", str(arrows), *common]) == 0
        assert (
            await asyncio.to_thread(
                cli,
                [
                    "export",
                    "--format",
                    "parquet",
                    "--parallel",
                    "2",
                    "--row-group-rows",
                    "250",
                    "-o",
                    str(parquet),
                    "--json",
                    *common,
                ],
            )
            == 0
        )
        capsysbinary.readouterr()
        assert await asyncio.to_thread(cli, ["export", "--format", "arrow", "-o", "-", *common]) == 0
        stdout = capsysbinary.readouterr().out
        assert (
            await asyncio.to_thread(
                cli, ["export", "--format", "parquet", "--split", "--parallel", "2", "-o", str(tmp_path / "x.parquet"), *common]
            )
            == 2
        )
    same(pyarrow.ipc.open_stream(arrows.read_bytes()).read_all(), expected)
    same(pq.read_table(parquet), expected)
    assert pq.ParquetFile(parquet).metadata.num_row_groups == -(-expected.num_rows // 250)
    assert not (tmp_path / "m.parquet.partial").exists()
    same(pyarrow.ipc.open_stream(stdout).read_all(), expected)  # `-o -`: the IPC stream on stdout
