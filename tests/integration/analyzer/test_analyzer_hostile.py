"""Hostile inputs: every rejection class, writes hidden in CTEs, functions, views and operators,
injection in table names, and leaking error text. Each is refused with a clear status and the
database is unchanged afterwards (rows, sequences, advisory locks, tables)."""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from harness.analyzer import SCHEMA, Client, client_for, db_state
from rentscout.analyzer.v1 import analyzer_pb2 as pb
from rentscout.analyzer_service import session
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.wire.badrequest import bad_request_violations

HOSTILE = [
    ("", "is empty"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    (f"SELECT 1; DELETE FROM {SCHEMA}.audit", "exactly one statement"),
    (f"DELETE FROM {SCHEMA}.audit", "DELETE modifies data"),
    (f"INSERT INTO {SCHEMA}.audit (note) VALUES ('x')", "INSERT modifies data"),
    (f"UPDATE {SCHEMA}.audit SET note = 'x'", "UPDATE modifies data"),
    (f"WITH d AS (DELETE FROM {SCHEMA}.audit RETURNING *) SELECT * FROM d", "data-modifying DELETE"),
    (f"WITH i AS (INSERT INTO {SCHEMA}.audit (note) VALUES ('cte') RETURNING id) SELECT * FROM i", "data-modifying INSERT"),
    (f"SELECT * INTO {SCHEMA}.stolen FROM {SCHEMA}.secrets", "SELECT INTO"),
    (f"CREATE TABLE {SCHEMA}.stolen AS SELECT * FROM {SCHEMA}.secrets", "CREATE TABLE AS"),
    (f"SELECT * FROM {SCHEMA}.audit FOR UPDATE", "FOR UPDATE"),
    (f"SELECT * FROM {SCHEMA}.audit FOR NO KEY UPDATE", "FOR NO KEY UPDATE"),
    (f"SELECT * FROM {SCHEMA}.audit FOR SHARE", "FOR SHARE"),
    (f"SELECT * FROM {SCHEMA}.audit FOR KEY SHARE", "FOR KEY SHARE"),
    (f"LOCK TABLE {SCHEMA}.audit", "LOCK"),
    ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN is added by the analyzer"),
    ("SELECT pg_sleep(30)", "pg_sleep"),
    ("SELECT pg_catalog.pg_sleep_for('30 seconds')", "pg_sleep_for"),
    ("SELECT id FROM properties ORDER BY pg_sleep(1) LIMIT 1", "pg_sleep"),
    ("SELECT pg_advisory_lock(4242)", "advisory lock"),
    ("SELECT pg_try_advisory_lock(4242)", "advisory lock"),
    ("SELECT pg_notify('channel', 'payload')", "notify"),
    ("SELECT pg_cancel_backend(pg_backend_pid())", "backend signal"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "backend signal"),
    ("SELECT * FROM dblink('dbname=rentscout', 'DELETE FROM analyzer_t.audit') AS t(x text)", "dblink"),
    ("SELECT pg_read_file('/etc/passwd')", "file access"),
    ("SELECT pg_ls_dir('.')", "file access"),
    ("SELECT lo_import('/etc/passwd')", "large object"),
    ("SELECT set_config('statement_timeout', '0', false)", "configuration"),
    (f"SELECT nextval('{SCHEMA}.counter')", "sequence"),
    ("SELECT txid_current()", "transaction id"),
    (f"SELECT query_to_xml('DELETE FROM {SCHEMA}.audit RETURNING 1', true, true, '')", "dynamic sql"),
    ("SELECT pg_reload_conf()", "configuration"),
    ("SELECT hypopg_create_index('CREATE INDEX ON properties (title)')", "hypothetical index"),
    # layer 2: the catalog
    (f"SELECT {SCHEMA}.sneaky_insert()", "volatile user-defined function"),
    (f"SELECT * FROM properties WHERE id = {SCHEMA}.sneaky_stable()", "plpgsql function outside pg_catalog"),
    (f"SELECT {SCHEMA}.sneaky_sql()", "sql function outside pg_catalog"),
    (f"SELECT {SCHEMA}.locker()", "sql function outside pg_catalog"),
    (f"SELECT * FROM {SCHEMA}.writer_view", "sneaky_insert"),
    (f"SELECT * FROM {SCHEMA}.view_of_view", "sneaky_insert"),
    (f"SELECT 1 WHERE 1 OPERATOR({SCHEMA}.===) 1", "op_writer"),
    ("SELECT pg_stat_force_next_flush()", "volatile built-in"),
    (f"SELECT {SCHEMA}.locking_sum(a) FROM {SCHEMA}.events", "lock_step"),  # an aggregate's transition function
    (f"SELECT * FROM {SCHEMA}.aggregate_view", "lock_step"),
    (f"SELECT 5::{SCHEMA}.checked_int", "checker"),  # a domain's CHECK constraint
    (f"SELECT CAST(5 AS {SCHEMA}.wrapped)", "wrap"),  # a user-defined cast function
]


@pytest.mark.parametrize(("sql", "why"), HOSTILE)
async def test_hostile_statements_are_refused_and_change_nothing(
    client: Client, pg_conn: asyncpg.Connection, sql: str, why: str
) -> None:
    before = await db_state(pg_conn)
    for analyze in (True, False):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=sql, analyze=analyze, buffers=analyze))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert why.lower() in (err.value.details() or "").lower(), err.value.details()
        assert [f for f, _ in bad_request_violations(err.value.trailing_metadata())] == ["sql"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client("SuggestIndexes", pb.SuggestIndexesRequest(sql=sql))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await db_state(pg_conn) == before


async def test_a_trusted_schema_still_cannot_write(analyzer_server, pg_conn: asyncpg.Connection) -> None:
    """Trusting the schema lets the STABLE plpgsql function run; PostgreSQL then refuses its INSERT."""
    before = await db_state(pg_conn)
    async with analyzer_server(settings=AnalyzerSettings(trusted_function_schemas=SCHEMA)) as host, client_for(host) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=f"SELECT {SCHEMA}.sneaky_stable()", analyze=True))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "SQLSTATE 0A000" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:  # volatile stays refused even when trusted
            await c("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=f"SELECT {SCHEMA}.sneaky_insert()", analyze=True))
        assert "volatile" in (err.value.details() or "")
        reply = await c("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=f"SELECT {SCHEMA}.sneaky_sql()", analyze=True))
        assert reply.actual_rows == 1
    assert await db_state(pg_conn) == before


async def test_the_read_only_transaction_is_the_last_line(pg_conn: asyncpg.Connection) -> None:
    """Whatever got past the checks, a write inside the analysis transaction fails and is rolled back."""
    before = await db_state(pg_conn)
    conn = pg_conn
    settings = AnalyzerSettings(statement_timeout_ms=1000, lock_timeout_ms=100)
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        async with session.transaction(conn, settings, read_only=True):
            await conn.execute(f"INSERT INTO {SCHEMA}.audit (note) VALUES ('written')")
    assert not conn.is_in_transaction()
    async with session.transaction(conn, settings, read_only=True):
        assert await conn.fetchval("SHOW transaction_read_only") == "on"
        assert await conn.fetchval("SHOW statement_timeout") == "1s"
        assert await conn.fetchval("SELECT current_user") == "rentscout_explain"
    assert await db_state(pg_conn) == before


async def test_safe_views_and_builtins_are_allowed(client: Client) -> None:
    reply = await client(
        "AnalyzeQuery",
        pb.AnalyzeQueryRequest(
            sql=f"SELECT kind, count(*), max(now()), min(random()) FROM {SCHEMA}.safe_view GROUP BY kind", analyze=True
        ),
    )
    assert reply.actual_rows == 5


async def test_error_text_that_could_quote_rows_is_not_echoed(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=f"SELECT card::int FROM {SCHEMA}.secrets", analyze=True))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "22P02" in (err.value.details() or "") and "secret" not in (err.value.details() or "")
    for method, request in (
        ("AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT nope FROM properties", analyze=True)),
        ("SuggestIndexes", pb.SuggestIndexesRequest(sql="SELECT nope FROM properties")),
        ("SuggestIndexes", pb.SuggestIndexesRequest(sql="SELECT nope FROM properties WHERE id = $1")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client(method, request)
        # the position is in the caller's statement, not in the EXPLAIN / PREPARE wrapped around it, and the
        # token quoted there is the caller's own text, never the database's message
        assert "undefined column (column) at position 8 near nope (SQLSTATE 42703)" in (err.value.details() or ""), (
            err.value.details()
        )
        assert "does not exist" not in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT * FORM properties"))
    assert "syntax error" in (err.value.details() or "") and "position 10" in (err.value.details() or "")


INJECTIONS = [
    "properties; DROP TABLE properties",
    "properties' OR '1'='1",
    'properties" --',
    "pg_sleep(10)",
    "(SELECT 1)",
    "a.b.c",
    "",
    "no_such_table",
    "no_such_schema.properties",
    "properties_pkey",
    f"{SCHEMA}.safe_view",
]


@pytest.mark.parametrize("name", INJECTIONS)
async def test_table_names_are_resolved_through_the_catalog(client: Client, pg_conn: asyncpg.Connection, name: str) -> None:
    before = await db_state(pg_conn)
    for method, request in (
        ("GetTableStats", pb.GetTableStatsRequest(table=name)),
        ("SuggestIndexes", pb.SuggestIndexesRequest(table=name)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client(method, request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert [f for f, _ in bad_request_violations(err.value.trailing_metadata())] == ["table"]
    assert await db_state(pg_conn) == before


async def test_quoted_identifiers_resolve(client: Client) -> None:
    reply = await client("GetTableStats", pb.GetTableStatsRequest(table=f'{SCHEMA}."Mixed Case"'))
    assert reply.table == f"{SCHEMA}.Mixed Case" and reply.table_bytes > 0


async def test_the_server_reads_strings_as_the_vetting_parser_did(analyzer_server) -> None:
    """pglast assumes standard_conforming_strings; a server set otherwise would split literals
    differently, so the analysis transaction pins it (a backslash-quote trick stays one literal)."""
    sql = "SELECT 'a\\' AS x"
    async with analyzer_server(standard_conforming_strings="off") as host, client_for(host) as c:
        for analyze in (True, False):
            reply = await c("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=sql, analyze=analyze))
            assert reply.plan.node_type == "Result"
        advice = await c("SuggestIndexes", pb.SuggestIndexesRequest(sql=f"SELECT * FROM {SCHEMA}.events WHERE d = $1"))
        assert advice.suggestions
