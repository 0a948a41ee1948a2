"""Invalidation by tag, pattern, related entity, a direct UPDATE (the change log), across replicas,
a killed listener connection, and the no-stale-refill race."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from harness.cache_server import CacheServer, OwnRows, cache_server, settings, unique_city
from harness.logcapture import capture_logs
from harness.polling import eventually
from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.keys import city_tag
from rentscout.cache_service.queries import price_stats_params
from rentscout.cache_service.registry import REGISTRY, CachedQuery, cached_query
from rentscout.runtime.database import Database

DATABASE, REDIS, NEAR = cache_pb2.CACHE_SOURCE_DATABASE, cache_pb2.CACHE_SOURCE_REDIS, cache_pb2.CACHE_SOURCE_NEAR
PROPERTY, CITY = cache_pb2.ENTITY_TYPE_PROPERTY, cache_pb2.ENTITY_TYPE_CITY


def bus_connected(srv: CacheServer) -> Callable[[], Awaitable[bool]]:
    """A probe for `eventually`: is `srv` subscribed to the invalidation bus now?"""
    return lambda: asyncio.sleep(0, srv.engine.bus.connected)


def stats(city: str) -> cache_pb2.PriceStatsRequest:
    return cache_pb2.PriceStatsRequest(city=city)


async def test_invalidate_by_tag_drops_only_that_tag(service_env: dict[str, str]) -> None:
    async with cache_server(service_env, settings(listen=False)) as srv:
        await srv.stub.PriceStats(stats("Moscow"))
        await srv.stub.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Moscow"))
        await srv.stub.PriceStats(stats("Kazan"))
        reply = await srv.stub.Invalidate(cache_pb2.InvalidateRequest(tags=["city:Moscow"]))
        assert reply.keys_deleted == 2
        assert (await srv.stub.PriceStats(stats("Moscow"))).cache.source == DATABASE
        assert (await srv.stub.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Moscow"))).cache.source == DATABASE
        assert (await srv.stub.PriceStats(stats("Kazan"))).cache.hit
        again = await srv.stub.Invalidate(cache_pb2.InvalidateRequest(tags=["city:Atlantis"]))
    assert again.keys_deleted == 0


async def test_invalidate_by_pattern_uses_scan_over_the_namespace(service_env: dict[str, str]) -> None:
    cfg = settings(listen=False)
    async with cache_server(service_env, cfg) as srv:
        for city in ("Moscow", "Kazan", "Samara"):
            await srv.stub.PriceStats(stats(city))
        await srv.stub.Cities(cache_pb2.CitiesRequest())
        reply = await srv.stub.Invalidate(cache_pb2.InvalidateRequest(pattern=f"{cfg.namespace}:*:price_stats:*"))
        assert reply.keys_deleted == 3
        assert (await srv.stub.Cities(cache_pb2.CitiesRequest())).cache.hit
        assert not (await srv.stub.PriceStats(stats("Kazan"))).cache.hit
        everything = await srv.stub.Invalidate(cache_pb2.InvalidateRequest(pattern=f"{cfg.namespace}:*"))
    assert everything.keys_deleted == 2  # Cities and the Kazan entry; companions (leases, counters) are not entries


async def test_invalidate_related_property_that_moved_drops_both_cities(service_env: dict[str, str], own_rows: OwnRows) -> None:
    old_city, new_city = unique_city("Oldtown"), unique_city("Newtown")
    pid = await own_rows.add(old_city, 40_000)
    await own_rows.add(new_city, 60_000)
    async with cache_server(service_env, settings(listen=False)) as srv:  # only explicit invalidation here
        assert (await srv.stub.PriceStats(stats(old_city))).count == 1
        assert (await srv.stub.PriceStats(stats(new_city))).count == 1
        cities_before = {c.city: c.count for c in (await srv.stub.Cities(cache_pb2.CitiesRequest())).cities}
        await own_rows.conn.execute("UPDATE properties SET city = $1 WHERE id = $2", new_city, pid)
        reply = await srv.stub.InvalidateRelated(
            cache_pb2.InvalidateRelatedRequest(entity=PROPERTY, id=str(pid), previous_city=old_city)
        )
        assert set(reply.tags) == {city_tag(old_city), city_tag(new_city), "cities", "property_types"}
        assert reply.keys_deleted <= 3  # (the change log may have been read, and the entries deleted, already)
        moved_out, moved_in = await srv.stub.PriceStats(stats(old_city)), await srv.stub.PriceStats(stats(new_city))
        cities_after = {c.city: c.count for c in (await srv.stub.Cities(cache_pb2.CitiesRequest())).cities}
    assert moved_out.count == 0 and moved_in.count == 2 and moved_in.mean == 50_000
    assert cities_before[old_city] == 1 and old_city not in cities_after and cities_after[new_city] == 2


async def test_invalidate_related_city(service_env: dict[str, str]) -> None:
    async with cache_server(service_env, settings(listen=False)) as srv:
        await srv.stub.PriceStats(stats("Ufa"))
        await srv.stub.PriceStats(stats("Perm"))
        reply = await srv.stub.InvalidateRelated(cache_pb2.InvalidateRelatedRequest(entity=CITY, id="Ufa"))
        assert reply.keys_deleted == 1 and city_tag("Ufa") in reply.tags
        assert not (await srv.stub.PriceStats(stats("Ufa"))).cache.hit
        assert (await srv.stub.PriceStats(stats("Perm"))).cache.hit


async def test_direct_update_in_postgresql_invalidates_through_notify(service_env: dict[str, str], own_rows: OwnRows) -> None:
    city, other = unique_city("Notifygrad"), unique_city("Otherburg")
    pid = await own_rows.add(city, 30_000)
    async with cache_server(service_env, settings(near_min_accesses=1)) as srv:
        assert srv.engine.feed.connected.is_set()
        first = await srv.stub.PriceStats(stats(city))
        assert first.max == 30_000 and (await srv.stub.PriceStats(stats(city))).cache.hit
        await own_rows.conn.execute("UPDATE properties SET price = 45000 WHERE id = $1", pid)  # nobody calls us
        updated = await eventually(lambda: srv.stub.PriceStats(stats(city)), lambda r: r.max == 45_000)
        assert updated.max == 45_000 and updated.cache.source == DATABASE
        # a move to another city reaches both cities and the city list
        assert city in {c.city for c in (await srv.stub.Cities(cache_pb2.CitiesRequest())).cities}
        assert (await srv.stub.PriceStats(stats(other))).count == 0
        await own_rows.conn.execute("UPDATE properties SET city = $1 WHERE id = $2", other, pid)
        moved = await eventually(lambda: srv.stub.PriceStats(stats(other)), lambda r: r.count == 1)
        assert moved.count == 1
        assert (await eventually(lambda: srv.stub.PriceStats(stats(city)), lambda r: r.count == 0)).count == 0
        listed = await eventually(
            lambda: srv.stub.Cities(cache_pb2.CitiesRequest()), lambda r: city not in {c.city for c in r.cities}
        )
        assert city not in {c.city for c in listed.cities} and other in {c.city for c in listed.cities}


async def test_a_change_committed_while_the_listener_is_killed_is_applied_after_reconnecting(
    service_env: dict[str, str], own_rows: OwnRows, pg_conn: asyncpg.Connection
) -> None:
    """The listener's backend is terminated between a change and its notification (the UPDATE is made,
    the backend killed, then the COMMIT sends a NOTIFY nobody hears): the change is applied once the
    listener reconnects, from the position it had reached, and nothing else is dropped."""
    city, other = unique_city("Reconnectsk"), unique_city("Keptovo")
    pid = await own_rows.add(city, 10_000)
    await own_rows.add(other, 7_000)
    async with cache_server(service_env, settings(near_min_accesses=1)) as srv:
        for c in (city, other):
            await srv.stub.PriceStats(stats(c))
            assert (await srv.stub.PriceStats(stats(c))).cache.hit
        async with own_rows.conn.transaction():
            await own_rows.conn.execute("UPDATE properties SET price = 20000 WHERE id = $1", pid)
            killed = await pg_conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = "
                "'rentscout-cache-listener' AND pid <> pg_backend_pid()"
            )
            assert killed >= 1
        after = await eventually(lambda: srv.stub.PriceStats(stats(city)), lambda r: r.max == 20_000)
        assert after.max == 20_000 and srv.engine.feed.connections >= 2
        kept = await srv.stub.PriceStats(stats(other))  # (the log was read since the reconnection: confirmed)
    assert kept.cache.hit and kept.max == 7_000  # no flush-all on reconnection


async def test_near_caches_of_every_replica_drop_invalidated_entries(service_env: dict[str, str]) -> None:
    cfg = settings(near_min_accesses=1, listen=False)
    async with cache_server(service_env, cfg) as a, cache_server(service_env, cfg) as b:
        for srv in (a, b):
            await eventually(bus_connected(srv), bool)
        await a.stub.PriceStats(stats("Krasnodar"))
        await b.stub.PriceStats(stats("Krasnodar"))
        assert (await a.stub.PriceStats(stats("Krasnodar"))).cache.source == NEAR
        assert (await b.stub.PriceStats(stats("Krasnodar"))).cache.source == NEAR
        await a.stub.Invalidate(cache_pb2.InvalidateRequest(tags=["city:Krasnodar"]))
        assert (await a.stub.PriceStats(stats("Krasnodar"))).cache.source == DATABASE  # this replica: at once
        # the other one within the change-log bound (its near entry predates the logged change)
        after = await eventually(lambda: b.stub.PriceStats(stats("Krasnodar")), lambda r: r.cache.source != NEAR)
        assert after.cache.source in (DATABASE, REDIS)


async def test_invalidation_during_a_fill_wins_over_the_stale_value(service_env: dict[str, str], own_rows: OwnRows) -> None:
    """The memcache-lease race, made deterministic: a miss reads the old price, the price changes and
    the change is acknowledged, then the miss tries to store. The store must fail and no reader may
    see the old price afterwards, not even the caller that started the miss."""
    city = unique_city("Racetown")
    pid = await own_rows.add(city, 100_000)
    read_old = asyncio.Event()
    release = asyncio.Event()
    calls: list[int] = []
    registry: dict[str, CachedQuery] = {}

    @cached_query(
        "gated_price",
        rpc="PriceStats",
        request=cache_pb2.PriceStatsRequest,
        params=price_stats_params,
        tags=lambda p: [city_tag(p["city"])],
        registry=registry,
    )
    async def gated_price(db: Database, *, city: str, property_type: str | None) -> cache_pb2.PriceStatsResponse:
        price = await db.fetchval("SELECT max(price) FROM properties WHERE city = $1", city)
        calls.append(price)
        if len(calls) == 1:  # only the first computation is held back, after it read the database
            read_old.set()
            await release.wait()
        return cache_pb2.PriceStatsResponse(count=1, max=price)

    queries = {**{n: q for n, q in REGISTRY.items() if q.rpc != "PriceStats"}, **registry}  # PriceStats is gated
    async with cache_server(service_env, settings(listen=False, near_min_accesses=1), queries=queries) as srv:
        pending = asyncio.ensure_future(srv.stub.PriceStats(stats(city)))
        await read_old.wait()
        await own_rows.conn.execute("UPDATE properties SET price = 200000 WHERE id = $1", pid)
        ack = await srv.stub.InvalidateRelated(cache_pb2.InvalidateRelatedRequest(entity=PROPERTY, id=str(pid)))
        assert city_tag(city) in ack.tags
        release.set()
        first = await pending
        later = [await srv.stub.PriceStats(stats(city)) for _ in range(3)]
    assert calls == [100_000, 200_000]  # the stale computation was discarded and redone
    assert first.max == 200_000 and first.cache.source == DATABASE
    assert [r.max for r in later] == [200_000] * 3 and later[0].cache.hit


async def test_a_new_replica_keeps_what_other_replicas_cached(service_env: dict[str, str]) -> None:
    cfg = settings()
    async with cache_server(service_env, cfg) as first:
        await first.stub.PriceStats(stats("Omsk"))
        with capture_logs() as logs:
            async with cache_server(service_env, cfg) as second:
                assert second.engine.feed.connected.is_set()
                # it read the retained change log: the entry is known current, no flush on start
                assert (await second.stub.PriceStats(stats("Omsk"))).cache.hit
    assert not [r for r in logs.records() if "dropping every cache entry" in r["message"]]


async def test_one_statement_touching_two_cities_reaches_both(service_env: dict[str, str], own_rows: OwnRows) -> None:
    a, b = unique_city("Burstov"), unique_city("Burstino")
    ids = [await own_rows.add(a, 1000), await own_rows.add(b, 2000)]
    async with cache_server(service_env) as srv:
        for city in (a, b):
            await srv.stub.PriceStats(stats(city))
        await own_rows.conn.execute("UPDATE properties SET price = price * 2 WHERE id = ANY($1::bigint[])", ids)
        both = await eventually(
            lambda: asyncio.gather(srv.stub.PriceStats(stats(a)), srv.stub.PriceStats(stats(b))),
            lambda r: (r[0].max, r[1].max) == (2000, 4000),
        )
        assert (both[0].max, both[1].max) == (2000, 4000)


async def test_a_views_change_drops_popular_lists_but_keeps_price_stats(service_env: dict[str, str], own_rows: OwnRows) -> None:
    city = unique_city("Viewsk")
    low = await own_rows.add(city, 10_000, views=1)
    await own_rows.add(city, 20_000, views=5)
    async with cache_server(service_env) as srv:
        popular = cache_pb2.PopularPropertiesRequest(city=city, limit=1)
        assert (await srv.stub.PopularProperties(popular)).properties[0].price == 20_000
        await srv.stub.PriceStats(stats(city))
        await own_rows.conn.execute("UPDATE properties SET views = 100 WHERE id = $1", low)
        top = await eventually(lambda: srv.stub.PopularProperties(popular), lambda r: r.properties[0].id == low)
        assert top.properties[0].id == low and top.cache.source == DATABASE
        assert (await srv.stub.PriceStats(stats(city))).cache.hit  # price statistics do not depend on views
