"""The resumable consumer against the real ExportService: streams cut mid-way by the network and by a
killed server process are completed with every row exactly once, in every format, also in parallel."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from harness.export_server import SMALL_WINDOW
from harness.flakyproxy import FlakyProxy
from harness.servers import ServerProcess, in_process
from rentscout.export_service.service import create as export_service
from rentscout.main import main as cli
from rentscout.sdk import ExportClient, RetryPolicy, export_request
from rentscout.sdk.channel import ChannelConfig

COLUMNS = ["id", "city", "price", "rooms", "area", "is_active", "title"]
RESUME = RetryPolicy(max_attempts=20, initial_delay=0.05, max_delay=0.5)
# Small windows: a cut always leaves rows on the server (the table is far more than sockets and windows hold).
CHANNEL = ChannelConfig(initial_reconnect_backoff=0.1, max_reconnect_backoff=0.5, extra_options=SMALL_WINDOW)


@pytest.fixture
async def expected(pg_conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = [dict(r) for r in await pg_conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM properties ORDER BY id")]
    assert len(rows) >= 20_000
    return rows


def parse(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.splitlines()]
    if fmt == "json":
        rows: list[dict[str, Any]] = json.loads(data)
        return rows
    reader = csv.DictReader(io.StringIO(data.decode(), newline=""))
    assert reader.fieldnames == COLUMNS
    return [{**r, "id": int(r["id"]), "price": int(r["price"])} for r in reader]


def same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [r["id"] for r in got] == [r["id"] for r in expected]  # each row once, in key order
    assert [(r["city"], r["price"], r["title"]) for r in got] == [(r["city"], r["price"], r["title"]) for r in expected]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
async def test_a_stream_cut_by_the_network_is_completed_exactly_once(
    fmt: str, service_env: dict[str, str], expected: list[dict[str, Any]]
) -> None:
    request = export_request(fmt, columns=COLUMNS, rows_per_chunk=500)
    async with (
        in_process([export_service], service_env, label="export") as host,
        FlakyProxy(host.port, mode="forward") as proxy,
        ExportClient(proxy.target, resume=RESUME, channel=CHANNEL) as client,
    ):
        stream = client.export(request)
        pieces = []
        async for piece in stream.data():
            pieces.append(piece)
            if len(pieces) in (3, 6):  # the client has seen these chunks; whatever was in flight is lost
                proxy.cut()
        same(parse(fmt, b"".join(pieces)), expected)
        assert proxy.cuts == 2 and stream.resumes >= 2
        assert stream.summary is not None and stream.rows_received == len(expected)

        # rows() of a fresh stream, cut once more: also exactly once, and the cut did interrupt it (a resume)
        rows = []
        again = client.export(request)
        async for row in again:
            rows.append(row)
            if len(rows) == 2500:
                proxy.cut()
        if fmt != "csv":  # CSV values arrive as text (typed only for known numeric columns)
            same(rows, expected)
        assert [r["id"] for r in rows] == [r["id"] for r in expected]
        assert proxy.cuts == 3 and again.resumes >= 1  # rows all buffered before the cut would pass without one


async def test_a_killed_and_restarted_server_process_finishes_the_export(
    service_env: dict[str, str], expected: list[dict[str, Any]], tmp_path: Path
) -> None:
    server = ServerProcess("export", service_env, tmp_path)
    await asyncio.to_thread(server.start)
    try:
        async with ExportClient(server.target, resume=RESUME, channel=CHANNEL, reconnect_wait=30.0) as client:
            stream = client.export(export_request("jsonl", columns=COLUMNS, rows_per_chunk=500))
            pieces = []
            async for piece in stream.data():
                pieces.append(piece)
                if len(pieces) == 4:  # SIGKILL: no graceful shutdown, the connection just dies
                    server.signal(signal.SIGKILL)
                    await asyncio.to_thread(server.process.wait)
                    await asyncio.to_thread(server.start)  # same port, same token secret (from the database URL)
            same(parse("jsonl", b"".join(pieces)), expected)
            assert stream.resumes >= 1
            stats = await client.statistics()
            assert stats.exports_completed >= 1
    finally:
        await asyncio.to_thread(server.stop)
    records = server.log_records()
    assert any(r.get("correlation.id") == stream.correlation_id and r.get("export.resumed") for r in records)


@pytest.mark.parametrize("fmt", ["json", "csv"])
async def test_parallel_partitions_of_the_real_service_make_one_valid_file(
    fmt: str, service_env: dict[str, str], expected: list[dict[str, Any]], tmp_path: Path
) -> None:
    request = export_request(fmt, columns=COLUMNS, rows_per_chunk=500)
    async with (
        in_process([export_service], service_env, label="export") as host,
        FlakyProxy(host.port, mode="forward") as proxy,
        ExportClient(proxy.target, resume=RESUME, channel=CHANNEL) as client,
    ):
        out = io.BytesIO()
        cut_once: list[bool] = []

        def progress(state: object) -> None:
            if not cut_once and getattr(state, "rows", 0) >= 2000:
                cut_once.append(True)
                proxy.cut()  # every partition stream breaks at once

        result = await client.download(request, out, parallel=4, progress=progress, spool_dir=str(tmp_path))
        same(parse(fmt, out.getvalue()), expected)
        assert result.partitions == 4 and result.rows == len(expected) and result.resumes >= 1

        result = await client.download(request, parallel=3, split=lambda i: tmp_path / f"part-{i}.{fmt}")
        parts = [parse(fmt, data) for data in await asyncio.to_thread(lambda: [Path(f).read_bytes() for f in result.files])]
        assert len(parts) == 3 and all(parts)  # each partition is a valid file on its own
        same([row for part in parts for row in part], expected)


async def test_cli_export_against_the_real_service(
    service_env: dict[str, str], expected: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "moscow.json"
    async with in_process([export_service], service_env, label="export") as host:
        code = await asyncio.to_thread(
            cli,
            [
                "export",
                "--format",
                "json",
                "--columns",
                ",".join(COLUMNS),
                "--parallel",
                "2",
                "-o",
                str(out),
                "--target",
                f"127.0.0.1:{host.port}",
                "--json",
                "--no-progress",
            ],
        )
        assert code == 0
        bad = await asyncio.to_thread(
            cli,
            [
                "export",
                "--format",
                "json",
                "--columns",
                "id,nope",
                "-o",
                str(tmp_path / "x"),
                "--target",
                f"127.0.0.1:{host.port}",
                "--json",
                "--no-progress",
            ],
        )
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[0])
    assert summary["rows"] == len(expected) and summary["partitions"] == 2
    same(json.loads(await asyncio.to_thread(out.read_bytes)), expected)
    assert bad == 2 and "columns" in captured.err  # INVALID_ARGUMENT names the field
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
