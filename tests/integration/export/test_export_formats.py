"""Every format parses back to exactly the rows of the table; filters, columns, limit and chunk bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from harness.export_server import (
    COLUMNS,
    CSV,
    FORMATS,
    JSON,
    JSONL,
    TRICKY_CITY,
    TRICKY_TITLES,
    collect,
    insert_tricky_rows,
    parse,
    reference,
)
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2
from rentscout.wire import schema

Req = export_pb2.ExportPropertiesRequest


@pytest.fixture(scope="module")
async def tricky(database: str) -> AsyncIterator[list[int]]:
    conn = await asyncpg.connect(database)
    try:
        ids = await insert_tricky_rows(conn)
        yield ids
    finally:
        await conn.execute("DELETE FROM properties WHERE city = $1", TRICKY_CITY)
        await conn.close()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_whole_table_parses_back_to_exactly_the_rows(export_server, pg_conn, tricky, fmt: export_pb2.ExportFormat) -> None:
    stream = await collect(export_server.stub, Req(format=fmt))
    expected = await reference(pg_conn, fmt)
    got = parse(fmt, stream.data)
    assert got == expected
    assert stream.rows == len(expected) - (1 if fmt == CSV else 0) > 20_000
    assert stream.header is not None and stream.summary is not None
    assert stream.header.columns == list(COLUMNS) and stream.header.estimated_total_rows > 15_000
    assert stream.summary.status == export_pb2.EXPORT_STATUS_COMPLETED
    assert stream.summary.rows == stream.rows and stream.summary.bytes == len(stream.data)
    assert stream.summary.export_id == stream.header.export_id
    assert all(0 < c.rows <= 1000 for c in stream.chunks if c.rows)
    assert [c.rows_sent for c in stream.chunks] == [
        sum(x.rows for x in stream.chunks[: i + 1]) for i in range(len(stream.chunks))
    ]


async def test_jsonl_is_byte_identical_to_row_to_json(export_server, pg_conn, tricky) -> None:
    stream = await collect(export_server.stub, Req(format=JSONL, filter=common_pb2.PropertyFilter(cities=[TRICKY_CITY])))
    await pg_conn.execute("SET TimeZone = 'UTC'")
    rows = await pg_conn.fetch("SELECT row_to_json(p)::text FROM properties p WHERE city = $1 ORDER BY id", TRICKY_CITY)
    assert stream.data == "".join(r[0] + "\n" for r in rows).encode()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("columns", [("title", "city"), ("district", "id", "address"), ("id",), ("title",)])
async def test_tricky_text_with_selected_columns(
    export_server, pg_conn, tricky, fmt: export_pb2.ExportFormat, columns: tuple[str, ...]
) -> None:
    """Quotes, backslashes, newlines, control bytes, NULL vs '' - with and without the id in front."""
    req = Req(format=fmt, columns=columns, rows_per_chunk=3, filter=common_pb2.PropertyFilter(cities=[TRICKY_CITY]))
    stream = await collect(export_server.stub, req)
    assert parse(fmt, stream.data) == await reference(pg_conn, fmt, f"city = '{TRICKY_CITY}'", columns)
    assert stream.rows == len(TRICKY_TITLES)
    assert stream.header is not None and list(stream.header.columns) == list(columns)


async def test_nan_and_infinity_become_json_null(export_server, pg_conn) -> None:
    async with pg_conn.transaction():
        await pg_conn.execute(
            "INSERT INTO properties (id, source, external_id, title, city, property_type, price, area) VALUES "
            "(10000101, 'avito', 'zz-nan-1', 't', 'Zz NaN', 'room', 1, 'NaN'), "
            "(10000102, 'avito', 'zz-nan-2', 't', 'Zz NaN', 'room', 1, 'Infinity')"
        )
    try:
        req = Req(format=JSONL, columns=["id", "area"], filter=common_pb2.PropertyFilter(cities=["Zz NaN"]))
        assert parse(JSONL, (await collect(export_server.stub, req)).data) == [
            {"id": 10000101, "area": None},
            {"id": 10000102, "area": None},
        ]
        req.format = CSV
        assert parse(CSV, (await collect(export_server.stub, req)).data)[1:] == [["10000101", "NaN"], ["10000102", "Infinity"]]
    finally:
        await pg_conn.execute("DELETE FROM properties WHERE city = 'Zz NaN'")


FILTERS = [
    (common_pb2.PropertyFilter(cities=["Kazan", "Omsk"]), "city IN ('Kazan', 'Omsk')"),
    (
        common_pb2.PropertyFilter(property_types=[common_pb2.PROPERTY_TYPE_STUDIO, common_pb2.PROPERTY_TYPE_HOUSE]),
        "property_type IN ('studio', 'house')",
    ),
    (common_pb2.PropertyFilter(sources=[common_pb2.LISTING_SOURCE_YANDEX]), "source = 'yandex'"),
    (common_pb2.PropertyFilter(min_price=40_000, max_price=60_000), "price BETWEEN 40000 AND 60000"),
    (common_pb2.PropertyFilter(min_rooms=3), "rooms >= 3"),
    (common_pb2.PropertyFilter(max_rooms=0), "rooms <= 0"),
    (common_pb2.PropertyFilter(active_only=True), "is_active"),
    (common_pb2.PropertyFilter(updated_since=Timestamp(seconds=1_790_000_000)), "updated_at >= to_timestamp(1790000000)"),
    (
        common_pb2.PropertyFilter(
            cities=["Moscow"],
            active_only=True,
            min_rooms=2,
            max_rooms=2,
            max_price=80_000,
            sources=[common_pb2.LISTING_SOURCE_AVITO, common_pb2.LISTING_SOURCE_CIAN],
        ),
        "city = 'Moscow' AND is_active AND rooms = 2 AND price <= 80000 AND source IN ('avito', 'cian')",
    ),
    (common_pb2.PropertyFilter(cities=["No Such City"]), "FALSE"),
]


@pytest.mark.parametrize(("flt", "where"), FILTERS, ids=[w for _, w in FILTERS])
async def test_filters_select_exactly_the_matching_rows(export_server, pg_conn, flt, where: str) -> None:
    stream = await collect(export_server.stub, Req(format=JSONL, columns=["id"], filter=flt))
    ids = [r["id"] for r in parse(JSONL, stream.data)]
    expected = [r["id"] for r in await pg_conn.fetch(f"SELECT id FROM properties WHERE {where} ORDER BY id")]
    assert ids == expected
    if where != "FALSE":
        assert 0 < len(ids) < 20_000


@pytest.mark.parametrize("fmt", FORMATS)
async def test_empty_export_is_a_valid_empty_file(export_server, fmt: export_pb2.ExportFormat) -> None:
    stream = await collect(
        export_server.stub, Req(format=fmt, columns=["id", "city"], filter=common_pb2.PropertyFilter(cities=["Atlantis"]))
    )
    assert stream.data == {CSV: b"id,city\n", JSON: b"[]\n", JSONL: b""}[fmt]
    assert stream.rows == 0 and stream.summary is not None and stream.summary.status == export_pb2.EXPORT_STATUS_COMPLETED


@pytest.mark.parametrize("fmt", FORMATS)
async def test_limit_returns_the_first_rows_by_id(export_server, pg_conn, fmt: export_pb2.ExportFormat) -> None:
    stream = await collect(export_server.stub, Req(format=fmt, limit=2_345, filter=common_pb2.PropertyFilter(cities=["Moscow"])))
    assert parse(fmt, stream.data) == await reference(pg_conn, fmt, "city = 'Moscow'", limit=2_345)
    assert stream.rows == 2_345 and stream.header is not None and stream.header.estimated_total_rows == 2_345


async def test_chunks_respect_row_and_byte_bounds(export_server, pg_conn) -> None:
    by_rows = await collect(export_server.stub, Req(format=CSV, limit=100, rows_per_chunk=7))
    assert [c.rows for c in by_rows.chunks] == [7] * 14 + [2]
    by_bytes = await collect(export_server.stub, Req(format=JSON, limit=300, bytes_per_chunk=4096))
    assert all(len(c.data) <= 4096 + 16 or c.rows == 1 for c in by_bytes.chunks)  # '[\n' / ',\n' per chunk
    assert len(by_bytes.chunks) > 20 and by_bytes.rows == 300
    assert parse(JSON, by_bytes.data) == await reference(pg_conn, JSON, limit=300)


async def test_the_wire_schema_is_the_migrated_table(export_server) -> None:
    """Clients parse by rentscout.wire.schema; the server reads the catalog: both must agree."""
    assert await export_server.servicer.catalog.columns() == schema.PROPERTIES
    assert tuple(c.name for c in schema.PROPERTIES) == COLUMNS
