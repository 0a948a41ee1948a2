"""Redis down or frozen mid-test (a private instance, so the shared one is untouched): answers keep
coming from PostgreSQL, the breaker opens, entries a change superseded are never served, and all recovers
after restart."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from harness.cache_server import CacheServer, OwnRows, cache_server, settings, unique_city
from harness.polling import eventually
from rentscout.cache.v1 import cache_pb2
from rentscout.devstack.instances import RedisInstance

DATABASE = cache_pb2.CACHE_SOURCE_DATABASE


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisInstance]:
    redis = RedisInstance(tmp_path / "redis").start()
    yield redis
    if redis.proc is not None:
        os.kill(redis.proc.pid, signal.SIGCONT)
    redis.stop()


def connected(srv: CacheServer) -> bool:
    """The invalidation bus's state, read afresh: to mypy an attribute stays what an earlier assert made it."""
    return srv.engine.bus.connected


def redis_errors() -> float:
    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "rentscout_cache_redis_errors"
        for s in m.samples
        if s.name.endswith("_total")
    )


async def test_redis_stopped_answers_keep_coming_breaker_opens_and_recovers(
    service_env: dict[str, str], own_redis: RedisInstance
) -> None:
    env = {**service_env, "RENTSCOUT_REDIS_URL": own_redis.url}
    cfg = settings(breaker_failures=2, breaker_reset_seconds=0.5, near_min_accesses=1)
    async with cache_server(env, cfg) as srv:
        request = cache_pb2.PriceStatsRequest(city="Kazan")
        warm = await srv.stub.PriceStats(request)
        assert (await srv.stub.PriceStats(request)).cache.hit
        await eventually(lambda: asyncio.sleep(0, srv.engine.bus.connected), bool)
        assert connected(srv)

        own_redis.stop()
        replies = [await srv.stub.PriceStats(request) for _ in range(5)]
        assert all(r.count == warm.count and r.mean == warm.mean for r in replies)
        stats = await srv.stub.GetCacheStats(cache_pb2.GetCacheStatsRequest())
        assert stats.breaker_state == cache_pb2.BREAKER_STATE_OPEN
        assert stats.redis_keys == 0 and stats.misses >= 1  # this replica's own counters without Redis
        # the near cache is off while invalidations cannot reach this replica
        await eventually(lambda: asyncio.sleep(0, srv.engine.bus.connected), lambda up: not up)
        assert not connected(srv) and len(srv.engine.near) == 0
        # while open, calls do not wait on Redis: at most the half-open trials touch it
        errors_before = redis_errors()
        more = [await srv.stub.PriceStats(request) for _ in range(20)]
        assert all(r.cache.source == DATABASE and r.count == warm.count for r in more)
        assert redis_errors() - errors_before <= 2
        assert srv.breaker_opened >= 1
        # a tag invalidation is a row in the change log: acknowledged without Redis, nothing deleted there
        assert (await srv.stub.Invalidate(cache_pb2.InvalidateRequest(tags=["city:Kazan"]))).keys_deleted == 0

        own_redis.start()  # same port, empty
        back = await eventually(lambda: srv.stub.PriceStats(request), lambda r: r.cache.hit, timeout=15)
        assert back.cache.hit and back.count == warm.count
        stats = await srv.stub.GetCacheStats(cache_pb2.GetCacheStatsRequest())
        assert stats.breaker_state == cache_pb2.BREAKER_STATE_CLOSED
        await eventually(lambda: asyncio.sleep(0, srv.engine.bus.connected), bool, timeout=15)
        assert connected(srv)  # resubscribed: near cache back in use


async def test_frozen_redis_never_serves_the_old_value_it_still_holds(
    service_env: dict[str, str], own_redis: RedisInstance, own_rows: OwnRows
) -> None:
    """SIGSTOP makes Redis slow rather than gone: commands time out, and its data survives. An UPDATE
    made meanwhile cannot be deleted from Redis; once Redis thaws, the old entry is still there and
    must never be served (the change log says it is superseded)."""
    env = {**service_env, "RENTSCOUT_REDIS_URL": own_redis.url, "RENTSCOUT_REDIS_TIMEOUT_SECONDS": "0.1"}
    cfg = settings(breaker_failures=2, breaker_reset_seconds=0.3, near_max_entries=0, flush_interval_seconds=0.1)
    city = unique_city("Frostburg")
    pid = await own_rows.add(city, 10_000)
    async with cache_server(env, cfg) as srv:
        request = cache_pb2.PriceStatsRequest(city=city)
        assert (await srv.stub.PriceStats(request)).max == 10_000
        assert (await srv.stub.PriceStats(request)).cache.hit
        assert own_redis.proc is not None
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        await own_rows.conn.execute("UPDATE properties SET price = 20000 WHERE id = $1", pid)
        changed = await own_rows.conn.fetchval("SELECT max(seq) FROM cache_changes")
        await eventually(lambda: asyncio.sleep(0, srv.engine.log.tag_seq.get(f"city:{city}", 0)), lambda s: s >= changed)
        seen = [(await srv.stub.PriceStats(request)).max for _ in range(5)]
        os.kill(own_redis.proc.pid, signal.SIGCONT)
        for _ in range(40):  # across the recovery: before, during and after the deferred invalidation
            seen.append((await srv.stub.PriceStats(request)).max)
            await asyncio.sleep(0.02)
        final = await eventually(lambda: srv.stub.PriceStats(request), lambda r: r.cache.hit, timeout=15)
    assert set(seen) == {20_000}
    assert final.cache.hit and final.max == 20_000
