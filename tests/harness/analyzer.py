"""Shared pieces of the analyzer integration tests: the crafted schema, a client, polling, state checks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import grpc

from rentscout.analyzer.v1 import analyzer_pb2_grpc
from rentscout.runtime.server import ServiceHost

ADMIN, READER = "analyzer-admin-token", "analyzer-reader-token"
SCHEMA = "analyzer_t"

SETUP_SQL = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};

-- a and b are perfectly correlated (the planner multiplies their selectivities); c and d have no index.
CREATE TABLE {SCHEMA}.events (id bigint PRIMARY KEY, a int NOT NULL, b int NOT NULL, c int NOT NULL, d int NOT NULL,
    kind text NOT NULL, payload text NOT NULL) WITH (autovacuum_enabled = false);
INSERT INTO {SCHEMA}.events
SELECT g, g % 100, g % 100, g % 1000, (g * 7919) % 5000, 'k' || (g % 5), md5(g::text) || md5((g + 1)::text)
FROM generate_series(1, 30000) AS g;
CREATE INDEX events_a_idx ON {SCHEMA}.events (a);
ANALYZE {SCHEMA}.events;

-- ~1300 pages of a few rows each: a bitmap over most of them cannot stay exact in 64kB of work_mem.
CREATE TABLE {SCHEMA}.wide (id int PRIMARY KEY, k int NOT NULL, pad text NOT NULL)
    WITH (autovacuum_enabled = false, fillfactor = 10);
INSERT INTO {SCHEMA}.wide SELECT g, g % 50, repeat(md5(g::text), 9) FROM generate_series(1, 2600) AS g;
CREATE INDEX wide_k_idx ON {SCHEMA}.wide (k);
ANALYZE {SCHEMA}.wide;

-- analyzed with 1000 rows, then 20000 more arrive without autovacuum.
CREATE TABLE {SCHEMA}.stale (id int, v int) WITH (autovacuum_enabled = false);
INSERT INTO {SCHEMA}.stale SELECT g, g % 10 FROM generate_series(1, 1000) AS g;
ANALYZE {SCHEMA}.stale;
INSERT INTO {SCHEMA}.stale SELECT g, 7 FROM generate_series(1001, 21000) AS g;

-- What hostile statements would like to change.
CREATE TABLE {SCHEMA}.audit (id serial PRIMARY KEY, note text NOT NULL);
INSERT INTO {SCHEMA}.audit (note) VALUES ('original');
CREATE SEQUENCE {SCHEMA}.counter;
CREATE TABLE {SCHEMA}.secrets (id int, card text);
INSERT INTO {SCHEMA}.secrets VALUES (1, 'secret-card-4111');
CREATE TABLE {SCHEMA}."Mixed Case" (id int PRIMARY KEY, label text);
INSERT INTO {SCHEMA}."Mixed Case" SELECT g, 'x' FROM generate_series(1, 100) AS g;

CREATE FUNCTION {SCHEMA}.sneaky_insert() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO {SCHEMA}.audit (note) VALUES ('volatile write'); RETURN 1; END $$;
CREATE FUNCTION {SCHEMA}.sneaky_stable() RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN INSERT INTO {SCHEMA}.audit (note) VALUES ('stable write'); RETURN 1; END $$;
CREATE FUNCTION {SCHEMA}.sneaky_sql() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;
CREATE FUNCTION {SCHEMA}.locker() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 FROM pg_advisory_lock(4242) $$;
CREATE VIEW {SCHEMA}.writer_view AS SELECT {SCHEMA}.sneaky_insert() AS x;
CREATE VIEW {SCHEMA}.view_of_view AS SELECT * FROM {SCHEMA}.writer_view;
CREATE VIEW {SCHEMA}.safe_view AS SELECT id, lower(kind) AS kind FROM {SCHEMA}.events;
CREATE FUNCTION {SCHEMA}.op_writer(int, int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO {SCHEMA}.audit (note) VALUES ('operator write'); RETURN $1 = $2; END $$;
CREATE OPERATOR {SCHEMA}.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = {SCHEMA}.op_writer);
CREATE FUNCTION {SCHEMA}.lock_step(state int, v int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_lock(4243); RETURN coalesce(state, 0) + v; END $$;
CREATE AGGREGATE {SCHEMA}.locking_sum(int) (SFUNC = {SCHEMA}.lock_step, STYPE = int);
CREATE FUNCTION {SCHEMA}.checker(v int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_advisory_lock(4244); RETURN v > 0; END $$;
CREATE DOMAIN {SCHEMA}.checked_int AS int CHECK ({SCHEMA}.checker(VALUE));
CREATE TYPE {SCHEMA}.wrapped AS (v int);
CREATE FUNCTION {SCHEMA}.wrap(int) RETURNS {SCHEMA}.wrapped LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_advisory_lock(4245); RETURN ROW($1); END $$;
CREATE CAST (int AS {SCHEMA}.wrapped) WITH FUNCTION {SCHEMA}.wrap(int);
CREATE VIEW {SCHEMA}.aggregate_view AS SELECT {SCHEMA}.locking_sum(a) AS s FROM {SCHEMA}.events;
-- What an operator does for tables beyond the application's own: let the analyzer role read them.
GRANT USAGE ON SCHEMA {SCHEMA} TO rentscout_explain;
GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO rentscout_explain;
ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO rentscout_explain;
"""


class Client:
    """AnalyzerService stub with the admin token by default."""

    def __init__(self, port: int, token: str | None = ADMIN) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = analyzer_pb2_grpc.AnalyzerServiceStub(self.channel)
        self.token = token

    async def __call__(self, method: str, request: Any, token: str | None = "default", timeout: float = 60) -> Any:
        token = self.token if token == "default" else token
        metadata = [("authorization", f"Bearer {token}")] if token else []
        return await getattr(self.stub, method)(request, metadata=metadata, timeout=timeout)

    async def close(self) -> None:
        await self.channel.close()


@contextlib.asynccontextmanager
async def client_for(host: ServiceHost) -> AsyncIterator[Client]:
    c = Client(host.port)
    try:
        yield c
    finally:
        await c.close()


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.2) -> Any:
    """Poll an async predicate until it returns something truthy (statistics are flushed asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(interval)


async def db_state(conn: asyncpg.Connection) -> tuple[Any, ...]:
    """Everything a hostile statement could have changed: rows, sequences, session-level locks."""
    return (
        await conn.fetchval(f"SELECT count(*) || ':' || coalesce(sum(hashtext(a::text)), 0) FROM {SCHEMA}.audit a"),
        await conn.fetchval("SELECT count(*) || ':' || sum(views) || ':' || max(updated_at) FROM properties"),
        await conn.fetchval(f"SELECT last_value || ':' || is_called FROM {SCHEMA}.counter"),
        await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
        await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", SCHEMA),
    )
