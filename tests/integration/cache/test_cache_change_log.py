"""Invalidation that cannot be lost (issue #31), against the real PostgreSQL and Redis.

Two replicas every time: `near` with the near cache on, `far` with it off. The bound under test: once
a change has committed, no answer given more than `CACHE_CHANGES_MAX_LAG_MS` later is older than it,
whatever Redis evicted or lost, whoever sent NOTIFYs, whatever happened to the listener's connection.
Each test commits a change, waits the bound, then asserts every read on both replicas is fresh: a
structural property (a cached answer needs a read of the log that started after the commit), not a
timing one: on a slow machine the replicas answer from PostgreSQL instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from harness.cache_server import OWN_ID_BASE, CacheServer, OwnRows, cache_server, settings, unique_city
from harness.polling import eventually
from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.settings import CacheSettings
from rentscout.devstack.instances import RedisInstance

T = TypeVar("T")
BOUND_MS = 300
NEAR, REDIS, DATABASE = cache_pb2.CACHE_SOURCE_NEAR, cache_pb2.CACHE_SOURCE_REDIS, cache_pb2.CACHE_SOURCE_DATABASE


def two_replicas_settings() -> tuple[CacheSettings, CacheSettings]:
    near = settings(near_min_accesses=1, changes_max_lag_ms=BOUND_MS, changes_poll_ms=50, flush_interval_seconds=0.2)
    far = settings(
        namespace=near.namespace, near_max_entries=0, changes_max_lag_ms=BOUND_MS, changes_poll_ms=50, flush_interval_seconds=0.2
    )
    return near, far


@contextlib.asynccontextmanager
async def two_replicas(env: dict[str, str]) -> AsyncIterator[tuple[CacheServer, CacheServer]]:
    near_cfg, far_cfg = two_replicas_settings()
    async with cache_server(env, near_cfg) as near, cache_server(env, far_cfg) as far:
        await eventually(lambda: asyncio.sleep(0, near.engine.bus.connected), bool)
        yield near, far


def price_stats(srv: CacheServer, request: cache_pb2.PriceStatsRequest) -> Callable[[], Awaitable[cache_pb2.PriceStatsResponse]]:
    """A probe for `eventually`: `srv`'s answer to `request`, asked again at each call."""
    return lambda: srv.stub.PriceStats(request)


def answered_from(source: cache_pb2.CacheSource) -> Callable[[cache_pb2.PriceStatsResponse], bool]:
    """The check for `eventually` that a reply came from `source`."""
    return lambda reply: reply.cache.source == source


def newest_read(srv: CacheServer) -> Callable[[], Awaitable[int]]:
    """A probe for `eventually`: the newest change-log position `srv` has read."""
    return lambda: asyncio.sleep(0, srv.engine.log.newest)


async def warm(replicas: tuple[CacheServer, ...], city: str) -> None:
    """Every replica answers `city` from its caches (the near one from memory). (Polled: on a loaded
    machine a replica whose log read is late answers from PostgreSQL meanwhile.)"""
    request = cache_pb2.PriceStatsRequest(city=city)
    for srv, source in zip(replicas, (NEAR, REDIS), strict=True):
        reply = await eventually(price_stats(srv, request), answered_from(source))
        assert reply.cache.source == source


async def fresh_after_the_bound(replicas: tuple[CacheServer, ...], city: str, price: int, reads: int = 5) -> None:
    await asyncio.sleep(BOUND_MS / 1000 + 0.02)
    request = cache_pb2.PriceStatsRequest(city=city)
    for srv in replicas:
        seen = [(await srv.stub.PriceStats(request)).max for _ in range(reads)]
        assert seen == [price] * reads, (srv.engine.settings.near_max_entries, seen)


def metric(name: str, **labels: str) -> float:
    return sum(
        s.value
        for m in REGISTRY.collect()
        for s in m.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisInstance]:
    redis = RedisInstance(tmp_path / "redis").start()
    yield redis
    if redis.proc is not None:
        os.kill(redis.proc.pid, signal.SIGCONT)
    redis.stop()


# -- Redis evicts --------------------------------------------------------------------------------


