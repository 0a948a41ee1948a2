"""Extreme rows survive every RPC and every export format, compared with PostgreSQL itself.

The test inserts its own rows (one city of its own, cleaned up): BC dates, +-infinity, the last
representable instants, NaN / Infinity / denormal areas (price per m2 overflows double), the int64 and
smallint limits, NULL in every NULL-able column next to real zeros and empty strings. Nothing may be
INTERNAL; NULL must arrive as absence; every value must equal PostgreSQL's.
"""

from __future__ import annotations

import math
import uuid
from fractions import Fraction
from typing import Any

import asyncpg
import grpc
import pytest

from harness.export_server import CSV, JSON, JSONL, parse, reference
from harness.secrets import READER_TOKEN
from harness.servers import ServerProcess
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.wire.enums import LISTING_SOURCE, PROPERTY_TYPE, name_of
from rentscout.wire.schema import COLUMN_NAMES

MD = [("authorization", f"Bearer {READER_TOKEN}")]
I64, I16 = 2**63 - 1, 2**15 - 1
DENORMAL = 5e-324
OPTIONAL = ("district", "address", "rooms", "area", "floor", "lat", "lon", "url")
# (id, type, price, views, rooms, area, floor, lat, lon, district, url, created_at, updated_at)
ROWS: list[tuple[Any, ...]] = [
    (
        I64,
        "studio",
        I64,
        I64,
        I16,
        DENORMAL,
        -(2**15),
        -90.0,
        180.0,
        "",
        'https://x.test/,"q"',
        "0044-03-15 12:00:00+00 BC",
        "infinity",
    ),
    (I64 - 1, "house", 0, 0, 0, float("nan"), 0, 0.0, 0.0, "Центр", None, "-infinity", "294276-12-31 23:59:59+00"),
    (
        I64 - 2,
        "house",
        1,
        1,
        1,
        float("inf"),
        1,
        89.999999,
        -179.999999,
        None,
        "u",
        "4713-01-01 00:00:00+00 BC",
        "0001-01-01 00:00:00+00",
    ),
    (
        I64 - 3,
        "commercial",
        5,
        2,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        "9999-12-31 23:59:59.999999+00",
        "10000-01-01 00:00:00+00",
    ),
    (I64 - 4, "room", 123, 3, 2, 1e308, 3, 1e-300, -1e-300, "d", "", "1970-01-01 00:00:00+00", "2024-02-29 12:34:56.789012+00"),
]


@pytest.fixture
async def extreme_city(pg_conn: asyncpg.Connection) -> Any:
    city = f"Extreme {uuid.uuid4().hex[:8]}"
    try:
        for i, (pid, kind, price, views, rooms, area, floor, lat, lon, district, url, created, updated) in enumerate(ROWS):
            await pg_conn.execute(
                "INSERT INTO properties (id, source, external_id, title, city, district, address, property_type, price,"
                " rooms, area, floor, lat, lon, url, views, created_at, updated_at) VALUES ($1, 'avito', $2, $3, $4, $5,"
                " $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::text::timestamptz, $17::text::timestamptz)",
                pid,
                f"zz-extreme-{city}-{i}",
                f'extreme {i} "q" \\ \n',
                city,
                district,
                None if i % 2 else f"addr {i}",
                kind,
                price,
                rooms,
                area,
                floor,
                lat,
                lon,
                url,
                views,
                created,
                updated,
            )
        yield city
    finally:
        await pg_conn.execute("DELETE FROM properties WHERE city = $1", city)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return bool(a == b)


