"""Stalled consumers lose their slot: one reader token opens 8 whole-table exports (no deadline), reads the
first chunk and stops reading. After RENTSCOUT_EXPORT_STALL_TIMEOUT_SECONDS the server ends each with ABORTED:
the slots and database connections are free at once (a new export completes), the runs are recorded as
abandoned, and when the readers come back the SDK resumes each from its last token, every row exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from harness.export_server import SMALL_WINDOW
from harness.polling import eventually
from harness.secrets import READER_TOKEN
from harness.servers import ServerProcess
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.sdk import ExportClient, export_request
from rentscout.sdk.channel import ChannelConfig

STALLED = 8
STALL_SECONDS = 2


async def one_more_export(target: str) -> str:
    """A new whole export through a plain stub: its status code."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = export_pb2_grpc.ExportServiceStub(channel).ExportProperties(
            export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_JSONL),
            metadata=[("authorization", f"Bearer {READER_TOKEN}")],
            timeout=60,
        )
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"


async def test_eight_stalled_exports_free_their_slots_and_resume(
    secured_env: dict[str, str], tmp_path: Path, pg_conn: asyncpg.Connection
) -> None:
    env = {
        **secured_env,
        "RENTSCOUT_EXPORT_MAX_CONCURRENT": str(STALLED),
        "RENTSCOUT_EXPORT_STALL_TIMEOUT_SECONDS": str(STALL_SECONDS),
    }
    server = ServerProcess("export", env, tmp_path).start()
    expected = [r["id"] for r in await pg_conn.fetch("SELECT id FROM properties ORDER BY id")]
    try:
        async with ExportClient(
            server.target, token=READER_TOKEN, reconnect_wait=30.0, channel=ChannelConfig(extra_options=SMALL_WINDOW)
        ) as client:
            streams = [client.export(export_request("jsonl", rows_per_chunk=200)) for _ in range(STALLED)]
            readers: list[Any] = [s.rows().__aiter__() for s in streams]
            firsts = [await r.__anext__() for r in readers]  # every slot taken; then nobody reads
            assert len(firsts) == STALLED
            # while they stall, new exports are refused; once the bound passes, one completes
            assert await eventually_ok(server.target)

            async def abandoned() -> bool:
                count: int = await pg_conn.fetchval(
                    "SELECT count(*) FROM export_runs WHERE replica LIKE '%:' || $1 AND status = 'abandoned' "
                    "AND error_code = 'ABORTED'",
                    str(server.proc.pid if server.proc else 0),
                )
                return count == STALLED

            await eventually(abandoned)
            copying = await pg_conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rentscout-export' AND state <> 'idle'"
            )
            assert copying == 0  # every connection is back in the pool

            async def finish(reader: Any, first: dict[str, Any]) -> list[int]:
                return [first["id"]] + [row["id"] async for row in reader]

            results = await asyncio.gather(*(finish(r, f) for r, f in zip(readers, firsts, strict=True)))
            for stream, ids in zip(streams, results, strict=True):
                assert ids == expected  # every row exactly once
                assert stream.resumes >= 1
        aborted = [
            r
            for r in server.log_records()
            if r.get("rpc.grpc.status_code") == "ABORTED" and "ExportProperties" in r.get("rpc.method", "")
        ]
        assert len(aborted) >= STALLED
        assert not any(r.get("rpc.grpc.status_code") in ("UNKNOWN", "INTERNAL") for r in server.log_records())
    finally:
        server.stop()


async def eventually_ok(target: str, attempts: int = 60) -> bool:
    """A new export completes within `attempts` tries; until then it is refused with RESOURCE_EXHAUSTED only."""
    for _ in range(attempts):
        code = await one_more_export(target)
        if code == "OK":
            return True
        assert code == "RESOURCE_EXHAUSTED", code
        await asyncio.sleep(0.5)
    return False
