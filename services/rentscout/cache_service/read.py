"""The read path, fastest first. The only place that writes the near cache.

0. Nothing is served from a cache unless this replica read the change log at most `max_lag` ago
   (changes.py); otherwise the answer comes from PostgreSQL (single flight still applies).
1. The near cache (in-process, hottest keys, ready-to-send bytes): no Redis round trip; only while
   subscribed to the invalidation bus (pattern invalidations) and only for an entry still current.
2. Redis: one Lua round trip reads the entry and counts the read (for the adaptive TTL). Current
   and fresh: a hit, and XFetch may start one early refresh. Current but expired within the stale
   grace: served as STALE while one background refresh runs. Superseded by a change: a miss.
3. A miss, or Redis unreachable: a fill (see fill.py), single flight per replica and per cluster.
"""

from __future__ import annotations

import logging
import time

from rentscout.cache_service import metrics
from rentscout.cache_service.changes import ChangeLog
from rentscout.cache_service.entry import DATABASE, NEAR, REDIS, SOURCE_NAMES, STALE, Entry
from rentscout.cache_service.fill import Fills, Outcome
from rentscout.cache_service.near import NearCache
from rentscout.cache_service.registry import CachedQuery, Params
from rentscout.cache_service.stats import CacheStats
from rentscout.cache_service.store import RedisStore, RedisUnavailable
from rentscout.runtime import context, logs

_events = logging.getLogger("rentscout.events")


class Reader:
    def __init__(
        self,
        *,
        enabled: bool,
        near_min_accesses: int,
        near: NearCache,
        store: RedisStore,
        fills: Fills,
        stats: CacheStats,
        log: ChangeLog,
    ) -> None:
        self._enabled = enabled
        self._near_min_accesses = near_min_accesses
        self._near = near
        self._store = store
        self._fills = fills
        self._stats = stats
        self._log = log
        self._unconfirmed = metrics.REDIS_BYPASSED.labels("change_log_unconfirmed")

    async def get(self, q: CachedQuery, params: Params, key: str) -> bytes:
        """The serialized response for `params`, whose entry is `key` (see requests.py), with its CacheInfo."""
        started = time.perf_counter()
        if not self._enabled:
            return self._answer(q, Outcome(await self._fills.compute(q, params, key, 0.0), False, DATABASE), started)
        log = self._log
        if not log.confirmed():
            self._unconfirmed.inc()
            return self._answer(q, await self._fills.miss(q, params, key, False), started)
        now = time.time()
        near = self._near
        if near.enabled:
            entry = near.get(key, now)
            if entry is not None:
                if log.current(entry.from_seq, entry.tags):
                    self._stats.near_read(key)
                    self._fills.refresh_if_due(q, params, key, entry, now)
                    return self._answer(q, Outcome(entry, True, NEAR), started, now)
                near.forget([key])
        epoch = near.epoch
        use_redis = True
        try:
            raw, reads = await self._store.read(key)
        except RedisUnavailable:
            raw, reads, use_redis = None, 0, False
        entry = Entry.decode(key, raw, tuple(q.tags(params))) if raw else None
        if entry is not None:
            if log.current(entry.from_seq, entry.tags):
                now = time.time()
                if now < entry.expires:
                    if reads >= self._near_min_accesses:
                        near.put(entry, epoch, now)
                    self._fills.refresh_if_due(q, params, key, entry, now)
                    return self._answer(q, Outcome(entry, True, REDIS), started, now)
                self._fills.refresh(q, params, key, entry, "stale")
                return self._answer(q, Outcome(entry, True, STALE), started, now)
            metrics.SUPERSEDED.labels(q.name).inc()
        out = await self._fills.miss(q, params, key, use_redis)
        if out.reads >= self._near_min_accesses and out.entry.ttl > 0:
            near.put(out.entry, epoch, time.time())
        return self._answer(q, out, started)

    def _answer(self, q: CachedQuery, out: Outcome, started: float, now: float | None = None) -> bytes:
        self._stats.answered(q.name, out.hit, out.source)
        source = SOURCE_NAMES[out.source]
        context.annotate(**{"cache.hit": out.hit, "cache.key": out.entry.key, "cache.source": source})
        if _events.isEnabledFor(logging.DEBUG):  # skip building the fields when nobody logs them
            logs.log_cache_op(
                "get",
                out.entry.key,
                out.hit,
                time.perf_counter() - started,
                **{"cache.source": source, "cache.query_type": q.name},
            )
        return out.entry.response(out.hit, out.source, time.time() if now is None else now)
