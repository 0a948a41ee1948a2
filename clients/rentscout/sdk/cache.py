"""CacheQueryClient: the popular read queries and cache invalidation (rentscout.cache.v1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.sdk.base import BaseClient, SyncClient
from rentscout.sdk.sync import sync_methods
from rentscout.wire.enums import ENTITY_TYPE, PROPERTY_TYPE, enum_value


class CacheQueryClient(BaseClient):
    """All reads and invalidations are idempotent, so overload statuses are retried too."""

    SERVICE = "rentscout.cache.v1.CacheQueryService"
    STUB = cache_pb2_grpc.CacheQueryServiceStub

    async def popular_properties(self, city: str, limit: int = 10, **call: Any) -> cache_pb2.PopularPropertiesResponse:
        return await self._call(
            "PopularProperties",
            cache_pb2.PopularPropertiesRequest(city=city, limit=limit),
            cache_pb2.PopularPropertiesResponse,
            **call,
        )

    async def price_stats(self, city: str, property_type: str | int | None = None, **call: Any) -> cache_pb2.PriceStatsResponse:
        request = cache_pb2.PriceStatsRequest(city=city, property_type=enum_value(PROPERTY_TYPE, property_type))
        return await self._call("PriceStats", request, cache_pb2.PriceStatsResponse, **call)

    async def cities(self, **call: Any) -> cache_pb2.CitiesResponse:
        return await self._call("Cities", cache_pb2.CitiesRequest(), cache_pb2.CitiesResponse, **call)

    async def property_types(self, **call: Any) -> cache_pb2.PropertyTypesResponse:
        return await self._call("PropertyTypes", cache_pb2.PropertyTypesRequest(), cache_pb2.PropertyTypesResponse, **call)

    async def invalidate(self, pattern: str = "", tags: Sequence[str] = (), **call: Any) -> cache_pb2.InvalidateResponse:
        """Admin. Exactly one of a key glob (`pattern`) and `tags`."""
        return await self._call(
            "Invalidate", cache_pb2.InvalidateRequest(pattern=pattern, tags=list(tags)), cache_pb2.InvalidateResponse, **call
        )

    async def invalidate_related(
        self, entity: str | int, id: str, previous_city: str = "", **call: Any
    ) -> cache_pb2.InvalidateRelatedResponse:
        """Admin. `entity` is 'property' or 'city'."""
        request = cache_pb2.InvalidateRelatedRequest(
            entity=enum_value(ENTITY_TYPE, entity), id=str(id), previous_city=previous_city
        )
        return await self._call("InvalidateRelated", request, cache_pb2.InvalidateRelatedResponse, **call)

    async def stats(self, **call: Any) -> cache_pb2.GetCacheStatsResponse:
        return await self._call("GetCacheStats", cache_pb2.GetCacheStatsRequest(), cache_pb2.GetCacheStatsResponse, **call)


@sync_methods(CacheQueryClient)
class SyncCacheQueryClient(SyncClient):
    ASYNC = CacheQueryClient
