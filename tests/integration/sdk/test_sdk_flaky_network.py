"""Exports through a network that cuts them (harness.flakyproxy) against the real ExportService.

A proxy resetting every connection after a random few hundred KB (the issue's 1-4 MB scaled to the
20,000-row test table; bench/export_bench.py --flaky runs the 1M-row, 1-4 MB case): every reader (the CLI,
`export()`, `export_arrow()`, `download(parallel=N)`) gets every row exactly once, resumes many times, and the
target's breaker never opens, since each segment made progress. A proxy that accepts connections but never
forwards: the breaker opens as for any dead target, and the export fails within its resume timeout, saying so.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from pathlib import Path

import asyncpg
import pytest

from harness.breakers import watch
from harness.flakyproxy import FlakyProxy
from harness.servers import in_process
from rentscout.export_service.service import create as export_service
from rentscout.main import main as cli
from rentscout.resilience.breaker import CircuitState
from rentscout.sdk import ExportClient, UnavailableError, export_request
from rentscout.sdk.channel import ChannelConfig

# Chunks of ~50 KB: well under the proxy's reset window, so each connection can deliver whole chunks.
ROWS_PER_CHUNK = 200
RESETS = (128 * 1024, 512 * 1024)
FAST_CHANNEL = ChannelConfig(initial_reconnect_backoff=0.05, max_reconnect_backoff=0.3)
SESSIONS_SQL = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"


def exactly_once(got: list[int], table_ids: list[int]) -> None:
    assert len(got) == len(table_ids)
    assert set(got) == set(table_ids)


async def test_every_sdk_reader_gets_every_row_once_through_a_resetting_proxy(
    service_env: dict[str, str],
    table_ids: list[int],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    pg_conn: asyncpg.Connection,
) -> None:
    sessions_before = await pg_conn.fetchval(SESSIONS_SQL)
    async with (
        in_process([export_service], service_env, label="export") as host,
        FlakyProxy(host.port, reset_bytes=RESETS) as proxy,
        ExportClient(proxy.target, channel=FAST_CHANNEL) as client,
    ):
        changes = watch(proxy.target)

        stream = client.export(export_request("jsonl", rows_per_chunk=ROWS_PER_CHUNK))
        with caplog.at_level(logging.INFO, logger="rentscout.sdk.export"):
            exactly_once([row["id"] async for row in stream], table_ids)
        assert stream.resumes >= 5
        cuts = [r for r in caplog.records if r.name == "rentscout.sdk.export" and "stream broke" in r.getMessage()]
        assert len(cuts) == stream.resumes
        # cuts after progress are routine (info), and so is one empty attempt right after one (the dying connection)
        assert {r.levelno for r in cuts} == {logging.INFO}

        arrow = client.export_arrow(rows_per_chunk=ROWS_PER_CHUNK)
        ids: list[int] = []
        async for batch in arrow:
            ids += batch.column("id").to_pylist()
        exactly_once(ids, table_ids)
        assert arrow.stream.resumes >= 2

        out = io.BytesIO()
        result = await client.download(
            export_request("csv", columns=["id", "title", "address"], rows_per_chunk=ROWS_PER_CHUNK),
            out,
            parallel=3,
            spool_dir=str(tmp_path),
        )
        reader = csv.reader(io.StringIO(out.getvalue().decode(), newline=""))
        assert next(reader) == ["id", "title", "address"]
        exactly_once([int(r[0]) for r in reader], table_ids)
        assert result.partitions == 3 and result.resumes >= 3

        assert proxy.resets >= 5
        assert changes == [] and client.breaker.state is CircuitState.CLOSED
        # Each cut stops a COPY mid-flight; its connection goes back to the pool usable. The server's pool
        # opens connections for at most 3 streams at once and their bookkeeping, whatever the number of cuts
        # (when a cut left its connection mid-COPY, the pool closed it: 25 sessions for these 54 cuts).
        opened = await pg_conn.fetchval(SESSIONS_SQL) - sessions_before
        assert opened <= 12 < proxy.resets, f"{opened} PostgreSQL sessions opened for {proxy.resets} cuts"


async def test_a_link_cutting_before_a_whole_default_chunk_still_progresses(
    service_env: dict[str, str], table_ids: list[int]
) -> None:
    # The server's default chunks are 1 MiB and this proxy cuts every connection before 1 MiB went through:
    # the first segment delivers nothing, then resumed segments ask for smaller chunks and progress.
    async with (
        in_process([export_service], service_env, label="export") as host,
        FlakyProxy(host.port, reset_bytes=(600 * 1024, 1000 * 1024)) as proxy,
        ExportClient(proxy.target, channel=FAST_CHANNEL) as client,
    ):
        changes = watch(proxy.target)
        stream = client.export(export_request("csv"))
        ids = []
        async for chunk in stream.chunks():
            ids += [int(line.split(b",", 1)[0]) for line in chunk.data.splitlines() if line[:1].isdigit()]
            assert len(chunk.data) <= 300 * 1024 or stream.resumes == 0
        exactly_once(ids, table_ids)
        assert stream.resumes >= 3 and proxy.resets >= 3
        assert changes == []


async def test_the_cli_exports_every_row_once_through_a_resetting_proxy(
    service_env: dict[str, str], table_ids: list[int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.csv"
    async with (
        in_process([export_service], service_env, label="export") as host,
        FlakyProxy(host.port, reset_bytes=RESETS) as proxy,
    ):
        changes = watch(proxy.target)
        code = await asyncio.to_thread(
            cli,
            [
                "export",
                "--format",
                "csv",
                "-o",
                str(out),
                "--rows-per-chunk",
                str(ROWS_PER_CHUNK),
                "--target",
                proxy.target,
                "--json",
                "--no-progress",
                "--resume-timeout",
                "60",
            ],
        )
        assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    lines = (await asyncio.to_thread(out.read_text)).splitlines()
    exactly_once([int(line.split(",", 1)[0]) for line in lines[1:]], table_ids)
    assert summary["rows"] == len(table_ids)
    assert summary["resumes"] >= 5 and proxy.resets >= 5
    assert changes == []


async def test_a_proxy_that_never_forwards_opens_the_breaker_and_the_export_gives_up(service_env: dict[str, str]) -> None:
    async with (
        in_process([export_service], service_env, label="export") as host,
        FlakyProxy(host.port, reset_bytes=(256 * 1024, 256 * 1024), blackhole_after=1) as proxy,
        ExportClient(proxy.target, channel=FAST_CHANNEL, max_stall=30.0) as client,
    ):
        changes = watch(proxy.target)
        stream = client.export(export_request("jsonl", rows_per_chunk=ROWS_PER_CHUNK))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(UnavailableError) as info:
            async for _ in stream:
                pass
        elapsed = loop.time() - started
    assert stream.rows_received > 0  # the first connection delivered, then was reset
    assert proxy.blackholed >= 5
    assert [c.new for c in changes] == [CircuitState.OPEN]  # five connection attempts failed, as for a dead target
    notes = "\n".join(info.value.__notes__)
    assert "circuit breaker stays open" in notes and "resume timeout (30s)" in notes
    assert elapsed < 30 + 10  # within the resume timeout (plus slack for one connection attempt)


async def test_the_cli_fails_within_its_resume_timeout_when_the_proxy_never_forwards(
    service_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.jsonl"
    async with (
        in_process([export_service], service_env, label="export") as host,
        FlakyProxy(host.port, reset_bytes=(256 * 1024, 256 * 1024), blackhole_after=1) as proxy,
    ):
        changes = watch(proxy.target)
        code = await asyncio.to_thread(
            cli,
            [
                "export",
                "--format",
                "jsonl",
                "-o",
                str(out),
                "--rows-per-chunk",
                str(ROWS_PER_CHUNK),
                "--target",
                proxy.target,
                "--no-progress",
                "--resume-timeout",
                "60",
            ],
        )
    err = capsys.readouterr().err
    assert code == 3, err  # UNAVAILABLE
    assert "error: UNAVAILABLE" in err and "export stopped after" in err and "resume timeout (60s)" in err
    assert [c.new for c in changes] == [CircuitState.OPEN]
    assert not out.exists() and not (tmp_path / "all.jsonl.partial").exists()
