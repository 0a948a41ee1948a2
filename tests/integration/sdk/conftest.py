"""Fixtures of the SDK's integration tests."""

from __future__ import annotations

import asyncpg
import pytest


@pytest.fixture
async def table_ids(pg_conn: asyncpg.Connection) -> list[int]:
    """Every id of the shared table in id order (at least 20,000: the exports through a cutting proxy need many cuts)."""
    ids = [r["id"] for r in await pg_conn.fetch("SELECT id FROM properties ORDER BY id")]
    assert len(ids) >= 20_000
    return ids
