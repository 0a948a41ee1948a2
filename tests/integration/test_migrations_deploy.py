"""The migrator next to live traffic (bounded lock waits, retried), its NOTICEs in the log, the analyzer role
it must leave usable, and readiness that waits for the schema a build needs: on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from harness.polling import eventually
from rentscout.db.migrate import Migration, MigrationError, available, migrate
from rentscout.db.settings import MigrateSettings
from rentscout.runtime import metrics, schema_gate
from rentscout.runtime.config import RuntimeSettings
from rentscout.runtime.database import Database
from rentscout.runtime.health import NOT_SERVING, SERVING, DependencyMonitor
from rentscout.runtime.resources import Resources


def _with_db(dsn: str, name: str, user: str | None = None) -> str:
    """`dsn` naming database `name` (and user `user`)."""
    base = dsn.rsplit("/", 1)[0] + f"/{name}"
    if user is None:
        return base
    scheme, rest = base.split("://", 1)
    return f"{scheme}://{user}@{rest.split('@', 1)[-1]}"


@pytest.fixture
async def scratch(pg_conn: asyncpg.Connection, database: str) -> AsyncIterator[str]:
    """An empty database of its own (never migrated)."""
    name = f"deploy_{uuid.uuid4().hex[:8]}"
    await pg_conn.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_db(database, name)
    finally:
        await pg_conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


FAST = MigrateSettings(lock_timeout_ms=100, lock_retries=2)


async def test_every_notice_is_logged_with_its_migration(scratch: str, caplog: pytest.LogCaptureFixture) -> None:
    notice = Migration("9001", "9001_notice.sql", "DO $$ BEGIN RAISE NOTICE 'deploy-probe %', 42; END $$;")
    with caplog.at_level(logging.INFO, logger="rentscout.db.migrate"):
        assert await migrate(scratch, FAST, [notice]) == ["9001_notice.sql"]
    (line,) = [r for r in caplog.records if "deploy-probe 42" in r.getMessage()]
    assert "9001_notice.sql" in line.getMessage() and line.levelno == logging.INFO


async def test_ddl_behind_a_long_transaction_gives_up_instead_of_queueing_readers(scratch: str) -> None:
    holder = await asyncpg.connect(scratch)
    try:
        await holder.execute("CREATE TABLE t (id int)")
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT * FROM t")  # a long export's ACCESS SHARE lock
        alter = Migration("9002", "9002_alter.sql", "ALTER TABLE t ADD COLUMN note text")
        with pytest.raises(MigrationError, match=r"9002_alter\.sql: a lock was not granted within 100 ms in 2 attempts"):
            await migrate(scratch, FAST, [alter])
        reader = await asyncpg.connect(scratch)
        try:  # nothing is left queued ahead of readers
            assert await reader.fetchval("SELECT count(*) FROM t", timeout=5) == 0
            assert await reader.fetchval("SELECT count(*) FROM schema_migrations") == 0
        finally:
            await reader.close()
        await tx.rollback()
    finally:
        await holder.close()


async def test_a_lock_released_between_attempts_lets_the_migration_through(
    scratch: str, caplog: pytest.LogCaptureFixture
) -> None:
    holder = await asyncpg.connect(scratch)
    try:
        await holder.execute("CREATE TABLE t (id int)")
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT * FROM t")
        alter = Migration("9002", "9002_alter.sql", "ALTER TABLE t ADD COLUMN note text")
        with caplog.at_level(logging.WARNING, logger="rentscout.db.migrate"):
            run = asyncio.create_task(migrate(scratch, MigrateSettings(lock_timeout_ms=100, lock_retries=10), [alter]))
            await eventually(lambda: asyncio.sleep(0, any("retrying" in r.getMessage() for r in caplog.records)))
            await tx.rollback()
            assert await asyncio.wait_for(run, 30) == ["9002_alter.sql"]
        assert await holder.fetchval("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'") == 1
    finally:
        await holder.close()


async def test_a_concurrent_migrator_holding_the_lock_bounds_the_wait(scratch: str) -> None:
    other = await asyncpg.connect(scratch)
    try:
        await other.execute("SELECT pg_advisory_lock($1)", 0x7E17_5C0D)
        with pytest.raises(MigrationError, match="the migration lock"):
            await migrate(scratch, FAST, [])
    finally:
        await other.close()


@pytest.fixture
async def unprivileged(pg_conn: asyncpg.Connection, database: str) -> AsyncIterator[str]:
    """A database owned by a login role that may create nothing outside it (a managed database's user)."""
    await migrate(database)  # rentscout_explain exists cluster-wide, as an earlier install left it
    user, name = f"deploy_user_{uuid.uuid4().hex[:6]}", f"deploy_{uuid.uuid4().hex[:8]}"
    await pg_conn.execute(f"CREATE ROLE {user} LOGIN NOSUPERUSER NOCREATEROLE")
    await pg_conn.execute(f"CREATE DATABASE {name} OWNER {user}")
    try:
        yield _with_db(database, name, user)
    finally:
        await pg_conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await pg_conn.execute(f"DROP ROLE {user}")


async def test_a_migration_that_cannot_grant_the_analyzer_role_fails_unless_allowed(
    unprivileged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="rentscout.db.migrate"),
        pytest.raises(MigrationError, match="rentscout_explain is missing or not granted"),
    ):
        await migrate(unprivileged)
    assert any("cannot grant rentscout_explain" in r.getMessage() for r in caplog.records)  # the NOTICE, logged
    # the schema itself is complete; an operator who accepts running without the role says so
    assert await migrate(unprivileged, MigrateSettings(allow_missing_analyzer_role=True)) == []


