"""The read path, fastest first.

1. The near cache (in-process, hottest keys, ready-to-send bytes): no Redis round trip; only while
   subscribed to the invalidation bus and no invalidation is deferred.
2. Redis: one Lua round trip reads the entry and counts the read (for the adaptive TTL). Fresh: a
   hit, and XFetch may start one early refresh. Expired but within the stale grace: served as STALE
   while one background refresh runs.
3. A miss, or Redis unreachable: a fill (see fill.py), single flight per replica and per cluster.

While invalidations are deferred (Redis was unreachable when one came) every read goes to PostgreSQL.
"""

from __future__ import annotations

import logging
import time

from rentscout.cache_service import metrics
from rentscout.cache_service.entry import DATABASE, NEAR, REDIS, SOURCE_NAMES, STALE, Entry
from rentscout.cache_service.fill import Fills, Outcome
from rentscout.cache_service.invalidation import DeferredInvalidations
from rentscout.cache_service.near import NearCache
from rentscout.cache_service.registry import CachedQuery, Params
from rentscout.cache_service.stats import CacheStats
from rentscout.cache_service.store import RedisStore, RedisUnavailable
from rentscout.runtime import context, logs

_events = logging.getLogger("rentscout.events")


class Reader:
    def __init__(self, *, enabled: bool, near_min_accesses: int, near: NearCache, store: RedisStore,
                 fills: Fills, stats: CacheStats, deferred: DeferredInvalidations) -> None:
        self._enabled = enabled
        self._near_min_accesses = near_min_accesses
        self._near = near
        self._store = store
        self._fills = fills
        self._stats = stats
        self._deferred = deferred

    async def get(self, q: CachedQuery, params: Params, key: str) -> bytes:
        """The serialized response for `params`, whose entry is `key` (see requests.py), with its CacheInfo."""
        started = time.perf_counter()
        if not self._enabled:
            return self._answer(q, Outcome(await self._fills.compute(q, params, key, 0.0), False, DATABASE), started)
        pending = bool(self._deferred)
        now = time.time()
        if self._near.enabled and not pending:
            entry = self._near.get(key, now)
            if entry is not None:
                self._stats.near_read(key)
                self._fills.refresh_if_due(q, params, key, entry, now)
                return self._answer(q, Outcome(entry, True, NEAR), started, now)
        use_redis = not pending
        if pending:
            metrics.REDIS_BYPASSED.labels("pending_invalidation").inc()
        else:
            epoch = self._near.epoch
            try:
                raw, reads = await self._store.read(key)
            except RedisUnavailable:
                raw, reads, use_redis = None, 0, False
            entry = Entry.decode(key, raw) if raw else None
            if entry is not None:
                now = time.time()
                if now < entry.expires:
                    if reads >= self._near_min_accesses:
                        self._near.put(entry, epoch, now)
                    self._fills.refresh_if_due(q, params, key, entry, now)
                    return self._answer(q, Outcome(entry, True, REDIS), started, now)
                self._fills.refresh(q, params, key, entry, "stale")
                return self._answer(q, Outcome(entry, True, STALE), started, now)
        return self._answer(q, await self._fills.miss(q, params, key, use_redis), started)

    def _answer(self, q: CachedQuery, out: Outcome, started: float, now: float | None = None) -> bytes:
        self._stats.answered(q.name, out.hit, out.source)
        source = SOURCE_NAMES[out.source]
        context.annotate(**{"cache.hit": out.hit, "cache.key": out.entry.key, "cache.source": source})
        if _events.isEnabledFor(logging.DEBUG):  # skip building the fields when nobody logs them
            logs.log_cache_op("get", out.entry.key, out.hit, time.perf_counter() - started,
                              **{"cache.source": source, "cache.query_type": q.name})
        return out.entry.response(out.hit, out.source, time.time() if now is None else now)
