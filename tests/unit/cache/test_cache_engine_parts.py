"""The engine's parts through their own seams: XFetch's draw, the change log's positions and holes
(what is current), and the counters against a store that is only a `StatsStore` (Redis is exercised for
real in tests/integration/cache)."""

from __future__ import annotations

import math

import pytest

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.changes import ChangeLog
from rentscout.cache_service.entry import NEAR, REDIS, Entry
from rentscout.cache_service.fill import xfetch_due
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


def test_an_entry_is_current_until_a_change_to_one_of_its_tags_comes_after_its_fill() -> None:
    log = ChangeLog(max_lag=1.0)
    log.start(None)
    log.apply([(1, ["city:Kazan"]), (2, ["popular:Omsk"])], xmin=100, xmax=100, started=0.0)
    assert log.low == 2
    assert log.current(2, ["city:Kazan", "popular:Kazan"])  # filled after both changes
    assert not log.current(0, ["city:Kazan"])  # filled before the Kazan change
    assert log.current(0, ["city:Omsk"])  # a views change in Omsk touches only its popular lists
    log.apply([(3, ["*"])], xmin=100, xmax=100, started=0.0)
    assert not log.current(2, []) and log.current(3, ["city:Kazan"])  # `*` supersedes everything before it


def test_a_position_committed_out_of_order_holds_low_until_its_transaction_is_gone() -> None:
    log = ChangeLog(max_lag=1.0)
    log.start(None)
    # seq 2 committed while the transaction holding seq 1 still runs (xid 50 in the snapshot, xmax 60)
    log.apply([(2, ["city:Omsk"])], xmin=50, xmax=60, started=0.0)
    assert (log.low, log.newest) == (0, 2) and log.holes() == ([1], [1])
    assert not log.current(0, ["city:Omsk"])  # seq 2 is applied at once...
    # ...but a fill records `low` = 0, so when seq 1 commits, the entry is superseded
    log.apply([(1, ["city:Kazan"])], xmin=55, xmax=61, started=0.0)
    assert log.low == 2 and not log.current(0, ["city:Kazan"])
    # a hole whose transaction rolled back is resolved once every transaction older than the read is gone
    log.apply([(4, ["city:Ufa"])], xmin=61, xmax=70, started=0.0)
    assert log.low == 2 and log.holes() == ([3], [3])
    log.apply([], xmin=65, xmax=71, started=0.0)
    assert log.low == 2  # xid 65 < 70 may still be the holder
    log.apply([], xmin=70, xmax=71, started=0.0)
    assert log.low == 4 and log.holes() == ([], [])


def test_a_new_replica_treats_entries_older_than_the_retained_log_as_unknown() -> None:
    log = ChangeLog(max_lag=1.0)
    log.start(500)  # rows before 500 were pruned
    log.apply([(500, ["city:Kazan"]), (501, ["city:Omsk"])], xmin=10, xmax=10, started=0.0)
    assert log.floor == 499 and log.low == 501
    assert not log.current(300, ["city:Ufa"])  # filled before the oldest row: changes may have been pruned
    assert log.current(501, ["city:Ufa"])
    log.reset()
    assert log.floor == -1 and log.low == 0


def test_nothing_is_confirmed_longer_than_the_bound_after_the_last_read_started() -> None:
    log = ChangeLog(max_lag=0.5)
    assert not log.confirmed(now=0.0)  # never read
    log.start(None)
    log.apply([], xmin=1, xmax=1, started=10.0)
    assert log.confirmed(now=10.5) and not log.confirmed(now=10.51)
    log.apply([], xmin=1, xmax=1, started=9.0)  # a read that started earlier does not move it back
    assert log.confirmed_at == 10.0


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


def test_a_read_cut_short_by_its_batch_confirms_nothing() -> None:
    log = ChangeLog(max_lag=0.5)
    log.start(None)
    log.apply([(1, ["city:Kazan"])], xmin=1, xmax=1, started=None)  # more rows were waiting
    assert log.low == 1 and not log.confirmed(now=0.0)
