"""Adaptive TTL, single flight (per replica and across replicas), stale-while-revalidate and XFetch."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from redis.asyncio import Redis

from harness.cache_server import PRICE_STATS_SQL_FRAGMENT, cache_server, settings, statement_calls
from harness.polling import eventually
from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.entry import Entry
from rentscout.cache_service.keys import KeySpace
from rentscout.devstack.instances import RedisInstance

DATABASE, REDIS, STALE = cache_pb2.CACHE_SOURCE_DATABASE, cache_pb2.CACHE_SOURCE_REDIS, cache_pb2.CACHE_SOURCE_STALE


@pytest.fixture
async def redis_client(redis_instance: RedisInstance):
    client = Redis.from_url(redis_instance.url)
    yield client
    await client.aclose()


async def counter(client: Redis, key: str) -> bytes:
    """A counter's stored value, which the test expects to exist."""
    value = await client.get(key)
    assert isinstance(value, bytes), value
    return value


async def test_ttl_tiers_follow_access_counts_and_churn(service_env: dict[str, str], redis_client: Redis) -> None:
    cfg = settings(frequent_accesses=3, popular_accesses=6, ttl_jitter=0.0, near_max_entries=0, xfetch_beta=0.0)
    request = cache_pb2.CitiesRequest()
    async with cache_server(service_env, cfg) as srv:

        async def call() -> cache_pb2.CacheInfo:
            return (await srv.stub.Cities(request)).cache

        first = await call()
        keys = KeySpace(cfg.namespace)
        assert (first.source, first.ttl.seconds) == (DATABASE, 300)  # 1 read: default tier
        assert (await call()).hit and (await call()).hit  # 3 reads counted in Redis
        assert int(await counter(redis_client, keys.accesses(first.key))) == 3
        await redis_client.delete(first.key)  # as if it expired
        frequent = await call()
        assert (frequent.source, frequent.ttl.seconds) == (DATABASE, 1800)  # 4th read: frequent tier
        pttl = await redis_client.pttl(first.key)
        assert 1800_000 < pttl <= (1800 + cfg.stale_grace_seconds) * 1000  # physical TTL keeps the stale grace
        await call()
        await call()
        await redis_client.delete(first.key)
        popular = await call()
        assert (popular.source, popular.ttl.seconds) == (DATABASE, 3600)  # 7th read: popular tier
        assert 0 < await redis_client.pttl(keys.accesses(first.key)) <= cfg.access_window_seconds * 1000
        # data that changes often: every invalidation in the window halves the TTL
        await srv.stub.Invalidate(cache_pb2.InvalidateRequest(tags=["cities"]))
        assert (await call()).ttl.seconds == 1800
        await srv.stub.Invalidate(cache_pb2.InvalidateRequest(tags=["cities"]))
        assert (await call()).ttl.seconds == 900
        assert int(await counter(redis_client, keys.churn(first.key))) == 2


async def test_ttl_jitter_spreads_expiries(service_env: dict[str, str]) -> None:
    async with cache_server(service_env, settings(ttl_jitter=0.2)) as srv:
        ttls = {
            (await srv.stub.PriceStats(cache_pb2.PriceStatsRequest(city=c))).cache.ttl.ToMilliseconds()
            for c in ("Moscow", "Kazan", "Omsk", "Perm", "Ufa", "Sochi")
        }
    assert len(ttls) > 1 and all(240_000 <= t <= 360_000 for t in ttls)


async def test_single_flight_per_replica_sends_one_query(service_env: dict[str, str], pg_conn: asyncpg.Connection) -> None:
    async with cache_server(service_env) as srv:
        before = await statement_calls(pg_conn, PRICE_STATS_SQL_FRAGMENT)
        request = cache_pb2.PriceStatsRequest(city="Saint Petersburg")
        replies = await asyncio.gather(*(srv.stub.PriceStats(request) for _ in range(200)))
        after = await statement_calls(pg_conn, PRICE_STATS_SQL_FRAGMENT)
        stats = await srv.stub.GetCacheStats(cache_pb2.GetCacheStatsRequest())
        assert srv.database_queries["price_stats"] == 1
    assert after - before == 1
    assert len({r.count for r in replies}) == 1 and replies[0].count > 0
    from_db = [r for r in replies if r.cache.source == DATABASE]
    assert from_db  # the cold callers shared the one computation...
    assert stats.stampedes_prevented == len(from_db) - 1  # ...and all but its starter were counted as prevented


