"""The cache's counters: answers by query type and source, stampedes prevented, invalidations, and
the near-cache reads Redis has not seen yet; `GetCacheStats` over every replica's counters.

Each replica counts in memory (`total` since start, and the part not yet added to the shared hash
`<ns>:stats`) and flushes every `CACHE_FLUSH_INTERVAL_SECONDS`. Near-cache hits never reach Redis, so
their reads are flushed too: they keep a hot key in its TTL tier. A flush that cannot reach Redis
keeps what it could not send for the next one (near-cache reads up to a bound).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service import metrics
from rentscout.cache_service.entry import NEAR, REDIS, SOURCE_NAMES, STALE
from rentscout.cache_service.store import RedisUnavailable

MAX_PENDING_READ_KEYS = 50_000


class StatsStore(Protocol):
    """What the counters need from Redis (`RedisStore` is one)."""

    async def flush(self, stats: dict[str, int], accesses: dict[str, int]) -> None: ...

    async def read_stats(self) -> dict[str, int]: ...

    async def usage(self) -> tuple[int, int]: ...


class CacheStats:
    def __init__(self, store: StatsStore, query_types: Iterable[str]) -> None:
        self._store = store
        self._query_types = list(query_types)
        self.total: Counter[str] = Counter()  # since start
        self._unflushed: Counter[str] = Counter()  # not yet added to the shared hash
        self._near_reads: Counter[str] = Counter()  # reads Redis did not see, by entry key
        self._hit_children = {
            (q, s): metrics.HITS.labels(q, SOURCE_NAMES[s]) for q in self._query_types for s in (NEAR, REDIS, STALE)
        }
        self._miss_children = {q: metrics.MISSES.labels(q) for q in self._query_types}
        self._fields = {q: ("hits:" + q, "misses:" + q) for q in self._query_types}  # the shared hash's fields

    def _add(self, field: str, n: int = 1) -> None:
        self.total[field] += n
        self._unflushed[field] += n

    # -- counting -----------------------------------------------------------------------------

    def answered(self, query_type: str, hit: bool, source: cache_pb2.CacheSource) -> None:
        if hit:
            self._hit_children[(query_type, source)].inc()
            self._add(self._fields[query_type][0])
        else:
            self._miss_children[query_type].inc()
            self._add(self._fields[query_type][1])

    def near_read(self, key: str) -> None:
        self._near_reads[key] += 1

    def stampede_prevented(self, query_type: str, scope: str) -> None:
        metrics.STAMPEDES_PREVENTED.labels(query_type, scope).inc()
        self._add("stampedes")

    def invalidated(self, trigger: str, deleted: int) -> None:
        metrics.INVALIDATIONS.labels(trigger).inc()
        metrics.INVALIDATED_KEYS.labels(trigger).inc(deleted)
        self._add("invalidations")

    # -- flushing and reporting -----------------------------------------------------------------

    async def flush(self) -> None:
        """Add the unflushed counters and near-cache reads to Redis (kept for the next flush on failure)."""
        stats, reads = self._unflushed, self._near_reads
        if not stats and not reads:
            return
        self._unflushed, self._near_reads = Counter(), Counter()
        try:
            await self._store.flush(dict(stats), dict(reads))
        except RedisUnavailable:
            self._unflushed.update(stats)
            if len(reads) + len(self._near_reads) <= MAX_PENDING_READ_KEYS:
                self._near_reads.update(reads)
            raise

    def local_hit_counts(self) -> dict[str, tuple[int, int]]:
        """(hits, misses) since start by query type, this replica only."""
        t = self.total
        return {q: (t[hits], t[misses]) for q, (hits, misses) in self._fields.items()}

    async def report(self, breaker_state: cache_pb2.BreakerState, near_entries: int) -> cache_pb2.GetCacheStatsResponse:
        """Counters of every replica (shared hash in Redis plus this one's unflushed part); this
        replica's own when Redis is unreachable."""
        try:
            counts: Counter[str] = Counter(await self._store.read_stats())
            counts.update(self._unflushed)
        except RedisUnavailable:
            counts = Counter(self.total)
        try:
            redis_keys, memory = await self._store.usage()
        except RedisUnavailable:
            redis_keys, memory = 0, 0
        out = cache_pb2.GetCacheStatsResponse(
            stampedes_prevented=counts["stampedes"],
            invalidations=counts["invalidations"],
            redis_keys=redis_keys,
            redis_memory_bytes=memory,
            breaker_state=breaker_state,
            near_cache_entries=near_entries,
        )
        for name in sorted(self._query_types):
            hits, misses = (counts[field] for field in self._fields[name])
            out.by_query_type.add(
                query_type=name, hits=hits, misses=misses, hit_ratio=hits / (hits + misses) if hits + misses else 0.0
            )
            out.hits += hits
            out.misses += misses
        out.hit_ratio = out.hits / (out.hits + out.misses) if out.hits + out.misses else 0.0
        return out
