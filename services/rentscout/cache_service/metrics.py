"""Prometheus metrics of the cache-query service (`rentscout_cache_*`).

Counters are per process; the hit ratio by query type is computed at scrape time from them, so it
needs no extra work on the hit path.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rentscout.runtime.metrics import LATENCY_BUCKETS

HITS = Counter(
    "rentscout_cache_hits_total",
    "Answers served from the cache, by query type and source (near, redis, stale).",
    ["query_type", "source"],
)
MISSES = Counter("rentscout_cache_misses_total", "Answers computed from PostgreSQL, by query type.", ["query_type"])
STAMPEDES_PREVENTED = Counter(
    "rentscout_cache_stampedes_prevented_total",
    "Misses that waited for a recompute already running instead of querying (scope: replica or cluster).",
    ["query_type", "scope"],
)
FILLS = Counter("rentscout_cache_database_queries_total", "Queries the cache sent to PostgreSQL, by query type.", ["query_type"])
FILL_SECONDS = Histogram(
    "rentscout_cache_database_query_seconds", "Time to compute an entry from PostgreSQL.", ["query_type"], buckets=LATENCY_BUCKETS
)
DISCARDED_FILLS = Counter(
    "rentscout_cache_discarded_fills_total",
    "Computed values not stored because an invalidation landed meanwhile (no stale refill).",
    ["query_type"],
)
BACKGROUND_REFRESHES = Counter(
    "rentscout_cache_background_refreshes_total",
    "Refreshes started without a caller waiting: early (XFetch) or after expiry (stale served).",
    ["query_type", "reason"],
)
INVALIDATIONS = Counter("rentscout_cache_invalidations_total", "Invalidation operations, by trigger.", ["trigger"])
INVALIDATED_KEYS = Counter("rentscout_cache_invalidated_keys_total", "Cache entries deleted by invalidations.", ["trigger"])
SUPERSEDED = Counter(
    "rentscout_cache_superseded_total",
    "Entries found in Redis but older than a change to what they depend on (answered as a miss).",
    ["query_type"],
)
CHANGE_LOG_POSITION = Gauge(
    "rentscout_cache_change_log_position", "Change-log position this replica has applied every change up to."
)
CHANGE_LOG_HOLES = Gauge("rentscout_cache_change_log_holes", "Change-log positions not yet visible below the newest one read.")
REDIS_FULL = Counter(
    "rentscout_cache_redis_full_total",
    "Redis operations refused because Redis is full (maxmemory with noeviction): not stored, answered anyway.",
    ["operation"],
)
REDIS_ERRORS = Counter("rentscout_cache_redis_errors_total", "Failed or timed-out Redis operations.", ["operation"])
REDIS_BYPASSED = Counter(
    "rentscout_cache_redis_bypassed_total",
    "Reads that skipped the cache: breaker_open (Redis), change_log_unconfirmed (the change log not read "
    "within CACHE_CHANGES_MAX_LAG_MS).",
    ["reason"],
)
BREAKER_STATE = Gauge("rentscout_cache_breaker_state", "Redis circuit breaker: 0 closed, 1 open, 2 half-open.")
REDIS_UP = Gauge("rentscout_cache_redis_up", "1 while the cache can use Redis (breaker not open).")
LISTENER_UP = Gauge("rentscout_cache_change_listener_up", "1 while connected to read the change log in PostgreSQL.")
INVALIDATION_BUS_UP = Gauge("rentscout_cache_invalidation_bus_up", "1 while subscribed to invalidations (near cache in use).")


class _Source(Protocol):
    def local_hit_counts(self) -> dict[str, tuple[int, int]]: ...

    def near_size(self) -> int: ...


_sources: weakref.WeakSet[_Source] = weakref.WeakSet()


class _ScrapeTimeCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        ratio = GaugeMetricFamily(
            "rentscout_cache_hit_ratio", "Hits / (hits + misses) since start, by query type.", labels=["query_type"]
        )
        totals: dict[str, list[int]] = {}
        near = 0
        for source in list(_sources):
            for query_type, (hits, misses) in source.local_hit_counts().items():
                t = totals.setdefault(query_type, [0, 0])
                t[0] += hits
                t[1] += misses
            near += source.near_size()
        for query_type, (hits, misses) in sorted(totals.items()):
            ratio.add_metric([query_type], hits / (hits + misses) if hits + misses else 0.0)
        yield ratio
        yield GaugeMetricFamily("rentscout_cache_near_entries", "Entries in the in-process near cache.", value=near)


REGISTRY.register(_ScrapeTimeCollector())


def track(source: _Source) -> None:
    _sources.add(source)
