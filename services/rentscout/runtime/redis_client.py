"""The redis.asyncio client factory: short timeouts and no hidden retries, so a down Redis fails fast."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from rentscout.runtime.config import RuntimeSettings


def create_redis(settings: RuntimeSettings) -> Redis | RedisCluster:
    t = settings.redis_timeout_seconds
    kwargs: dict[str, Any] = dict(socket_timeout=t, socket_connect_timeout=t, retry=Retry(NoBackoff(), 0), decode_responses=False)
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **kwargs)
    return Redis.from_url(settings.redis_url, health_check_interval=0, retry_on_timeout=False, **kwargs)


async def ping(client: Redis | RedisCluster, timeout: float) -> bool:
    import asyncio

    try:
        async with asyncio.timeout(timeout):
            return bool(await client.ping())
    except Exception:
        return False
