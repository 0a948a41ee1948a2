"""Helpers for the cache-query tests: a private namespace per server, stubs, and query counting."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import asyncpg
import grpc

from harness.servers import in_process
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.cache_service.engine import QueryCache
from rentscout.cache_service.service import create
from rentscout.cache_service.settings import CacheSettings
from rentscout.runtime.server import ServiceHost

T = TypeVar("T")
OWN_ID_BASE = 10_000_000  # tests that write use ids above the shared seed rows


def settings(**overrides: Any) -> CacheSettings:
    """Defaults for tests: a namespace of their own, so tests never see each other's entries."""
    return replace(CacheSettings(namespace=f"t{uuid.uuid4().hex[:12]}"), **overrides)


@dataclass
class CacheServer:
    host: ServiceHost
    stub: cache_pb2_grpc.CacheQueryServiceStub
    channel: grpc.aio.Channel

    @property
    def engine(self) -> QueryCache:
        return self.host.specs[0].engine  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def cache_server(env: dict[str, str], cache: CacheSettings | None = None, **runtime: Any
                       ) -> AsyncIterator[CacheServer]:
    async with in_process([functools.partial(create, settings=cache or settings())], env, label="cache-test",
                          **runtime) as host:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
        try:
            yield CacheServer(host, cache_pb2_grpc.CacheQueryServiceStub(channel), channel)
        finally:
            await channel.close()


async def statement_calls(conn: asyncpg.Connection, fragment: str) -> int:
    """Executions of statements containing `fragment`, per pg_stat_statements (a real count)."""
    return int(await conn.fetchval(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = current_database() AND s.query LIKE '%' || $1 || '%' AND s.query NOT LIKE '%pg_stat_statements%'",
        fragment))


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Poll `probe` until `ok(result)`; returns the last result (the caller asserts on it)."""
    end = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if ok(result) or asyncio.get_running_loop().time() > end:
            return result
        await asyncio.sleep(0.05)


PRICE_STATS_SQL_FRAGMENT = "percentile_cont(ARRAY[0.25, 0.5, 0.75])"


def source_name(value: int) -> str:
    return cache_pb2.CacheSource.Name(value)
