"""QueryCache: the cache-query engine, wired from parts with one responsibility each.

- read.py `Reader`: the read path (near cache -> Redis -> fill), stale served while one refresh runs;
- fill.py `Fills`: single flight per replica, the Redis lease with compare-and-set, XFetch and stale refreshes;
- changes.py `ChangeLog` and listener.py `ChangeFeed`: the change log this replica applied, what is current;
- invalidation.py `Invalidation`: tags (through the log), patterns (SCAN), Redis cleanup;
- stats.py `CacheStats`: counters, their flush to Redis, GetCacheStats;
- store.py `RedisStore`: every Redis operation, behind the circuit breaker built here.

This module builds them, runs their background work between `start` and `stop` (the invalidation
bus, the change feed, the flush loop) and reports the breaker's state.

Redis trouble never fails a call: every Redis operation goes through the breaker and a short
deadline-bounded timeout, and the fallback is PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service import bus, metrics
from rentscout.cache_service.changes import ChangeLog
from rentscout.cache_service.fill import Fills
from rentscout.cache_service.invalidation import Invalidation
from rentscout.cache_service.keys import KeySpace
from rentscout.cache_service.listener import ChangeFeed
from rentscout.cache_service.near import NearCache
from rentscout.cache_service.read import Reader
from rentscout.cache_service.registry import CachedQuery
from rentscout.cache_service.settings import CacheSettings
from rentscout.cache_service.stats import CacheStats
from rentscout.cache_service.store import RedisStore, RedisUnavailable
from rentscout.resilience.breaker import BreakerConfig, CircuitBreaker
from rentscout.resilience.breaker import CircuitState as BreakerState
from rentscout.runtime import logs
from rentscout.runtime import metrics as runtime_metrics
from rentscout.runtime.errors import DeadlineExceeded
from rentscout.runtime.replicas import CommitWatermark
from rentscout.runtime.resources import Resources

_log = logging.getLogger(__name__)
BREAKER_CODES = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}
BREAKER_PROTO = {
    BreakerState.CLOSED: cache_pb2.BREAKER_STATE_CLOSED,
    BreakerState.OPEN: cache_pb2.BREAKER_STATE_OPEN,
    BreakerState.HALF_OPEN: cache_pb2.BREAKER_STATE_HALF_OPEN,
}


class QueryCache:
    def __init__(self, resources: Resources, settings: CacheSettings, queries: Mapping[str, CachedQuery]) -> None:
        self.settings = settings
        self.db = resources.db
        self.queries = dict(queries)
        self.keys = KeySpace(settings.namespace)
        # consecutive Redis failures open it; one probe after the reset time decides (any Redis error fails it)
        self.breaker = CircuitBreaker(
            "cache-redis",
            BreakerConfig(
                consecutive_failures=settings.breaker_failures,
                recovery_timeout=settings.breaker_reset_seconds,
                half_open_probes=1,
                failure_rate_threshold=1.0,
                slow_call_duration=None,
            ),
        )
        self.breaker.add_listener(lambda change: self._breaker_changed(change.old, change.new))
        self.store = RedisStore(
            lambda: resources.redis,
            self.keys,
            self.breaker,
            timeout=resources.settings.redis_timeout_seconds,
            window_ms=settings.access_window_seconds * 1000,
        )
        self.near = NearCache(settings.near_max_entries, settings.near_max_age_seconds)
        self.stats = CacheStats(self.store, self.queries)
        # fills read from standbys, once they have replayed every change this replica heard of
        self.watermark = CommitWatermark(resources.reads)
        self.log = ChangeLog(settings.changes_max_lag_ms / 1000)
        self.fills = Fills(
            self.watermark.view,
            self.store,
            self.log,
            self.stats,
            settings,
            self.queries.values(),
            redis_usable=lambda: self.breaker.state is not BreakerState.OPEN,
        )
        timeout = resources.settings.db_connect_timeout_seconds
        self.feed = ChangeFeed(
            resources.settings.database_url,
            self.log,
            timeout=timeout,
            poll_interval=settings.changes_poll_ms / 1000,
            retention=settings.change_retention_seconds,
            listen=settings.listen,
            before_apply=self.watermark.advance,
            on_changed=lambda tags: self.invalidation.changed(tags),
        )
        self.invalidation = Invalidation(self.store, self.stats, (self.near, self.fills), self.db, self.feed, timeout)
        self.reader = Reader(
            enabled=settings.enabled,
            near_min_accesses=settings.near_min_accesses,
            near=self.near,
            store=self.store,
            fills=self.fills,
            stats=self.stats,
            log=self.log,
        )
        self.bus = bus.InvalidationBus(
            self.store, self.invalidation.forget_local, self.near.set_enabled, resources.settings.redis_timeout_seconds
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._running = False  # background work (refreshes, bus, flushes) only between start and stop
        metrics.track(self)
        self._breaker_changed(BreakerState.CLOSED, BreakerState.CLOSED)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.settings.enabled:
            return
        self._running = True
        self.fills.start()
        self._tasks.append(asyncio.create_task(self.bus.run(), name="cache-invalidation-bus"))
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="cache-flush"))
        self._tasks.append(asyncio.create_task(self.feed.run(), name="cache-change-feed"))
        with contextlib.suppress(TimeoutError):  # start serving anyway (from PostgreSQL); it keeps reconnecting
            await asyncio.wait_for(self.feed.connected.wait(), 3.0)

    async def stop(self) -> None:
        self._running = False
        self.feed.stop()
        self.bus.stop()
        cleaner = self.invalidation.stop()
        tasks: list[asyncio.Task[Any]] = [*self._tasks, *self.fills.stop(), *([cleaner] if cleaner else [])]
        self._tasks = []
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a cancellation lost in a racing timeout must not hang the shutdown
            _, stuck = await asyncio.wait(tasks, timeout=3.0)
            if stuck:
                _log.warning("%d cache background tasks did not stop in time", len(stuck))
        with contextlib.suppress(RedisUnavailable, DeadlineExceeded, TimeoutError):
            await asyncio.wait_for(self.flush(), 1.0)  # best effort: counters are not worth a slow shutdown

    async def _flush_loop(self) -> None:
        while self._running:
            await asyncio.sleep(self.settings.flush_interval_seconds)
            with contextlib.suppress(RedisUnavailable):
                await self.flush()

    async def flush(self) -> None:
        """Add local counters and near-cache reads to Redis."""
        await self.stats.flush()

    # -- what the service calls besides reader.get and invalidation ----------------------------

    async def report(self) -> cache_pb2.GetCacheStatsResponse:
        """GetCacheStats: every replica's counters, this replica's breaker and near cache."""
        return await self.stats.report(BREAKER_PROTO[self.breaker.state], len(self.near))

    # -- scrape-time metrics (metrics.track) ----------------------------------------------------

    def local_hit_counts(self) -> dict[str, tuple[int, int]]:
        return self.stats.local_hit_counts()

    def near_size(self) -> int:
        return len(self.near)

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        metrics.BREAKER_STATE.set(BREAKER_CODES[new])
        up = new is not BreakerState.OPEN
        metrics.REDIS_UP.set(1 if up else 0)
        runtime_metrics.DEPENDENCY_UP.labels("redis").set(1 if up else 0)
        if old is not new:
            level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
            fields: dict[str, Any] = {**logs.ecs_event("database", "change"), "cache.breaker.state": new.value}
            if new is BreakerState.OPEN:
                fields["error.message"] = self.store.last_error
            _log.log(
                level,
                "Redis circuit breaker %s -> %s%s",
                old.value,
                new.value,
                ": serving from PostgreSQL without the cache" if new is BreakerState.OPEN else "",
                extra={"fields": fields},
            )
