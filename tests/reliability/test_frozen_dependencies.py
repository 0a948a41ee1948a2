"""A frozen dependency (SIGSTOP: connections stay open, nothing answers) never hangs a call.

PostgreSQL frozen: calls with no deadline, and with a deadline longer than the server's bound, get
UNAVAILABLE (the server's own bound, RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS, short here); an export
already streaming ends UNAVAILABLE too (COPY inactivity); readiness turns NOT_SERVING; after SIGCONT
everything recovers by itself. Redis frozen: the cache fails open to PostgreSQL. No task is left with
an unretrieved exception, nothing is UNKNOWN or INTERNAL, and no connection leaks (checked while the
server still runs). Timing is asserted only as "finished before a generous cap".
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from harness.freeze import frozen, postgres_processes, redis_processes
from harness.servers import ServerProcess
from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.db.migrate import migrate
from rentscout.db.seed import seed
from rentscout.devstack.instances import PostgresInstance, RedisInstance
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.wire.health import health_stub

BOUND = 2.0  # the server's bound on any one wait, in this test
CAP = 45.0  # generous: a call that takes longer than this hung
EXPORT = "rentscout.export.v1.ExportService"
SERVICES = (EXPORT, "rentscout.cache.v1.CacheQueryService", "rentscout.analyzer.v1.AnalyzerService")


@pytest.fixture
async def stack(service_env: dict[str, str], tmp_path: Path) -> Any:
    pg = await asyncio.to_thread(lambda: PostgresInstance(tmp_path / "pg").start())
    redis = await asyncio.to_thread(lambda: RedisInstance(tmp_path / "redis").start())
    try:
        await migrate(pg.dsn)
        await seed(pg.dsn, 20_000)  # more than socket buffers hold: the running COPY must wait on PostgreSQL
        env = {
            **service_env,
            "RENTSCOUT_DATABASE_URL": pg.dsn,
            "RENTSCOUT_REDIS_URL": redis.url,
            "RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS": str(BOUND),
            "RENTSCOUT_DB_CONNECT_TIMEOUT_SECONDS": "1",
            "RENTSCOUT_CACHE_BREAKER_RESET_SECONDS": "0.5",
            "RENTSCOUT_LOG_LEVEL": "debug",
        }
        server = await asyncio.to_thread(lambda: ServerProcess("all", env, tmp_path / "srv").start())
        try:
            yield pg, redis, server
        finally:
            await asyncio.to_thread(server.stop)
    finally:
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(pg.destroy)


async def outcome(call: Awaitable[Any]) -> str:
    """The call's status name; it must end (by itself) before CAP."""
    try:
        await asyncio.wait_for(call, CAP)
        return "OK"
    except grpc.aio.AioRpcError as exc:
        assert "Traceback" not in (exc.details() or "")
        return exc.code().name
    except TimeoutError:
        return "HUNG"


async def drain(stream: Any) -> None:
    while await stream.read() is not grpc.aio.EOF:
        pass


async def readiness(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_stub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return reply.status


async def until(probe: Callable[[], Awaitable[bool]], seconds: float = CAP) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if await probe():
                return True
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2)
    return False


def app_connections(pg: PostgresInstance) -> list[str]:
    return pg.psql(
        "SELECT application_name || ':' || state FROM pg_stat_activity WHERE application_name LIKE 'rentscout-%' ORDER BY 1"
    ).split()