async def test_readiness_waits_for_the_schema_this_build_needs(scratch: str) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.status: dict[str, int] = {}

        async def set(self, service: str, status: int) -> None:
            self.status[service] = status

    resources = Resources(RuntimeSettings(database_url=scratch), "deploy-test")
    await resources.start()
    try:
        health = Recorder()
        monitor = DependencyMonitor(health, resources, [("rentscout.export.v1.ExportService", False)], 0.1)

        def export_status() -> int:  # read afresh: to mypy, an asserted item keeps the asserted value
            return health.status["rentscout.export.v1.ExportService"]

        await monitor.probe_once()
        assert export_status() == NOT_SERVING  # PostgreSQL is up, schema absent
        assert metrics.DEPENDENCY_UP.labels("schema")._value.get() == 0
        older = [m for m in available() if m.version < schema_gate.required_version()]
        await migrate(scratch, migrations=older)
        await monitor.probe_once()
        assert export_status() == NOT_SERVING  # an older release's schema
        await migrate(scratch)
        await monitor.probe_once()
        assert export_status() == SERVING
        assert metrics.DEPENDENCY_UP.labels("schema")._value.get() == 1
    finally:
        await resources.close()


async def test_the_gate_needs_the_newest_packaged_migration(database: str) -> None:
    assert schema_gate.required_version() == available()[-1].version
    db = Database(RuntimeSettings(database_url=database), "deploy-test")
    await db.start()
    try:
        assert await schema_gate.present_version(db, 5) == available()[-1].version
        assert await schema_gate.ready(db, 5)
    finally:
        await db.close()


async def test_cache_query_reports_redis_without_making_it_a_readiness_gate(service_env: dict[str, str], tmp_path) -> None:
    """What the docs say: rentscout_dependency_up{dependency="redis"} follows Redis, readiness does not."""
    from grpc_health.v1 import health_pb2

    from harness.servers import in_process
    from rentscout.cache_service import service as cache_service
    from rentscout.devstack.instances import RedisInstance
    from rentscout.wire.health import health_stub

    redis = RedisInstance(tmp_path / "redis").start()
    gauge = metrics.DEPENDENCY_UP.labels("redis")
    try:
        async with (
            in_process([cache_service.create], {**service_env, "RENTSCOUT_REDIS_URL": redis.url}) as host,
            grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
        ):
            health = health_stub(channel)
            request = health_pb2.HealthCheckRequest(service=cache_service.SERVICE_NAME)

            async def state() -> tuple[float, int]:
                return gauge._value.get(), (await health.Check(request)).status

            assert await eventually(state, lambda s: s == (1, SERVING)) == (1, SERVING)
            await asyncio.to_thread(redis.stop)
            assert await eventually(state, lambda s: s == (0, SERVING)) == (0, SERVING)  # Redis down, still ready
    finally:
        redis.stop()
