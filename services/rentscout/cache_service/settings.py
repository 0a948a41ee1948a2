"""Settings of the cache-query service (`RENTSCOUT_CACHE_*`)."""

from dataclasses import dataclass

from rentscout.runtime.config import int_range, setting


@dataclass(frozen=True)
class CacheSettings:
    namespace: str = setting("CACHE_NAMESPACE", "rentscout", "Prefix of every cache key in Redis.")
    default_ttl_seconds: int = setting("CACHE_DEFAULT_TTL_SECONDS", 300, "TTL of rarely read entries.", int_range(1, 86400))
