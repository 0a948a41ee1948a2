"""Resume with nothing configured: a fresh database (`rentscout db migrate`, no RENTSCOUT_EXPORT_TOKEN_SECRET),
the export server killed -9 mid-export and restarted 2 s later on the same port; the CLI, which was reading the
export to stdout, resumes with its token (signed with the key stored in PostgreSQL) and ends with every row
exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson

from harness.servers import ServerProcess
from rentscout.db.seed import seed
from rentscout.devstack.instances import PostgresInstance

ROWS = 100_000  # ~35 MB of JSON lines: far more than the socket buffers and HTTP/2 windows hold


def cli(*args: str, env: dict[str, str], **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "rentscout.main", *args], env={**os.environ, **env}, **kw)  # type: ignore[call-overload, no-any-return]


async def test_kill_9_mid_export_with_nothing_configured(service_env: dict[str, str], tmp_path: Path) -> None:
    pg = await asyncio.to_thread(lambda: PostgresInstance(tmp_path / "pg").start())
    try:
        env = {k: v for k, v in service_env.items() if k != "RENTSCOUT_EXPORT_TOKEN_SECRET"}
        env["RENTSCOUT_DATABASE_URL"] = pg.dsn
        migrated = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "rentscout.main", "db", "migrate"],
            env={**os.environ, **env},
            capture_output=True,
            timeout=120,
        )
        assert migrated.returncode == 0, migrated.stderr
        await seed(pg.dsn, ROWS)
        server = ServerProcess("export", env, tmp_path / "first").start()
        replacement = ServerProcess("export", env, tmp_path / "second", port=server.port)
        reader = cli(
            "export",
            "--format",
            "jsonl",
            "-o",
            "-",
            "--rows-per-chunk",
            "200",
            "--no-progress",
            "--target",
            server.target,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert reader.stdout is not None
            head = reader.stdout.read(64 * 1024)  # the export is running; then stop reading: back-pressure
            assert head
            server.kill()  # SIGKILL mid-export
            await asyncio.sleep(2.0)
            replacement.start()
            rest, err = await asyncio.to_thread(reader.communicate, timeout=240)
            assert reader.returncode == 0, err.decode()[-2000:]
        finally:
            if reader.poll() is None:
                reader.kill()
            server.stop()
            replacement.stop()
        ids = [orjson.loads(line)["id"] for line in (head + rest).splitlines()]
        conn = await asyncpg.connect(pg.dsn)
        try:
            expected = [r["id"] for r in await conn.fetch("SELECT id FROM properties ORDER BY id")]
        finally:
            await conn.close()
        assert ids == expected  # every row exactly once, in order
        resumed = [r for r in replacement.log_records() if r.get("export.resumed") is True]
        assert resumed, "the export was not resumed on the restarted server"
        assert not any(
            "resume_token" in r.get("message", "") and "forged" in r.get("message", "") for r in replacement.log_records()
        )
    finally:
        await asyncio.to_thread(pg.destroy)
