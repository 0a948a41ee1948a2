"""Export faults with real processes: the SDK consumer finishes with every row exactly once when the
export server is killed -9 and restarted, or PostgreSQL restarts, mid-stream; over the concurrency
limit the server says RESOURCE_EXHAUSTED and the SDK backs off until a slot frees."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import asyncpg
import grpc

from harness.export_server import SMALL_WINDOW
from harness.polling import eventually
from harness.servers import ServerProcess
from rentscout.db.migrate import migrate
from rentscout.db.seed import seed
from rentscout.devstack.instances import PostgresInstance
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.sdk import ExportClient, export_request

ROWS_SQL = "SELECT id, price, views, city FROM properties ORDER BY id"


def checksum(rows: list[tuple[int, int, int, str]]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


async def direct(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return checksum([tuple(r) for r in await conn.fetch(ROWS_SQL)])
    finally:
        await conn.close()


async def consume(target: str, fault, after_chunks: int = 8) -> tuple[str, int]:
    """Read the whole table as JSONL through the SDK; mid-stream, stop reading until `fault()` (in a thread)
    has happened. The rest of the table is more than the socket buffers hold, so the COPY is still running
    when the fault hits, whatever the machine's speed: the stream must be cut and resumed."""
    received: list[tuple[int, int, int, str]] = []
    async with ExportClient(target, reconnect_wait=30.0) as client:
        stream = client.export(export_request("jsonl", rows_per_chunk=250), timeout=120)
        chunks = 0
        async for row in stream:
            received.append((row["id"], row["price"], row["views"], row["city"]))
            if len(received) % 250 == 0:
                chunks += 1
                if chunks == after_chunks:
                    await asyncio.to_thread(fault)
        return checksum(received), stream.resumes


async def test_export_server_killed_and_restarted(service_env: dict[str, str], database: str, tmp_path: Path) -> None:
    server = ServerProcess("export", service_env, tmp_path / "first").start()
    replacement = ServerProcess("export", service_env, tmp_path / "second", port=server.port)

    def crash_and_restart() -> None:
        server.kill()  # SIGKILL: no graceful anything
        time.sleep(1.0)
        replacement.start()

    try:
        got, resumes = await consume(server.target, crash_and_restart)
    finally:
        server.stop()
        replacement.stop()
    assert resumes >= 1
    assert got == await direct(database)


async def test_postgres_restarted_mid_export(service_env: dict[str, str], tmp_path: Path) -> None:
    pg = await asyncio.to_thread(lambda: PostgresInstance(tmp_path / "pg").start())
    try:
        await migrate(pg.dsn)
        await seed(pg.dsn, 20_000)
        env = {**service_env, "RENTSCOUT_DATABASE_URL": pg.dsn}
        server = ServerProcess("export", env, tmp_path / "srv").start()

        def restart_postgres() -> None:
            pg.stop("immediate")
            time.sleep(1.0)
            pg.start()

        try:
            got, resumes = await consume(server.target, restart_postgres)
            assert server.process.poll() is None

            async def nothing_busy() -> bool:  # checked while the server runs: its connections are idle in its pool
                busy = await asyncio.to_thread(
                    pg.psql,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rentscout-export' AND state <> 'idle'",
                )
                return int(busy) == 0

            await eventually(nothing_busy)
        finally:
            server.stop()
        assert resumes >= 1
        assert got == await direct(pg.dsn)
    finally:
        await asyncio.to_thread(pg.destroy)


async def test_concurrency_limit_and_sdk_backoff(service_env: dict[str, str], database: str, tmp_path: Path) -> None:
    env = {**service_env, "RENTSCOUT_EXPORT_MAX_CONCURRENT": "2"}
    server = ServerProcess("export", env, tmp_path).start()
    request = export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_CSV, rows_per_chunk=100)
    release = threading.Event()
    try:
        with grpc.insecure_channel(server.target, options=SMALL_WINDOW) as ch:  # held exports stay running
            stub = export_pb2_grpc.ExportServiceStub(ch)
            held = [stub.ExportProperties(request, timeout=60) for _ in range(2)]
            for stream in held:
                next(stream)  # header: both slots are taken, and nobody reads further
            try:
                list(stub.ExportProperties(request, timeout=10))
                raise AssertionError("a third export was admitted over the limit of 2")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            def free_slots() -> None:
                release.wait(30)
                for stream in held:
                    stream.cancel()

            freer = threading.Thread(target=free_slots)
            freer.start()
            async with ExportClient(server.target) as client:
                stream = client.export(export_request("jsonl", limit=500), timeout=60, correlation_id="backoff-1")
                loop = asyncio.get_running_loop()
                loop.call_later(1.5, release.set)
                rows = [row async for row in stream]
            freer.join(30)
    finally:
        release.set()
        server.stop()
    assert len(rows) == 500
    codes = [
        r["rpc.grpc.status_code"]
        for r in server.log_records()
        if r.get("correlation.id") == "backoff-1" and r.get("event.dataset") == "rentscout.access"
    ]
    assert codes[0] == "RESOURCE_EXHAUSTED" and codes[-1] == "OK"  # refused, backed off, then served
