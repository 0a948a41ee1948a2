"""The engine's parts through their own seams: XFetch's draw, NOTIFY payloads to tags, deferred
invalidations, and the counters against a store that is only a `StatsStore` (Redis is exercised for
real in tests/integration/cache)."""

from __future__ import annotations

import math

import pytest

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.entry import NEAR, REDIS, Entry
from rentscout.cache_service.fill import xfetch_due
from rentscout.cache_service.invalidation import DeferredInvalidations, changed_tags
from rentscout.cache_service.stats import CacheStats
from rentscout.cache_service.store import RedisUnavailable


def test_xfetch_fires_earlier_for_slow_computations_and_never_when_disabled() -> None:
    entry = Entry("k", b"", created=1000.0, ttl=300.0, delta=2.0)  # expires at 1300
    u = math.exp(-5)  # -log(u) = 5: the refresh window is delta * beta * 5 = 10 s before expiry
    assert not xfetch_due(entry, 1289.0, beta=1.0, u=u)
    assert xfetch_due(entry, 1291.0, beta=1.0, u=u)
    assert xfetch_due(entry, 1289.0, beta=2.0, u=u)  # a larger beta refreshes earlier
    assert not xfetch_due(entry, 1299.0, beta=0.0, u=u)  # beta 0 disables it
    assert not xfetch_due(Entry("k", b"", 1000.0, 0.0, 2.0), 2000.0, beta=1.0, u=u)  # uncacheable (ttl 0)
    assert xfetch_due(entry, 1000.0, beta=1.0, u=0.0)  # a zero draw is the earliest possible refresh, not an error


def test_change_notifications_become_tags() -> None:
    assert changed_tags([{"cities": ["Kazan"], "prices": True}]) == {"city:Kazan"}
    assert changed_tags([{"cities": ["Kazan"], "prices": False}]) == {"popular:Kazan"}  # views, titles
    assert changed_tags([{"cities": ["Kazan", "Omsk"], "prices": False, "counts": True}]) == {
        "city:Kazan", "city:Omsk", "cities", "property_types"}
    assert changed_tags([{"cities": ["Kazan"]}, {"all": True}, {"cities": ["Omsk"]}]) is None  # everything
    assert changed_tags([{"cities": []}]) == set()  # nothing to invalidate


def test_deferred_invalidations_are_pending_until_emptied() -> None:
    deferred = DeferredInvalidations()
    assert not deferred
    deferred.tags.add("city:Kazan")
    assert deferred
    deferred.tags.clear()
    deferred.keys.add("ns:v1.1:cities:{x}")
    assert deferred
    deferred.keys.clear()
    deferred.everything = True
    assert deferred


class _Store:
    """A `StatsStore` that is up or down on demand and keeps what was flushed."""

    def __init__(self) -> None:
        self.up = True
        self.hash: dict[str, int] = {}
        self.reads: dict[str, int] = {}

    def _check(self) -> None:
        if not self.up:
            raise RedisUnavailable("down")

    async def flush(self, stats: dict[str, int], accesses: dict[str, int]) -> None:
        self._check()
        for field, n in stats.items():
            self.hash[field] = self.hash.get(field, 0) + n
        for key, n in accesses.items():
            self.reads[key] = self.reads.get(key, 0) + n

    async def read_stats(self) -> dict[str, int]:
        self._check()
        return dict(self.hash)

    async def usage(self) -> tuple[int, int]:
        self._check()
        return 7, 1024


async def test_counters_survive_a_failed_flush_and_fall_back_to_local_totals() -> None:
    store = _Store()
    stats = CacheStats(store, ["cities", "price_stats"])
    stats.answered("cities", False, cache_pb2.CACHE_SOURCE_DATABASE)
    stats.answered("cities", True, REDIS)
    stats.answered("cities", True, NEAR)
    stats.near_read("ns:v1.1:cities:{x}")
    stats.stampede_prevented("cities", "replica")
    store.up = False
    with pytest.raises(RedisUnavailable):
        await stats.flush()
    down = await stats.report(cache_pb2.BREAKER_STATE_OPEN, near_entries=1)
    assert (down.hits, down.misses, down.stampedes_prevented, down.redis_keys) == (2, 1, 1, 0)  # this replica's own
    assert down.breaker_state == cache_pb2.BREAKER_STATE_OPEN and down.near_cache_entries == 1
    store.up = True
    await stats.flush()  # what the failed flush could not send goes now
    assert store.hash == {"hits:cities": 2, "misses:cities": 1, "stampedes": 1}
    assert store.reads == {"ns:v1.1:cities:{x}": 1}
    stats.invalidated("tags", 3)
    up = await stats.report(cache_pb2.BREAKER_STATE_CLOSED, near_entries=0)  # the shared hash plus the unflushed part
    assert (up.hits, up.misses, up.invalidations, up.redis_keys, up.redis_memory_bytes) == (2, 1, 1, 7, 1024)
    by_type = {s.query_type: s for s in up.by_query_type}
    assert by_type["cities"].hit_ratio == pytest.approx(2 / 3) and by_type["price_stats"].hits == 0
    assert stats.local_hit_counts() == {"cities": (2, 1), "price_stats": (0, 0)}
