"""CacheQueryClient against the real CacheQueryService over PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import functools
import uuid

import asyncpg
import pytest

from harness.servers import in_process
from rentscout.cache_service.service import create
from rentscout.cache_service.settings import CacheSettings
from rentscout.sdk import CacheQueryClient, InvalidArgumentError, SyncCacheQueryClient


async def test_hits_misses_invalidation_and_typed_errors(service_env: dict[str, str], pg_conn: asyncpg.Connection) -> None:
    factory = functools.partial(create, settings=CacheSettings(namespace=f"sdk{uuid.uuid4().hex[:10]}"))
    async with (
        in_process([factory], service_env, label="cache", redis_timeout_seconds=2.0) as host,
        CacheQueryClient(f"127.0.0.1:{host.port}", timeout=10) as client,
    ):
        first = await client.popular_properties("Moscow", 5)
        second = await client.popular_properties("Moscow", 5)
        assert not first.cache.hit and second.cache.hit and first.cache.key == second.cache.key
        assert [p.id for p in first.properties] == [p.id for p in second.properties] and len(first.properties) == 5

        stats = await client.price_stats("Moscow", "apartment")
        expected = await pg_conn.fetchval(
            "SELECT count(*) FROM properties WHERE city = 'Moscow' AND property_type = 'apartment' AND is_active"
        )
        assert stats.count == expected

        with pytest.raises(InvalidArgumentError) as info:
            await client.popular_properties("", 5)
        assert [field for field, _ in info.value.violations] == ["city"]

        dropped = await client.invalidate_related("city", "Moscow")
        assert sorted(dropped.tags) == ["cities", "city:Moscow", "property_types"]
        # keys_deleted counts what this call removed from Redis, which is housekeeping: the change-log reader's
        # background cleanup may have removed them first (it replays the suite's earlier changes). What the
        # invalidation promises is that the next read is not served from the cache:
        assert not (await client.popular_properties("Moscow", 5)).cache.hit

        def sync_stats() -> int:
            with SyncCacheQueryClient(f"127.0.0.1:{host.port}") as sync_client:
                hits: int = sync_client.stats().hits
                return hits

        assert await asyncio.to_thread(sync_stats) >= 1
