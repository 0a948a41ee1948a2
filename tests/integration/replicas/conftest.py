"""A real streaming standby of the session's private PostgreSQL (pg_basebackup -R, its own port)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from harness.polling import eventually
from rentscout.devstack.instances import PostgresInstance


@pytest.fixture(scope="session")
async def standby(
    pg_instance: PostgresInstance, database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PostgresInstance]:
    """Started after the shared table is seeded, so it holds the same rows; destroyed at the end.

    It is handed out once it has replayed a commit: until then a standby's lag has no age to be measured
    from (pg_last_xact_replay_timestamp() is NULL), so the read router counts it as infinitely behind as
    soon as WAL waits unreplayed, which a test pausing replay to tell the nodes apart would trip."""
    replica = pg_instance.standby(tmp_path_factory.mktemp("standby"))
    replica.start()
    conn = await asyncpg.connect(replica.dsn)
    primary = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT pg_is_in_recovery()")
        async with primary.transaction():
            await primary.execute("SELECT pg_catalog.txid_current()")  # a transaction id, so a commit record

        async def replayed_a_commit() -> bool:
            return bool(await conn.fetchval("SELECT pg_catalog.pg_last_xact_replay_timestamp() IS NOT NULL"))

        await eventually(replayed_a_commit, timeout=30)
    finally:
        await primary.close()
        await conn.close()
    yield replica
    replica.destroy()
