"""TTL policies: adaptive tiers from access counts kept in Redis, shortened by churn, with jitter.

Three tiers: 300 s by default, 1800 s for frequently read keys, 3600 s for popular ones.
Each invalidation of a key within the access window halves its TTL (at most four times, never
below the floor): a key whose data changes often is a poor cache citizen and should not carry
a long TTL as its only safety net if a notification is ever lost. Jitter spreads expiries so keys
filled together do not expire (and stampede) together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from rentscout.cache_service.settings import CacheSettings

MAX_CHURN_HALVINGS = 4


class TtlPolicy(Protocol):
    def seconds(self, accesses: int, churn: int) -> float:
        """TTL before jitter for a key read `accesses` times and invalidated `churn` times lately."""
        ...

    @property
    def max_seconds(self) -> float: ...


@dataclass(frozen=True)
class AdaptiveTtl:
    default: float = 300
    frequent: float = 1800
    popular: float = 3600
    frequent_after: int = 10
    popular_after: int = 100
    floor: float = 30

    @classmethod
    def from_settings(cls, s: CacheSettings) -> AdaptiveTtl:
        return cls(
            default=s.default_ttl_seconds,
            frequent=s.frequent_ttl_seconds,
            popular=s.popular_ttl_seconds,
            frequent_after=s.frequent_accesses,
            popular_after=s.popular_accesses,
            floor=s.min_ttl_seconds,
        )

    def tier(self, accesses: int) -> float:
        if accesses >= self.popular_after:
            return self.popular
        if accesses >= self.frequent_after:
            return self.frequent
        return self.default

    def seconds(self, accesses: int, churn: int) -> float:
        base = self.tier(accesses)
        if churn > 0:
            base = max(min(self.floor, base), base / (1 << min(churn, MAX_CHURN_HALVINGS)))
        return base

    @property
    def max_seconds(self) -> float:
        return max(self.default, self.frequent, self.popular)


@dataclass(frozen=True)
class FixedTtl:
    """For a query whose freshness needs do not depend on popularity."""

    ttl: float

    def seconds(self, accesses: int, churn: int) -> float:
        return self.ttl

    @property
    def max_seconds(self) -> float:
        return self.ttl


def jittered(seconds: float, jitter: float, rng: random.Random | None = None) -> float:
    """`seconds` +/- up to `jitter` (a fraction), rounded to the millisecond, at least 1 s."""
    if jitter <= 0:
        return seconds
    r = (rng or random).uniform(-jitter, jitter)
    return max(1.0, round(seconds * (1 + r), 3))
