"""Settings of the cache-query service (`RENTSCOUT_CACHE_*`)."""

from dataclasses import dataclass

from rentscout.runtime.config import float_range, int_range, parse_bool, setting


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = setting(
        "CACHE_ENABLED", True, "Serve the popular queries through the cache; false sends every call to PostgreSQL.", parse_bool
    )
    namespace: str = setting("CACHE_NAMESPACE", "rentscout", "Prefix of every cache key in Redis.")
    default_ttl_seconds: int = setting("CACHE_DEFAULT_TTL_SECONDS", 300, "TTL of rarely read entries.", int_range(1, 86400))
    frequent_ttl_seconds: int = setting(
        "CACHE_FREQUENT_TTL_SECONDS", 1800, "TTL of frequently read entries.", int_range(1, 86400)
    )
    popular_ttl_seconds: int = setting("CACHE_POPULAR_TTL_SECONDS", 3600, "TTL of popular entries.", int_range(1, 86400))
    min_ttl_seconds: int = setting(
        "CACHE_MIN_TTL_SECONDS", 30, "Floor of the TTL of entries whose data changes often.", int_range(1, 86400)
    )
    frequent_accesses: int = setting(
        "CACHE_FREQUENT_ACCESSES", 10, "Reads per access window that make an entry frequently read.", int_range(1, 10_000_000)
    )
    popular_accesses: int = setting(
        "CACHE_POPULAR_ACCESSES", 100, "Reads per access window that make an entry popular.", int_range(1, 10_000_000)
    )
    access_window_seconds: int = setting(
        "CACHE_ACCESS_WINDOW_SECONDS",
        3600,
        "Window over which reads and invalidations of a key are counted.",
        int_range(10, 7 * 86400),
    )
    ttl_jitter: float = setting(
        "CACHE_TTL_JITTER", 0.1, "Random +/- fraction applied to every TTL so keys do not expire together.", float_range(0, 0.5)
    )
    stale_grace_seconds: int = setting(
        "CACHE_STALE_GRACE_SECONDS",
        120,
        "How long after expiry an entry may still be served while one refresh runs.",
        int_range(0, 86400),
    )
    xfetch_beta: float = setting(
        "CACHE_XFETCH_BETA", 1.0, "XFetch beta: >1 refreshes hot keys earlier before expiry, 0 disables.", float_range(0, 100)
    )
    lock_ttl_ms: int = setting(
        "CACHE_LOCK_TTL_MS",
        10_000,
        "Lifetime of the cross-replica recompute lease (longest expected query).",
        int_range(10, 600_000),
    )
    lock_wait_ms: int = setting(
        "CACHE_LOCK_WAIT_MS",
        5000,
        "How long a replica waits for another one's recompute before querying itself.",
        int_range(0, 600_000),
    )
    near_max_entries: int = setting(
        "CACHE_NEAR_MAX_ENTRIES", 512, "Entries of the in-process near cache (0 disables it).", int_range(0, 1_000_000)
    )
    near_min_accesses: int = setting(
        "CACHE_NEAR_MIN_ACCESSES",
        3,
        "Reads per access window before a key is admitted to the near cache.",
        int_range(1, 10_000_000),
    )
    near_max_age_seconds: float = setting(
        "CACHE_NEAR_MAX_AGE_SECONDS", 60.0, "Longest a near-cache entry is served without asking Redis.", float_range(0.01, 86400)
    )
    breaker_failures: int = setting(
        "CACHE_BREAKER_FAILURES", 5, "Consecutive Redis failures that open the circuit breaker.", int_range(1, 1000)
    )
    breaker_reset_seconds: float = setting(
        "CACHE_BREAKER_RESET_SECONDS", 5.0, "Time the breaker stays open before one trial call.", float_range(0.01, 3600)
    )
    listen: bool = setting(
        "CACHE_LISTEN",
        True,
        "LISTEN for the change log's doorbell (false: read it every CACHE_CHANGES_POLL_MS only).",
        parse_bool,
    )
    changes_max_lag_ms: int = setting(
        "CACHE_CHANGES_MAX_LAG_MS",
        1000,
        "Nothing is served from the cache unless the change log was read at most this long ago (the staleness bound).",
        int_range(50, 600_000),
    )
    changes_poll_ms: int = setting(
        "CACHE_CHANGES_POLL_MS",
        200,
        "Read the change log at least this often without a doorbell (at most half CACHE_CHANGES_MAX_LAG_MS).",
        int_range(10, 300_000),
    )
    change_retention_seconds: int = setting(
        "CACHE_CHANGE_RETENTION_SECONDS", 86400, "Change-log rows older than this are pruned.", int_range(60, 365 * 86400)
    )
    flush_interval_seconds: float = setting(
        "CACHE_FLUSH_INTERVAL_SECONDS",
        1.0,
        "How often near-cache reads and counters are flushed to Redis.",
        float_range(0.01, 600),
    )
    refresh_timeout_seconds: float = setting(
        "CACHE_REFRESH_TIMEOUT_SECONDS",
        30.0,
        "Budget of a background refresh (stale or early recomputation).",
        float_range(0.1, 3600),
    )
