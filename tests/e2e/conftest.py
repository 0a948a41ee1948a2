"""The e2e session: after the last test, every JSON line written by the real server processes of
tests/e2e (ServerProcess and `rentscout stack` logs register themselves) must fit the shipped
Elasticsearch index template and ECS (harness/ecs.py). A failure shows as an error at teardown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import ecs


@pytest.fixture(scope="session", autouse=True)
def _every_e2e_log_line_is_valid_ecs() -> Iterator[None]:
    yield
    files = ecs.registered("tests/e2e/")
    problems = ecs.check_lines(ecs.file_lines(files))
    if problems:
        pytest.fail(
            f"{len(problems)} log line problem(s) in {len(files)} e2e log file(s):\n" + "\n".join(problems[:60]), pytrace=False
        )