async def test_single_flight_across_replicas_sends_one_query(service_env: dict[str, str], pg_conn: asyncpg.Connection) -> None:
    cfg = settings()
    async with cache_server(service_env, cfg) as a, cache_server(service_env, cfg) as b:
        before = await statement_calls(pg_conn, PRICE_STATS_SQL_FRAGMENT)
        request = cache_pb2.PriceStatsRequest(city="Novosibirsk")
        replies = await asyncio.gather(*(stub.PriceStats(request) for _ in range(60) for stub in (a.stub, b.stub)))
        after = await statement_calls(pg_conn, PRICE_STATS_SQL_FRAGMENT)
        queries = a.database_queries["price_stats"] + b.database_queries["price_stats"]
    assert after - before == 1 and queries == 1
    assert len({(r.count, r.mean) for r in replies}) == 1


async def test_expired_entry_is_served_stale_while_one_refresh_runs(
    service_env: dict[str, str], pg_conn: asyncpg.Connection
) -> None:
    cfg = settings(default_ttl_seconds=1, ttl_jitter=0.0, stale_grace_seconds=300, near_max_entries=0, xfetch_beta=0.0)
    async with cache_server(service_env, cfg) as srv:
        request = cache_pb2.PriceStatsRequest(city="Tyumen")
        first = await srv.stub.PriceStats(request)
        await asyncio.sleep(1.2)  # past the logical TTL, within the stale grace
        before = await statement_calls(pg_conn, PRICE_STATS_SQL_FRAGMENT)
        replies = await asyncio.gather(*(srv.stub.PriceStats(request) for _ in range(30)))
        assert {r.cache.source for r in replies} <= {STALE, REDIS}
        assert replies[0].cache.source == STALE and replies[0].cache.hit
        assert replies[0].cache.age.ToMilliseconds() >= 1000
        fresh = await eventually(lambda: srv.stub.PriceStats(request), lambda r: r.cache.source == REDIS)
        after = await statement_calls(pg_conn, PRICE_STATS_SQL_FRAGMENT)
    assert fresh.cache.source == REDIS and fresh.count == first.count
    assert after - before == 1  # thirty callers after expiry, one refresh


async def test_xfetch_refreshes_a_hot_key_before_it_expires(service_env: dict[str, str], redis_client: Redis) -> None:
    cfg = settings(xfetch_beta=100.0, near_max_entries=0)
    async with cache_server(service_env, cfg) as srv:
        request = cache_pb2.PriceStatsRequest(city="Voronezh")
        computed = await srv.stub.PriceStats(request)
        key = computed.cache.key
        # pretend the entry took 1000 s to compute and has 30 s left: XFetch fires with probability ~1
        raw = await redis_client.get(key)
        assert isinstance(raw, bytes)  # the entry is there: it was just computed
        old = Entry.decode(key, raw)
        assert old is not None
        aged = Entry(key, old.payload, created=time.time() - 270, ttl=300, delta=1000, from_seq=old.from_seq)
        await redis_client.set(key, aged.encode(), px=600_000)
        hit = await srv.stub.PriceStats(request)
        assert hit.cache.source == REDIS and hit.cache.age.seconds >= 270  # the caller got the old entry at once

        async def created() -> float:
            raw = await redis_client.get(key) or b""
            assert isinstance(raw, bytes)  # the client does not decode responses
            entry = Entry.decode(key, raw)
            return entry.created if entry else 0.0

        refreshed_at = await eventually(created, lambda c: c > aged.created + 100)
    assert refreshed_at > aged.created + 100  # recomputed before expiry, in the background
