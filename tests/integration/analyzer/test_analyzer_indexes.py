"""SuggestIndexes with HypoPG on the real planner, the statistics fallback, and index hygiene."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import pytest

from harness.analyzer import SCHEMA, Client, client_for, wait_for
from rentscout.analyzer.v1 import analyzer_pb2 as pb
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.wire.badrequest import bad_request_violations


async def no_hypopg_backends(conn: asyncpg.Connection) -> bool:
    none: bool = await conn.fetchval(
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'rentscout-analyzer-hypopg'"
    )
    return none


async def test_missing_index_is_suggested_and_validated_by_hypopg(
    client: Client, hypopg: bool, pg_conn: asyncpg.Connection
) -> None:
    sql = f"SELECT * FROM {SCHEMA}.events WHERE d = $1 ORDER BY id LIMIT 50"
    reply = await client("SuggestIndexes", pb.SuggestIndexesRequest(sql=sql))
    assert reply.hypopg_available and reply.method.startswith("hypopg")
    assert [list(s.columns) for s in reply.suggestions] == [["d"]]
    s = reply.suggestions[0]
    assert s.hypopg_validated and s.table == f"{SCHEMA}.events"
    assert 0 < s.cost_after <= s.cost_before / 2
    assert s.estimated_size_bytes > 8192
    assert s.create_statement.startswith("CREATE INDEX CONCURRENTLY ") and f'ON "{SCHEMA}"."events" ("d"' in s.create_statement
    assert "HypoPG" in s.reason and list(s.queries) == [sql]
    # nothing hypothetical survives: the dedicated connection is gone
    assert await wait_for(lambda: no_hypopg_backends(pg_conn), timeout=5)


async def test_an_existing_index_is_not_suggested(client: Client, hypopg: bool) -> None:
    reply = await client("SuggestIndexes", pb.SuggestIndexesRequest(sql=f"SELECT * FROM {SCHEMA}.events WHERE a = 7"))
    assert reply.hypopg_available
    assert not [s for s in reply.suggestions if list(s.columns)[:1] == ["a"]]


async def test_a_suggestion_once_created_is_no_longer_suggested(
    client: Client, hypopg: bool, pg_conn: asyncpg.Connection
) -> None:
    table = f"t_{uuid.uuid4().hex[:6]}"
    await pg_conn.execute(f"""
        CREATE TABLE {SCHEMA}.{table} (id int PRIMARY KEY, owner int, score int);
        INSERT INTO {SCHEMA}.{table} SELECT g, g % 2000, g % 7 FROM generate_series(1, 20000) g;
        ANALYZE {SCHEMA}.{table};""")
    sql = f"SELECT * FROM {SCHEMA}.{table} WHERE owner = $1 AND score = 3"
    first = await client("SuggestIndexes", pb.SuggestIndexesRequest(sql=sql))
    assert first.suggestions and first.suggestions[0].hypopg_validated
    assert first.suggestions[0].columns[0] == "owner"  # the more selective column leads
    await pg_conn.execute(first.suggestions[0].create_statement)  # the statement runs as given (CONCURRENTLY)
    await pg_conn.execute(f"ANALYZE {SCHEMA}.{table}")
    second = await client("SuggestIndexes", pb.SuggestIndexesRequest(sql=sql))
    assert not second.suggestions


async def _fresh_table(pg_conn: asyncpg.Connection) -> str:
    """owner: 2,000 values; tag: 1,000; serial: unique; score: 7. Only statements name it (none yet)."""
    table = f"{SCHEMA}.w_{uuid.uuid4().hex[:6]}"
    await pg_conn.execute(f"""
        CREATE TABLE {table} (id int PRIMARY KEY, owner int, tag int, serial int, score int);
        INSERT INTO {table} SELECT g, g % 2000, g % 1000, g, g % 7 FROM generate_series(1, 40000) g;
        ANALYZE {table};""")
    return table


async def test_table_mode_builds_candidates_from_the_recorded_workload(
    client: Client, hypopg: bool, pg_conn: asyncpg.Connection
) -> None:
    table = await _fresh_table(pg_conn)
    for value in range(30):  # the workload: owner often, tag a little; serial (as selective) never
        await pg_conn.fetch(f"SELECT * FROM {table} WHERE owner = $1", value)
    for value in range(3):
        await pg_conn.fetch(f"SELECT id FROM {table} WHERE tag = $1 AND score = 2", value)
    reply = await client("SuggestIndexes", pb.SuggestIndexesRequest(table=table))
    leading = [s.columns[0] for s in reply.suggestions]
    assert leading[:2] == ["owner", "tag"], [(list(s.columns), s.reason) for s in reply.suggestions]
    assert "serial" not in leading and "score" not in leading  # no statement filters them alone
    first = reply.suggestions[0]
    assert first.hypopg_validated and first.cost_after < first.cost_before
    assert any("WHERE owner = $1" in q for q in first.queries)
    assert "recorded statement" in first.reason and "save planner cost" in first.reason


async def test_table_mode_without_workload_falls_back_to_statistics_unvalidated(
    client: Client, hypopg: bool, pg_conn: asyncpg.Connection
) -> None:
    table = await _fresh_table(pg_conn)
    reply = await client("SuggestIndexes", pb.SuggestIndexesRequest(table=table, limit=3))
    cols = [list(s.columns) for s in reply.suggestions]
    # most selective first; id has its primary key, score too few distinct values
    assert cols == [["serial"], ["owner"], ["tag"]], cols
    assert not any(s.hypopg_validated for s in reply.suggestions) and not reply.suggestions[0].queries
    assert all("not validated" in s.reason and "column statistics" in s.reason for s in reply.suggestions)


async def test_suggestions_from_slow_queries(analyzer_server, hypopg: bool, pg_conn: asyncpg.Connection) -> None:
    for value in range(15):
        await pg_conn.fetch(f"SELECT * FROM {SCHEMA}.events WHERE c = $1 AND kind = 'k1'", value)
    async with analyzer_server(settings=AnalyzerSettings(slow_query_sample=500)) as host, client_for(host) as c:
        reply = await c("SuggestIndexes", pb.SuggestIndexesRequest(from_slow_queries=True, limit=100))
    mine = [s for s in reply.suggestions if s.table == f"{SCHEMA}.events" and s.columns[0] == "c"]
    assert mine and mine[0].hypopg_validated
    assert any("WHERE c = $1" in q for q in mine[0].queries)


async def test_without_hypopg_the_heuristic_says_so(analyzer_server, pg_conn: asyncpg.Connection, database: str) -> None:
    name = f"analyzer_nohypo_{uuid.uuid4().hex[:6]}"
    await pg_conn.execute(f"CREATE DATABASE {name}")
    try:
        other = await asyncpg.connect(database.rsplit("/", 1)[0] + f"/{name}")
        try:
            await other.execute("""
                CREATE TABLE items (id int PRIMARY KEY, sku int, color int);
                INSERT INTO items SELECT g, g, g % 3 FROM generate_series(1, 20000) g;
                ANALYZE items;
                GRANT SELECT ON items TO rentscout_explain;""")
        finally:
            await other.close()
        async with analyzer_server(database=database.rsplit("/", 1)[0] + f"/{name}") as host, client_for(host) as c:
            reply = await c("SuggestIndexes", pb.SuggestIndexesRequest(sql="SELECT * FROM items WHERE sku = $1"))
            low = await c("SuggestIndexes", pb.SuggestIndexesRequest(sql="SELECT * FROM items WHERE color = 1"))
        assert not reply.hypopg_available and reply.method.startswith("statistics heuristic")
        assert "CREATE EXTENSION hypopg" in reply.method
        s = reply.suggestions[0]
        assert list(s.columns) == ["sku"] and not s.hypopg_validated and s.cost_after == 0 and s.cost_before > 0
        assert s.estimated_size_bytes > 0 and "not validated" in s.reason
        assert not low.suggestions  # a third of the table per value: an index would not help
    finally:
        await pg_conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def test_index_hygiene(client: Client, pg_conn: asyncpg.Connection) -> None:
    table = f"h_{uuid.uuid4().hex[:6]}"
    await pg_conn.execute(f"""
        CREATE TABLE {SCHEMA}.{table} (id int PRIMARY KEY, x int, y int, z int);
        INSERT INTO {SCHEMA}.{table} SELECT g, g % 10, g, g FROM generate_series(1, 1000) g;
        CREATE INDEX {table}_x ON {SCHEMA}.{table} (x);
        CREATE INDEX {table}_x_y ON {SCHEMA}.{table} (x, y);
        CREATE INDEX {table}_z ON {SCHEMA}.{table} (z);""")
    with pytest.raises(asyncpg.UniqueViolationError):  # leaves an INVALID index behind, as in production
        await pg_conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {table}_bad ON {SCHEMA}.{table} (x)")
    await pg_conn.fetch(f"SELECT * FROM {SCHEMA}.{table} WHERE x = 1 AND y = 1")
    await asyncio.sleep(0)
    reply = await client("SuggestIndexes", pb.SuggestIndexesRequest(table=f"{SCHEMA}.{table}"))
    issues = {(pb.IndexIssueKind.Name(i.kind), i.index_name) for i in reply.index_issues}
    assert ("INDEX_ISSUE_KIND_DUPLICATE", f"{SCHEMA}.{table}_x") in issues
    assert ("INDEX_ISSUE_KIND_INVALID", f"{SCHEMA}.{table}_bad") in issues
    assert ("INDEX_ISSUE_KIND_UNUSED", f"{SCHEMA}.{table}_z") in issues
    assert not [i for i in issues if i[1] == f"{SCHEMA}.{table}_pkey"]
    dup = next(i for i in reply.index_issues if i.index_name == f"{SCHEMA}.{table}_x" and i.kind == pb.INDEX_ISSUE_KIND_DUPLICATE)
    assert f"{table}_x_y" in dup.detail and dup.definition.startswith("CREATE INDEX") and dup.size_bytes > 0


async def test_bad_requests(client: Client) -> None:
    for request, field in (
        (pb.SuggestIndexesRequest(), "source"),
        (pb.SuggestIndexesRequest(from_slow_queries=False), "from_slow_queries"),
        (pb.SuggestIndexesRequest(table="properties", limit=101), "limit"),
        (pb.SuggestIndexesRequest(sql="SELECT nope FROM properties"), "sql"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client("SuggestIndexes", request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in [f for f, _ in bad_request_violations(err.value.trailing_metadata())], err.value.details()
