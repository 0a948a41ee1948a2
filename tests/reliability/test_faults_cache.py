"""Redis stopped under steady cache-query traffic: no failed call, answers stay correct, the breaker
opens, and closes again after Redis returns (real server process, private Redis on a fixed port)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import asyncpg
import grpc

from harness.polling import wait_until
from harness.servers import ServerProcess
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.devstack.instances import RedisInstance

CITIES = ("Moscow", "Kazan", "Sochi", "Perm", "Omsk")


async def _expected(dsn: str) -> dict[str, list[int]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            c: [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM properties WHERE is_active AND city = $1 ORDER BY views DESC, id LIMIT 10", c
                )
            ]
            for c in CITIES
        }
    finally:
        await conn.close()


def _breaker(stub: cache_pb2_grpc.CacheQueryServiceStub) -> int:
    return stub.GetCacheStats(cache_pb2.GetCacheStatsRequest(), timeout=5).breaker_state


async def test_redis_outage_under_traffic(service_env: dict[str, str], database: str, tmp_path: Path) -> None:
    expected = await _expected(database)
    redis = RedisInstance(tmp_path / "redis").start()
    env = {**service_env, "RENTSCOUT_REDIS_URL": redis.url}
    server = ServerProcess("cache-query", env, tmp_path).start()
    calls, failures, wrong = [0], [], []
    stop = threading.Event()

    def traffic() -> None:
        with grpc.insecure_channel(server.target) as ch:
            stub = cache_pb2_grpc.CacheQueryServiceStub(ch)
            for i in range(100_000):  # bounded; stops on the event well before
                if stop.is_set():
                    return
                city = CITIES[i % len(CITIES)]
                try:
                    reply = stub.PopularProperties(cache_pb2.PopularPropertiesRequest(city=city, limit=10), timeout=5)
                except grpc.RpcError as exc:
                    failures.append(exc.code().name)
                    continue
                calls[0] += 1
                if [p.id for p in reply.properties] != expected[city]:
                    wrong.append(city)
                time.sleep(0.005)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = cache_pb2_grpc.CacheQueryServiceStub(ch)
            assert wait_until(lambda: calls[0] > 50)
            assert _breaker(stub) == cache_pb2.BREAKER_STATE_CLOSED
            redis.kill()
            assert wait_until(lambda: _breaker(stub) == cache_pb2.BREAKER_STATE_OPEN), "breaker never opened"
            during = calls[0]
            assert wait_until(lambda: calls[0] > during + 50)  # answers keep coming from PostgreSQL
            redis.start()  # same port
            assert wait_until(lambda: _breaker(stub) == cache_pb2.BREAKER_STATE_CLOSED, 60), "breaker never closed"
            after = calls[0]
            assert wait_until(lambda: calls[0] > after + 50)
    finally:
        stop.set()
        worker.join(30)
        server.stop()
        redis.stop()
    assert failures == [] and wrong == []
    logged = [r for r in server.log_records() if "breaker" in r.get("message", "").lower()]
    assert logged, "the breaker's transitions are logged"
