"""Readiness follows PostgreSQL: NOT_SERVING while it is down, SERVING again when it returns."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from harness import probe_service
from harness.servers import in_process
from rentscout.db.migrate import migrate
from rentscout.devstack.instances import PostgresInstance, free_port
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.runtime import metrics
from rentscout.wire.health import health_stub

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


async def _wait_for(watch, wanted: int) -> None:
    async with asyncio.timeout(20):
        while (await watch.read()).status != wanted:
            pass


async def test_service_health_follows_postgres(tmp_path: Path, service_env: dict[str, str]) -> None:
    pg = await asyncio.to_thread(lambda: PostgresInstance(tmp_path / "pg").start())
    try:
        await migrate(pg.dsn)  # readiness also waits for the schema this build needs
        env = {**service_env, "RENTSCOUT_DATABASE_URL": pg.dsn, "RENTSCOUT_DB_CONNECT_TIMEOUT_SECONDS": "1"}
        async with (
            in_process([probe_service.create], env) as host,
            grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
        ):
            health = health_stub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=probe_service.NAME))
            await _wait_for(watch, SERVING)
            await asyncio.to_thread(pg.stop)
            await _wait_for(watch, NOT_SERVING)
            assert (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING  # liveness unaffected
            await asyncio.to_thread(pg.start)
            await _wait_for(watch, SERVING)
            watch.cancel()
    finally:
        await asyncio.to_thread(pg.destroy)


async def test_metrics_endpoint_counts_rpcs_by_code(service_env: dict[str, str]) -> None:
    port = free_port()
    async with in_process([probe_service.create], service_env) as host:
        metrics.serve(port, "127.0.0.1")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            s = export_pb2_grpc.ExportServiceStub(channel)
            await s.GetExportStatistics(export_pb2.GetExportStatisticsRequest())
            try:
                await s.GetExportStatistics(export_pb2.GetExportStatisticsRequest(), metadata=[("x-test-action", "invalid")])
            except grpc.aio.AioRpcError:
                pass
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    for code in ("OK", "INVALID_ARGUMENT"):
        assert (
            f'rentscout_rpc_requests_total{{grpc_code="{code}",grpc_method="GetExportStatistics",'
            f'grpc_service="rentscout.export.v1.ExportService"}}'
        ) in body
    assert "rentscout_rpc_duration_seconds_bucket" in body
