"""GetExportStatistics from PostgreSQL (any replica answers), heartbeats, metrics and the start/end log lines."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY

from harness.export_server import CSV, JSON, JSONL, SMALL_WINDOW, TEST_SETTINGS, collect, rpc_error, serve
from harness.polling import eventually
from rentscout.export.v1 import export_pb2, export_pb2_grpc

Req = export_pb2.ExportPropertiesRequest


async def stats_since(stub: export_pb2_grpc.ExportServiceAsyncStub, since: Timestamp) -> export_pb2.GetExportStatisticsResponse:
    return await stub.GetExportStatistics(export_pb2.GetExportStatisticsRequest(since=since))


async def test_statistics_count_every_outcome_across_replicas(export_server, service_env, pg_conn) -> None:
    since = Timestamp()
    since.FromDatetime(await pg_conn.fetchval("SELECT clock_timestamp()"))
    stub = export_server.stub
    done = await collect(stub, Req(format=CSV, limit=500))
    cut = await collect(stub, Req(format=JSONL, rows_per_chunk=10), stop_after_chunks=1)
    async with serve(service_env, dataclasses.replace(TEST_SETTINGS, statement_timeout_ms=1)) as other_replica:
        await rpc_error(other_replica.stub.ExportProperties(Req(format=JSON)))
    await pg_conn.execute(  # a run whose replica died: open, but its heartbeat stopped an hour ago
        "INSERT INTO export_runs (export_id, format, replica, heartbeat_at) "
        "VALUES (gen_random_uuid(), 'jsonl', 'dead:1', clock_timestamp() - interval '1 hour')"
    )
    held_channel = grpc.aio.insecure_channel(f"127.0.0.1:{export_server.host.port}", options=SMALL_WINDOW)
    try:  # the held export stays running on its small window
        held = export_pb2_grpc.ExportServiceStub(held_channel).ExportProperties(Req(format=CSV, rows_per_chunk=10))
        held_stream = held.__aiter__()
        await held_stream.__anext__()
        await held_stream.__anext__()

        async def one_in_flight() -> object:
            s = await stats_since(stub, since)
            return True if s.exports_in_flight == 1 and s.exports_cancelled == 1 else s

        await eventually(one_in_flight)

        async def heartbeat_progress() -> object:  # the running export's progress is visible to others
            row = await pg_conn.fetchrow(
                "SELECT rows, bytes FROM export_runs WHERE ended_at IS NULL AND replica <> 'dead:1' AND started_at >= $1",
                since.ToDatetime().replace(tzinfo=None),
            )
            return True if row and row["rows"] >= 10 and row["bytes"] > 0 else row

        await eventually(heartbeat_progress)
        held.cancel()

        async def settled() -> object:
            s = await stats_since(stub, since)
            return True if s.exports_in_flight == 0 and s.exports_cancelled == 2 else s

        await eventually(settled)
        s = await stats_since(stub, since)
        assert (s.exports_started, s.exports_completed, s.exports_failed, s.exports_cancelled) == (5, 1, 1, 2)
        assert s.exports_abandoned == 1  # the dead replica's run: neither failed nor in flight
        assert s.rows_exported >= done.rows + cut.rows + 10
        assert s.bytes_exported >= len(done.data) + len(cut.data)
        by_format = {f.format: f for f in s.by_format}
        assert {k: v.exports for k, v in by_format.items()} == {CSV: 2, JSON: 1, JSONL: 2}
        assert by_format[CSV].mean_rows_per_second > 0 and by_format[JSON].mean_rows_per_second == 0
        assert by_format[JSON].rows == 0
        everything = await stub.GetExportStatistics(export_pb2.GetExportStatisticsRequest())
        assert everything.exports_started >= s.exports_started  # without `since`: all recorded runs
    finally:
        await held_channel.close()
        await pg_conn.execute("DELETE FROM export_runs WHERE replica = 'dead:1'")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_rows_bytes_durations_and_errors(export_server) -> None:
    before = {
        "rows": sample("rentscout_export_rows_total", format="csv"),
        "bytes": sample("rentscout_export_bytes_total", format="csv"),
        "runs": sample("rentscout_exports_total", format="csv", status="completed"),
        "dur": sample("rentscout_export_duration_seconds_count", format="csv", status="completed"),
        "bad": sample("rentscout_export_errors_total", code="INVALID_ARGUMENT"),
    }
    stream = await collect(export_server.stub, Req(format=CSV, limit=123))
    await rpc_error(export_server.stub.ExportProperties(Req(format=CSV, limit=-1)))
    assert sample("rentscout_export_rows_total", format="csv") - before["rows"] == 123
    assert sample("rentscout_export_bytes_total", format="csv") - before["bytes"] == len(stream.data)
    assert sample("rentscout_exports_total", format="csv", status="completed") - before["runs"] == 1
    assert sample("rentscout_export_duration_seconds_count", format="csv", status="completed") - before["dur"] == 1
    assert sample("rentscout_export_errors_total", code="INVALID_ARGUMENT") - before["bad"] == 1
    assert sample("rentscout_exports_in_flight") == 0


async def test_one_log_line_at_start_and_one_at_end(export_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rentscout.export_service")
    stream = await collect(export_server.stub, Req(format=JSONL, limit=77))
    await asyncio.sleep(0)
    assert stream.header is not None
    export_id = stream.header.export_id
    lines = [
        r
        for r in caplog.records
        if r.name == "rentscout.export_service" and r.fields.get("export.id") == export_id  # type: ignore[attr-defined]
    ]
    assert [r.getMessage() for r in lines] == ["export started", "export finished"]
    start, end = (r.fields for r in lines)  # type: ignore[attr-defined]
    assert start["export.format"] == "jsonl" and start["export.limit"] == 77 and start["export.resumed"] is False
    assert end["export.rows"] == 77 and end["export.bytes"] == len(stream.data)
    assert end["export.status"] == "completed" and end["export.format"] == "jsonl" and end["event.duration"] > 0
