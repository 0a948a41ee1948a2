"""GetTableStats on real tables: sizes, dead rows after mass deletes, bloat (estimate and
pgstattuple_approx), maintenance history and recommendations with their floors."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from harness.analyzer import SCHEMA, Client, client_for, wait_for
from rentscout.analyzer.v1 import analyzer_pb2 as pb
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.common.v1 import common_pb2

A = pb.RecommendationAction


def actions(reply: pb.GetTableStatsResponse) -> dict[str, int]:
    return {A.Name(r.action).removeprefix("RECOMMENDATION_ACTION_"): r.severity for r in reply.recommendations}


async def flush(conn: asyncpg.Connection) -> None:
    """Make this session's table statistics visible to others now (they are flushed lazily)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT 1")


async def test_shared_table_figures(client: Client) -> None:
    reply = await client("GetTableStats", pb.GetTableStatsRequest(table="properties"))
    assert reply.table == "public.properties"
    assert reply.table_bytes > 0 and reply.index_bytes > 0
    assert reply.total_bytes >= reply.table_bytes + reply.index_bytes + reply.toast_bytes
    assert reply.bloat_method == pb.BLOAT_METHOD_ESTIMATE and 0 <= reply.bloat_ratio < 1
    assert reply.HasField("last_analyze") or reply.HasField("last_autoanalyze")


async def test_mass_delete_vacuum_and_rewrite(analyzer_server, pg_conn: asyncpg.Connection) -> None:
    table = f"{SCHEMA}.bloat_{uuid.uuid4().hex[:6]}"
    await pg_conn.execute(f"""
        CREATE TABLE {table} (id int PRIMARY KEY, body text NOT NULL) WITH (autovacuum_enabled = false);
        INSERT INTO {table} SELECT g, md5(g::text) || md5((-g)::text) FROM generate_series(1, 40000) g;
        ANALYZE {table};""")
    await pg_conn.execute(f"DELETE FROM {table} WHERE id % 10 <> 0")  # every page keeps a row: nothing to truncate
    await flush(pg_conn)
    settings = AnalyzerSettings(rewrite_min_bloat_bytes=1024 * 1024)
    async with analyzer_server(settings=settings) as host, client_for(host) as c:

        async def stats(exact: bool = False) -> pb.GetTableStatsResponse:
            reply: pb.GetTableStatsResponse = await c("GetTableStats", pb.GetTableStatsRequest(table=table, exact_bloat=exact))
            return reply

        async def deleted() -> pb.GetTableStatsResponse | None:
            reply = await stats()
            return reply if reply.dead_rows >= 36000 else None

        after_delete = await wait_for(deleted)
        assert after_delete is not None, "the deletes never showed up in pg_stat_all_tables"
        assert after_delete.dead_ratio >= 0.85 and after_delete.modifications_since_analyze >= 36000
        assert actions(after_delete)["VACUUM"] == common_pb2.SEVERITY_CRITICAL
        assert "ANALYZE" in actions(after_delete)
        vacuum = next(r for r in after_delete.recommendations if r.action == A.RECOMMENDATION_ACTION_VACUUM)
        assert vacuum.statement == f'VACUUM (ANALYZE) "{SCHEMA}"."{table.split(".")[1]}";'
        exact = await stats(exact=True)
        assert exact.bloat_method == pb.BLOAT_METHOD_PGSTATTUPLE_APPROX and exact.bloat_ratio > 0.7

        await pg_conn.execute(f"VACUUM {table}")
        await pg_conn.execute(f"ANALYZE {table}")
        await flush(pg_conn)
        vacuumed = await stats()
        assert vacuumed.dead_rows == 0 and vacuumed.HasField("last_vacuum") and vacuumed.HasField("last_analyze")
        assert vacuumed.live_rows == 4000
        assert vacuumed.bloat_method == pb.BLOAT_METHOD_ESTIMATE and vacuumed.bloat_ratio > 0.7
        assert vacuumed.bloat_bytes > 0.7 * vacuumed.table_bytes
        assert actions(vacuumed) == {"REWRITE": common_pb2.SEVERITY_CRITICAL}
        measured = await stats(exact=True)
        assert measured.bloat_method == pb.BLOAT_METHOD_PGSTATTUPLE_APPROX and measured.bloat_ratio > 0.7
        assert "REWRITE" in actions(measured)


async def test_small_tables_do_not_raise_alarms(client: Client, pg_conn: asyncpg.Connection) -> None:
    table = f"{SCHEMA}.tiny_{uuid.uuid4().hex[:6]}"
    await pg_conn.execute(f"""
        CREATE TABLE {table} (id int) WITH (autovacuum_enabled = false);
        INSERT INTO {table} SELECT generate_series(1, 100);
        ANALYZE {table};
        DELETE FROM {table} WHERE id <= 60;""")
    await flush(pg_conn)

    async def seen() -> pb.GetTableStatsResponse | None:
        reply = await client("GetTableStats", pb.GetTableStatsRequest(table=table))
        return reply if reply.dead_rows == 60 else None

    reply = await wait_for(seen)
    assert reply is not None and reply.dead_ratio == pytest.approx(0.6)
    assert not reply.recommendations


async def test_stale_statistics_ask_for_analyze(client: Client) -> None:
    reply = await client("GetTableStats", pb.GetTableStatsRequest(table=f"{SCHEMA}.stale"))
    assert reply.modifications_since_analyze >= 20000
    assert actions(reply).get("ANALYZE") == common_pb2.SEVERITY_CRITICAL
    rec = next(r for r in reply.recommendations if r.action == A.RECOMMENDATION_ACTION_ANALYZE)
    assert rec.statement == f'ANALYZE "{SCHEMA}"."stale";'
