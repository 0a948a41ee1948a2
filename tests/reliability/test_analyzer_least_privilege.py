"""The analyzer with a superuser DSN and its default settings: privilege is the boundary.

Every syntax that can make PostgreSQL call a function (plain calls, attribute notation, operators,
casts, domains, function defaults, views) is tried for what an attacker holding an admin token wants:
read a file, signal a backend, reset statistics, run a volatile user function, take a lock that
outlives the request, read a secret back through an error. Each attempt is then checked against the
real database: the victim session is alive, the statistics are intact, no lock is held, no
hypothetical index is left, the rows are unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import grpc
import pytest

from harness.dbstate import data_fingerprint
from harness.servers import in_process
from rentscout.analyzer.v1 import analyzer_pb2 as pb
from rentscout.analyzer.v1 import analyzer_pb2_grpc
from rentscout.analyzer_service.service import create
from rentscout.devstack.instances import PostgresInstance
from rentscout.runtime.server import ServiceHost

SECRET = "hunter2-rs-secret"
SETUP = f"""
DROP ROLE IF EXISTS rs_secret_holder;
CREATE ROLE rs_secret_holder LOGIN PASSWORD '{SECRET}';
CREATE OR REPLACE FUNCTION public.rs_evil(p properties) RETURNS int LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN PERFORM pg_advisory_lock(7701); RETURN 1; END $$;
CREATE OR REPLACE FUNCTION public.rs_evil_plain() RETURNS int LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN PERFORM pg_advisory_lock(7702); RETURN 1; END $$;
CREATE OR REPLACE FUNCTION public.rs_reader(p properties) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT pg_read_file('/etc/hostname') $$;
CREATE OR REPLACE FUNCTION public.rs_with_default(a int, b int DEFAULT public.rs_evil_plain()) RETURNS int
  LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
CREATE OR REPLACE FUNCTION public.rs_reset_op(a int, b int) RETURNS bool LANGUAGE sql VOLATILE AS
  $$ SELECT pg_stat_statements_reset() IS NULL $$;
DROP OPERATOR IF EXISTS public.<<~ (int, int);
CREATE OPERATOR public.<<~ (LEFTARG = int, RIGHTARG = int, FUNCTION = public.rs_reset_op);
DROP DOMAIN IF EXISTS public.rs_locking_domain;
CREATE DOMAIN public.rs_locking_domain AS int CHECK (pg_try_advisory_lock(7703));
CREATE OR REPLACE VIEW public.rs_killer AS
  SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = 'rs_victim';
CREATE OR REPLACE VIEW public.rs_file_view AS SELECT pg_read_file('/etc/hostname') AS f;
GRANT SELECT ON public.rs_killer, public.rs_file_view TO rentscout_explain;
"""
TEARDOWN = """
DROP VIEW IF EXISTS public.rs_killer, public.rs_file_view;
DROP OPERATOR IF EXISTS public.<<~ (int, int);
DROP FUNCTION IF EXISTS public.rs_evil(properties), public.rs_evil_plain(), public.rs_reader(properties),
  public.rs_with_default(int, int), public.rs_reset_op(int, int);
