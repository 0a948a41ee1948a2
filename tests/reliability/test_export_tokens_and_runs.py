"""Resume tokens are never signed with a key derivable from configuration (rotation keeps old tokens
valid), and the runs of a replica that died are closed as abandoned. Real export processes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from pathlib import Path

import asyncpg
import grpc

from harness.export_server import SMALL_WINDOW
from harness.polling import wait_until
from harness.servers import ServerProcess
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.export_service.tokens import ResumeState, TokenCodec

REQUEST = export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_JSONL, rows_per_chunk=100, limit=1000)


def first_token(target: str) -> str:
    with grpc.insecure_channel(target) as ch:
        stream = export_pb2_grpc.ExportServiceStub(ch).ExportProperties(REQUEST, timeout=30)
        for msg in stream:
            if msg.HasField("chunk"):
                stream.cancel()
                return msg.chunk.resume_token
    raise AssertionError("no chunk")


def resume(target: str, token: str) -> grpc.StatusCode:
    req = export_pb2.ExportPropertiesRequest()
    req.CopyFrom(REQUEST)
    req.resume_token = token
    with grpc.insecure_channel(target) as ch:
        try:
            list(export_pb2_grpc.ExportServiceStub(ch).ExportProperties(req, timeout=30))
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.INVALID_ARGUMENT or "resume_token" in (exc.details() or "")
            return exc.code()


def old_guessable_key(database_url: str) -> bytes:
    """How keys were derived when no secret was set: from the database URL, which callers may know."""
    return hashlib.sha256(b"rentscout-export-token-derived\0" + database_url.encode()).digest()


def test_tokens_signed_with_a_guessable_key_are_rejected(service_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in service_env.items() if k != "RENTSCOUT_EXPORT_TOKEN_SECRET"}
    one = ServerProcess("export", env, tmp_path / "one").start()
    two = ServerProcess("export", env, tmp_path / "two").start()
    try:
        token = first_token(one.target)
        fingerprint = base64.urlsafe_b64decode(token + "==")[2:18]  # all a forger lacks is the key
        forged = TokenCodec(old_guessable_key(env["RENTSCOUT_DATABASE_URL"])).encode(
            fingerprint, ResumeState(b"x" * 16, None, None, 0)
        )
        assert resume(one.target, forged) == grpc.StatusCode.INVALID_ARGUMENT
        assert resume(two.target, forged) == grpc.StatusCode.INVALID_ARGUMENT
        assert resume(one.target, token) == grpc.StatusCode.OK  # the replica resumes its own tokens
        assert resume(two.target, token) == grpc.StatusCode.OK  # and every other: the key is stored in PostgreSQL
        assert any("RENTSCOUT_EXPORT_TOKEN_SECRET is unset" in r.get("message", "") for r in one.log_records())
    finally:
        one.stop()
        two.stop()


def test_secret_rotation_keeps_old_tokens_resumable(service_env: dict[str, str], tmp_path: Path) -> None:
    before = ServerProcess("export", {**service_env, "RENTSCOUT_EXPORT_TOKEN_SECRET": "old-secret"}, tmp_path / "a").start()
    try:
        token = first_token(before.target)
    finally:
        before.stop()
    rotated = ServerProcess(
        "export",
        {**service_env, "RENTSCOUT_EXPORT_TOKEN_SECRET": "new-secret", "RENTSCOUT_EXPORT_TOKEN_SECRET_PREVIOUS": "old-secret"},
        tmp_path / "b",
    ).start()
    done = ServerProcess("export", {**service_env, "RENTSCOUT_EXPORT_TOKEN_SECRET": "new-secret"}, tmp_path / "c").start()
    try:
        assert resume(rotated.target, token) == grpc.StatusCode.OK
        fresh = first_token(rotated.target)
        assert resume(done.target, fresh) == grpc.StatusCode.OK  # new tokens need only the new secret
        assert resume(done.target, token) == grpc.StatusCode.INVALID_ARGUMENT  # previous secret dropped: old tokens too
    finally:
        rotated.stop()
        done.stop()


async def test_runs_of_a_dead_replica_are_closed_as_abandoned(
    service_env: dict[str, str], pg_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    env = {**service_env, "RENTSCOUT_EXPORT_HEARTBEAT_SECONDS": "0.2"}
    since = await pg_conn.fetchval("SELECT clock_timestamp()")
    doomed = ServerProcess("export", env, tmp_path / "doomed").start()
    survivor: ServerProcess | None = None
    try:
        with grpc.insecure_channel(doomed.target, options=SMALL_WINDOW) as ch:  # the unread export stays running
            stream = export_pb2_grpc.ExportServiceStub(ch).ExportProperties(
                export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_CSV, rows_per_chunk=10), timeout=60
            )
            assert next(stream).HasField("header") and next(stream).HasField("chunk")

            async def beating() -> bool:
                return bool(
                    await pg_conn.fetchval(
                        "SELECT count(*) FROM export_runs WHERE started_at >= $1 AND status = 'running' AND rows > 0", since
                    )
                )

            end = time.monotonic() + 20
            while not await beating():  # the doomed replica recorded some progress
                assert time.monotonic() < end, f"no heartbeat progress recorded:\n{doomed.log_text()[-3000:]}"
                await asyncio.sleep(0.1)
            doomed.kill()  # SIGKILL: its run can never be closed by itself
        run = await pg_conn.fetchrow("SELECT run_id, replica FROM export_runs WHERE started_at >= $1", since)
        assert run is not None
        survivor = await asyncio.to_thread(lambda: ServerProcess("export", env, tmp_path / "survivor").start())

        async def closed() -> asyncpg.Record | None:
            return await pg_conn.fetchrow(
                "SELECT status, ended_at = heartbeat_at AS at_last_beat, rows, error_code "
                "FROM export_runs WHERE run_id = $1 AND status <> 'running'",
                run["run_id"],
            )

        end = time.monotonic() + 30
        while (row := await closed()) is None:
            assert time.monotonic() < end, "the dead replica's run is still running"
            await asyncio.sleep(0.1)
        assert row["status"] == "abandoned" and row["at_last_beat"] and row["rows"] > 0 and row["error_code"] == "ABANDONED"
        with grpc.insecure_channel(survivor.target) as ch:
            stats_req = export_pb2.GetExportStatisticsRequest()
            stats_req.since.FromDatetime(since)
            stats = export_pb2_grpc.ExportServiceStub(ch).GetExportStatistics(stats_req, timeout=10)
        assert stats.exports_abandoned >= 1 and stats.exports_in_flight == 0 and stats.exports_failed == 0
        assert wait_until(lambda: any("abandoned" in r.get("message", "") for r in survivor.log_records()), 10)
    finally:
        doomed.kill()
        if survivor is not None:
            survivor.stop()
