"""Analyzer fixtures: a private schema of crafted tables (never the shared properties rows) and
in-process AnalyzerService servers, optionally with session settings in the DSN (work_mem=64kB ...)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlencode

import asyncpg
import pytest

from harness.analyzer import ADMIN, READER, SCHEMA, SETUP_SQL, Client
from harness.servers import in_process
from rentscout.analyzer_service.service import create
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.runtime.server import ServiceHost


@pytest.fixture(scope="session")
async def analyzer_db(database: str) -> AsyncIterator[str]:
    """The shared database with the analyzer's private schema of crafted tables."""
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(SETUP_SQL)
        await conn.execute("SELECT pg_stat_force_next_flush()")  # the inserts above, for n_mod_since_analyze
    finally:
        await conn.close()
    yield database
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def analyzer_env(service_env: dict[str, str], analyzer_db: str) -> dict[str, str]:
    return {**service_env, "RENTSCOUT_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:reader"}


ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[ServiceHost]]


@pytest.fixture(scope="session")
def analyzer_server(analyzer_env: dict[str, str]) -> ServerFactory:
    """`async with analyzer_server(settings=..., database=..., **session_settings) as host:`."""

    @contextlib.asynccontextmanager
    async def start(
        settings: AnalyzerSettings | None = None, database: str | None = None, **session_settings: str
    ) -> AsyncIterator[ServiceHost]:
        env = dict(analyzer_env)
        dsn = database or env["RENTSCOUT_DATABASE_URL"]
        if session_settings:
            dsn += ("&" if "?" in dsn else "?") + urlencode(session_settings)
        env["RENTSCOUT_DATABASE_URL"] = dsn
        factory = functools.partial(create, settings=settings or AnalyzerSettings())
        async with in_process([factory], env, label="analyzer") as host:
            yield host

    return start


@pytest.fixture(scope="session")
async def analyzer_host(analyzer_server: ServerFactory) -> AsyncIterator[ServiceHost]:
    async with analyzer_server() as host:
        yield host


@pytest.fixture
async def client(analyzer_host: ServiceHost) -> AsyncIterator[Client]:
    c = Client(analyzer_host.port)
    yield c
    await c.close()
