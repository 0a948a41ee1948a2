"""EXPORT_FORMAT_ARROW against the real PostgreSQL: every column type compared with the table as the ADBC
PostgreSQL driver reads it, edge rows, column selection, resume after a cut, PlanExport partitions, byte-bounded
chunks, and streams read back by pyarrow, polars and DuckDB."""

from __future__ import annotations

import asyncio
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.ipc
import pytest

from harness.export_server import (
    ARROW,
    EDGE_CITY,
    EDGE_ROWS,
    INT64_MAX,
    adbc_table,
    arrow_values,
    collect,
    insert_edge_rows,
    read_partitions,
)
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2
from rentscout.wire.formats.arrow import EOS, special_time
from rentscout.wire.schema import COLUMN_NAMES

Req = export_pb2.ExportPropertiesRequest
MOSCOW = common_pb2.PropertyFilter(cities=["Moscow"])
EXPECTED_TYPES = {
    "id": pa.int64(),
    "source": pa.utf8(),
    "external_id": pa.utf8(),
    "title": pa.utf8(),
    "city": pa.utf8(),
    "district": pa.utf8(),
    "address": pa.utf8(),
    "property_type": pa.utf8(),
    "price": pa.int64(),
    "currency": pa.utf8(),
    "rooms": pa.int16(),
    "area": pa.float64(),
    "floor": pa.int16(),
    "lat": pa.float64(),
    "lon": pa.float64(),
    "url": pa.utf8(),
    "views": pa.int64(),
    "is_active": pa.bool_(),
    "created_at": pa.timestamp("us", tz="UTC"),
    "updated_at": pa.timestamp("us", tz="UTC"),
}


def read_stream(data: bytes) -> pa.Table:
    return pyarrow.ipc.open_stream(data).read_all()


async def adbc(dsn: str, sql: str) -> pa.Table:
    return await asyncio.to_thread(adbc_table, dsn, sql)


@pytest.fixture
async def edge_ids(pg_conn):
    ids = await insert_edge_rows(pg_conn)
    yield ids
    await pg_conn.execute("DELETE FROM properties WHERE id = ANY($1::bigint[])", ids)


async def test_every_column_type_matches_the_table_read_by_adbc(export_server, database: str) -> None:
    stream = await collect(export_server.stub, Req(format=ARROW))
    ours = read_stream(stream.data)
    assert ours.schema.names == list(COLUMN_NAMES)
    assert dict(zip(ours.schema.names, ours.schema.types, strict=True)) == EXPECTED_TYPES
    assert all(f.nullable for f in ours.schema)
    theirs = await adbc(database, "SELECT * FROM properties ORDER BY id")
    assert stream.summary is not None
    assert ours.num_rows == theirs.num_rows == stream.rows == stream.summary.rows > 10_000
    assert ours.equals(theirs.cast(ours.schema))  # every value, NULLs included
    # the first data chunk opens with the schema, every other data chunk is whole record batches, the last is EOS
    assert stream.chunks[0].data.startswith(ours.schema.serialize().to_pybytes())
    assert stream.chunks[-1].rows == 0 and stream.chunks[-1].data == EOS
    for chunk in stream.chunks[1:-1]:
        batch = pyarrow.ipc.read_record_batch(pa.py_buffer(chunk.data), ours.schema)
        assert batch.num_rows == chunk.rows and batch.schema.equals(ours.schema)


async def test_polars_and_duckdb_read_the_stream(export_server, database: str) -> None:
    stream = await collect(export_server.stub, Req(format=ARROW, filter=MOSCOW, columns=["id", "price", "created_at"]))
    frame = pl.read_ipc_stream(stream.data)  # polars' own IPC reader (Rust), not pyarrow's
    assert frame.columns == ["id", "price", "created_at"] and frame.height == stream.rows
    assert str(frame.schema["created_at"]) == "Datetime(time_unit='us', time_zone='UTC')"
    arrow_table = read_stream(stream.data)
    relation = duckdb.sql("SELECT count(*), sum(price), epoch_us(min(created_at)) FROM arrow_table")
    assert relation is not None  # a SELECT always has a result
    (got,) = relation.fetchall()
    expected = await adbc(
        database,
        "SELECT count(*), sum(price)::int8, (extract(epoch FROM min(created_at)) * 1e6)::int8 "
        "FROM properties WHERE city = 'Moscow'",
    )
    assert list(got) == [expected.column(i)[0].as_py() for i in range(3)]
    assert frame["id"].to_list() == arrow_table.column("id").to_pylist()