async def test_allkeys_lru_eviction_then_a_change_is_fresh_on_every_replica(
    service_env: dict[str, str], own_redis: RedisInstance, own_rows: OwnRows
) -> None:
    env = {**service_env, "RENTSCOUT_REDIS_URL": own_redis.url}
    city = unique_city("Evictsk")
    pid = await own_rows.add(city, 10_000)
    redis = Redis.from_url(own_redis.url)
    try:
        async with two_replicas(env) as replicas:
            near, far = replicas
            await warm(replicas, city)
            ns = near.engine.keys
            assert await redis.exists(ns.tag(f"city:{city}"))
            used = int((await redis.info("memory"))["used_memory"])
            await redis.config_set("maxmemory", str(used + 2 * 1024 * 1024))
            await redis.config_set("maxmemory-policy", "allkeys-lru")
            filler = b"x" * 20_000
            for i in range(400):  # about 8 MB into 2 MB of room, the entry kept hot meanwhile
                await redis.set(f"filler:{i}", filler)
                if i % 20 == 0:
                    await far.stub.PriceStats(cache_pb2.PriceStatsRequest(city=city))
            assert int((await redis.info("stats"))["evicted_keys"]) > 0
            await own_rows.conn.execute("UPDATE properties SET price = 20000 WHERE id = $1", pid)
            await fresh_after_the_bound(replicas, city, 20_000)
    finally:
        await redis.aclose()


async def test_a_full_redis_with_noeviction_fails_open_and_never_serves_stale(
    service_env: dict[str, str], own_redis: RedisInstance, own_rows: OwnRows
) -> None:
    env = {**service_env, "RENTSCOUT_REDIS_URL": own_redis.url}
    city = unique_city("Fullburg")
    pid = await own_rows.add(city, 10_000)
    redis = Redis.from_url(own_redis.url)
    try:
        async with two_replicas(env) as replicas:
            await warm(replicas, city)
            await redis.config_set("maxmemory-policy", "noeviction")
            await redis.config_set("maxmemory", str(int((await redis.info("memory"))["used_memory"]) + 1000))
            full = metric("rentscout_cache_redis_full_total")
            request = cache_pb2.PriceStatsRequest(city=city)
            assert (await replicas[1].stub.PriceStats(request)).cache.source == REDIS  # reads still work
            for price in (20_000, 30_000):
                await own_rows.conn.execute("UPDATE properties SET price = $2 WHERE id = $1", pid, price)
                await fresh_after_the_bound(replicas, city, price)
            assert metric("rentscout_cache_redis_full_total") > full  # writes refused: the metrics say so
            other = unique_city("Fullburg")  # a key never cached: computed, refused by Redis, answered
            assert (await replicas[1].stub.PriceStats(cache_pb2.PriceStatsRequest(city=other))).count == 0
            assert replicas[0].breaker_opened == 0 and replicas[1].breaker_opened == 0  # full is not down
    finally:
        await redis.aclose()


# -- whoever NOTIFYs -----------------------------------------------------------------------------


