"""Helpers for tests against a streaming standby (the `standby` fixture in tests/integration/replicas)."""

from __future__ import annotations

import asyncpg

from harness.polling import eventually
from rentscout.devstack.instances import PostgresInstance


async def replayed(primary: asyncpg.Connection, replica: PostgresInstance) -> None:
    """Wait until the standby has replayed everything the primary wrote so far."""
    target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")  # with synchronous_commit off too
    conn = await asyncpg.connect(replica.dsn)
    try:

        async def caught_up() -> bool:
            return bool(await conn.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target))

        await eventually(caught_up, timeout=30)
    finally:
        await conn.close()
