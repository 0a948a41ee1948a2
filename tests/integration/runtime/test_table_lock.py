"""A table locked by another session (a migration's ALTER TABLE holds ACCESS EXCLUSIVE) is overload, not an
outage: readiness (its own connection) stays SERVING, cached reads stay OK, and uncached calls fail fast with
RESOURCE_EXHAUSTED and a retry pushback (lock_timeout) or succeed once the lock is gone; never UNAVAILABLE."""

from __future__ import annotations

import asyncio
import collections

import asyncpg
import grpc
from grpc_health.v1 import health_pb2

from harness.cache_server import cache_server, unique_city
from rentscout.cache.v1 import cache_pb2
from rentscout.cache_service.service import SERVICE_NAME
from rentscout.wire.health import health_stub
from rentscout.wire.metadata import PUSHBACK_HEADER

LOCK_SECONDS = 12
CALLERS = 30


async def test_access_exclusive_lock_under_traffic(service_env: dict[str, str], database: str) -> None:
    async with cache_server(service_env) as server:
        stub = server.stub
        health = health_stub(server.channel)
        await stub.PriceStats(cache_pb2.PriceStatsRequest(city="Moscow"), timeout=30)  # cached from now on
        codes: collections.Counter[str] = collections.Counter()
        pushbacks: list[str | bytes] = []  # metadata values, as types-grpcio has them
        cached: collections.Counter[str] = collections.Counter()
        readiness: list[int] = []
        locked = asyncio.Event()
        released = asyncio.Event()

        async def hold_lock() -> None:
            conn = await asyncpg.connect(database)
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE properties IN ACCESS EXCLUSIVE MODE")
                    locked.set()
                    await asyncio.sleep(LOCK_SECONDS)
            finally:
                released.set()
                await conn.close()

        async def uncached_caller() -> None:
            await locked.wait()
            while not released.is_set():
                try:
                    await stub.PriceStats(cache_pb2.PriceStatsRequest(city=unique_city("Locked")), timeout=60)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1
                    pushbacks.extend(v for k, v in (exc.trailing_metadata() or ()) if k == PUSHBACK_HEADER)
                    await asyncio.sleep(0.05)

        async def cached_reader() -> None:
            await locked.wait()
            while not released.is_set():
                try:
                    await stub.PriceStats(cache_pb2.PriceStatsRequest(city="Moscow"), timeout=10)
                    cached["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    cached[exc.code().name] += 1
                await asyncio.sleep(0.1)

        async def prober() -> None:
            await locked.wait()
            while not released.is_set():
                reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
                readiness.append(reply.status)
                await asyncio.sleep(0.2)

        await asyncio.gather(hold_lock(), prober(), cached_reader(), *(uncached_caller() for _ in range(CALLERS)))
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert codes["RESOURCE_EXHAUSTED"] > 0, codes  # the lock was felt, as overload
        assert len(pushbacks) == codes["RESOURCE_EXHAUSTED"] and all(int(v) > 0 for v in pushbacks)
        assert readiness and set(readiness) == {health_pb2.HealthCheckResponse.SERVING}, readiness
        assert set(cached) == {"OK"}, cached
        # once the lock is gone, uncached reads work again
        await stub.PriceStats(cache_pb2.PriceStatsRequest(city=unique_city("Unlocked")), timeout=30)
