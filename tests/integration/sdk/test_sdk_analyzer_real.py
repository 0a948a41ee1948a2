"""The analyzer client and `rentscout analyze` against the real AnalyzerService over the shared table."""

from __future__ import annotations

import asyncio
import json

import pytest

from harness.servers import in_process
from rentscout.analyzer_service.service import create as analyzer_service
from rentscout.main import main as cli
from rentscout.sdk import AnalyzerClient, InvalidArgumentError

SQL = "SELECT id, price FROM properties WHERE city = $1 ORDER BY price DESC LIMIT 5"


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(cli, list(argv))


async def test_sdk_and_cli_against_the_analyzer(service_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    async with in_process([analyzer_service], service_env, label="analyzer") as host:
        target = f"127.0.0.1:{host.port}"
        async with AnalyzerClient(target, timeout=60) as client:
            reply = await client.analyze_query(SQL, ["Moscow"], analyze=True, buffers=True)
            assert reply.plan.node_type == "Limit" and reply.execution_time_ms > 0 and reply.actual_rows == 5
            with pytest.raises(InvalidArgumentError) as info:
                await client.analyze_query("DELETE FROM properties")
            assert info.value.violations and info.value.violations[0][0] == "sql"

        assert await run_cli("analyze", "explain", SQL, "--param", "Moscow", "--analyze", "--buffers", "--target", target) == 0
        out = capsys.readouterr().out
        assert "Limit" in out and "properties" in out and "ms self" in out and "shared buffers" in out
        assert await run_cli("analyze", "explain", "SELECT 1; SELECT 2", "--target", target, "--json") == 2
        assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]["status"] == "INVALID_ARGUMENT"
        assert await run_cli("analyze", "table", "properties", "--target", target) == 0
        assert "live rows" in capsys.readouterr().out
        assert await run_cli("analyze", "table", "properties; drop table x", "--target", target) == 2
        capsys.readouterr()
        assert await run_cli("analyze", "slow", "--limit", "5", "--target", target, "--json") == 0
        slow = json.loads(capsys.readouterr().out)
        assert slow["extension_version"] and len(slow.get("queries", [])) <= 5  # pg_stat_statements is preloaded
        assert (
            await run_cli("analyze", "indexes", "--sql", "SELECT * FROM properties WHERE lower(title) = 'x'", "--target", target)
            == 0
        )
        assert "method:" in capsys.readouterr().out
