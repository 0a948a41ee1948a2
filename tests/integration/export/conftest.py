"""Fixtures of the export service tests: an in-process server on the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.export_server import TEST_SETTINGS, ExportServer, serve


@pytest.fixture(scope="module")
async def export_server(service_env: dict[str, str]) -> AsyncIterator[ExportServer]:
    async with serve(service_env, TEST_SETTINGS) as server:
        yield server