async def test_frozen_postgres_then_frozen_redis(stack: Any) -> None:
    pg, redis, server = stack
    async with grpc.aio.insecure_channel(server.target) as channel:
        export = export_pb2_grpc.ExportServiceStub(channel)
        cache = cache_pb2_grpc.CacheQueryServiceStub(channel)
        analyzer = analyzer_pb2_grpc.AnalyzerServiceStub(channel)

        def cold_stats(**kw: Any) -> Awaitable[Any]:  # a city never asked before: a cache miss, read from PostgreSQL
            return cache.PriceStats(cache_pb2.PriceStatsRequest(city=f"Frozen {uuid.uuid4().hex[:8]}"), **kw)

        def new_export(**kw: Any) -> Any:
            return drain(
                export.ExportProperties(
                    export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_JSONL, rows_per_chunk=50), **kw
                )
            )

        def analyze(**kw: Any) -> Awaitable[Any]:
            return analyzer.AnalyzeQuery(analyzer_pb2.AnalyzeQueryRequest(sql="SELECT count(*) FROM properties"), **kw)

        # warm: everything answers, every service is ready
        for service in SERVICES:
            assert await until(serving(channel, service))
        assert await outcome(cold_stats()) == "OK" and await outcome(analyze()) == "OK"
        popular = await cache.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Moscow"), timeout=30)

        # an export already streaming, read slowly
        running = export.ExportProperties(
            export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_JSON, rows_per_chunk=20)
        )
        first = [await running.read() for _ in range(3)]
        assert all(
            isinstance(m, export_pb2.ExportPropertiesResponse) and (m.HasField("header") or m.HasField("chunk")) for m in first
        )

        with frozen(postgres_processes(pg)):
            results = await asyncio.gather(
                outcome(drain(running)),  # COPY goes silent
                outcome(new_export()),
                outcome(new_export(timeout=120)),
                outcome(cold_stats()),
                outcome(cold_stats(timeout=120)),
                outcome(analyze()),
                outcome(analyze(timeout=120)),
                outcome(analyze(timeout=BOUND / 4)),
            )  # the caller's deadline is shorter than the bound: its own
            assert results == ["UNAVAILABLE"] * 7 + ["DEADLINE_EXCEEDED"], results
            assert await until(lambda: _is(readiness(channel, EXPORT), health_pb2.HealthCheckResponse.NOT_SERVING))
            assert await readiness(channel, "") == health_pb2.HealthCheckResponse.SERVING  # liveness stays

        # thawed: recovery by itself, no restart
        for service in SERVICES:
            assert await until(serving(channel, service))
        assert await until(lambda: _ok(cold_stats(timeout=30)))
        assert await until(lambda: _ok(analyze(timeout=30)))
        assert await until(lambda: _ok(new_export(timeout=60)))

        with frozen(redis_processes(redis)):  # fail open: answers from PostgreSQL, still right
            for _ in range(5):
                got = await asyncio.wait_for(cache.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Moscow")), CAP)
                assert [p.id for p in got.properties] == [p.id for p in popular.properties]
            assert await outcome(cold_stats()) == "OK"
        assert await until(lambda: _ok(cache.PopularProperties(cache_pb2.PopularPropertiesRequest(city="Moscow"), timeout=30)))

        # no leak, checked while the server still runs: whatever was stuck in the freeze is gone
        async def settled() -> bool:
            conns = await asyncio.to_thread(app_connections, pg)
            return not [c for c in conns if not c.endswith(":idle")] and len(conns) <= 3 * 10 + 2

        assert await until(settled, 30), await asyncio.to_thread(app_connections, pg)
    assert server.proc.poll() is None
    assert await asyncio.to_thread(server.stop) == 0  # a clean shutdown after the faults, also in the log below
    records = server.log_records()
    assert not [
        r
        for r in records
        if "never retrieved" in str(r.get("message", "")) or "was destroyed but it is pending" in str(r.get("message", ""))
    ]
    codes = {r.get("rpc.grpc.status_code") for r in records if r.get("event.dataset") == "rentscout.access"}
    assert not codes & {"UNKNOWN", "INTERNAL"}, codes


def serving(channel: grpc.aio.Channel, service: str) -> Callable[[], Awaitable[bool]]:
    """A probe for `until`: is `service` SERVING now?"""
    return lambda: _is(readiness(channel, service), health_pb2.HealthCheckResponse.SERVING)


async def _is(status: Awaitable[int], expected: int) -> bool:
    return await status == expected


async def _ok(call: Awaitable[Any]) -> bool:
    await call
    return True
