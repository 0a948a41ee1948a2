"""QueryCache: cache-aside over Redis with a near cache, single flight, leases and early refresh.

The read path, fastest first:
1. near cache (in-process, hottest keys, ready-to-send bytes): no Redis round trip;
2. Redis (one Lua round trip that also counts the read for the adaptive TTL): a fresh entry is a
   hit; an expired one still within the stale grace is served while one background refresh runs;
3. a miss: one computation per key per replica (single flight: concurrent callers await the same
   task) and per cluster (a Redis lease, SET NX PX: other replicas poll for its result).

No stale refill: the filler takes the lease and registers the key under its tags *before* reading
PostgreSQL, and stores only if its lease is still there (Lua compare-and-set). An invalidation
deletes the entry and its lease, so a value computed from pre-change data is discarded (and
recomputed) instead of overwriting the invalidation.

Redis trouble never fails a call: every Redis operation goes through a circuit breaker and a short
deadline-bounded timeout, and the fallback is PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service import bus, metrics
from rentscout.cache_service.entry import DATABASE, NEAR, REDIS, SOURCE_NAMES, STALE, Entry
from rentscout.cache_service.keys import CITIES_TAG, TYPES_TAG, KeySpace, city_tag, glob_regex, popular_tag
from rentscout.cache_service.listener import ChangeListener
from rentscout.cache_service.near import NearCache
from rentscout.cache_service.registry import CachedQuery, Params
from rentscout.cache_service.settings import CacheSettings
from rentscout.cache_service.store import RedisStore, RedisUnavailable
from rentscout.cache_service.ttl import AdaptiveTtl, jittered
from rentscout.resilience.breaker import BreakerConfig, CircuitBreaker
from rentscout.resilience.breaker import CircuitState as BreakerState
from rentscout.runtime import context, deadline, logs
from rentscout.runtime import metrics as runtime_metrics
from rentscout.runtime.errors import DeadlineExceeded
from rentscout.runtime.resources import Resources

_log = logging.getLogger(__name__)
_events = logging.getLogger("rentscout.events")
MAX_FILL_ATTEMPTS = 3
MAX_PENDING_READ_KEYS = 50_000
_LEASE_GONE = object()
HEARTBEAT_TTL_MS = 3000  # a listener refreshes it every second while connected
BREAKER_CODES = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}
BREAKER_PROTO = {BreakerState.CLOSED: cache_pb2.BREAKER_STATE_CLOSED, BreakerState.OPEN: cache_pb2.BREAKER_STATE_OPEN,
                 BreakerState.HALF_OPEN: cache_pb2.BREAKER_STATE_HALF_OPEN}


@dataclass(slots=True)
class Outcome:
    entry: Entry
    hit: bool
    source: int


class _Stats:
    """Counters since start (`total`) and not yet added to the shared hash in Redis (`pending`)."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.pending: Counter[str] = Counter()

    def add(self, field: str, n: int = 1) -> None:
        self.total[field] += n
        self.pending[field] += n