async def test_poisoned_and_flooded_notifications_lose_no_change_and_cannot_write_the_log(
    service_env: dict[str, str], own_rows: OwnRows, pg_conn: asyncpg.Connection
) -> None:
    role = f"flooder_{uuid.uuid4().hex[:8]}"
    await pg_conn.execute(f'CREATE ROLE "{role}" LOGIN')
    dsn = service_env["RENTSCOUT_DATABASE_URL"].replace("postgresql://postgres@", f"postgresql://{role}@")
    city = unique_city("Floodsk")
    pid = await own_rows.add(city, 10_000)
    try:
        flooder = await asyncpg.connect(dsn)
        try:
            async with two_replicas(service_env) as replicas:
                await warm(replicas, city)
                # 20,000 distinct NOTIFYs (identical ones would be folded) from a role with no grants...
                flood = asyncio.ensure_future(
                    flooder.execute(
                        "SELECT pg_notify('rentscout_cache', json_build_object('cities', i)::text) "
                        "FROM generate_series(1, 20000) AS i"
                    )
                )
                # ...while a change commits with a malformed NOTIFY of its own
                async with own_rows.conn.transaction():
                    await own_rows.conn.execute("UPDATE properties SET price = 20000 WHERE id = $1", pid)
                    await own_rows.conn.execute("""SELECT pg_notify('rentscout_cache', '{"cities": 5}')""")
                    await own_rows.conn.execute("SELECT pg_notify('rentscout_cache', 'not json at all')")
                await flood
                await fresh_after_the_bound(replicas, city, 20_000)
                assert replicas[0].engine.feed.doorbells >= 1
            for sql in (
                "INSERT INTO cache_changes (tags) VALUES ('{*}')",
                "DELETE FROM cache_changes",
                "UPDATE cache_changes SET tags = '{}'",
                "SELECT nextval('cache_changes_seq_seq')",
                "SELECT count(*) FROM cache_changes",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await flooder.execute(sql)
        finally:
            await flooder.close()
    finally:
        await pg_conn.execute(f'DROP ROLE "{role}"')


# -- the bound itself ------------------------------------------------------------------------------


async def test_nothing_is_served_from_a_cache_once_the_log_is_not_read_within_the_bound(
    service_env: dict[str, str], own_rows: OwnRows
) -> None:
    city = unique_city("Stallsk")
    pid = await own_rows.add(city, 10_000)
    async with two_replicas(service_env) as replicas:
        await warm(replicas, city)
        bypassed = metric("rentscout_cache_redis_bypassed_total", reason="change_log_unconfirmed")
        for srv in replicas:
            srv.engine.feed.stop()  # as if its reads of the log hung
        await own_rows.conn.execute("UPDATE properties SET price = 20000 WHERE id = $1", pid)
        await asyncio.sleep(BOUND_MS / 1000 + 0.02)
        for srv in replicas:
            reply = await srv.stub.PriceStats(cache_pb2.PriceStatsRequest(city=city))
            assert (reply.max, reply.cache.source) == (20_000, DATABASE)
        assert metric("rentscout_cache_redis_bypassed_total", reason="change_log_unconfirmed") >= bypassed + 2


# -- any subset of Redis keys deleted (hypothesis) --------------------------------------------------


KINDS = ("entry", "hits", "churn", "lease", "tag", "stats")


def key_text(key: bytes | str) -> str:
    """A key as the client returns it (bytes: it does not decode responses), as text."""
    assert isinstance(key, bytes)
    return key.decode()


def kind_of(ns: str, key: str) -> str:
    """Which of the cache's keys `key` is: its entry, a companion (hits, churn, lease), a tag set, the stats."""
    rest = key[len(ns) + 1 :]
    head = rest.split(":", 1)[0]
    return head if head in KINDS else "entry"


class _Loop:
    """An event loop in a thread, so hypothesis' synchronous examples can drive async servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_any_subset_of_redis_keys_deleted_never_hides_a_committed_change(
    service_env: dict[str, str], database: str, redis_instance: RedisInstance
) -> None:
    runner = _Loop()
    stack = contextlib.AsyncExitStack()
    city = unique_city("Subsetsk")
    pid = OWN_ID_BASE + int(uuid.uuid4().int % 2**40)

    async def setup() -> tuple[tuple[CacheServer, CacheServer], asyncpg.Connection, Redis]:
        conn = await asyncpg.connect(database)
        stack.push_async_callback(conn.close)
        await OwnRows(conn).conn.execute(
            "INSERT INTO properties (id, source, external_id, title, city, property_type, price, area) "
            "VALUES ($1, 'avito', $2, 'test listing', $3, 'apartment', 1, 50)",
            pid,
            f"test-{pid}",
            city,
        )
        stack.push_async_callback(conn.execute, "DELETE FROM properties WHERE id = $1", pid)
        redis = Redis.from_url(redis_instance.url)
        stack.push_async_callback(redis.aclose)
        replicas = await stack.enter_async_context(two_replicas(service_env))
        return replicas, conn, redis

    replicas, conn, redis = runner.run(setup())
    prices = iter(range(1000, 10**9, 1000))

    @hsettings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(kinds=st.sets(st.sampled_from(KINDS)), after_change=st.booleans())
    def example(kinds: set[str], after_change: bool) -> None:
        price = next(prices)
        ns = replicas[0].engine.keys.namespace

        async def delete() -> None:
            chosen = [k for k in await redis.keys(f"{ns}:*") if kind_of(ns, key_text(k)) in kinds]  # a private namespace
            if chosen:
                await redis.delete(*chosen)

        async def change() -> None:
            await conn.execute("UPDATE properties SET price = $2 WHERE id = $1", pid, price)

        runner.run(warm(replicas, city))
        for step in (change, delete) if after_change else (delete, change):
            runner.run(step())
        runner.run(fresh_after_the_bound(replicas, city, price, reads=3))

    try:
        example()
    finally:
        runner.run(stack.aclose())
        runner.close()


async def test_old_log_rows_are_pruned_by_age_and_the_newest_is_kept(
    service_env: dict[str, str], pg_conn: asyncpg.Connection
) -> None:
    tag = f"test:prune-{uuid.uuid4().hex[:8]}"
    old = [
        await pg_conn.fetchval("INSERT INTO cache_changes (tags, at) VALUES ($1, now() - interval '3 days') RETURNING seq", [tag])
        for _ in range(2)
    ]
    async with cache_server(service_env, settings(change_retention_seconds=86400)) as srv:
        assert await srv.engine.feed.prune(pg_conn) >= 1
    assert await pg_conn.fetchval("SELECT count(*) FROM cache_changes WHERE seq = $1", old[0]) == 0
    # the newest row stays whatever its age (nothing was logged since): it tells a new replica where the log is
    assert await pg_conn.fetchval("SELECT max(seq) FROM cache_changes") == old[1]


async def test_a_new_replica_reads_a_log_longer_than_one_batch(service_env: dict[str, str], pg_conn: asyncpg.Connection) -> None:
    city = unique_city("Batchsk")
    await pg_conn.execute("INSERT INTO cache_changes (tags) SELECT ARRAY['test:batch-' || i] FROM generate_series(1, 6000) i")
    last = await pg_conn.fetchval("INSERT INTO cache_changes (tags) VALUES ($1) RETURNING seq", [f"city:{city}"])
    async with cache_server(service_env, settings()) as srv:
        log = srv.engine.log
        assert log.tag_seq[f"city:{city}"] == last and log.low >= last and log.confirmed()


async def test_a_change_committed_after_a_later_one_still_supersedes_fills_made_in_between(
    service_env: dict[str, str], own_rows: OwnRows, database: str
) -> None:
    """Positions are taken before commit: T1 takes seq n and commits after T2 took n+1 and committed.
    A fill made between the two commits saw T2 but not T1; it must not count as newer than T1."""
    a, b = unique_city("Firstsk"), unique_city("Secondsk")
    pa, pb = await own_rows.add(a, 10_000), await own_rows.add(b, 10_000)
    t1 = await asyncpg.connect(database)
    try:
        async with two_replicas(service_env) as replicas:
            tx = t1.transaction()
            await tx.start()
            await t1.execute("UPDATE properties SET price = 20000 WHERE id = $1", pa)  # seq n, not committed
            await own_rows.conn.execute("UPDATE properties SET price = 30000 WHERE id = $1", pb)  # seq n+1, committed
            later = await own_rows.conn.fetchval("SELECT max(seq) FROM cache_changes")
            for srv in replicas:
                await eventually(newest_read(srv), lambda n: n >= later)
                assert srv.engine.log.low < later  # n is a hole: low waits below it
            await warm(replicas, a)  # filled now: shows 10,000 (T1 not committed)
            assert (await replicas[1].stub.PriceStats(cache_pb2.PriceStatsRequest(city=a))).max == 10_000
            await tx.commit()
            await fresh_after_the_bound(replicas, a, 20_000)
            await fresh_after_the_bound(replicas, b, 30_000)
    finally:
        await t1.close()


async def test_a_writer_cannot_divert_its_changes_from_the_log(
    service_env: dict[str, str], own_rows: OwnRows, pg_conn: asyncpg.Connection
) -> None:
    """A role allowed to update listings creates a temporary table named like the log (pg_temp comes
    first in a search_path that does not place it): its change must still reach the real log."""
    role = f"writer_{uuid.uuid4().hex[:8]}"
    await pg_conn.execute(f'CREATE ROLE "{role}" LOGIN')
    await pg_conn.execute(f'GRANT SELECT, UPDATE ON properties TO "{role}"')
    city = unique_city("Divertsk")
    pid = await own_rows.add(city, 10_000)
    dsn = service_env["RENTSCOUT_DATABASE_URL"].replace("postgresql://postgres@", f"postgresql://{role}@")
    writer = await asyncpg.connect(dsn)
    try:
        await writer.execute("CREATE TEMP TABLE cache_changes (seq bigserial, tags text[], at timestamptz DEFAULT now())")
        await writer.execute("UPDATE properties SET price = 20000 WHERE id = $1", pid)
        assert await writer.fetchval("SELECT count(*) FROM pg_temp.cache_changes") == 0
        logged = await pg_conn.fetchval("SELECT count(*) FROM public.cache_changes WHERE $1 = ANY(tags)", f"city:{city}")
        assert logged == 2  # the insert of the listing, and this change
    finally:
        await writer.close()
        await pg_conn.execute(f'REVOKE ALL ON properties FROM "{role}"')
        await pg_conn.execute(f'DROP ROLE "{role}"')


async def test_without_doorbells_reading_the_log_on_its_own_keeps_the_bound(
    service_env: dict[str, str], own_rows: OwnRows
) -> None:
    city = unique_city("Deafsk")
    pid = await own_rows.add(city, 10_000)
    near_cfg, far_cfg = two_replicas_settings()
    async with (
        cache_server(service_env, replace(near_cfg, listen=False)) as near,
        cache_server(service_env, replace(far_cfg, listen=False)) as far,
    ):
        await eventually(lambda: asyncio.sleep(0, near.engine.bus.connected), bool)
        await warm((near, far), city)
        await own_rows.conn.execute("UPDATE properties SET price = 20000 WHERE id = $1", pid)
        await fresh_after_the_bound((near, far), city, 20_000)
        assert near.engine.feed.doorbells == far.engine.feed.doorbells == 0