async def test_edge_rows_nulls_nan_infinity_bc_unicode_huge_prices(export_server, database: str, edge_ids) -> None:
    req = Req(format=ARROW, filter=common_pb2.PropertyFilter(cities=[EDGE_CITY]), rows_per_chunk=4)
    stream = await collect(export_server.stub, req)
    ours = arrow_values(read_stream(stream.data))
    assert ours["id"] == edge_ids and len(stream.chunks) == 3  # two data chunks and the end of stream
    theirs = arrow_values(await adbc(database, f"SELECT * FROM properties WHERE city = '{EDGE_CITY}' ORDER BY id"))
    infinite = {2}  # ADBC adds its epoch offset to PostgreSQL's infinity sentinels (and wraps): checked below
    for name in COLUMN_NAMES:
        for i, (a, b) in enumerate(zip(ours[name], theirs[name], strict=True)):
            if isinstance(a, float) and a != a:
                assert b != b, (name, i)
            elif not (i in infinite and name in ("created_at", "updated_at")):
                assert a == b, (name, i, a, b)
    assert ours["created_at"][2] == INT64_MAX and ours["updated_at"][2] == -(2**63)
    for i, (title, area, created, updated, price) in enumerate(EDGE_ROWS):
        assert ours["title"][i] == title and ours["price"][i] == price
        assert ours["created_at"][i] == special_time(created, False)
        assert ours["updated_at"][i] == special_time(updated, False)
        if area is None:
            assert ours["area"][i] is None
        elif area == area:
            assert ours["area"][i] == area
    nulls = [n for n in COLUMN_NAMES if ours[n][0] is None]
    assert nulls == ["district", "address", "rooms", "area", "floor", "lat", "lon", "url"]
    assert ours["address"][0] is None and ours["address"][1] == ""  # NULL and '' stay apart


@pytest.mark.parametrize("columns", [("title", "price", "created_at"), ("price", "id", "is_active"), ("city",)])
async def test_column_selection(export_server, database: str, columns: tuple[str, ...]) -> None:
    stream = await collect(export_server.stub, Req(format=ARROW, filter=MOSCOW, columns=columns, rows_per_chunk=300))
    ours = read_stream(stream.data)
    assert ours.schema.names == list(columns) and [ours.schema.field(c).type for c in columns] == [
        EXPECTED_TYPES[c] for c in columns
    ]
    theirs = await adbc(database, f"SELECT {', '.join(columns)} FROM properties WHERE city = 'Moscow' ORDER BY id")
    assert ours.equals(theirs.cast(ours.schema))
    assert max(c.rows for c in stream.chunks) == 300


async def test_a_cut_stream_resumes_exactly_once_into_one_ipc_stream(export_server, database: str) -> None:
    stub = export_server.stub

    def req(**kw: Any) -> export_pb2.ExportPropertiesRequest:
        return Req(format=ARROW, filter=MOSCOW, columns=["title", "price", "created_at"], rows_per_chunk=200, **kw)

    whole = await collect(stub, req())
    first = await collect(stub, req(), stop_after_chunks=3)
    second_req = req(resume_token=first.chunks[-1].resume_token)
    second_req.rows_per_chunk = 150  # chunk sizes may change on resume
    second = await collect(stub, second_req, stop_after_chunks=2)
    third = await collect(stub, req(resume_token=second.chunks[-1].resume_token))
    assert third.header is not None and third.header.resumed and third.header.rows_already_sent == 3 * 200 + 2 * 150
    assert not second.chunks[0].data.startswith(first.chunks[0].data[:16])  # no second schema
    data = first.data + second.data + third.data
    table = read_stream(data)
    assert table.equals(read_stream(whole.data)) and table.num_rows == whole.rows
    theirs = await adbc(database, "SELECT title, price, created_at FROM properties WHERE city = 'Moscow' ORDER BY id")
    assert table.equals(theirs.cast(table.schema))
    # resuming from the last data chunk sends only the end of the stream; from the closing chunk, nothing
    last_data, closing = whole.chunks[-2], whole.chunks[-1]
    after_data = await collect(stub, req(resume_token=last_data.resume_token))
    assert after_data.data == EOS and after_data.rows == 0
    after_close = await collect(stub, req(resume_token=closing.resume_token))
    assert after_close.chunks == [] and after_close.summary is not None
    assert after_close.summary.status == export_pb2.EXPORT_STATUS_COMPLETED


async def test_plan_partitions_are_whole_streams_that_tile_the_export(export_server) -> None:
    stub = export_server.stub
    req = Req(format=ARROW, filter=MOSCOW, rows_per_chunk=250)
    whole = read_stream((await collect(stub, req)).data)
    plan = await stub.PlanExport(export_pb2.PlanExportRequest(export=req, partitions=4))
    assert len(plan.partitions) == 4
    tables = [read_stream(data) for data in await read_partitions(stub, plan, req)]  # each a complete IPC stream
    assert pa.concat_tables(tables).equals(whole)


async def test_empty_export_is_the_schema_and_the_end_of_stream(export_server) -> None:
    stream = await collect(export_server.stub, Req(format=ARROW, filter=common_pb2.PropertyFilter(cities=["Nowhere"])))
    assert [c.rows for c in stream.chunks] == [0] and stream.chunks[0].data.endswith(EOS)
    table = read_stream(stream.data)
    assert table.num_rows == 0 and table.schema.names == list(COLUMN_NAMES)


@pytest.mark.parametrize(
    "columns", [(), ("id", "rooms", "floor", "views", "is_active"), ("views",)], ids=["all", "small-numbers", "hidden-key"]
)
async def test_chunks_are_byte_bounded_and_limits_apply(export_server, columns: tuple[str, ...]) -> None:
    # small integers grow up to 4x from CSV text to Arrow (a digit and a comma -> 8 bytes): still within budget
    budget = 16 * 1024
    req = Req(format=ARROW, columns=columns, bytes_per_chunk=budget, limit=5000)
    stream = await collect(export_server.stub, req)
    assert stream.rows == 5000 and len(stream.chunks) > 3
    assert max(len(c.data) for c in stream.chunks) <= budget
    assert min(c.rows for c in stream.chunks[:-2]) > 20  # ... and not needlessly small
    assert read_stream(stream.data).num_rows == 5000
