"""The resumable export consumer against a server that follows the export contract over real PostgreSQL
rows and breaks its streams on purpose (scripted statuses, a cut TCP connection, a restarted server)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from harness.fakes import EXPORT_COLUMNS, ContractExport, export_factory
from harness.flakyproxy import FlakyProxy
from harness.servers import in_process
from rentscout.devstack.instances import free_port
from rentscout.sdk import (
    ExportClient,
    ExportIntegrityError,
    InvalidArgumentError,
    RetryPolicy,
    SyncExportClient,
    UnavailableError,
    export_request,
)
from rentscout.sdk.breaker import CircuitState
from rentscout.sdk.channel import ChannelConfig
from rentscout.sdk.formats import parse_rows
from rentscout.sdk.invoker import default_breaker_config

CITY = "Moscow"
FAST_RESUME = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05)
FAST_CHANNEL = ChannelConfig(initial_reconnect_backoff=0.05, max_reconnect_backoff=0.3)


@pytest.fixture
async def city_rows(pg_conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = [
        dict(r)
        for r in await pg_conn.fetch(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM properties WHERE city = $1 ORDER BY id", CITY)
    ]
    assert len(rows) > 300, "the seeded table should hold a few hundred rows of the test city"
    return rows


def client(target: str, **kw: object) -> ExportClient:
    kw.setdefault("resume", FAST_RESUME)
    kw.setdefault("channel", FAST_CHANNEL)
    kw.setdefault("retry", RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05))
    return ExportClient(target, **kw)  # type: ignore[arg-type]


def file_rows(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.splitlines()]
    if fmt == "json":
        rows: list[dict[str, Any]] = json.loads(data)
        return rows
    reader = csv.reader(io.StringIO(data.decode(), newline=""))
    assert next(reader) == EXPORT_COLUMNS
    from rentscout.sdk.formats import CSV

    return parse_rows(CSV, data, EXPORT_COLUMNS)


def same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [r["id"] for r in got] == [r["id"] for r in expected]  # every row once, in order
    assert [(r["city"], r["price"], r["title"]) for r in got] == [(r["city"], r["price"], r["title"]) for r in expected]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
async def test_scripted_breaks_mid_stream_deliver_every_row_exactly_once(
    fmt: str, service_env: dict[str, str], city_rows: list[dict[str, Any]]
) -> None:
    holder: list[ContractExport] = []
    per_chunk = max(20, len(city_rows) // 12)
    request = export_request(fmt, cities=[CITY], rows_per_chunk=per_chunk)
    async with in_process([export_factory(holder)], service_env) as host, client(f"127.0.0.1:{host.port}") as c:
        server = holder[0]
        server.breaks = {
            0: (3, grpc.StatusCode.UNAVAILABLE),
            1: (2, grpc.StatusCode.INTERNAL),
            2: (0, grpc.StatusCode.UNAVAILABLE),
        }
        stream = c.export(request)
        rows = [row async for row in stream]
        same_rows(rows, city_rows)
        assert stream.resumes == 3 and server.streams == 4
        assert stream.summary is not None and stream.rows_received == len(city_rows)
        assert [r.resume_token != "" for r in server.requests] == [False, True, True, True]

        server.streams, server.requests = 0, []
        stream = c.export(request)
        data = b"".join([piece async for piece in stream.data()])
        same_rows(file_rows(fmt, data), city_rows)
        assert stream.resumes == 3


async def test_a_cut_tcp_connection_is_resumed(service_env: dict[str, str], city_rows: list[dict[str, Any]]) -> None:
    holder: list[ContractExport] = []
    async with (
        in_process([export_factory(holder)], service_env) as host,
        FlakyProxy(host.port, mode="forward") as proxy,
        client(proxy.target) as c,
    ):
        stream = c.export(export_request("jsonl", cities=[CITY], rows_per_chunk=50))
        ids = []
        async for chunk in stream.chunks():
            ids += [json.loads(line)["id"] for line in chunk.data.splitlines()]
            if len(ids) in (100, 250):  # cut the network twice, at chunk boundaries the client has seen
                proxy.cut()
        assert ids == [r["id"] for r in city_rows]
        assert stream.resumes >= 2 and proxy.cuts == 2
        # each cut was resumed by a new server stream; a resumed attempt may also meet the dying connection and
        # fail before it reaches the server (counted by the client, not seen by the server)
        assert 1 + proxy.cuts <= holder[0].streams <= 1 + stream.resumes


async def test_a_restarted_server_on_the_same_port_finishes_the_export(
    service_env: dict[str, str], city_rows: list[dict[str, Any]]
) -> None:
    port = free_port()
    holder: list[ContractExport] = []
    async with client(f"127.0.0.1:{port}") as c:
        stream = c.export(export_request("csv", cities=[CITY], rows_per_chunk=60))
        pieces = stream.data()
        async with in_process([export_factory(holder)], service_env, port=port, grace=0):
            holder[0].chunk_delay = 0.05  # so the stream is still open when the server stops
            got = [await anext(pieces), await anext(pieces)]
        # the server stopped with the stream open (no grace); a new one takes its port
        async with in_process([export_factory(holder)], service_env, port=port, grace=0.5):
            got += [piece async for piece in pieces]
        assert len(holder) == 2 and holder[1].streams == 1
        same_rows(file_rows("csv", b"".join(got)), city_rows)
        assert stream.resumes >= 1


async def test_an_export_waits_out_an_open_breaker_while_the_server_is_down(
    service_env: dict[str, str], city_rows: list[dict[str, Any]]
) -> None:
    port = free_port()
    holder: list[ContractExport] = []
    breaker = dataclasses.replace(default_breaker_config(), consecutive_failures=2, recovery_timeout=0.3, half_open_probes=1)
    resume = RetryPolicy(max_attempts=100, initial_delay=0.02, max_delay=0.1)
    async with client(f"127.0.0.1:{port}", breaker=breaker, resume=resume, reconnect_wait=0.2) as c:
        stream = c.export(export_request("jsonl", cities=[CITY], rows_per_chunk=60))
        pieces = stream.data()
        async with in_process([export_factory(holder)], service_env, port=port, grace=0):
            holder[0].chunk_delay = 0.05
            got = [await anext(pieces)]
        down, tripped = asyncio.Event(), asyncio.Event()
        c.breaker.add_listener(lambda change: tripped.set() if change.new is CircuitState.OPEN else None)

        async def come_back_later() -> None:
            await tripped.wait()  # the client noticed the outage and opened its breaker
            async with in_process([export_factory(holder)], service_env, port=port, grace=0.5):
                await down.wait()

        server = asyncio.create_task(come_back_later())
        try:
            got += [piece async for piece in pieces]
        finally:
            down.set()
            await server
        assert [json.loads(line)["id"] for line in b"".join(got).splitlines()] == [r["id"] for r in city_rows]
        assert c.breaker.state is CircuitState.CLOSED


async def test_a_server_contradicting_the_row_counts_is_an_integrity_error(
    service_env: dict[str, str], city_rows: list[dict[str, Any]]
) -> None:
    holder: list[ContractExport] = []
    async with in_process([export_factory(holder)], service_env) as host, client(f"127.0.0.1:{host.port}") as c:
        server = holder[0]
        server.breaks = {0: (2, grpc.StatusCode.UNAVAILABLE)}
        server.misreport_resumed_rows = 10  # would make the client read 10 rows twice
        stream = c.export(export_request("jsonl", cities=[CITY], rows_per_chunk=50))
        with pytest.raises(ExportIntegrityError, match="rows already sent"):
            async for _ in stream:
                pass
        assert stream.rows_received == 100  # what came before the contradiction, nothing after


async def test_bad_input_is_not_resumed_and_endless_breaks_give_up(service_env: dict[str, str]) -> None:
    holder: list[ContractExport] = []
    async with in_process([export_factory(holder)], service_env) as host, client(f"127.0.0.1:{host.port}", max_stall=30.0) as c:
        server = holder[0]
        server.breaks = dict.fromkeys(range(3), (0, grpc.StatusCode.INVALID_ARGUMENT))
        with pytest.raises(InvalidArgumentError):
            async for _ in c.export(export_request("jsonl", cities=[CITY])):
                pass
        assert server.streams == 1
        server.streams = 0
        server.breaks = dict.fromkeys(range(20), (0, grpc.StatusCode.UNAVAILABLE))
        changes: list[CircuitState] = []
        c.breaker.add_listener(lambda change: changes.append(change.new))
        with pytest.raises(UnavailableError) as info:
            async for _ in c.export(export_request("jsonl", cities=[CITY])):
                pass
        # Streams that deliver nothing are failures: five in a row open the breaker (as for unary calls),
        # and its 60 s recovery lies past the 30 s resume timeout, so the export gives up at once.
        assert server.streams == default_breaker_config().consecutive_failures
        assert changes == [CircuitState.OPEN]
        assert any("circuit breaker stays open" in n and "resume timeout (30s)" in n for n in info.value.__notes__)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
async def test_parallel_download_merges_partitions_into_one_valid_file(
    fmt: str, service_env: dict[str, str], city_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    holder: list[ContractExport] = []
    request = export_request(fmt, cities=[CITY], rows_per_chunk=40)
    async with in_process([export_factory(holder)], service_env) as host, client(f"127.0.0.1:{host.port}") as c:
        server = holder[0]
        server.breaks = {1: (1, grpc.StatusCode.UNAVAILABLE), 2: (2, grpc.StatusCode.UNAVAILABLE)}
        progress = []
        out = io.BytesIO()
        result = await c.download(
            request, out, parallel=3, progress=lambda p: progress.append((p.rows, p.partitions)), spool_dir=str(tmp_path)
        )
        same_rows(file_rows(fmt, out.getvalue()), city_rows)
        assert result.partitions == 3 and result.rows == len(city_rows) and result.resumes == 2
        assert result.bytes_written == len(out.getvalue())
        assert progress[-1] == (len(city_rows), 3)
        assert not await asyncio.to_thread(lambda: any(tmp_path.iterdir()))  # spool files are gone

        server.breaks, server.streams = {}, 0
        result = await c.download(request, parallel=3, split=lambda i: tmp_path / f"part-{i}.{fmt}")
        parts = [file_rows(fmt, data) for data in await asyncio.to_thread(lambda: [Path(f).read_bytes() for f in result.files])]
        assert len(parts) == 3 and all(parts)
        same_rows([r for part in parts for r in part], city_rows)


async def test_sync_export_client_iterates_rows(service_env: dict[str, str], city_rows: list[dict[str, Any]]) -> None:
    holder: list[ContractExport] = []
    async with in_process([export_factory(holder)], service_env) as host:
        holder[0].breaks = {0: (1, grpc.StatusCode.UNAVAILABLE)}

        def blocking() -> tuple[list[int], int]:
            with SyncExportClient(f"127.0.0.1:{host.port}", resume=FAST_RESUME) as sync_client:
                stream = sync_client.export(export_request("jsonl", cities=[CITY], rows_per_chunk=100))
                return [row["id"] for row in stream], stream.resumes

        ids, resumes = await asyncio.to_thread(blocking)
    assert ids == [r["id"] for r in city_rows] and resumes == 1


async def test_an_unreachable_target_fails_at_once_naming_it_and_is_not_resumed() -> None:
    target = f"127.0.0.1:{free_port()}"  # nothing listens there
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client(target, resume=RetryPolicy(max_attempts=1000, initial_delay=0.5, max_delay=10.0)) as c:
        stream = c.export(export_request("jsonl", cities=[CITY]))
        with pytest.raises(UnavailableError) as info:
            async for _ in stream:
                pass
    assert loop.time() - started < 20  # the client's retry policy (3 attempts), not the resume budget
    assert f"cannot start the export on {target}" in info.value.details
    assert "Connection refused" in info.value.details  # the first, telling cause
    assert any(note.startswith("gave up: 3 attempt(s)") for note in info.value.__notes__)
    assert stream.resumes == 0 and stream.header is None


async def test_once_started_resuming_is_bounded_by_the_stall_limit(
    service_env: dict[str, str], city_rows: list[dict[str, Any]]
) -> None:
    port = free_port()
    holder: list[ContractExport] = []
    resume = RetryPolicy(max_attempts=1000, initial_delay=0.05, max_delay=0.2)
    async with client(f"127.0.0.1:{port}", resume=resume, max_stall=1.5, reconnect_wait=0.2) as c:
        stream = c.export(export_request("jsonl", cities=[CITY], rows_per_chunk=60))
        chunks = stream.chunks()
        async with in_process([export_factory(holder)], service_env, port=port, grace=0):
            holder[0].chunk_delay = 0.05
            await anext(chunks)
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        with pytest.raises(UnavailableError) as info:  # the server never comes back
            async for _ in chunks:
                pass
        assert loop.time() - stopped < 30
        assert stream.resumes >= 1
        assert any("no progress for" in note and "resume timeout (1.5s)" in note for note in info.value.__notes__)
