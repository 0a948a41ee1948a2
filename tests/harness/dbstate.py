"""A fingerprint of what the data plane must never change (the rows, the schema, extensions, roles), and
what runs in PostgreSQL right now (deadline-cancellation checks that see the statement first)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from rentscout.devstack.instances import PostgresInstance

if TYPE_CHECKING:
    import asyncpg
    import grpc

CHECKSUM_SQL = """
SELECT (SELECT md5(string_agg(p::text, '|' ORDER BY id)) FROM properties p)
    || (SELECT count(*)::text FROM pg_class WHERE relnamespace = 'public'::regnamespace)
    || (SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension)
    || (SELECT count(*)::text FROM pg_roles)
"""


def data_fingerprint(pg: PostgresInstance) -> str:
    return pg.psql(CHECKSUM_SQL).strip()


async def running_statements(conn: asyncpg.Connection, marker: str) -> int:
    """Statements of other sessions running now whose text contains `marker`."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND strpos(query, $1) > 0 AND pid <> pg_backend_pid()",
            marker,
        )
    )


async def deadline_cancels_statement(
    call: Awaitable[object], conn: asyncpg.Connection, marker: str, settle: float = 15.0
) -> grpc.aio.AioRpcError:
    """Run `call` (whose deadline must outlast the statement's start), see the statement running in
    pg_stat_activity first, then see it gone after the call ended: a check that cannot pass vacuously.
    Returns the call's error (the caller checks its code)."""
    import asyncio

    import grpc

    task = asyncio.ensure_future(call)
    loop = asyncio.get_running_loop()
    end = loop.time() + settle
    while not await running_statements(conn, marker):
        assert not task.done(), "the call ended before its statement was ever seen running"
        assert loop.time() < end, "the statement never showed up in pg_stat_activity"
        await asyncio.sleep(0.02)
    try:
        await task
    except grpc.aio.AioRpcError as exc:
        error = exc
    else:
        raise AssertionError("the call succeeded")
    end = loop.time() + settle
    while await running_statements(conn, marker):
        assert loop.time() < end, "the statement kept running after the call's deadline"
        await asyncio.sleep(0.05)
    return error
