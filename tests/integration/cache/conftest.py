"""Fixtures shared by the cache integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from harness.cache_server import OwnRows


@pytest.fixture
async def own_rows(database: str) -> AsyncIterator[OwnRows]:
    """Rows a test inserts into the shared table, deleted afterwards."""
    conn = await asyncpg.connect(database)
    rows = OwnRows(conn)
    try:
        yield rows
    finally:
        await rows.delete_all()
        await conn.close()
