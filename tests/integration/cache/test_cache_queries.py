"""Each cached query against a direct SQL answer, cache metadata, bad input, stats and log fields."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from prometheus_client import generate_latest

from harness.cache_server import cache_server, settings
from harness.logcapture import capture_logs
from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.keys import FORMAT_VERSION
from rentscout.common.v1 import common_pb2
from rentscout.wire.badrequest import bad_request_violations

DATABASE, REDIS, NEAR = cache_pb2.CACHE_SOURCE_DATABASE, cache_pb2.CACHE_SOURCE_REDIS, cache_pb2.CACHE_SOURCE_NEAR


def quantile(values: list[float], q: float) -> float:
    """percentile_cont: linear interpolation between closest ranks."""
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def without_cache(message):
    copy = type(message)()
    copy.CopyFrom(message)
    copy.ClearField("cache")
    return copy


@pytest.mark.parametrize(
    ("city", "kind"), [("Moscow", None), ("Kazan", common_pb2.PROPERTY_TYPE_STUDIO), ("Sochi", common_pb2.PROPERTY_TYPE_HOUSE)]
)
async def test_price_stats_equal_direct_sql(
    service_env: dict[str, str], pg_conn: asyncpg.Connection, city: str, kind: common_pb2.PropertyType | None
) -> None:
    type_name = common_pb2.PropertyType.Name(kind).removeprefix("PROPERTY_TYPE_").lower() if kind else None
    rows = await pg_conn.fetch(
        "SELECT price, area FROM properties WHERE is_active AND city = $1 "
        "AND ($2::text IS NULL OR property_type = $2) ORDER BY price",
        city,
        type_name,
    )
    prices = [float(r["price"]) for r in rows]
    per_sqm = [r["price"] / r["area"] for r in rows if r["area"]]
    assert len(prices) > 10  # the seed has enough rows for the comparison to mean something
    async with cache_server(service_env) as srv:
        request = cache_pb2.PriceStatsRequest(city=city, property_type=kind or common_pb2.PROPERTY_TYPE_UNSPECIFIED)
        first = await srv.stub.PriceStats(request)
        second = await srv.stub.PriceStats(request)
    assert first.count == len(prices)
    assert (first.min, first.max) == (prices[0], prices[-1])
    assert first.mean == pytest.approx(sum(prices) / len(prices))
    assert first.median == pytest.approx(quantile(prices, 0.5))
    assert first.p25 == pytest.approx(quantile(prices, 0.25))
    assert first.p75 == pytest.approx(quantile(prices, 0.75))
    assert first.mean_price_per_sqm == pytest.approx(sum(per_sqm) / len(per_sqm))
    assert without_cache(second) == without_cache(first)
    assert (first.cache.source, second.cache.source) == (DATABASE, REDIS)


async def test_popular_properties_equal_direct_sql(service_env: dict[str, str], pg_conn: asyncpg.Connection) -> None:
    rows = await pg_conn.fetch(
        "SELECT * FROM properties WHERE city = 'Yekaterinburg' AND is_active ORDER BY views DESC, id LIMIT 15"
    )
    async with cache_server(service_env) as srv:
        reply = await srv.stub.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Yekaterinburg", limit=15))
        default = await srv.stub.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Yekaterinburg"))
        hit = await srv.stub.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Yekaterinburg", limit=15))
    assert [p.id for p in reply.properties] == [r["id"] for r in rows]
    for prop, row in zip(reply.properties, rows, strict=True):
        assert (prop.title, prop.city, prop.price, prop.views, prop.currency) == (
            row["title"],
            row["city"],
            row["price"],
            row["views"],
            row["currency"],
        )
        assert prop.property_type == common_pb2.PropertyType.Value("PROPERTY_TYPE_" + row["property_type"].upper())
        assert prop.source == common_pb2.ListingSource.Value("LISTING_SOURCE_" + row["source"].upper())
        assert prop.area == pytest.approx(row["area"]) and prop.is_active
        assert prop.updated_at.ToDatetime().timestamp() == pytest.approx(row["updated_at"].timestamp(), abs=1e-6)
    assert [p.id for p in default.properties] == [r["id"] for r in rows[:10]]  # limit 0 means 10
    assert default.cache.key != reply.cache.key
    assert hit.cache.hit and without_cache(hit) == without_cache(reply)


async def test_cities_and_types_equal_direct_sql(service_env: dict[str, str], pg_conn: asyncpg.Connection) -> None:
    cities = {
        r["city"]: r["n"] for r in await pg_conn.fetch("SELECT city, count(*) AS n FROM properties WHERE is_active GROUP BY city")
    }
    types = {
        r["property_type"]: r["n"]
        for r in await pg_conn.fetch("SELECT property_type, count(*) AS n FROM properties WHERE is_active GROUP BY property_type")
    }
    async with cache_server(service_env) as srv:
        c = await srv.stub.Cities(cache_pb2.CitiesRequest())
        t = await srv.stub.PropertyTypes(cache_pb2.PropertyTypesRequest())
    assert {x.city: x.count for x in c.cities} == cities
    assert [x.count for x in c.cities] == sorted(cities.values(), reverse=True)
    assert {
        common_pb2.PropertyType.Name(x.property_type).removeprefix("PROPERTY_TYPE_").lower(): x.count for x in t.property_types
    } == types


async def test_cache_metadata_miss_then_redis_then_near(service_env: dict[str, str]) -> None:
    cfg = settings(near_min_accesses=2, ttl_jitter=0.0)
    async with cache_server(service_env, cfg) as srv:
        request = cache_pb2.PriceStatsRequest(city="Omsk")
        replies = [await srv.stub.PriceStats(request) for _ in range(3)]
    miss, redis_hit, near_hit = (r.cache for r in replies)
    assert (miss.hit, miss.source) == (False, DATABASE)
    assert miss.age.ToNanoseconds() == 0 and miss.ttl.seconds == 300
    assert (redis_hit.hit, redis_hit.source) == (True, REDIS)
    assert (near_hit.hit, near_hit.source) == (True, NEAR)
    assert miss.key == redis_hit.key == near_hit.key
    assert miss.key.startswith(f"{cfg.namespace}:v{FORMAT_VERSION}.2:price_stats:{{") and miss.key.endswith("}")
    assert near_hit.age.ToNanoseconds() >= redis_hit.age.ToNanoseconds() > 0
    assert near_hit.ttl == redis_hit.ttl == miss.ttl


async def test_unknown_city_is_an_empty_answer_and_is_cached(service_env: dict[str, str]) -> None:
    async with cache_server(service_env) as srv:
        stats = await srv.stub.PriceStats(cache_pb2.PriceStatsRequest(city="Atlantis"))
        popular = await srv.stub.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Atlantis"))
        again = await srv.stub.PriceStats(cache_pb2.PriceStatsRequest(city="Atlantis"))
    assert stats.count == 0 and stats.mean == 0 and not popular.properties
    assert again.cache.hit


BAD_INPUTS = [
    ("PopularProperties", cache_pb2.PopularPropertiesRequest(city=""), "city"),
    ("PopularProperties", cache_pb2.PopularPropertiesRequest(city="x" * 101), "city"),
    ("PopularProperties", cache_pb2.PopularPropertiesRequest(city="Mos\x07cow"), "city"),
    ("PopularProperties", cache_pb2.PopularPropertiesRequest(city="Moscow", limit=101), "limit"),
    ("PopularProperties", cache_pb2.PopularPropertiesRequest(city="Moscow", limit=-1), "limit"),
    ("PriceStats", cache_pb2.PriceStatsRequest(city="   "), "city"),
    ("PriceStats", cache_pb2.PriceStatsRequest(city="Moscow", property_type=42), "property_type"),  # type: ignore[arg-type]
    ("InvalidateRelated", cache_pb2.InvalidateRelatedRequest(id="1"), "entity"),
    ("InvalidateRelated", cache_pb2.InvalidateRelatedRequest(entity=7, id="1"), "entity"),  # type: ignore[arg-type]
    ("InvalidateRelated", cache_pb2.InvalidateRelatedRequest(entity=cache_pb2.ENTITY_TYPE_PROPERTY, id="abc"), "id"),
    ("InvalidateRelated", cache_pb2.InvalidateRelatedRequest(entity=cache_pb2.ENTITY_TYPE_PROPERTY, id="-3"), "id"),
    ("InvalidateRelated", cache_pb2.InvalidateRelatedRequest(entity=cache_pb2.ENTITY_TYPE_CITY, id=""), "id"),
    (
        "InvalidateRelated",
        cache_pb2.InvalidateRelatedRequest(entity=cache_pb2.ENTITY_TYPE_CITY, id="Kazan", previous_city="y" * 500),
        "previous_city",
    ),
    ("Invalidate", cache_pb2.InvalidateRequest(), "pattern"),
    ("Invalidate", cache_pb2.InvalidateRequest(pattern="x*", tags=["cities"]), "pattern"),
    ("Invalidate", cache_pb2.InvalidateRequest(pattern="*"), "pattern"),  # outside the namespace
    ("Invalidate", cache_pb2.InvalidateRequest(tags=["cities", ""]), "tags[1]"),
]


@pytest.mark.parametrize(("method", "request_", "field"), BAD_INPUTS)
async def test_bad_input_is_invalid_argument_naming_the_field(
    service_env: dict[str, str], method: str, request_: object, field: str
) -> None:
    async with cache_server(service_env) as srv:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await getattr(srv.stub, method)(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [f for f, _ in bad_request_violations(info.value.trailing_metadata())]


async def test_invalidate_related_unknown_property_is_not_found(service_env: dict[str, str]) -> None:
    async with cache_server(service_env) as srv:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await srv.stub.InvalidateRelated(
                cache_pb2.InvalidateRelatedRequest(entity=cache_pb2.ENTITY_TYPE_PROPERTY, id="999999999")
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        reply = await srv.stub.InvalidateRelated(
            cache_pb2.InvalidateRelatedRequest(entity=cache_pb2.ENTITY_TYPE_PROPERTY, id="999999999", previous_city="Kazan")
        )
    assert list(reply.tags) == ["cities", "city:Kazan", "property_types"]


async def test_stats_count_hits_misses_and_stampedes_by_query_type(service_env: dict[str, str]) -> None:
    async with cache_server(service_env, settings(near_min_accesses=1)) as srv:
        for _ in range(3):
            await srv.stub.Cities(cache_pb2.CitiesRequest())
        await srv.stub.PriceStats(cache_pb2.PriceStatsRequest(city="Perm"))
        stats = await srv.stub.GetCacheStats(cache_pb2.GetCacheStatsRequest())
    by_type = {s.query_type: s for s in stats.by_query_type}
    assert set(by_type) == {"popular_properties", "price_stats", "cities", "property_types"}
    assert (by_type["cities"].hits, by_type["cities"].misses) == (2, 1)
    assert by_type["cities"].hit_ratio == pytest.approx(2 / 3)
    assert (by_type["price_stats"].hits, by_type["price_stats"].misses) == (0, 1)
    assert (stats.hits, stats.misses) == (2, 2) and stats.hit_ratio == pytest.approx(0.5)
    assert stats.breaker_state == cache_pb2.BREAKER_STATE_CLOSED
    assert stats.redis_keys > 0 and stats.redis_memory_bytes > 0 and stats.near_cache_entries >= 1
    exposition = generate_latest().decode()
    assert 'rentscout_cache_hit_ratio{query_type="cities"}' in exposition
    assert 'rentscout_cache_hits_total{query_type="cities",source="near"}' in exposition
    assert "rentscout_cache_breaker_state" in exposition and "rentscout_cache_near_entries" in exposition


async def test_access_log_carries_cache_fields_and_correlation_id(service_env: dict[str, str]) -> None:
    async with cache_server(service_env) as srv:
        with capture_logs() as logs:
            for cid in ("cid-miss-1", "cid-hit-2"):
                await srv.stub.Cities(cache_pb2.CitiesRequest(), metadata=(("x-correlation-id", cid),))
    access = {r["correlation.id"]: r for r in logs.records() if r.get("event.dataset") == "rentscout.access"}
    assert access["cid-miss-1"]["cache.hit"] is False and access["cid-miss-1"]["cache.source"] == "database"
    assert access["cid-hit-2"]["cache.hit"] is True and access["cid-hit-2"]["cache.source"] == "redis"
    assert access["cid-hit-2"]["cache.key"] == access["cid-miss-1"]["cache.key"]
    assert access["cid-hit-2"]["event.duration"] > 0


async def test_invalidation_needs_the_admin_role(service_env: dict[str, str]) -> None:
    reader, admin = (("authorization", "Bearer reader-token-1"),), (("authorization", "Bearer admin-token-1"),)
    async with cache_server(service_env, auth_tokens="reader-token-1:reader,admin-token-1:admin") as srv:
        assert (await srv.stub.Cities(cache_pb2.CitiesRequest(), metadata=reader)).cities
        await srv.stub.GetCacheStats(cache_pb2.GetCacheStatsRequest(), metadata=reader)
        for call in (
            lambda md: srv.stub.Invalidate(cache_pb2.InvalidateRequest(tags=["cities"]), metadata=md),
            lambda md: srv.stub.InvalidateRelated(
                cache_pb2.InvalidateRelatedRequest(entity=cache_pb2.ENTITY_TYPE_CITY, id="Kazan"), metadata=md
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(reader)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            await call(admin)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await srv.stub.PriceStats(cache_pb2.PriceStatsRequest(city="Kazan"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
