"""A real streaming standby of the session's private PostgreSQL (pg_basebackup -R, its own port)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from rentscout.devstack.instances import PostgresInstance


@pytest.fixture(scope="session")
async def standby(
    pg_instance: PostgresInstance, database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PostgresInstance]:
    """Started after the shared table is seeded, so it holds the same rows; destroyed at the end."""
    replica = pg_instance.standby(tmp_path_factory.mktemp("standby"))
    replica.start()
    conn = await asyncpg.connect(replica.dsn)
    try:
        assert await conn.fetchval("SELECT pg_is_in_recovery()")
    finally:
        await conn.close()
    yield replica
    replica.destroy()
