"""The SDK's correlation id and traceparent reach a real `rentscout serve` process and its JSON logs."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from opentelemetry import trace

from harness.servers import ServerProcess
from rentscout.sdk import ExportClient, RetryPolicy
from rentscout.sdk.errors import RentScoutError
from rentscout.wire import correlation as context
from rentscout.wire import tracing

METHOD = "/rentscout.export.v1.ExportService/GetExportStatistics"


async def test_correlation_id_and_trace_id_are_in_the_servers_access_log(service_env: dict[str, str], tmp_path: Path) -> None:
    server = ServerProcess("export", service_env, tmp_path)
    await asyncio.to_thread(server.start)
    try:
        tracing.configure("sdk-test", "0")  # a real tracer provider, so the client span has ids to propagate
        bound = context.correlation_id.set("sdk-cid-0123456789")
        try:
            async with ExportClient(server.target, retry=RetryPolicy(max_attempts=1), timeout=10) as client:
                with trace.get_tracer("sdk-test").start_as_current_span("caller") as span:
                    trace_id = format(span.get_span_context().trace_id, "032x")
                    # the answer depends on how far the export service is implemented; the log line does not
                    with contextlib.suppress(RentScoutError):
                        await client.statistics()
                context.correlation_id.reset(bound)
                with contextlib.suppress(RentScoutError):  # no id bound: the SDK makes a new one per call
                    await client.statistics()
        finally:
            if context.correlation_id.get() == "sdk-cid-0123456789":
                context.correlation_id.reset(bound)
    finally:
        await asyncio.to_thread(server.stop)
    access = [r for r in server.log_records() if r.get("rpc.method") == METHOD and r.get("event.dataset") == "rentscout.access"]
    assert len(access) == 2, server.log_text()[-2000:]
    first, second = access
    assert first["correlation.id"] == "sdk-cid-0123456789"
    assert first["trace.id"] == trace_id  # the server span continued the client's trace (W3C traceparent)
    assert second["correlation.id"] not in ("", "sdk-cid-0123456789") and len(second["correlation.id"]) == 36
    assert second["trace.id"] != trace_id