DROP DOMAIN IF EXISTS public.rs_locking_domain;
DROP ROLE IF EXISTS rs_secret_holder;
"""

# (what it tries, the statement): every one of them must be refused with a client-error status.
BATTERY = [
    ("read a file", "SELECT pg_read_file('/etc/hostname')"),
    ("read a file", "SELECT pg_catalog.\"pg_read_file\"('/etc/hostname')"),
    ("read a file", "SELECT * FROM pg_read_file('/etc/hostname') AS f"),
    ("read a file", "SELECT p.rs_reader FROM properties p LIMIT 1"),  # attribute notation
    ("read a file", "SELECT f FROM rs_file_view"),  # a view
    ("read a file", "SELECT lo_import('/etc/hostname')"),
    ("read a file", "SELECT set_config('role', 'postgres', true), pg_read_file('/etc/hostname')"),
    ("signal a backend", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rs_victim'"),
    ("signal a backend", "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'rs_victim'"),
    ("signal a backend", "SELECT killed FROM rs_killer"),  # a view over a volatile built-in
    ("reset statistics", "SELECT pg_stat_statements_reset()"),
    ("reset statistics", "SELECT pg_stat_reset()"),
    ("reset statistics", "SELECT 1 <<~ 2"),  # an operator
    ("volatile user function", "SELECT p.rs_evil FROM properties p LIMIT 1"),  # attribute notation
    ("volatile user function", "SELECT rs_evil(p) FROM properties p LIMIT 1"),
    ("volatile user function", "SELECT rs_with_default(1)"),  # a function default
    ("lock", "SELECT pg_advisory_lock(7704)"),
    ("lock", "SELECT 1::rs_locking_domain"),  # a domain's CHECK
    ("lock", "SELECT CAST(id AS rs_locking_domain) FROM properties LIMIT 1"),
    ("hypothetical index", "SELECT * FROM hypopg_create_index('CREATE INDEX ON properties (views)')"),
    ("echo a secret", "SELECT (SELECT rolpassword FROM pg_authid WHERE rolname = 'rs_secret_holder')::regclass"),
    ("echo a row value", "SELECT (SELECT title FROM properties ORDER BY id LIMIT 1)::regclass"),
    ("echo a row value", "SELECT (SELECT city FROM properties ORDER BY id LIMIT 1)::regtype"),
    ("echo a row value", "SELECT title::int FROM properties ORDER BY id LIMIT 1"),
]
ADMIN = "lp-admin-token"
# A statement shape no other test runs (pg_stat_statements keys entries by shape, not text, and keeps
# the first text it saw), so its entry carries the comment.
MARKER = (
    "SELECT /* rs-statistics-marker */ relname FROM pg_catalog.pg_class WHERE relpages = -7 AND reltuples = -7 AND relnatts = -7"
)
MARKER_COUNT = "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%rs-statistics-marker%'"


@pytest.fixture(scope="module")
async def setup(pg_instance: PostgresInstance, database: str) -> AsyncIterator[asyncpg.Connection]:
    admin = await asyncpg.connect(database)
    await admin.execute(SETUP)
    await admin.fetchval(MARKER)
    try:
        yield admin
    finally:
        await admin.execute(TEARDOWN)
        await admin.close()


@pytest.fixture
async def victim(database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database, server_settings={"application_name": "rs_victim"})
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def analyzer(setup: asyncpg.Connection, service_env: dict[str, str]) -> AsyncIterator[ServiceHost]:
    """The analyzer with its default settings and the superuser DSN of the test database."""
    env = {**service_env, "RENTSCOUT_AUTH_TOKENS": f"{ADMIN}:admin"}
    async with in_process([create], env, label="analyzer-lp") as host:
        yield host


@pytest.fixture(scope="module")
async def stub(analyzer: ServiceHost) -> AsyncIterator[analyzer_pb2_grpc.AnalyzerServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{analyzer.port}") as channel:
        yield analyzer_pb2_grpc.AnalyzerServiceStub(channel)


async def hypothetical_indexes(host: ServiceHost, setup: asyncpg.Connection) -> list[int]:
    """HypoPG's hypopg_list_indexes (a view over hypopg()) on every connection of the analyzer's pool: a
    hypothetical index lives in one backend's memory (pg_class never shows it), so each one is asked."""
    schema = await setup.fetchval("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'hypopg'")
    assert schema, "HypoPG is not installed in the test database"
    pool = host.resources.db.pool
    conns = [await pool.acquire(timeout=10) for _ in range(pool.get_max_size())]  # every one, all at once
    try:
        return [await conn.fetchval(f"SELECT count(*) FROM {schema}.hypopg_list_indexes") for conn in conns]
    finally:
        for conn in conns:
            await pool.release(conn)


def _meta() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ADMIN}"),)


async def _row_values(conn: asyncpg.Connection) -> list[str]:
    row = await conn.fetchrow("SELECT title, city FROM properties ORDER BY id LIMIT 1")
    assert row is not None
    return [row["title"], row["city"]]


async def test_the_service_dsn_is_a_superuser(setup: asyncpg.Connection) -> None:
    assert await setup.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")


