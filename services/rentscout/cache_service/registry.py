"""Declaring a cached query: one decorated function, no cache plumbing.

    @cached_query("price_stats", rpc="PriceStats", request=PriceStatsRequest, params=price_stats_params,
                  tags=lambda p: [city_tag(p["city"])])
    async def price_stats(db: Reads, *, city: str, property_type: str | None) -> PriceStatsResponse:
        ...

`params` validates the request (raising InvalidArgument) and returns the JSON-able parameters that
name the entry; `tags` lists what the entry depends on (invalidating a tag drops it); `fetch`
(the decorated function) computes the response from PostgreSQL, without its `cache` field.
The service exposes every registered query as its `rpc`, served through the cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from rentscout.cache_service.ttl import TtlPolicy
from rentscout.runtime.replicas import Reads

Params = dict[str, Any]
Fetch = Callable[..., Awaitable[Message]]


@dataclass(frozen=True)
class CachedQuery:
    name: str  # the query type: part of the key, metrics label
    rpc: str  # short method name of CacheQueryService serving it
    request: type[Message]
    params: Callable[[Any], Params]
    tags: Callable[[Params], Iterable[str]]
    fetch: Fetch
    version: int = 1  # bump when the result shape or meaning changes: old entries are never read
    ttl: TtlPolicy | None = None  # None: the service's adaptive policy

    async def __call__(self, db: Reads, **params: Any) -> Message:
        return await self.fetch(db, **params)


REGISTRY: dict[str, CachedQuery] = {}


def cached_query(
    name: str,
    *,
    rpc: str,
    request: type[Message],
    params: Callable[[Any], Params],
    tags: Callable[[Params], Iterable[str]],
    version: int = 1,
    ttl: TtlPolicy | None = None,
    registry: MutableMapping[str, CachedQuery] | None = None,
) -> Callable[[Fetch], CachedQuery]:
    """Register `fetch` as the cached query `name` (in REGISTRY unless another registry is given)."""
    if not name.replace("_", "").isalnum() or not name.islower():
        raise ValueError(f"query type {name!r} must be lower_snake_case")
    target = REGISTRY if registry is None else registry

    def register(fetch: Fetch) -> CachedQuery:
        if name in target:
            raise ValueError(f"query type {name!r} is declared twice")
        query = CachedQuery(name, rpc, request, params, tags, fetch, version, ttl)
        target[name] = query
        return query

    return register
