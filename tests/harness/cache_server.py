"""Helpers for the cache-query tests: a private namespace per server, stubs, and query counting."""

from __future__ import annotations

import contextlib
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import asyncpg
import grpc

from harness.servers import in_process
from rentscout.cache.v1 import cache_pb2_grpc
from rentscout.cache_service.engine import QueryCache
from rentscout.cache_service.registry import REGISTRY, CachedQuery
from rentscout.cache_service.service import CacheQueryServicer, build
from rentscout.cache_service.settings import CacheSettings
from rentscout.runtime.database import Database
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceHost, ServiceSpec

T = TypeVar("T")
OWN_ID_BASE = 10_000_000  # tests that write use ids above the shared seed rows


def settings(**overrides: Any) -> CacheSettings:
    """Defaults for tests: a namespace of their own, so tests never see each other's entries, and a
    change-log bound (CACHE_CHANGES_MAX_LAG_MS) loose enough that a loaded machine does not turn hits
    into database reads; tests of the bound set their own."""
    base = CacheSettings(namespace=f"t{uuid.uuid4().hex[:12]}", changes_max_lag_ms=5000, changes_poll_ms=100)
    return replace(base, **overrides)


def counted(queries: Mapping[str, CachedQuery], counts: Counter[str]) -> dict[str, CachedQuery]:
    """The same queries (same names, versions, keys), each counting its runs against PostgreSQL in `counts`."""

    def counting(query: CachedQuery) -> CachedQuery:
        async def fetch(db: Database, **params: Any) -> Any:
            counts[query.name] += 1
            return await query.fetch(db, **params)

        return replace(query, fetch=fetch)

    return {name: counting(q) for name, q in queries.items()}


@dataclass
class CacheServer:
    host: ServiceHost
    servicer: CacheQueryServicer
    stub: cache_pb2_grpc.CacheQueryServiceAsyncStub
    channel: grpc.aio.Channel
    database_queries: Counter[str]  # queries this replica sent to PostgreSQL, by query type
    breaker_changes: list[tuple[str, str]] = field(default_factory=list)  # (old, new) states of its Redis breaker

    @property
    def engine(self) -> QueryCache:
        return self.servicer.engine

    @property
    def breaker_opened(self) -> int:
        """Times the Redis breaker opened."""
        return sum(1 for old, new in self.breaker_changes if new == "open" and old != new)


@contextlib.asynccontextmanager
async def cache_server(
    env: dict[str, str], cache: CacheSettings | None = None, *, queries: Mapping[str, CachedQuery] | None = None, **runtime: Any
) -> AsyncIterator[CacheServer]:
    """An in-process cache-query server (the registry's queries unless `queries` is given)."""
    cfg = cache or settings()
    counts: Counter[str] = Counter()
    changes: list[tuple[str, str]] = []
    built: list[CacheQueryServicer] = []

    def factory(resources: Resources) -> ServiceSpec:
        servicer, spec = build(resources, cfg, counted(REGISTRY if queries is None else queries, counts))
        # before start: no Redis call (hence no transition) has happened yet
        servicer.engine.breaker.add_listener(lambda change: changes.append((change.old.value, change.new.value)))
        built.append(servicer)
        return spec

    if "RENTSCOUT_REDIS_TIMEOUT_SECONDS" not in env:  # a loaded test machine must not look like a slow Redis
        runtime.setdefault("redis_timeout_seconds", 2.0)
    async with in_process([factory], env, label="cache-test", **runtime) as host:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
        try:
            yield CacheServer(host, built[0], cache_pb2_grpc.CacheQueryServiceStub(channel), channel, counts, changes)
        finally:
            await channel.close()


async def statement_calls(conn: asyncpg.Connection, fragment: str) -> int:
    """Executions of statements containing `fragment`, per pg_stat_statements (a real count)."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND s.query LIKE '%' || $1 || '%' AND s.query NOT LIKE '%pg_stat_statements%'",
            fragment,
        )
    )


PRICE_STATS_SQL_FRAGMENT = "WITHIN GROUP (ORDER BY price)"  # constants are normalized away


def unique_city(label: str = "Testgrad") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


class OwnRows:
    """Listings this test inserts (ids above the shared seed) and deletes afterwards."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.ids: list[int] = []

    async def add(self, city: str, price: int, *, property_type: str = "apartment", area: float = 50.0, views: int = 0) -> int:
        pid = OWN_ID_BASE + random.randint(1, 2**40)
        await self.conn.execute(
            "INSERT INTO properties (id, source, external_id, title, city, property_type, price, area, views) "
            "VALUES ($1, 'avito', $2, 'test listing', $3, $4, $5, $6, $7)",
            pid,
            f"test-{pid}",
            city,
            property_type,
            price,
            area,
            views,
        )
        self.ids.append(pid)
        return pid

    async def delete_all(self) -> None:
        if self.ids:
            await self.conn.execute("DELETE FROM properties WHERE id = ANY($1::bigint[])", self.ids)