@pytest.mark.parametrize(("goal", "sql"), BATTERY)
async def test_the_battery_reaches_nothing(
    stub: analyzer_pb2_grpc.AnalyzerServiceAsyncStub,
    setup: asyncpg.Connection,
    victim: asyncpg.Connection,
    pg_instance: PostgresInstance,
    analyzer: ServiceHost,
    request: pytest.FixtureRequest,
    goal: str,
    sql: str,
) -> None:
    if goal == "hypothetical index":
        request.getfixturevalue("hypopg")  # without HypoPG the attempt fails for the wrong reason
    before = data_fingerprint(pg_instance)
    victim_pid = victim.get_server_pid()
    await setup.fetchval(MARKER)  # (again: a long suite may evict old entries)
    assert await setup.fetchval(MARKER_COUNT) >= 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AnalyzeQuery(pb.AnalyzeQueryRequest(sql=sql, analyze=True), metadata=_meta(), timeout=20)
    code, details = err.value.code(), err.value.details() or ""
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION), f"{goal}: {code}: {details}"
    for leaked in [SECRET, "SCRAM", *await _row_values(setup)]:
        assert leaked not in details, f"{goal}: {details}"
    # the real database afterwards
    assert await victim.fetchval("SELECT pg_backend_pid()") == victim_pid
    assert await setup.fetchval(MARKER_COUNT) >= 1
    assert await setup.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    assert data_fingerprint(pg_instance) == before
    if goal == "hypothetical index":
        assert set(await hypothetical_indexes(analyzer, setup)) == {0}  # none left on any pooled connection


async def test_privilege_alone_stops_what_the_catalog_check_would(setup: asyncpg.Connection, victim: asyncpg.Connection) -> None:
    """Layer 1 without layer 2: as rentscout_explain, inside the analyzer's kind of transaction."""
    attempts = [
        "SELECT pg_read_file('/etc/hostname')",
        f"SELECT pg_terminate_backend({victim.get_server_pid()})",
        "SELECT pg_stat_statements_reset()",
        "SELECT rolpassword FROM pg_authid",
        "SELECT * FROM hypopg_create_index('CREATE INDEX ON properties (views)')",
        "SELECT * FROM export_runs FOR UPDATE",
    ]
    for sql in attempts:
        async with setup.transaction(isolation="repeatable_read", readonly=True):
            await setup.execute("SET LOCAL ROLE rentscout_explain")
            with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError)):
                await setup.fetch(sql)
    assert await victim.fetchval("SELECT 1") == 1
    granted = await setup.fetch("""
        SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
        WHERE m.member = 'rentscout_explain'::regrole""")
    assert granted == []  # no pg_read_all_data, pg_monitor, pg_signal_backend ...
    assert await setup.fetchval("SELECT count(*) FROM pg_class WHERE relowner = 'rentscout_explain'::regrole") == 0
    assert await setup.fetchval("SELECT has_table_privilege('rentscout_explain', 'properties', 'SELECT')")
    assert not await setup.fetchval("SELECT has_table_privilege('rentscout_explain', 'properties', 'INSERT')")


