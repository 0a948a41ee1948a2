"""The shared runtime on a real in-process grpc.aio server backed by the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import TypeVar

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2

from harness import probe_service
from harness.dbstate import deadline_cancels_statement
from harness.logcapture import capture_logs
from harness.servers import in_process
from rentscout.devstack.instances import free_port
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.wire.badrequest import bad_request_violations
from rentscout.wire.health import health_stub

ADMIN, READER = "admin-token-1", "reader-token-1"
M = TypeVar("M")


def received(message: object, kind: type[M]) -> M:
    """A message of a stream's `read()`, which types-grpcio types as `object` (the message or grpc.aio.EOF)."""
    assert isinstance(message, kind), message
    return message


@pytest.fixture
async def host(service_env: dict[str, str]):
    env = {**service_env, "RENTSCOUT_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:reader"}
    async with in_process([probe_service.create], env) as h:
        yield h


def stub(port: int) -> tuple[grpc.aio.Channel, export_pb2_grpc.ExportServiceAsyncStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return channel, export_pb2_grpc.ExportServiceStub(channel)


def md(token: str | None = ADMIN, **extra: str) -> tuple[tuple[str, str], ...]:
    out = [("authorization", f"Bearer {token}")] if token else []
    return (*out, *((k.replace("_", "-"), v) for k, v in extra.items()))


async def test_auth_matrix(host) -> None:
    channel, s = stub(host.port)
    async with channel:
        req = export_pb2.GetExportStatisticsRequest()
        assert (await s.GetExportStatistics(req, metadata=md(READER))).exports_started == 1
        for token, code, text in (
            (None, grpc.StatusCode.UNAUTHENTICATED, "missing credentials"),
            ("wrong-token-9", grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await s.GetExportStatistics(req, metadata=md(token))
            assert err.value.code() == code and text in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.PlanExport(export_pb2.PlanExportRequest(), metadata=md(READER))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "requires the admin role" in (err.value.details() or "")
        assert (await s.PlanExport(export_pb2.PlanExportRequest(), metadata=md(ADMIN))).estimated_total_rows == 7
        health = health_stub(channel)  # open without a token
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING


async def test_correlation_id_is_echoed_and_logged(host) -> None:
    channel, s = stub(host.port)
    cid = f"cid-{uuid.uuid4()}"
    with capture_logs() as logs:
        async with channel:
            call = s.GetExportStatistics(
                export_pb2.GetExportStatisticsRequest(), metadata=md(x_correlation_id=cid, x_test_action="db")
            )
            reply = await call
            echoed = dict(await call.trailing_metadata())  # a unary call: with the response and the status
            generated = s.GetExportStatistics(export_pb2.GetExportStatisticsRequest(), metadata=md())
            await generated
            new_id = dict(await generated.trailing_metadata())["x-correlation-id"]
    assert reply.exports_started > 0
    assert echoed["x-correlation-id"] == cid
    mine = [r for r in logs.records() if r.get("correlation.id") == cid]
    access = [r for r in mine if r.get("event.dataset") == "rentscout.access"]
    assert len(access) == 1
    assert access[0]["rpc.grpc.status_code"] == "OK" and access[0]["db.rows"] == reply.exports_started
    assert access[0]["event.duration"] > 0 and access[0]["client.ip"] == "127.0.0.1"
    assert isinstance(access[0]["client.port"], int) and access[0]["event.category"] == ["api"]
    assert new_id != cid and len(new_id) == 36
    for r in mine:
        assert r["@timestamp"].endswith("Z") and r["service.name"] and r["log.level"]


async def test_a_stream_echoes_the_ids_in_its_headers_before_any_message(host) -> None:
    channel, s = stub(host.port)
    async with channel:
        stream = s.ExportProperties(
            export_pb2.ExportPropertiesRequest(limit=10, rows_per_chunk=100), metadata=md(x_correlation_id="stream-1")
        )
        headers = dict(await stream.initial_metadata())
        traceparent = headers["traceparent"]
        assert headers["x-correlation-id"] == "stream-1" and isinstance(traceparent, str) and traceparent.startswith("00-")
        assert [m async for m in stream]  # the stream itself still runs to its end
        assert await stream.code() == grpc.StatusCode.OK


async def test_traceparent_propagates_both_ways(host) -> None:
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    channel, s = stub(host.port)
    with capture_logs() as logs:
        async with channel:
            call = s.GetExportStatistics(export_pb2.GetExportStatisticsRequest(), metadata=md(traceparent=parent))
            await call
            headers = dict(await call.trailing_metadata())
    traceparent = headers["traceparent"]
    assert isinstance(traceparent, str) and traceparent.split("-")[1] == trace_id  # same trace, the server's own span
    assert headers["traceparent"] != parent
    access = [r for r in logs.records() if r.get("event.dataset") == "rentscout.access"]
    assert access and access[-1]["trace.id"] == trace_id


async def test_error_mapping(host) -> None:
    channel, s = stub(host.port)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.GetExportStatistics(export_pb2.GetExportStatisticsRequest(), metadata=md(x_test_action="invalid"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_violations(err.value.trailing_metadata()) == [
            ("since", "must not be in the future"),
            ("since.nanos", "out of range"),
        ]
        assert "since: must not be in the future" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:  # refused before the handler: the id comes back too
            await s.GetExportStatistics(
                export_pb2.GetExportStatisticsRequest(), metadata=md("wrong-token", x_correlation_id="denied-1")
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert dict(err.value.trailing_metadata())["x-correlation-id"] == "denied-1"
        with capture_logs() as logs, pytest.raises(grpc.aio.AioRpcError) as err:
            await s.GetExportStatistics(
                export_pb2.GetExportStatisticsRequest(), metadata=md(x_test_action="boom", x_correlation_id="boom-1")
            )
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert err.value.details() == "internal error (correlation id boom-1)"  # no detail, no traceback
        logged = [r for r in logs.records() if r.get("error.type") == "ValueError"]
        assert logged and "secret internal detail" in logged[0]["error.stack_trace"]


async def test_deadline_cancels_the_database_statement(host, pg_conn: asyncpg.Connection) -> None:
    channel, s = stub(host.port)
    async with channel:  # seen running first (pg_sleep(30)), then gone once the 3 s deadline passed
        err = await deadline_cancels_statement(
            s.GetExportStatistics(export_pb2.GetExportStatisticsRequest(), metadata=md(x_test_action="slow-db"), timeout=3),
            pg_conn,
            "/* probe-slow */",
        )
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_database_down_is_unavailable_and_not_ready(service_env: dict[str, str]) -> None:
    env = {**service_env, "RENTSCOUT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    async with in_process([probe_service.create], env) as h:
        channel, s = stub(h.port)
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await s.GetExportStatistics(export_pb2.GetExportStatisticsRequest(), metadata=md(x_test_action="db"), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            health = health_stub(channel)
            assert (
                await health.Check(health_pb2.HealthCheckRequest(service=probe_service.NAME))
            ).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING


async def test_graceful_shutdown_flips_health_then_finishes_in_flight(service_env: dict[str, str]) -> None:
    async with in_process([probe_service.create], service_env) as h:
        channel, s = stub(h.port)
        async with channel:
            health = health_stub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=probe_service.NAME))
            Status = health_pb2.HealthCheckResponse
            statuses = [received(await watch.read(), Status).status]
            while statuses[-1] != health_pb2.HealthCheckResponse.SERVING:
                statuses.append(received(await watch.read(), Status).status)
            stream = s.ExportProperties(export_pb2.ExportPropertiesRequest(limit=10, rows_per_chunk=100))
            first = received(await stream.read(), export_pb2.ExportPropertiesResponse)  # the stream is in flight
            stopping = asyncio.create_task(h.stop(grace=10))
            assert received(await watch.read(), Status).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert not stopping.done()  # health flipped while the stream still runs
            rest = []
            while (message := await stream.read()) is not grpc.aio.EOF:
                rest.append(received(message, export_pb2.ExportPropertiesResponse))
            await stopping
    assert first.chunk.rows_sent == 1 and [m.chunk.rows_sent for m in rest] == list(range(2, 11))
    assert await stream.code() == grpc.StatusCode.OK


async def test_no_tokens_binds_loopback_only(service_env: dict[str, str]) -> None:
    from harness.servers import settings_for
    from rentscout.runtime.server import ServiceHost

    with capture_logs() as logs:
        h = ServiceHost([probe_service.create], settings_for(service_env), label="t", host="0.0.0.0", port=0, metrics_port=None)
        await h.start()
        await h.stop(grace=0)
    assert any("listening on loopback only" in r["message"] for r in logs.records())
