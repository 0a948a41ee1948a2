"""Process-wide resources shared by the services one process hosts (pools are per process)."""

from __future__ import annotations

from functools import cached_property

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rentscout.runtime.config import RuntimeSettings
from rentscout.runtime.database import Database
from rentscout.runtime.redis_client import create_redis
from rentscout.runtime.replicas import ReadRouter


class Resources:
    def __init__(self, settings: RuntimeSettings, application_name: str) -> None:
        self.settings = settings
        self.db = Database(settings, application_name)  # the primary: writes, LISTEN, bookkeeping
        self.reads = ReadRouter(settings, self.db, application_name)  # reads that tolerate replication
        self._redis_created = False

    @cached_property
    def redis(self) -> Redis | RedisCluster:
        """Created on first use, so services that never touch Redis never connect to it."""
        self._redis_created = True
        return create_redis(self.settings)

    async def start(self) -> None:
        await self.db.start()
        await self.reads.start()

    async def close(self) -> None:
        await self.reads.close()
        await self.db.close()
        if self._redis_created:
            await self.redis.aclose()