async def test_hypopg_leaves_no_state_across_interleaved_requests(
    stub: analyzer_pb2_grpc.AnalyzerServiceAsyncStub, setup: asyncpg.Connection, hypopg: bool, analyzer: ServiceHost
) -> None:
    """SuggestIndexes creates hypothetical indexes; no AnalyzeQuery on any pooled connection ever plans with one."""
    probe = "SELECT id FROM properties WHERE address = 'rs-none'"  # no index has address
    advice = pb.SuggestIndexesRequest(sql=probe)

    async def suggest() -> bool:
        reply = await stub.SuggestIndexes(advice, metadata=_meta(), timeout=30)
        return any(s.hypopg_validated for s in reply.suggestions)

    async def analyze() -> str:
        reply = await stub.AnalyzeQuery(pb.AnalyzeQueryRequest(sql=probe), metadata=_meta(), timeout=30)
        return reply.raw_json

    validated = 0
    for _ in range(25):
        results = await asyncio.gather(suggest(), analyze(), suggest(), analyze())
        validated += sum(1 for r in results if r is True)
        for plan in results[1::2]:
            assert isinstance(plan, str) and "Index" not in plan and "btree" not in plan, plan
    assert validated == 50  # HypoPG really proposed an index every time, on its dedicated connection
    assert set(await hypothetical_indexes(analyzer, setup)) == {0}  # and left none on any pooled connection
    # the check can see one: a hypothetical index made on a pooled connection is counted
    schema = await setup.fetchval("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'hypopg'")
    async with analyzer.resources.db.pool.acquire() as conn:
        await conn.fetch(f"SELECT * FROM {schema}.hypopg_create_index('CREATE INDEX ON properties (views)')")
    try:
        assert sum(await hypothetical_indexes(analyzer, setup)) == 1
    finally:
        pool = analyzer.resources.db.pool
        conns = [await pool.acquire(timeout=10) for _ in range(pool.get_max_size())]
        for conn in conns:
            await conn.execute(f"SELECT {schema}.hypopg_reset()")
            await pool.release(conn)
    assert set(await hypothetical_indexes(analyzer, setup)) == {0}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(SELECT " * 150 + "1" + ")" * 150,
        "SELECT " + "+".join(["1"] * 45_000),
        "SELECT " + "CASE WHEN true THEN " * 200 + "1" + " END" * 200,
        "SELECT 1 WHERE " + "NOT " * 300 + "true",
    ],
)
async def test_depth_bombs_get_invalid_argument_in_every_rpc(stub: analyzer_pb2_grpc.AnalyzerServiceAsyncStub, sql: str) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: stub.AnalyzeQuery(pb.AnalyzeQueryRequest(sql=sql), metadata=_meta(), timeout=30),
        lambda: stub.SuggestIndexes(pb.SuggestIndexesRequest(sql=sql), metadata=_meta(), timeout=30),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert "statement nests deeper than 100 levels" in (err.value.details() or "")
    reply = await stub.AnalyzeQuery(pb.AnalyzeQueryRequest(sql="SELECT 1"), metadata=_meta(), timeout=30)
    assert reply.plan.node_type == "Result"  # the server is still there


async def test_a_statement_analyzed_again_is_checked_again(
    stub: analyzer_pb2_grpc.AnalyzerServiceAsyncStub, setup: asyncpg.Connection
) -> None:
    """The analyzer keeps a statement prepared per connection; a view replaced under it is caught anyway."""
    await setup.execute(
        "CREATE OR REPLACE VIEW public.rs_changing AS SELECT 1 AS x; GRANT SELECT ON public.rs_changing TO rentscout_explain"
    )
    sql = "SELECT x FROM rs_changing"
    try:
        for _ in range(12):  # sequential calls: the same pooled connections, its prepared statements warm
            reply = await stub.AnalyzeQuery(pb.AnalyzeQueryRequest(sql=sql, analyze=True), metadata=_meta(), timeout=20)
            assert reply.plan.actual_rows == 1
        await setup.execute("CREATE OR REPLACE VIEW public.rs_changing AS SELECT pg_try_advisory_lock(7705)::int AS x")
        for _ in range(12):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AnalyzeQuery(pb.AnalyzeQueryRequest(sql=sql, analyze=True), metadata=_meta(), timeout=20)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert "pg_try_advisory_lock" in (err.value.details() or "")
        assert await setup.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await setup.execute("DROP VIEW IF EXISTS public.rs_changing")


async def test_text_in_identifiers_cannot_forge_a_call(
    stub: analyzer_pb2_grpc.AnalyzerServiceAsyncStub, setup: asyncpg.Connection
) -> None:
    """The catalog check reads OIDs out of PostgreSQL's node trees; an alias spelling one out names nothing."""
    sleep_oid = await setup.fetchval("SELECT 'pg_catalog.pg_sleep'::regproc::oid")
    forged = f":funcid {sleep_oid} :opno 1 :relid 1"
    sql = f'SELECT 1 AS "{forged}", t."{forged}" FROM (SELECT 2 AS "{forged}") AS t'
    reply = await stub.AnalyzeQuery(pb.AnalyzeQueryRequest(sql=sql, analyze=True), metadata=_meta(), timeout=20)
    assert reply.plan.actual_rows == 1
