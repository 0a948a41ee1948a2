"""The reliability suite: real server processes over the private PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.secrets import ADMIN_TOKEN, DB_PASSWORD, READER_TOKEN
from harness.servers import ServerProcess


@pytest.fixture(scope="session")
def secured_env(service_env: dict[str, str]) -> dict[str, str]:
    """Tokens configured, and a DSN carrying a password (trust auth ignores it) that must never be logged."""
    dsn = service_env["RENTSCOUT_DATABASE_URL"].replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@")
    return {
        **service_env,
        "RENTSCOUT_DATABASE_URL": dsn,
        "RENTSCOUT_AUTH_TOKENS": f"{ADMIN_TOKEN}:admin,{READER_TOKEN}:reader",
        "RENTSCOUT_EXPORT_MAX_CONCURRENT": "4",
    }


@pytest.fixture(scope="session")
def all_server(secured_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `rentscout serve all` process shared by the read-only scenarios of the suite."""
    server = ServerProcess("all", secured_env, tmp_path_factory.mktemp("all-server")).start()
    yield server
    server.stop()
