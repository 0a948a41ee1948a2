"""The SDK's Flight reader through a network that cuts it (harness.flakyproxy), against the real export server.

Resuming is by progress (rentscout.sdk.resume), as for every SDK stream reader: through a proxy resetting every
connection after a few hundred KB, every id arrives exactly once, the reader resumes many times (logged at info)
and the target's breaker never changes state; through a proxy that stops forwarding, the export fails within its
resume timeout, saying so. The async client's Flight path reads the same table as ADBC.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import pytest

from harness.breakers import watch
from harness.export_server import TEST_SETTINGS, adbc_table, serve
from harness.flakyproxy import FlakyProxy
from rentscout.resilience.breaker import CircuitState
from rentscout.sdk import ExportClient, SyncExportClient, UnavailableError, export_request
from rentscout.sdk.channel import ChannelConfig
from rentscout.sdk.flight import FlightArrowStream
from rentscout.sdk.invoker import BREAKERS

pa = pytest.importorskip("pyarrow")
fl = pytest.importorskip("pyarrow.flight")
pytestmark = pytest.mark.integration

# ~5 endpoints over the 20,000-row table; batches of ~16 KB, well under the proxy's reset window
SETTINGS = TEST_SETTINGS.__class__(**{**TEST_SETTINGS.__dict__, "flight_rows_per_endpoint": 4000, "max_concurrent": 8})
BATCH_BYTES = 16 * 1024
RESETS = (128 * 1024, 512 * 1024)
FAST_CHANNEL = ChannelConfig(initial_reconnect_backoff=0.05, max_reconnect_backoff=0.3)
CITY = "Moscow"
COLUMNS = ["id", "title", "price", "area", "is_active", "created_at"]


def cuts(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rentscout.sdk.flight" and "stream broke" in r.getMessage()]


async def test_a_flight_export_through_a_resetting_proxy_gets_every_id_once(
    service_env: dict[str, str], table_ids: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        serve(service_env, SETTINGS) as server,
        FlakyProxy(server.host.port, reset_bytes=RESETS) as proxy,
        ExportClient(proxy.target, channel=FAST_CHANNEL) as client,
    ):
        changes = watch(proxy.target)
        with caplog.at_level(logging.INFO, logger="rentscout.sdk.flight"):
            stream = client.export_arrow(bytes_per_chunk=BATCH_BYTES, flight=True)
            assert isinstance(stream, FlightArrowStream)
            ids: list[Any] = []  # pyarrow types to_pylist() as list[Any | None]
            async for batch in stream:
                ids += batch.column("id").to_pylist()
            one_stream = stream.resumes
            logged = cuts(caplog)

            def parallel() -> list[int]:  # the sync client, endpoints read at once: the same reader underneath
                with SyncExportClient(proxy.target, channel=FAST_CHANNEL) as sync:
                    reader = sync.export_arrow(export_request("arrow", bytes_per_chunk=BATCH_BYTES), parallel=3)
                    got: list[int] = reader.read_all().column("id").to_pylist()
                    assert sync.flights.resumes >= 3
                    return got

            in_parallel = await asyncio.to_thread(parallel)
        breaker = BREAKERS.get(proxy.target)
    assert ids == table_ids  # every id once, in id order
    assert in_parallel == table_ids
    assert one_stream >= 5 and proxy.resets >= 5
    assert changes == [] and breaker.state is CircuitState.CLOSED  # every cut came after progress
    assert len(logged) == one_stream  # one record per resume
    # routine cuts, not warnings (endpoints read at once share a connection: a reset may cut a DoGet before its
    # first batch, twice in a row, which is a warning, so only the one-stream read is checked)
    assert {r.levelno for r in logged} == {logging.INFO}


async def test_a_proxy_that_never_forwards_fails_a_flight_export_within_its_resume_timeout(service_env: dict[str, str]) -> None:
    async with (
        serve(service_env, SETTINGS) as server,
        FlakyProxy(server.host.port, reset_bytes=(256 * 1024, 256 * 1024), blackhole_after=1) as proxy,
        ExportClient(proxy.target, channel=FAST_CHANNEL, max_stall=8.0) as client,
    ):
        watch(proxy.target)
        stream = client.export_arrow(bytes_per_chunk=BATCH_BYTES, flight=True)
        rows = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        # gRPC's own connection attempts time out waiting for the HTTP/2 handshake (FlightUnavailableError), or the
        # stall watchdog cancels a DoGet that got nothing; once the breaker opens, the SDK says UnavailableError
        with pytest.raises((fl.FlightUnavailableError, UnavailableError)) as info:
            async for batch in stream:
                rows += batch.num_rows
        elapsed = loop.time() - started
    assert rows > 0  # the first connection delivered, then was reset; no later one forwarded a byte
    assert proxy.blackholed >= 1
    assert "unavailable" in str(info.value).lower()
    notes = "\n".join(info.value.__notes__)
    assert "Flight export stopped after" in notes and "resume timeout (8s)" in notes
    assert elapsed < 8 + 10  # within the resume timeout (plus slack for the first connection's rows)


@pytest.fixture
async def expected(database: str) -> Any:
    return await asyncio.to_thread(
        adbc_table, database, f"SELECT {', '.join(COLUMNS)} FROM properties WHERE city = '{CITY}' ORDER BY id"
    )


def same(table: Any, expected: Any) -> None:
    assert table.num_rows == expected.num_rows > 300
    assert table.equals(expected.cast(table.schema))


async def test_the_async_flight_path_equals_adbc(service_env: dict[str, str], expected: Any) -> None:
    async with serve(service_env, SETTINGS) as server, ExportClient(f"127.0.0.1:{server.host.port}") as client:
        whole = await client.export_arrow(cities=[CITY], columns=COLUMNS, flight=True).read_all()
        request = export_request("arrow", cities=[CITY], columns=COLUMNS, bytes_per_chunk=BATCH_BYTES)
        stream = client.export_arrow(request, parallel=3)
        batches = [batch async for batch in stream]
        assert stream.schema is not None and stream.schema.names == COLUMNS
        assert client.export_arrow(request).__class__.__name__ == "ArrowStream"  # the default stays ExportService
        over_flight, over_grpc = io.BytesIO(), io.BytesIO()
        result = await client.download(request, over_flight, parallel=3, flight=True)
        await client.download(request, over_grpc)
        empty = io.BytesIO()
        await client.download(export_request("arrow", cities=["Atlantis"], columns=COLUMNS), empty, flight=True)
    same(whole, expected)
    same(pa.Table.from_batches(batches), expected)  # endpoints read at once, batches in id order
    downloaded = pa.ipc.open_stream(over_flight.getvalue()).read_all()
    same(downloaded, expected)  # one valid Arrow IPC stream
    assert result.rows == expected.num_rows and result.bytes_written == len(over_flight.getvalue())
    assert downloaded.equals(pa.ipc.open_stream(over_grpc.getvalue()).read_all())  # the same file as ExportService's
    nothing = pa.ipc.open_stream(empty.getvalue()).read_all()
    assert nothing.num_rows == 0 and nothing.schema.names == COLUMNS
