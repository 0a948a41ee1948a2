"""Limits: deadlines are honoured down to PostgreSQL, oversized messages are refused cleanly."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.secrets import ADMIN_TOKEN
from harness.servers import ServerProcess
from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.devstack.instances import PostgresInstance

ADMIN = [("authorization", f"Bearer {ADMIN_TOKEN}")]


def _active(pg: PostgresInstance, marker: str) -> int:
    return int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{marker}%' "
                       "AND pid <> pg_backend_pid()").strip())


def test_50ms_deadline_cancels_the_query_in_postgres(all_server: ServerProcess, pg_instance: PostgresInstance) -> None:
    marker = f"deadline-marker-{time.time_ns()}"
    slow = f"SELECT count(*) FROM properties a, properties b WHERE a.title <> '{marker}'"
    with grpc.insecure_channel(all_server.target) as ch:
        stub = analyzer_pb2_grpc.AnalyzerServiceStub(ch)
        started = time.monotonic()
        try:
            stub.AnalyzeQuery(analyzer_pb2.AnalyzeQueryRequest(sql=slow, analyze=True), metadata=ADMIN, timeout=0.05)
            raise AssertionError("a 400M-row join finished within 50 ms")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5  # the client is not kept waiting
    end = time.monotonic() + 10
    while _active(pg_instance, marker) and time.monotonic() < end:
        time.sleep(0.1)
    assert _active(pg_instance, marker) == 0, "the statement kept running after the deadline"


def test_oversized_request_is_refused_and_server_stays_up(all_server: ServerProcess) -> None:
    big = "x" * (5 * 1024 * 1024)  # over the server's 4 MiB receive limit
    options = [("grpc.max_send_message_length", 16 * 1024 * 1024)]
    with grpc.insecure_channel(all_server.target, options=options) as ch:
        try:
            cache_pb2_grpc.CacheQueryServiceStub(ch).PopularProperties(
                cache_pb2.PopularPropertiesRequest(city=big), metadata=ADMIN, timeout=10)
            raise AssertionError("a 5 MiB request was accepted")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        ok = cache_pb2_grpc.CacheQueryServiceStub(ch).Cities(cache_pb2.CitiesRequest(), metadata=ADMIN, timeout=10)
        assert len(ok.cities) > 10
    assert all_server.proc.poll() is None
