"""Overload: a burst far over the server's limits gets only OK or RESOURCE_EXHAUSTED (never CANCELLED or
UNKNOWN), each rejection logged and counted, and health keeps answering (it is outside the limit)."""

from __future__ import annotations

import asyncio
import collections
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from harness.polling import wait_until
from harness.servers import ServerProcess
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.wire.health import health_stub

BURST = 1300  # what one client sent on one channel when this was CANCELLED
LIMIT = 8


def rejected_total(server: ServerProcess) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith("rentscout_rpc_rejected_total{"))


async def test_burst_gets_only_ok_or_resource_exhausted(service_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        **service_env,
        "RENTSCOUT_MAX_CONCURRENT_RPCS": str(LIMIT),
        "RENTSCOUT_MAX_CONCURRENT_STREAMS": "100",
        "RENTSCOUT_CACHE_ENABLED": "false",
    }  # every call reads PostgreSQL: calls overlap
    server = ServerProcess("cache-query", env, tmp_path).start()
    codes: collections.Counter[str] = collections.Counter()
    health: list[int] = []
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = cache_pb2_grpc.CacheQueryServiceStub(channel)
            probe = health_stub(channel)

            async def one(i: int) -> None:
                try:
                    await stub.PriceStats(cache_pb2.PriceStatsRequest(city=("Moscow", "Kazan", "Omsk")[i % 3]), timeout=120)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1

            async def probes() -> None:
                for _ in range(5):
                    reply = await probe.Check(health_pb2.HealthCheckRequest(service=""), timeout=60)
                    health.append(reply.status)

            await asyncio.gather(probes(), *(one(i) for i in range(BURST)))
        assert server.process.poll() is None
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert codes["OK"] > 0 and codes["RESOURCE_EXHAUSTED"] > 0, codes  # the limit was reached, and served
        assert health == [health_pb2.HealthCheckResponse.SERVING] * 5

        def logged() -> int:
            return sum(1 for r in server.log_records() if r.get("event.action") == "rpc_rejected")

        assert wait_until(lambda: logged() == codes["RESOURCE_EXHAUSTED"], 15), (logged(), codes)
        assert rejected_total(server) == codes["RESOURCE_EXHAUSTED"]
    finally:
        server.stop()
