"""The client side of the CLI (`rentscout export|cache|analyze`) against servers run by the shared runtime."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import grpc
import pytest

from harness.fakes import (
    ANALYZER_SERVICE,
    EXPORT_COLUMNS,
    CannedAnalyzer,
    ContractExport,
    ScriptedCache,
    export_factory,
    factory,
)
from harness.servers import in_process
from rentscout.analyzer.v1 import analyzer_pb2_grpc
from rentscout.devstack.instances import free_port
from rentscout.main import main as cli

CITY = "Moscow"


async def run_cli(*argv: str) -> int:
    """The CLI runs its own event loop, so it runs in a thread while this loop serves."""
    return await asyncio.to_thread(cli, list(argv))


@pytest.fixture
async def city_ids(pg_conn: asyncpg.Connection) -> list[int]:
    return [r["id"] for r in await pg_conn.fetch("SELECT id FROM properties WHERE city = $1 ORDER BY id", CITY)]


async def read_bytes(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)


async def test_export_to_a_file_resumes_and_reports_json(
    service_env: dict[str, str], city_ids: list[int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder: list[ContractExport] = []
    out = tmp_path / "moscow.jsonl"
    async with in_process([export_factory(holder)], service_env) as host:
        holder[0].breaks = {0: (2, grpc.StatusCode.UNAVAILABLE)}
        code = await run_cli(
            "export",
            "--format",
            "jsonl",
            "--city",
            CITY,
            "-o",
            str(out),
            "--rows-per-chunk",
            "100",
            "--target",
            f"127.0.0.1:{host.port}",
            "--json",
            "--no-progress",
        )
    assert code == 0
    assert [json.loads(line)["id"] for line in (await read_bytes(out)).splitlines()] == city_ids
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == len(city_ids) and summary["resumes"] == 1 and summary["files"] == [str(out)]
    assert not (tmp_path / "moscow.jsonl.partial").exists()


async def test_parallel_export_single_file_and_split(service_env: dict[str, str], city_ids: list[int], tmp_path: Path) -> None:
    holder: list[ContractExport] = []
    async with in_process([export_factory(holder)], service_env) as host:
        target = f"127.0.0.1:{host.port}"
        out = tmp_path / "all.json"
        assert (
            await run_cli(
                "export",
                "--format",
                "json",
                "--city",
                CITY,
                "-o",
                str(out),
                "--parallel",
                "3",
                "--target",
                target,
                "--no-progress",
            )
            == 0
        )
        assert [r["id"] for r in json.loads(await read_bytes(out))] == city_ids
        assert (
            await run_cli(
                "export",
                "--format",
                "csv",
                "--city",
                CITY,
                "-o",
                str(tmp_path / "p.csv"),
                "--parallel",
                "3",
                "--split",
                "--target",
                target,
                "--no-progress",
            )
            == 0
        )
    parts = sorted(await asyncio.to_thread(lambda: list(tmp_path.glob("p.part-*.csv"))))
    assert [p.name for p in parts] == ["p.part-000.csv", "p.part-001.csv", "p.part-002.csv"]
    ids = []
    for part in parts:
        lines = (await read_bytes(part)).decode().splitlines()
        assert lines[0] == ",".join(EXPORT_COLUMNS)  # each part is a valid file on its own
        ids += [int(line.split(",", 1)[0]) for line in lines[1:]]
    assert ids == city_ids


async def test_export_to_stdout_keeps_progress_and_summary_on_stderr(service_env: dict[str, str], city_ids: list[int]) -> None:
    holder: list[ContractExport] = []
    async with in_process([export_factory(holder)], service_env) as host:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rentscout.main",
            "export",
            "--format",
            "csv",
            "--city",
            CITY,
            "-o",
            "-",
            "--target",
            f"127.0.0.1:{host.port}",
            "--progress",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "COLUMNS": "120"},
        )
        stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert lines[0] == ",".join(EXPORT_COLUMNS)
    assert [int(line.split(",", 1)[0]) for line in lines[1:]] == city_ids
    assert f"exported {len(city_ids):,} rows" in stderr.decode() and "-> stdout" in stderr.decode()


async def test_exit_codes_say_what_failed(service_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    servicer = ScriptedCache()
    servicer.delay = 5.0
    async with in_process([factory(servicer)], service_env, auth_tokens="reader-token-1:reader") as host:
        target = ("--target", f"127.0.0.1:{host.port}")
        assert await run_cli("cache", "price-stats", "--city", CITY, *target, "--token", "reader-token-1") == 0
        assert "42" in capsys.readouterr().out
        os.environ["RENTSCOUT_TOKEN"] = "reader-token-1"
        try:
            assert await run_cli("cache", "cities", *target, "--json") == 2  # INVALID_ARGUMENT
            error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]
            assert error["status"] == "INVALID_ARGUMENT" and error["exit_code"] == 2
            assert error["violations"] == [{"field": "city", "description": "must not be empty"}]
            assert error["correlation_id"]
            assert await run_cli("cache", "types", *target, "--timeout", "0.5", "--retries", "0") == 5
            assert "DEADLINE_EXCEEDED" in capsys.readouterr().err
        finally:
            del os.environ["RENTSCOUT_TOKEN"]
        assert await run_cli("cache", "price-stats", "--city", CITY, *target, "--token", "not-a-token") == 4
        assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert await run_cli("cache", "stats", "--target", f"127.0.0.1:{free_port()}", "--retries", "1") == 3
    assert await run_cli("export", "--split", "-o", "x.jsonl") == 2


async def test_analyze_explain_prints_a_plan_tree_and_insights(
    service_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer = CannedAnalyzer()
    spec = factory(servicer, ANALYZER_SERVICE, analyzer_pb2_grpc.add_AnalyzerServiceServicer_to_server)
    async with in_process([spec], service_env) as host:
        target = ("--target", f"127.0.0.1:{host.port}")
        assert (
            await run_cli(
                "analyze",
                "explain",
                "SELECT * FROM properties WHERE city = $1 ORDER BY price",
                "--param",
                CITY,
                "--param",
                "42",
                "--param",
                "str:7",
                "--analyze",
                *target,
            )
            == 0
        )
        out = capsys.readouterr().out
        assert await run_cli("analyze", "table", "properties", *target) == 0
        table_out = capsys.readouterr().out
    request = servicer.requests[0]
    assert [p.WhichOneof("value") for p in request.params] == ["string_value", "int_value", "string_value"]
    assert request.analyze and not request.buffers
    sort_line = next(line for line in out.splitlines() if "Sort" in line)
    scan_line = next(line for line in out.splitlines() if "Seq Scan on properties" in line)
    assert out.index(sort_line) < out.index(scan_line) and scan_line.index("Seq") > sort_line.index("Sort")  # nested
    assert "off 121x" in out and "row estimate off by 121x" in out and "removed 18,550" in out
    assert "VACUUM (ANALYZE) properties" in table_out and "20.0%" in table_out
