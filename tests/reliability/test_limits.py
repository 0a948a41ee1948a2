"""Limits: deadlines are honoured down to PostgreSQL, oversized messages are refused cleanly."""

from __future__ import annotations

import time

import asyncpg
import grpc
from grpc_health.v1 import health_pb2

from harness.dbstate import deadline_cancels_statement
from harness.secrets import ADMIN_TOKEN
from harness.servers import ServerProcess
from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.wire.health import health_stub

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


async def test_deadline_cancels_the_query_in_postgres(all_server: ServerProcess, pg_conn: asyncpg.Connection) -> None:
    marker = f"deadline-marker-{time.time_ns()}"
    slow = f"SELECT count(*) FROM properties a, properties b WHERE a.title <> '{marker}'"  # a 400M-row join
    async with grpc.aio.insecure_channel(all_server.target) as ch:
        stub = analyzer_pb2_grpc.AnalyzerServiceStub(ch)
        # seen running in PostgreSQL first, then gone once the call's 3 s deadline passed
        err = await deadline_cancels_statement(
            stub.AnalyzeQuery(analyzer_pb2.AnalyzeQueryRequest(sql=slow, analyze=True), metadata=ADMIN, timeout=3),
            pg_conn,
            marker,
        )
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_oversized_request_is_refused_and_server_stays_up(all_server: ServerProcess) -> None:
    big = "x" * (5 * 1024 * 1024)  # over the server's 4 MiB receive limit
    options = [("grpc.max_send_message_length", 16 * 1024 * 1024)]
    with grpc.insecure_channel(all_server.target, options=options) as ch:
        try:
            cache_pb2_grpc.CacheQueryServiceStub(ch).PopularProperties(
                cache_pb2.PopularPropertiesRequest(city=big), metadata=ADMIN, timeout=10
            )
            raise AssertionError("a 5 MiB request was accepted")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reply = health_stub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        ok = cache_pb2_grpc.CacheQueryServiceStub(ch).Cities(cache_pb2.CitiesRequest(), metadata=ADMIN, timeout=10)
        assert len(ok.cities) > 10
    assert all_server.process.poll() is None
