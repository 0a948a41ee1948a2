"""Migrations and the seed generator on a real PostgreSQL."""

from __future__ import annotations

import contextlib

import asyncpg

from rentscout.db.migrate import available, migrate
from rentscout.db.seed import lines


async def test_migrations_are_idempotent_and_recorded(database: str, pg_conn: asyncpg.Connection) -> None:
    assert await migrate(database) == []  # the session fixture applied them already
    recorded = [r["name"] for r in await pg_conn.fetch("SELECT name FROM schema_migrations ORDER BY version")]
    assert recorded == [m.name for m in available()]
    columns = [
        r["column_name"]
        for r in await pg_conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'properties' ORDER BY ordinal_position"
        )
    ]
    assert columns[:4] == ["id", "source", "external_id", "title"]
    assert {"price", "views", "is_active", "created_at", "updated_at"} <= set(columns)


class _Rollback(Exception):
    pass


async def test_updated_at_is_touched_on_update(pg_conn: asyncpg.Connection) -> None:
    with contextlib.suppress(_Rollback):
        async with pg_conn.transaction():
            before = await pg_conn.fetchval("SELECT updated_at FROM properties WHERE id = 1")
            after = await pg_conn.fetchval("UPDATE properties SET views = views + 1 WHERE id = 1 RETURNING updated_at")
            assert after > before
            raise _Rollback  # leave the shared table as it was


async def test_seed_is_deterministic_by_id() -> None:
    whole = list(lines(42, 1, 25_000))
    middle = list(lines(42, 12_345, 100))
    assert middle == whole[12_344:12_444]
    assert list(lines(43, 1, 10)) != whole[:10]


async def test_seeded_data_is_realistic(pg_conn: asyncpg.Connection) -> None:
    cities = await pg_conn.fetch("SELECT city, count(*) AS n FROM properties GROUP BY city ORDER BY n DESC")
    assert len(cities) >= 15 and cities[0]["city"] == "Moscow"
    views = await pg_conn.fetchrow(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY views) AS p50, max(views) AS top FROM properties"
    )
    assert views is not None and views["top"] > 50 * views["p50"]  # heavy-tailed popularity
    assert await pg_conn.fetchval("SELECT count(DISTINCT property_type) FROM properties") == 6
