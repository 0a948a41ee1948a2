"""Fills: computing an entry from PostgreSQL and storing it, once per key.

- Per replica, single flight: concurrent callers of a key await one task.
- Per cluster, a lease (`SET NX PX` on `<ns>:lease:...`): other replicas poll for its result up to
  `CACHE_LOCK_WAIT_MS` instead of querying.
- No stale refill: a fill records the change-log position it starts from (`ChangeLog.low`, read
  before its query); an entry is served only while no change to its tags came after that position
  (changes.py), so a value computed from pre-change data is a miss wherever it lands. A pattern
  invalidation deletes entry and lease, and the store is a compare-and-set on the lease token.
- Joining: a caller joins a fill in flight only if that fill started after every change it knows of.
- Refreshes without a waiting caller: after expiry (the stale entry is served meanwhile) and early,
  before expiry, with XFetch's probability; one per key, outside the caller's deadline.

Without Redis (breaker open, errors) a fill still answers from PostgreSQL, without storing.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service import metrics
from rentscout.cache_service.changes import ChangeLog
from rentscout.cache_service.entry import DATABASE, REDIS, Entry
from rentscout.cache_service.registry import CachedQuery, Params
from rentscout.cache_service.settings import CacheSettings
from rentscout.cache_service.stats import CacheStats
from rentscout.cache_service.store import RedisStore, RedisUnavailable
from rentscout.cache_service.ttl import AdaptiveTtl, jittered
from rentscout.runtime import context, deadline
from rentscout.runtime.errors import DeadlineExceeded
from rentscout.runtime.replicas import Reads

_log = logging.getLogger(__name__)
MAX_FILL_ATTEMPTS = 3


@dataclass(slots=True)
class Outcome:
    entry: Entry
    hit: bool
    source: cache_pb2.CacheSource
    reads: int = 0  # reads of the key in the access window (near-cache admission)


@dataclass(slots=True)
class _Flight:
    task: asyncio.Task[Outcome]
    from_seq: int


class _Wait(enum.Enum):
    LEASE_GONE = "lease_gone"  # the lease holder went away without storing: try to take the lease
    TIMED_OUT = "timed_out"  # waited long enough (or Redis failed): answer from PostgreSQL


def xfetch_due(entry: Entry, now: float, beta: float, u: float | None = None) -> bool:
    """XFetch: recompute before expiry with a probability that grows as expiry nears, scaled by how
    long the computation takes, so a hot key is refreshed once instead of stampeding. `u` is the
    uniform draw in [0, 1) (random unless given)."""
    if beta <= 0 or entry.ttl <= 0:
        return False
    u = random.random() if u is None else u
    return now - entry.delta * beta * math.log(u or 1e-300) >= entry.expires


def tag_set_ttl(settings: CacheSettings, policy: AdaptiveTtl, queries: Iterable[CachedQuery]) -> int:
    """The largest physical TTL an entry can get (plus a margin), so tag sets outlive their members."""
    longest = max([policy.max_seconds, *(q.ttl.max_seconds for q in queries if q.ttl)])
    return int(longest * (1 + settings.ttl_jitter) + settings.stale_grace_seconds + 60)


class Fills:
    def __init__(
        self,
        reads: Callable[[], Reads],
        store: RedisStore,
        log: ChangeLog,
        stats: CacheStats,
        settings: CacheSettings,
        queries: Iterable[CachedQuery],
        redis_usable: Callable[[], bool],
    ) -> None:
        """`redis_usable` says whether a refresh could be stored now (the Redis breaker is not open)."""
        self._reads = reads  # where a fill reads from now (a standby that replayed every change heard of)
        self._store = store
        self._log = log
        self._stats = stats
        self._s = settings
        self._policy = AdaptiveTtl.from_settings(settings)
        self._tag_ttl = tag_set_ttl(settings, self._policy, queries)
        self._redis_usable = redis_usable
        self._flights: dict[str, _Flight] = {}
        self._running = False  # background refreshes only between start and stop

    def start(self) -> None:
        self._running = True

    def stop(self) -> list[asyncio.Task[Outcome]]:
        """No more background refreshes; returns the fills still running (for the caller to cancel)."""
        self._running = False
        return [f.task for f in self._flights.values()]

    def forget(self, keys: list[str] | None) -> None:
        """A pattern invalidation: running fills of these keys (None: all) finish for their callers; new
        callers start afresh."""
        if keys is None:
            self._flights.clear()
            return
        for key in keys:
            self._flights.pop(key, None)

    # -- single flight ------------------------------------------------------------------------

    async def miss(self, q: CachedQuery, params: Params, key: str, use_redis: bool) -> Outcome:
        """The entry for a caller who found none: joins the fill of `key` running here, or starts one."""
        tags = tuple(q.tags(params))
        while True:
            running = self._flights.get(key)
            joined = running is not None and self._log.current(running.from_seq, tags)
            if running is not None and joined:
                flight = running.task
                self._stats.stampede_prevented(q.name, "replica")
            else:  # none, or it started before a change this caller must see
                flight = self._start_flight(q, params, key, use_redis)
            try:
                return await asyncio.shield(flight)
            except DeadlineExceeded:
                # the flight ran under its starter's deadline; a caller who joined and has time left retries
                if not joined:
                    raise
                deadline.remaining()  # raises when this caller's time is up too
                if (f := self._flights.get(key)) is not None and f.task is flight:
                    del self._flights[key]

    def _start_flight(
        self, q: CachedQuery, params: Params, key: str, use_redis: bool, newer_than: float = 0.0
    ) -> asyncio.Task[Outcome]:
        from_seq = self._log.low  # before the fill's query: every change at or below it is visible to it
        task = asyncio.create_task(self._fill(q, params, key, use_redis, newer_than, from_seq), name=f"cache-fill {key}")
        self._flights[key] = _Flight(task, from_seq)

        def done(t: asyncio.Task[Outcome]) -> None:
            if (f := self._flights.get(key)) is not None and f.task is t:
                del self._flights[key]
            if not t.cancelled():
                t.exception()  # retrieved here: callers may all have gone

        task.add_done_callback(done)
        return task

    # -- background refreshes -----------------------------------------------------------------

    def refresh_if_due(self, q: CachedQuery, params: Params, key: str, entry: Entry, now: float) -> None:
        """A fresh hit: start an early refresh when XFetch says so."""
        if xfetch_due(entry, now, self._s.xfetch_beta):
            self.refresh(q, params, key, entry, "early")

    def refresh(self, q: CachedQuery, params: Params, key: str, old: Entry, reason: str) -> None:
        """One refresh per key, outside the caller's deadline (the caller is answered already)."""
        if key in self._flights or not self._running or not self._redis_usable():
            return  # (without Redis a refresh could not be stored: the next miss computes anyway)
        metrics.BACKGROUND_REFRESHES.labels(q.name, reason).inc()

        def start() -> None:
            deadline.set_from_time_remaining(self._s.refresh_timeout_seconds)
            context.rpc_fields.set(None)
            self._start_flight(q, params, key, True, newer_than=old.created)

        contextvars.copy_context().run(start)

    # -- one fill -----------------------------------------------------------------------------

    async def _fill(self, q: CachedQuery, params: Params, key: str, use_redis: bool, newer_than: float, from_seq: int) -> Outcome:
        """Compute and store one entry, taking the cluster-wide lease first (see the module docstring)."""
        tags = tuple(q.tags(params))
        policy = q.ttl or self._policy
        last: Entry | None = None
        force = newer_than > 0  # a refresh: the entry in Redis is the old one
        for _ in range(MAX_FILL_ATTEMPTS if use_redis else 0):
            token = os.urandom(12).hex()
            try:
                raw, leased, reads, churn = await self._store.acquire(key, token, tags, self._s.lock_ttl_ms, self._tag_ttl, force)
            except RedisUnavailable:
                break
            if raw is not None:  # filled by another replica since our read
                found = Entry.decode(key, raw, tags)
                if found is not None and self._usable(found, newer_than):
                    self._stats.stampede_prevented(q.name, "cluster")
                    return Outcome(found, True, REDIS, reads)
                force = True
                continue
            if not leased:
                self._stats.stampede_prevented(q.name, "cluster")
                waited = await self._await_remote(key, tags, newer_than)
                if isinstance(waited, Entry):
                    return Outcome(waited, True, REDIS, reads)
                if waited is _Wait.LEASE_GONE:
                    continue
                break  # waited long enough: answer from PostgreSQL without storing
            ttl = jittered(policy.seconds(reads, churn), self._s.ttl_jitter)
            from_seq = max(from_seq, self._log.low)  # (a retry starts after the change that discarded the last try)
            last = await self.compute(q, params, key, ttl, from_seq)
            try:
                stored = await self._store.store(key, token, last.encode(), int((ttl + self._s.stale_grace_seconds) * 1000))
            except RedisUnavailable:
                break
            if stored:
                return Outcome(last, False, DATABASE, reads)
            # the lease is gone: a pattern invalidation landed while we computed, so `last` may predate it
            metrics.DISCARDED_FILLS.labels(q.name).inc()
            _log.info("discarded a fill invalidated while computing", extra={"fields": {"cache.key": key}})
            last = None
        if last is None:
            last = await self.compute(q, params, key, 0.0, from_seq)
        return Outcome(Entry(key, last.payload, last.created, 0.0, last.delta, from_seq, tags), False, DATABASE)

    def _usable(self, entry: Entry, newer_than: float) -> bool:
        """Another replica's entry: newer than the one being refreshed, unexpired, after every change known."""
        return entry.created > newer_than and time.time() < entry.expires and self._log.current(entry.from_seq, entry.tags)

    async def _await_remote(self, key: str, tags: tuple[str, ...], newer_than: float) -> Entry | _Wait:
        """Poll for another replica's result: the entry, LEASE_GONE (holder gone) or TIMED_OUT."""
        end = time.monotonic() + self._s.lock_wait_ms / 1000
        delay = 0.002
        while (left := end - time.monotonic()) > 0:
            deadline.remaining()  # raises DeadlineExceeded when the caller's time is up
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)
            try:
                raw, leased = await self._store.peek(key)
            except RedisUnavailable:
                return _Wait.TIMED_OUT
            entry = Entry.decode(key, raw, tags) if raw else None
            if entry is not None and self._usable(entry, newer_than):
                return entry
            if not leased:
                return _Wait.LEASE_GONE
        return _Wait.TIMED_OUT

    async def compute(self, q: CachedQuery, params: Params, key: str, ttl: float, from_seq: int = 0) -> Entry:
        """Run the query against PostgreSQL: the entry (response without its `cache` field), which
        shows every change up to `from_seq` (read before this call)."""
        created = time.time()
        t0 = time.perf_counter()
        metrics.FILLS.labels(q.name).inc()
        message = await q(self._reads(), **params)
        delta = time.perf_counter() - t0
        metrics.FILL_SECONDS.labels(q.name).observe(delta)
        if "cache" in message.DESCRIPTOR.fields_by_name:
            message.ClearField("cache")
        return Entry(key, message.SerializeToString(), created, ttl, delta, from_seq, tuple(q.tags(params)))
