"""Invalidate patterns: hostile globs do not freeze the server (every health check sent while one runs is
answered SERVING within its 5 s deadline) and delete exactly what a reference matcher selects; malformed
globs are INVALID_ARGUMENT naming the problem. (How long a call takes is not asserted: no timing on a shared
machine.) Real server process, real Redis, keys written by the test under a namespace of its own."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2
from redis.asyncio import Redis

from harness.servers import ServerProcess
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.cache_service.keys import FORMAT_VERSION
from rentscout.devstack.instances import RedisInstance
from rentscout.wire.health import health_stub

KEYS = 20_000


@pytest.fixture(scope="module")
async def hostile_target(service_env: dict[str, str], redis_instance: RedisInstance, tmp_path_factory: pytest.TempPathFactory):
    ns = f"hostile{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(redis_instance.url)
    keys = [f"{ns}:v{FORMAT_VERSION}.2:popular_properties:{{{hashlib.md5(str(i).encode()).hexdigest()}}}" for i in range(KEYS)]
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.set(key, b"x", ex=600)
        await pipe.execute()
    env = {**service_env, "RENTSCOUT_CACHE_NAMESPACE": ns, "RENTSCOUT_CACHE_LISTEN": "false"}
    server = await asyncio.to_thread(lambda: ServerProcess("cache-query", env, tmp_path_factory.mktemp("hostile")).start())
    try:
        yield server, ns, keys
    finally:
        await asyncio.to_thread(server.stop)
        async for key in client.scan_iter(match=f"{ns}:*", count=1000):
            await client.delete(key)
        await client.aclose()


async def test_hostile_globs_keep_the_server_responsive(hostile_target) -> None:
    server, ns, keys = hostile_target
    # star-heavy patterns: exponential for a backtracking regex; the second one matches nothing at all
    patterns = [f"{ns}:*" + "*0" * 12 + "*}", f"{ns}:" + "*a" * 120 + "*q", f"{ns}:*{{*" + "?*" * 30 + "1*2}"]
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = cache_pb2_grpc.CacheQueryServiceStub(channel)
        health = health_stub(channel)
        probes: list[int] = []
        busy = asyncio.Event()

        async def probe() -> None:
            while not busy.is_set():
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)  # a frozen loop misses it
                probes.append(reply.status)
                await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe())
        try:
            remaining = set(keys)
            for pattern in patterns:
                assert len(pattern) <= 512
                expected = {k for k in remaining if fnmatch.fnmatchcase(k, pattern)}
                reply = await stub.Invalidate(cache_pb2.InvalidateRequest(pattern=pattern), timeout=120)
                assert reply.keys_deleted == len(expected), pattern
                remaining -= expected
        finally:
            busy.set()
            await prober
    assert probes and set(probes) == {health_pb2.HealthCheckResponse.SERVING}
    assert len(keys) > len(remaining) > 0  # the patterns matched some keys, not all


@pytest.mark.parametrize(
    ("glob", "problem"),
    [
        ("[]", "empty character class"),
        ("[z-a]", "reversed range 'z-a'"),
        ("[abc", "unterminated character class"),
        ("x\\", "dangling escape"),
    ],
)
async def test_malformed_globs_are_invalid_argument(hostile_target, glob: str, problem: str) -> None:
    server, ns, _ = hostile_target
    async with grpc.aio.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cache_pb2_grpc.CacheQueryServiceStub(channel).Invalidate(
                cache_pb2.InvalidateRequest(pattern=f"{ns}:{glob}"), timeout=30
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("pattern: ") and problem in (err.value.details() or "")