async def pg_times(conn: asyncpg.Connection, city: str) -> dict[tuple[int, str], tuple[str, int, int]]:
    """Each row's timestamps from PostgreSQL: ('finite', seconds, micros) from its exact numeric epoch
    (interval arithmetic overflows near year 294276), or ('infinity' | '-infinity', 0, 0)."""
    out = {}
    for r in await conn.fetch(
        "SELECT id, created_at::text AS c, updated_at::text AS u, extract(epoch FROM created_at) "
        "AS ce, extract(epoch FROM updated_at) AS ue FROM properties WHERE city = $1",
        city,
    ):
        for field, txt, epoch in (("created_at", r["c"], r["ce"]), ("updated_at", r["u"], r["ue"])):
            if txt in ("infinity", "-infinity"):
                out[(r["id"], field)] = (txt, 0, 0)
            else:
                seconds = int(epoch // 1)
                out[(r["id"], field)] = ("finite", seconds, int((epoch - seconds) * 1_000_000))
    return out


def wire_time(prop: common_pb2.Property, field: str) -> tuple[str, int, int]:
    twin = f"{field}_out_of_range"
    assert prop.HasField(field) != prop.HasField(twin), f"{field}: exactly one of the Timestamp and its twin"
    if prop.HasField(field):
        ts = getattr(prop, field)
        return "finite", ts.seconds, ts.nanos // 1000
    t = getattr(prop, twin)
    if t.infinity == common_pb2.INFINITY_POSITIVE:
        return "infinity", 0, 0
    if t.infinity == common_pb2.INFINITY_NEGATIVE:
        return "-infinity", 0, 0
    return "finite", t.seconds, t.nanos // 1000


async def test_extreme_rows_through_popular_properties(
    all_server: ServerProcess, pg_conn: asyncpg.Connection, extreme_city: str
) -> None:
    async with grpc.aio.insecure_channel(all_server.target) as channel:
        reply = await cache_pb2_grpc.CacheQueryServiceStub(channel).PopularProperties(
            cache_pb2.PopularPropertiesRequest(city=extreme_city, limit=100), metadata=MD, timeout=30
        )
    rows = await pg_conn.fetch(
        "SELECT id, source, external_id, title, city, district, address, property_type, price, "
        "currency, rooms, area, floor, lat, lon, url, views, is_active FROM properties "
        "WHERE is_active AND city = $1 ORDER BY views DESC, id",
        extreme_city,
    )
    times = await pg_times(pg_conn, extreme_city)
    assert [p.id for p in reply.properties] == [r["id"] for r in rows] and len(rows) == len(ROWS)
    for prop, row in zip(reply.properties, rows, strict=True):
        for name in ("id", "external_id", "title", "city", "price", "currency", "views", "is_active"):
            assert getattr(prop, name) == row[name], name
        assert name_of(LISTING_SOURCE, prop.source) == row["source"]
        assert name_of(PROPERTY_TYPE, prop.property_type) == row["property_type"]
        for name in OPTIONAL:  # NULL is absence; a present value is PostgreSQL's exactly (0 and "" included)
            assert prop.HasField(name) == (row[name] is not None), (prop.id, name)
            if row[name] is not None:
                assert same(getattr(prop, name), row[name]), (prop.id, name, getattr(prop, name), row[name])
        for field in ("created_at", "updated_at"):
            assert wire_time(prop, field) == times[(prop.id, field)], (prop.id, field)


def mean_per_sqm(pairs: list[tuple[int, float]]) -> float | None:
    """The mean of price/area over rows with an area, exactly, then as a double (overflow is Infinity)."""
    ratios = [(p, a) for p, a in pairs if a is not None and (math.isnan(a) or a > 0)]
    if not ratios:
        return None
    if any(math.isnan(a) for _, a in ratios):
        return math.nan
    total = sum((Fraction(0) if math.isinf(a) else Fraction(p) / Fraction(a) for p, a in ratios), Fraction(0))
    mean = total / len(ratios)
    try:
        return float(mean)
    except OverflowError:
        return math.inf


@pytest.mark.parametrize("kind", [None, "studio", "house", "commercial", "room"])
async def test_extreme_rows_through_price_stats(
    all_server: ServerProcess, pg_conn: asyncpg.Connection, extreme_city: str, kind: str | None
) -> None:
    request = cache_pb2.PriceStatsRequest(city=extreme_city, property_type=f"PROPERTY_TYPE_{kind.upper()}" if kind else None)
    async with grpc.aio.insecure_channel(all_server.target) as channel:
        reply = await cache_pb2_grpc.CacheQueryServiceStub(channel).PriceStats(request, metadata=MD, timeout=30)
    row = await pg_conn.fetchrow(
        "SELECT count(*) AS n, min(price)::float8 AS lo, max(price)::float8 AS hi, avg(price)::float8 AS mean, "
        "percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY price) AS q FROM properties "
        "WHERE is_active AND city = $1 AND ($2::text IS NULL OR property_type = $2)",
        extreme_city,
        kind,
    )
    pairs = [
        (r["price"], r["area"])
        for r in await pg_conn.fetch(
            "SELECT price, area FROM properties WHERE is_active AND city = $1 AND ($2::text IS NULL OR property_type = $2)",
            extreme_city,
            kind,
        )
    ]
    assert row is not None
    assert reply.count == row["n"] > 0
    p25, median, p75 = row["q"]
    for name, expected in (
        ("min", row["lo"]),
        ("max", row["hi"]),
        ("mean", row["mean"]),
        ("median", median),
        ("p25", p25),
        ("p75", p75),
    ):
        assert reply.HasField(name) and same(getattr(reply, name), expected), name
    expected_sqm = mean_per_sqm(pairs)
    assert reply.HasField("mean_price_per_sqm") == (expected_sqm is not None)
    if expected_sqm is not None:
        assert same(reply.mean_price_per_sqm, expected_sqm) or math.isclose(
            reply.mean_price_per_sqm, expected_sqm, rel_tol=1e-12
        ), (reply.mean_price_per_sqm, expected_sqm)


def json_safe(value: Any) -> Any:
    """JSON has no NaN or Infinity: the export spells them null (documented in rentscout.wire.formats.json)."""
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@pytest.mark.parametrize("fmt", [CSV, JSON, JSONL], ids=["csv", "json", "jsonl"])
async def test_extreme_rows_through_every_export_format(
    all_server: ServerProcess, pg_conn: asyncpg.Connection, extreme_city: str, fmt: export_pb2.ExportFormat
) -> None:
    request = export_pb2.ExportPropertiesRequest(format=fmt)
    request.filter.cities.append(extreme_city)
    data = b""
    async with grpc.aio.insecure_channel(all_server.target) as channel:
        async for msg in export_pb2_grpc.ExportServiceStub(channel).ExportProperties(request, metadata=MD, timeout=60):
            if msg.HasField("chunk"):
                data += msg.chunk.data
            elif msg.HasField("summary"):
                assert msg.summary.status == export_pb2.EXPORT_STATUS_COMPLETED
    where = f"city = '{extreme_city}'"
    expected = await reference(pg_conn, fmt, where=where)
    got = parse(fmt, data)
    if fmt == CSV:
        assert got == expected  # PostgreSQL's own text of every value; NULL (unquoted empty) apart from ""
        assert b',"",' in data  # the empty district is a quoted empty field, not a NULL
    else:
        assert got == [{k: json_safe(v) for k, v in row.items()} for row in expected]
        assert any(row["district"] == "" for row in got) and any(row["district"] is None for row in got)
    assert len(got) == len(ROWS) + (1 if fmt == CSV else 0)
    assert list(expected[0] if fmt == CSV else expected[0].keys()) == list(COLUMN_NAMES)