class QueryCache:
    def __init__(self, resources: Resources, settings: CacheSettings, queries: Mapping[str, CachedQuery]) -> None:
        self.s = settings
        self.db = resources.db
        self.queries = dict(queries)
        self.keys = KeySpace(settings.namespace)
        self.policy = AdaptiveTtl.from_settings(settings)
        # consecutive Redis failures open it; one probe after the reset time decides (any Redis error fails it)
        self.breaker = CircuitBreaker("cache-redis", BreakerConfig(
            consecutive_failures=settings.breaker_failures, recovery_timeout=settings.breaker_reset_seconds,
            half_open_probes=1, failure_rate_threshold=1.0, slow_call_duration=None))
        self.breaker_opened = 0  # times the breaker opened (tests and logs)
        self.breaker.add_listener(lambda change: self._breaker_changed(change.old, change.new))
        self.store = RedisStore(lambda: resources.redis, self.keys, self.breaker,
                                timeout=resources.settings.redis_timeout_seconds,
                                window_ms=settings.access_window_seconds * 1000)
        self.near = NearCache(settings.near_max_entries, settings.near_max_age_seconds)
        self.bus = bus.InvalidationBus(self.store, self._remote_invalidation, self.near.set_enabled,
                                       resources.settings.redis_timeout_seconds)
        self.listener = ChangeListener(resources.settings.database_url, self.on_changes, self._on_listen,
                                       self._listener_heartbeat,
                                       connect_timeout=resources.settings.db_connect_timeout_seconds)
        self._flights: dict[str, asyncio.Task[Outcome]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._running = False  # background work (refreshes, bus, flushes) only between start and stop
        self._stats = _Stats()
        self._near_reads: Counter[str] = Counter()
        self._pending_tags: set[str] = set()
        self._pending_keys: set[str] = set()
        self._pending_all = False
        # the largest physical TTL an entry can get, so tag sets outlive their members
        self._tag_ttl = int(max([self.policy.max_seconds, *(q.ttl.max_seconds for q in self.queries.values() if q.ttl)])
                            * (1 + settings.ttl_jitter) + settings.stale_grace_seconds + 60)
        self.database_queries: Counter[str] = Counter()  # real queries sent, by query type
        self._hit_children = {(q, s): metrics.HITS.labels(q, SOURCE_NAMES[s]) for q in self.queries
                              for s in (NEAR, REDIS, STALE)}
        self._miss_children = {q: metrics.MISSES.labels(q) for q in self.queries}
        metrics.track(self)
        self._breaker_changed(BreakerState.CLOSED, BreakerState.CLOSED)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.s.enabled:
            return
        self._running = True
        self._tasks.append(asyncio.create_task(self.bus.run(), name="cache-invalidation-bus"))
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="cache-flush"))
        if self.s.listen:
            self._tasks.append(asyncio.create_task(self.listener.run(), name="cache-change-listener"))
            with contextlib.suppress(TimeoutError):  # start serving anyway; it keeps reconnecting
                await asyncio.wait_for(self.listener.connected.wait(), 3.0)

    async def stop(self) -> None:
        self._running = False
        self.listener.stop()
        self.bus.stop()
        tasks = self._tasks + list(self._flights.values())
        self._tasks = []
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a cancellation lost in a racing timeout must not hang the shutdown
            _, stuck = await asyncio.wait(tasks, timeout=3.0)
            if stuck:
                _log.warning("%d cache background tasks did not stop in time", len(stuck))
        with contextlib.suppress(RedisUnavailable, DeadlineExceeded, TimeoutError):
            await asyncio.wait_for(self.flush(), 1.0)  # best effort: counters are not worth a slow shutdown

    # -- the read path ------------------------------------------------------------------------

    async def get(self, q: CachedQuery, params: Params) -> bytes:
        """The serialized response for `params`, with its CacheInfo."""
        started = time.perf_counter()
        key = self.keys.entry(q.name, q.version, params)
        if not self.s.enabled:
            return self._answer(q, Outcome(await self._compute(q, params, key, 0.0), False, DATABASE), started)
        pending = self._pending
        now = time.time()
        if self.near.enabled and not pending:
            entry = self.near.get(key, now)
            if entry is not None:
                self._near_reads[key] += 1
                if self._refresh_early(entry, now):
                    self._refresh_in_background(q, params, key, entry, "early")
                return self._answer(q, Outcome(entry, True, NEAR), started, now)
        use_redis = not pending
        if pending:
            metrics.REDIS_BYPASSED.labels("pending_invalidation").inc()
        else:
            epoch = self.near.epoch
            try:
                raw, reads = await self.store.read(key)
            except RedisUnavailable:
                raw, reads, use_redis = None, 0, False
            entry = Entry.decode(key, raw) if raw else None
            if entry is not None:
                now = time.time()
                if now < entry.expires:
                    if reads >= self.s.near_min_accesses:
                        self.near.put(entry, epoch, now)
                    if self._refresh_early(entry, now):
                        self._refresh_in_background(q, params, key, entry, "early")
                    return self._answer(q, Outcome(entry, True, REDIS), started, now)
                self._refresh_in_background(q, params, key, entry, "stale")
                return self._answer(q, Outcome(entry, True, STALE), started, now)
        return self._answer(q, await self._miss(q, params, key, use_redis), started)

    def _refresh_early(self, entry: Entry, now: float) -> bool:
        """XFetch: recompute before expiry with a probability that grows as expiry nears, scaled by
        how long the computation takes, so a hot key is refreshed once instead of stampeding."""
        beta = self.s.xfetch_beta
        if beta <= 0 or entry.ttl <= 0:
            return False
        return now - entry.delta * beta * math.log(random.random() or 1e-300) >= entry.expires

    async def _miss(self, q: CachedQuery, params: Params, key: str, use_redis: bool) -> Outcome:
        while True:
            flight = self._flights.get(key)
            joined = flight is not None
            if flight is None:
                flight = self._start_flight(q, params, key, use_redis)
            else:
                self._count_stampede(q, "replica")
            try:
                return await asyncio.shield(flight)
            except DeadlineExceeded:
                # the flight ran under its starter's deadline; a caller who joined and has time left retries
                if not joined:
                    raise
                deadline.remaining()  # raises when this caller's time is up too
                if self._flights.get(key) is flight:
                    del self._flights[key]

    def _start_flight(self, q: CachedQuery, params: Params, key: str, use_redis: bool,
                      newer_than: float = 0.0) -> asyncio.Task[Outcome]:
        task = asyncio.create_task(self._fill(q, params, key, use_redis, newer_than), name=f"cache-fill {key}")
        self._flights[key] = task

        def done(t: asyncio.Task[Outcome]) -> None:
            if self._flights.get(key) is t:
                del self._flights[key]
            if not t.cancelled():
                t.exception()  # retrieved here: callers may all have gone

        task.add_done_callback(done)
        return task

    def _refresh_in_background(self, q: CachedQuery, params: Params, key: str, old: Entry, reason: str) -> None:
        """One refresh per key, outside the caller's deadline (the caller is answered already)."""
        if key in self._flights or not self._running or self.breaker.state is BreakerState.OPEN:
            return  # (without Redis a refresh could not be stored: the next miss computes anyway)
        metrics.BACKGROUND_REFRESHES.labels(q.name, reason).inc()

        def start() -> None:
            deadline.set_from_time_remaining(self.s.refresh_timeout_seconds)
            context.rpc_fields.set(None)
            self._start_flight(q, params, key, True, newer_than=old.created)

        contextvars.copy_context().run(start)

    async def _fill(self, q: CachedQuery, params: Params, key: str, use_redis: bool, newer_than: float) -> Outcome:
        """Compute and store one entry, taking the cluster-wide lease first (see module docstring)."""
        epoch = self.near.epoch
        tags = list(q.tags(params))
        policy = q.ttl or self.policy
        last: Entry | None = None
        force = newer_than > 0  # a refresh: the entry in Redis is the old one
        for _ in range(MAX_FILL_ATTEMPTS if use_redis else 0):
            token = os.urandom(12).hex()
            try:
                raw, leased, reads, churn = await self.store.acquire(key, token, tags, self.s.lock_ttl_ms, self._tag_ttl,
                                                                     force)
            except RedisUnavailable:
                break
            if raw is not None:  # filled by another replica since our read
                found = Entry.decode(key, raw)
                if found is not None and found.created > newer_than and time.time() < found.expires:
                    self._count_stampede(q, "cluster")
                    return self._remote_hit(found, reads, epoch)
                force = True
                continue
            if not leased:
                self._count_stampede(q, "cluster")
                waited = await self._await_remote(key, newer_than)
                if isinstance(waited, Entry):
                    return self._remote_hit(waited, reads, epoch)
                if waited is _LEASE_GONE:
                    continue
                break  # waited long enough: answer from PostgreSQL without storing
            ttl = jittered(policy.seconds(reads, churn), self.s.ttl_jitter)
            last = await self._compute(q, params, key, ttl)
            try:
                stored = await self.store.store(key, token, last.encode(), int((ttl + self.s.stale_grace_seconds) * 1000))
            except RedisUnavailable:
                break
            if stored:
                if reads >= self.s.near_min_accesses:
                    self.near.put(last, epoch, time.time())
                return Outcome(last, False, DATABASE)
            # the lease is gone: an invalidation landed while we computed, so `last` may predate it
            metrics.DISCARDED_FILLS.labels(q.name).inc()
            _log.info("discarded a fill invalidated while computing", extra={"fields": {"cache.key": key}})
            last = None
        if last is None:
            last = await self._compute(q, params, key, 0.0)
        return Outcome(Entry(key, last.payload, last.created, 0.0, last.delta), False, DATABASE)

    def _remote_hit(self, entry: Entry, reads: int, epoch: int) -> Outcome:
        if reads >= self.s.near_min_accesses:
            self.near.put(entry, epoch, time.time())
        return Outcome(entry, True, REDIS)

    async def _await_remote(self, key: str, newer_than: float) -> Entry | object | None:
        """Poll for another replica's result: the entry, _LEASE_GONE (holder gone), or None (timeout)."""
        end = time.monotonic() + self.s.lock_wait_ms / 1000
        delay = 0.002
        while (left := end - time.monotonic()) > 0:
            deadline.remaining()  # raises DeadlineExceeded when the caller's time is up
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)
            try:
                raw, leased = await self.store.peek(key)
            except RedisUnavailable:
                return None
            entry = Entry.decode(key, raw) if raw else None
            if entry is not None and entry.created > newer_than and time.time() < entry.expires:
                return entry
            if not leased:
                return _LEASE_GONE
        return None

    async def _compute(self, q: CachedQuery, params: Params, key: str, ttl: float) -> Entry:
        created = time.time()
        t0 = time.perf_counter()
        self.database_queries[q.name] += 1
        metrics.FILLS.labels(q.name).inc()
        message = await q(self.db, **params)
        delta = time.perf_counter() - t0
        metrics.FILL_SECONDS.labels(q.name).observe(delta)
        if "cache" in message.DESCRIPTOR.fields_by_name:
            message.ClearField("cache")
        return Entry(key, message.SerializeToString(), created, ttl, delta)

    def _answer(self, q: CachedQuery, out: Outcome, started: float, now: float | None = None) -> bytes:
        if out.hit:
            self._hit_children[(q.name, out.source)].inc()
            self._stats.add("hits:" + q.name)
        else:
            self._miss_children[q.name].inc()
            self._stats.add("misses:" + q.name)
        source = SOURCE_NAMES[out.source]
        context.annotate(**{"cache.hit": out.hit, "cache.key": out.entry.key, "cache.source": source})
        if _events.isEnabledFor(logging.DEBUG):  # skip building the fields when nobody logs them
            logs.log_cache_op("get", out.entry.key, out.hit, time.perf_counter() - started,
                         **{"cache.source": source, "cache.query_type": q.name})
        return out.entry.response(out.hit, out.source, time.time() if now is None else now)

    def _count_stampede(self, q: CachedQuery, scope: str) -> None:
        metrics.STAMPEDES_PREVENTED.labels(q.name, scope).inc()
        self._stats.add("stampedes")

    # -- invalidation -------------------------------------------------------------------------

    async def invalidate_tags(self, tags: Iterable[str], trigger: str) -> int:
        """Drop every entry registered under any of `tags` (and any fill of one in flight)."""
        keys = await self.store.pop_tags(tags)
        try:
            deleted = await self.store.invalidate_keys(keys)
        except RedisUnavailable:
            self._pending_keys.update(keys)  # the tag sets are gone: remember their members
            self._drop_local(None)
            raise
        await self._announce(keys, deleted, trigger)
        return deleted

    async def invalidate_pattern(self, pattern: str, trigger: str = "pattern") -> int:
        """Drop entries whose key matches a Redis glob: SCAN, never KEYS; in-flight fills included."""
        keys = {k for k in await self.store.scan(pattern) if self.keys.is_entry(k)}
        match = glob_regex(pattern)
        for lease in await self.store.scan(self.keys.all_leases_pattern):
            entry_key = self.keys.entry_of_lease(lease)
            if entry_key and match.fullmatch(entry_key):
                keys.add(entry_key)
        ordered = sorted(keys)
        deleted = await self.store.invalidate_keys(ordered)
        await self._announce(ordered, deleted, trigger)
        return deleted

    async def invalidate_all(self, trigger: str) -> int:
        deleted = await self.invalidate_pattern(self.keys.all_entries_pattern, trigger)
        await self._announce(None, 0, trigger, count=False)
        return deleted

    async def invalidate_deferrable(self, tags: set[str] | None, trigger: str) -> int:
        """Invalidate, or (Redis unreachable) remember it and bypass the cache until it succeeds."""
        try:
            return await (self.invalidate_all(trigger) if tags is None else self.invalidate_tags(sorted(tags), trigger))
        except RedisUnavailable:
            if tags is None:
                self._pending_all = True
            else:
                self._pending_tags |= tags
            self._drop_local(None)
            _log.warning("Redis unreachable: invalidation deferred; serving from PostgreSQL until it is applied",
                         extra={"fields": {"cache.tags": sorted(tags) if tags else "*", "cache.trigger": trigger}})
            raise

    async def _announce(self, keys: list[str] | None, deleted: int, trigger: str, count: bool = True) -> None:
        """Forget the keys here at once, then tell every replica (None: everything)."""
        self._drop_local(keys)
        _log.debug("cache invalidated", extra={"fields": {
            "event.category": "cache", "event.action": "invalidate", "cache.trigger": trigger,
            "cache.keys_deleted": deleted, "cache.keys": len(keys) if keys is not None else "*"}})
        if count:
            metrics.INVALIDATIONS.labels(trigger).inc()
            metrics.INVALIDATED_KEYS.labels(trigger).inc(deleted)
            self._stats.add("invalidations")
        if keys is None or keys:
            try:
                await self.store.publish(bus.message(keys))
            except RedisUnavailable:
                _log.warning("could not broadcast an invalidation; other replicas' near caches expire on their own")

    def _drop_local(self, keys: list[str] | None) -> None:
        if keys is None:
            self.near.clear()
            self._flights.clear()  # running fills finish for their callers; new callers start afresh
            return
        self.near.discard(keys)
        for key in keys:
            self._flights.pop(key, None)

    def _remote_invalidation(self, keys: list[str] | None) -> None:
        self._drop_local(keys)

    async def on_changes(self, changes: list[Mapping[str, Any]]) -> None:
        """NOTIFYs from the properties trigger (see migration 0003), merged into one invalidation."""
        tags: set[str] | None = set()
        for change in changes:
            if change.get("all"):
                tags = None
                break
            # a change that cannot move price statistics (views, titles ...) only touches popular lists
            tag = city_tag if change.get("prices", True) or change.get("counts") else popular_tag
            tags |= {tag(str(c)) for c in change.get("cities") or ()}
            if change.get("counts"):
                tags |= {CITIES_TAG, TYPES_TAG}
        if tags is not None and not tags:
            return
        with contextlib.suppress(RedisUnavailable):
            await self.invalidate_deferrable(tags, "notify")

    async def _on_listen(self, first: bool) -> None:
        """LISTEN is active. Changes made while nobody listened were missed: drop everything after a
        reconnection, and at first start unless another replica's listener is alive (heartbeat)."""
        if first:
            try:
                if await self.store.listener_alive():
                    return
            except RedisUnavailable:
                pass
            reason = "no other replica was listening for changes"
        else:
            reason = "this replica's listener reconnected"
        _log.warning("dropping every cache entry: %s (changes may have been missed)", reason)
        with contextlib.suppress(RedisUnavailable):
            await self.invalidate_deferrable(None, "listener_gap")

    async def _listener_heartbeat(self) -> None:
        with contextlib.suppress(RedisUnavailable, DeadlineExceeded):
            await self.store.listener_heartbeat(HEARTBEAT_TTL_MS)

    @property
    def _pending(self) -> bool:
        return self._pending_all or bool(self._pending_tags) or bool(self._pending_keys)

    async def _apply_pending(self) -> None:
        if self._pending_all:
            await self.invalidate_all("deferred")
            self._pending_all = False
            self._pending_tags.clear()
            self._pending_keys.clear()
        if self._pending_keys:
            keys = sorted(self._pending_keys)
            await self._announce(keys, await self.store.invalidate_keys(keys), "deferred")
            self._pending_keys -= set(keys)
        if self._pending_tags:
            tags = set(self._pending_tags)
            await self.invalidate_tags(sorted(tags), "deferred")
            self._pending_tags -= tags
        _log.info("deferred invalidations applied; cache back in use")

    # -- counters -----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while self._running:
            await asyncio.sleep(self.s.flush_interval_seconds)
            with contextlib.suppress(RedisUnavailable):
                await self.flush()

    async def flush(self) -> None:
        """Apply deferred invalidations, then add local counters and near-cache reads to Redis."""
        if self._pending:
            await self._apply_pending()
        stats, reads = self._stats.pending, self._near_reads
        if not stats and not reads:
            return
        self._stats.pending, self._near_reads = Counter(), Counter()
        try:
            await self.store.flush(dict(stats), dict(reads))
        except RedisUnavailable:
            self._stats.pending.update(stats)
            if len(reads) + len(self._near_reads) <= MAX_PENDING_READ_KEYS:
                self._near_reads.update(reads)
            raise

    def local_hit_counts(self) -> dict[str, tuple[int, int]]:
        t = self._stats.total
        return {q: (t["hits:" + q], t["misses:" + q]) for q in self.queries}

    def near_size(self) -> int:
        return len(self.near)

    async def stats(self) -> cache_pb2.GetCacheStatsResponse:
        """Counters of every replica (shared hash in Redis plus this one's unflushed part); this
        replica's own when Redis is unreachable."""
        try:
            counts: Counter[str] = Counter(await self.store.read_stats())
            counts.update(self._stats.pending)
        except RedisUnavailable:
            counts = Counter(self._stats.total)
        try:
            redis_keys, memory = await self.store.usage()
        except RedisUnavailable:
            redis_keys, memory = 0, 0
        out = cache_pb2.GetCacheStatsResponse(
            stampedes_prevented=counts["stampedes"], invalidations=counts["invalidations"], redis_keys=redis_keys,
            redis_memory_bytes=memory, breaker_state=BREAKER_PROTO[self.breaker.state], near_cache_entries=len(self.near))
        for name in sorted(self.queries):
            hits, misses = counts["hits:" + name], counts["misses:" + name]
            out.by_query_type.add(query_type=name, hits=hits, misses=misses,
                                  hit_ratio=hits / (hits + misses) if hits + misses else 0.0)
            out.hits += hits
            out.misses += misses
        out.hit_ratio = out.hits / (out.hits + out.misses) if out.hits + out.misses else 0.0
        return out

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        metrics.BREAKER_STATE.set(BREAKER_CODES[new])
        if new is BreakerState.OPEN and old is not new:
            self.breaker_opened += 1
        up = new is not BreakerState.OPEN
        metrics.REDIS_UP.set(1 if up else 0)
        runtime_metrics.DEPENDENCY_UP.labels("redis").set(1 if up else 0)
        if old is not new:
            level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
            fields: dict[str, Any] = {"event.category": "cache", "cache.breaker.state": new.value}
            if new is BreakerState.OPEN:
                fields["error.message"] = self.store.last_error
            _log.log(level, "Redis circuit breaker %s -> %s%s", old.value, new.value,
                     ": serving from PostgreSQL without the cache" if new is BreakerState.OPEN else "",
                     extra={"fields": fields})
