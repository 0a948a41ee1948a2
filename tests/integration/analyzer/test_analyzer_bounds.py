"""What no statement can make the analyzer do, against the real PostgreSQL: return a secret, fail on a deep
plan, exceed its memory ceilings or its cap on running analyses, send an answer larger than its cap, run past
its one budget, or leave a caller's statement text on a pooled connection; and array parameters."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest

from harness.analyzer import ADMIN, SCHEMA, Client
from harness.logcapture import capture_logs
from harness.servers import in_process
from rentscout.analyzer.v1 import analyzer_pb2 as pb
from rentscout.analyzer_service import convert
from rentscout.analyzer_service.service import SERVICE_NAME, create
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.runtime.metrics import RPCS
from rentscout.runtime.server import ServiceHost
from rentscout.sdk.analyzer import plan_tree
from rentscout.wire.badrequest import bad_request_violations

SECRET = "Hunter2-9f8e7d-s3cr3t"


@contextlib.asynccontextmanager
async def analyzer(
    env: dict[str, str], settings: AnalyzerSettings | None = None, **runtime: Any
) -> AsyncIterator[tuple[ServiceHost, Client]]:
    factory = functools.partial(create, settings=settings or AnalyzerSettings())
    async with in_process([factory], env, label="analyzer", **runtime) as host:
        client = Client(host.port, ADMIN)
        try:
            yield host, client
        finally:
            await client.close()


def violations(err: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    return bad_request_violations(err.trailing_metadata())


# -- 1. no secret through any RPC -------------------------------------------------------------------


async def test_no_rpc_returns_a_secret_typed_in_a_utility_statement(analyzer_env: dict[str, str], database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            "DROP ROLE IF EXISTS rs_secret_role; DROP SERVER IF EXISTS rs_secret_srv CASCADE; "
            "DROP FOREIGN DATA WRAPPER IF EXISTS rs_secret_fdw CASCADE"
        )
        for statement in (
            f"CREATE ROLE rs_secret_role LOGIN PASSWORD '{SECRET}'",
            f"ALTER ROLE rs_secret_role PASSWORD '{SECRET}-2'",
            "CREATE FOREIGN DATA WRAPPER rs_secret_fdw",
            "CREATE SERVER rs_secret_srv FOREIGN DATA WRAPPER rs_secret_fdw",
            f"CREATE USER MAPPING FOR rs_secret_role SERVER rs_secret_srv OPTIONS (user 'u', password '{SECRET}-3')",
            f"ALTER SYSTEM SET cluster_name = '{SECRET}-4'",  # only read at a restart
            "ALTER SYSTEM RESET cluster_name",
            # a quarter second: among the 500 slowest by total time however many statements the suite ran
            f"SELECT /* {SECRET}-5 */ pg_sleep(0.25) AS plannable",
            f"CREATE TABLE {SCHEMA}.secretive (id int, token text)",
            f"CREATE INDEX secretive_partial ON {SCHEMA}.secretive (id) WHERE token <> '{SECRET}-6'",
        ):
            await conn.execute(statement)
        async with analyzer(analyzer_env) as (_, client):
            slow = await client("ListSlowQueries", pb.ListSlowQueriesRequest(limit=500))
            advice = await client("SuggestIndexes", pb.SuggestIndexesRequest(table=f"{SCHEMA}.secretive"))
            from_slow = await client("SuggestIndexes", pb.SuggestIndexesRequest(from_slow_queries=True))
            stats = await client("GetTableStats", pb.GetTableStatsRequest(table=f"{SCHEMA}.secretive"))
    finally:
        await conn.execute("ALTER SYSTEM RESET cluster_name")
        await conn.execute(
            f"DROP TABLE IF EXISTS {SCHEMA}.secretive; DROP SERVER IF EXISTS rs_secret_srv CASCADE; "
            "DROP FOREIGN DATA WRAPPER IF EXISTS rs_secret_fdw CASCADE; DROP ROLE IF EXISTS rs_secret_role"
        )
        await conn.close()
    for reply in (slow, advice, from_slow, stats):
        assert SECRET.encode() not in reply.SerializeToString()
    withheld = {q.withheld.split(" (")[0] for q in slow.queries if q.withheld}
    assert {"CREATE ROLE", "ALTER ROLE", "CREATE USER MAPPING", "ALTER SYSTEM SET"} <= withheld
    assert all(not q.query for q in slow.queries if q.withheld)
    assert any("AS plannable" in q.query for q in slow.queries)  # shown, without its comment
    partial = next(i for i in advice.index_issues if i.index_name.endswith("secretive_partial"))
    assert "WHERE (token <> $1" in partial.definition


# -- 2. any plan is answered -------------------------------------------------------------------------


def join_of(terms: int) -> str:
    return "SELECT 1 FROM " + ", ".join(f"generate_series(1, 1) g{i}" for i in range(terms))


@pytest.mark.parametrize("terms", [100, 120, 600])
async def test_deep_plans_are_answered_and_rebuilt(analyzer_env: dict[str, str], terms: int) -> None:
    # GEQO plans 600 relations in seconds; PostgreSQL indents its JSON by depth, so that of a deep plan
    # outgrows the answer's cap and is left out (truncated), while every node is still sent
    async with analyzer(analyzer_env, AnalyzerSettings(statement_timeout_ms=120_000)) as (_, client):
        reply = await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=join_of(terms), analyze=True), timeout=180)
    assert reply.node_count == len(reply.nodes) >= 2 * terms - 1
    assert reply.truncated == (not reply.raw_json) and (terms < 600 or reply.truncated)
    tree = plan_tree(reply)
    assert tree is not None and sum(1 for _ in tree.walk()) == reply.node_count
    assert max(depth for _, depth in tree.walk()) >= terms // 2  # a chain of joins, not a flat list
    assert reply.plan.node_type == reply.nodes[0].node_type and reply.actual_rows == 1


async def test_index_advice_on_a_deep_plan_is_answered(analyzer_env: dict[str, str]) -> None:
    async with analyzer(analyzer_env, AnalyzerSettings(statement_timeout_ms=120_000)) as (_, client):
        reply = await client("SuggestIndexes", pb.SuggestIndexesRequest(sql=join_of(600)), timeout=180)
    assert reply.method  # planned and costed (its JSON, 1800 levels deep, decoded without recursion)


async def test_the_sdk_and_cli_decode_the_deepest_answer(
    analyzer_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from rentscout.main import main as cli
    from rentscout.sdk import AnalyzerClient

    async with analyzer(analyzer_env, AnalyzerSettings(statement_timeout_ms=120_000)) as (host, _):
        target = f"127.0.0.1:{host.port}"
        async with AnalyzerClient(target, timeout=180, token=ADMIN) as sdk:
            reply = await sdk.analyze_query(join_of(600), analyze=True)
        tree = plan_tree(reply)
        assert tree is not None and sum(1 for _ in tree.walk()) == reply.node_count > 1000
        code = await asyncio.to_thread(
            cli, ["analyze", "explain", join_of(600), "--analyze", "--target", target, "--token", ADMIN, "--timeout", "180"]
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in out + err and out.count("Nested Loop") >= 599 and "level " in out


# -- 3. bounded work -----------------------------------------------------------------------------------

SORT = f"SELECT * FROM {SCHEMA}.events ORDER BY payload"


async def test_work_mem_is_capped_even_when_the_session_has_more(analyzer_server: Any) -> None:
    settings = AnalyzerSettings(work_mem_kb=64)
    async with analyzer_server(settings=settings, work_mem="256MB") as host:
        client = Client(host.port)
        try:
            reply = await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=SORT, analyze=True))
        finally:
            await client.close()
    sort = next(n for n in reply.nodes if n.node_type == "Sort")
    assert sort.sort_space_type == "Disk"  # 30000 rows of 64-character text: megabytes, not 64 kB
    assert '"work_mem": "64kB"' in reply.raw_json  # EXPLAIN (SETTINGS) shows what the statement ran with


async def test_temp_files_beyond_the_limit_are_resource_exhausted(analyzer_server: Any) -> None:
    settings = AnalyzerSettings(work_mem_kb=64, temp_file_limit_kb=64)
    async with analyzer_server(settings=settings) as host:
        client = Client(host.port)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=SORT, analyze=True))
        finally:
            await client.close()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "53400" in (info.value.details() or "")


async def test_analyses_beyond_the_cap_are_resource_exhausted_at_once(analyzer_env: dict[str, str], database: str) -> None:
    settings = AnalyzerSettings(max_concurrent_statements=1, lock_timeout_ms=60_000, statement_timeout_ms=60_000)
    locker = await asyncpg.connect(database)
    try:
        async with analyzer(analyzer_env, settings) as (_, client):
            await locker.execute(f"BEGIN; LOCK TABLE {SCHEMA}.audit IN ACCESS EXCLUSIVE MODE")
            first = asyncio.ensure_future(
                client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=f"SELECT count(*) FROM {SCHEMA}.audit", analyze=True))
            )
            for _ in range(300):  # the first analysis waits for the lock, inside its slot
                if await locker.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass", f"{SCHEMA}.audit"
                ):
                    break
                await asyncio.sleep(0.1)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT 1"))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "MAX_CONCURRENT_STATEMENTS" in (info.value.details() or "")
            await locker.execute("ROLLBACK")
            assert (await first).actual_rows == 1
            assert (await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT 1"))).nodes  # the slot is free
    finally:
        await locker.close()


async def test_one_budget_for_the_whole_call_named_in_the_message(analyzer_env: dict[str, str]) -> None:
    async with analyzer(analyzer_env, AnalyzerSettings(statement_timeout_ms=300)) as (_, client):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client(
                "AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT count(*) FROM generate_series(1, 1000000000)", analyze=True)
            )
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "budget of 300 ms" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client(
                "AnalyzeQuery",
                pb.AnalyzeQueryRequest(sql="SELECT count(*) FROM generate_series(1, 1000000000)", analyze=True),
                timeout=0.25,
            )
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert (await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT 1", analyze=True))).nodes


async def test_an_oversized_answer_is_truncated_and_recorded_as_what_the_caller_got(analyzer_env: dict[str, str]) -> None:
    sql = "SELECT " + ", ".join(f"(SELECT {i} WHERE {i} > 0)" for i in range(1500))
    before = RPCS.calls_by_code(SERVICE_NAME).get("OK", 0)
    with capture_logs() as logs:
        async with analyzer(analyzer_env, max_send_message_bytes=64 * 1024) as (_, client):
            reply = await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=sql, analyze=True))
            slow = await client("ListSlowQueries", pb.ListSlowQueriesRequest(limit=500))
    assert reply.truncated and not reply.raw_json and 0 < len(reply.nodes) < reply.node_count
    assert reply.ByteSize() <= convert.answer_cap(64 * 1024) and slow.ByteSize() <= convert.answer_cap(64 * 1024)
    tree = plan_tree(reply)
    assert tree is not None and sum(1 for _ in tree.walk()) == len(reply.nodes)
    access = [
        r
        for r in logs.records()
        if r.get("event.dataset") == "rentscout.access" and r.get("rpc.method", "").endswith("/AnalyzeQuery")
    ]
    assert [r["rpc.grpc.status_code"] for r in access] == ["OK"]
    assert RPCS.calls_by_code(SERVICE_NAME).get("OK", 0) == before + 2


# -- 4. nothing of a caller's statement stays on a pooled connection ------------------------------------


async def test_a_later_caller_cannot_read_an_earlier_callers_statement(analyzer_env: dict[str, str]) -> None:
    token = "tok_live_9f8e7d"
    probe = "SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE pg_catalog.strpos(statement, $1) > 0"
    async with analyzer(analyzer_env, db_pool_min_size=1, db_pool_max_size=1) as (_, client):  # one connection
        await client(
            "AnalyzeQuery", pb.AnalyzeQueryRequest(sql=f"SELECT id FROM properties WHERE title = '{token}'", analyze=True)
        )
        await client(
            "AnalyzeQuery",
            pb.AnalyzeQueryRequest(
                sql=f"SELECT id FROM properties WHERE title = $1 AND city = '{token}'",
                analyze=True,
                params=[pb.QueryParam(string_value=token)],
            ),
        )
        found = await client(
            "AnalyzeQuery", pb.AnalyzeQueryRequest(sql=probe, analyze=True, params=[pb.QueryParam(string_value=token)])
        )
        ours = await client(
            "AnalyzeQuery",
            pb.AnalyzeQueryRequest(  # the service's own statements are there
                sql=probe, analyze=True, params=[pb.QueryParam(string_value="rentscout_probe")]
            ),
        )
    assert found.actual_rows == 0
    assert ours.actual_rows >= 1  # so the view is readable on that connection: the test can fail


# -- 5. parameters -------------------------------------------------------------------------------------


async def test_array_placeholders_and_parameter_errors_name_params_i(client: Client) -> None:
    reply = await client(
        "AnalyzeQuery",
        pb.AnalyzeQueryRequest(
            sql="SELECT id FROM properties WHERE id = ANY($1)", analyze=True, params=[pb.QueryParam(string_value="{1,2}")]
        ),
    )
    assert reply.actual_rows == 2
    for sql, params, field in [
        ("SELECT $1::jsonb", [pb.QueryParam(string_value="{bad")], "params[0]"),
        ("SELECT $1::int, $2::date", [pb.QueryParam(int_value=1), pb.QueryParam(string_value="2026-13-45")], "params[1]"),
        ("SELECT id FROM properties WHERE id = ANY($1)", [pb.QueryParam(string_value="{1,x}")], "params[0]"),
        ("SELECT $1::inet", [pb.QueryParam(string_value="not an address")], "params[0]"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=sql, params=params, analyze=True))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, sql
        assert [f for f, _ in violations(info.value)] == [field], (sql, info.value.details())
        assert "bad" not in (info.value.details() or "").replace("{bad", "")


async def test_a_statement_seen_before_is_checked_with_the_types_and_errors_of_now(client: Client, database: str) -> None:
    """Placeholder types are remembered per text in the process: a change of the catalog since is noticed."""
    conn = await asyncpg.connect(database)
    sql = f"SELECT id FROM {SCHEMA}.retyped WHERE v = $1"
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.retyped; CREATE TABLE {SCHEMA}.retyped (id int, v int)")
        await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=sql, params=[pb.QueryParam(int_value=1)]))
        await conn.execute(f"ALTER TABLE {SCHEMA}.retyped ALTER COLUMN v TYPE text")
        again = await client(
            "AnalyzeQuery", pb.AnalyzeQueryRequest(sql=sql, params=[pb.QueryParam(string_value="x")], analyze=True)
        )
        assert "(v = 'x'::text)" in next(n.filter for n in again.nodes if n.node_type == "Seq Scan")
        await conn.execute(f"ALTER TABLE {SCHEMA}.retyped DROP COLUMN v")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql=sql, params=[pb.QueryParam(string_value="x")]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "undefined column (column) at position 41 near v (SQLSTATE 42703)" in (info.value.details() or "")
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.retyped")
        await conn.close()


async def test_a_frozen_postgresql_is_unavailable_at_the_budget_not_a_deadline(
    analyzer_env: dict[str, str], tmp_path: Any
) -> None:
    """The budget (1.5 s) is shorter than the server's bound on a wait (30 s): PostgreSQL is told to cancel at
    the budget, and one that does not answer 2 s later is stuck, so the caller gets UNAVAILABLE."""
    from harness.freeze import frozen, postgres_processes
    from rentscout.db.migrate import migrate
    from rentscout.devstack.instances import PostgresInstance

    pg = await asyncio.to_thread(lambda: PostgresInstance(tmp_path / "pg").start())
    try:
        await migrate(pg.dsn)
        env = {**analyzer_env, "RENTSCOUT_DATABASE_URL": pg.dsn}
        async with analyzer(
            env, AnalyzerSettings(statement_timeout_ms=1500), dependency_timeout_seconds=30.0, db_pool_min_size=1
        ) as (_, client):
            assert (await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT 1", analyze=True))).nodes
            with frozen(postgres_processes(pg)), pytest.raises(grpc.aio.AioRpcError) as info:
                await client("AnalyzeQuery", pb.AnalyzeQueryRequest(sql="SELECT 1", analyze=True), timeout=25)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
            assert "stuck or unreachable" in (info.value.details() or "")
    finally:
        await asyncio.to_thread(pg.destroy)
