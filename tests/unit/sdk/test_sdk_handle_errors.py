"""handle_errors: default values, logging once per failure streak, sync and async."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rentscout.sdk.handle import handle_errors


def test_returns_default_and_logs_only_the_first_failure_of_a_streak(caplog: pytest.LogCaptureFixture) -> None:
    state = {"fail": True}

    @handle_errors(default=[], logger=logging.getLogger("t.handle"))
    def fetch() -> list[int]:
        if state["fail"]:
            raise ConnectionError("redis down")
        return [1]

    with caplog.at_level(logging.INFO, logger="t.handle"):
        assert [fetch() for _ in range(5)] == [[]] * 5
        state["fail"] = False
        assert fetch() == [1]
        state["fail"] = True
        assert fetch() == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed, returning the default" in m for m in messages) == 2  # one per streak, not per call
    assert any("recovered after ConnectionError (4 repeated failure(s) not logged)" in m for m in messages)


def test_default_factory_gives_fresh_objects_and_other_errors_pass() -> None:
    @handle_errors(default_factory=dict, exceptions=(KeyError,), log=False)
    def lookup(key: str) -> dict[str, int]:
        if key == "boom":
            raise ValueError(key)
        raise KeyError(key)

    first, second = lookup("a"), lookup("b")
    assert first == {} and first is not second
    with pytest.raises(ValueError):
        lookup("boom")


async def test_async_functions_and_cancellation_passes_through() -> None:
    @handle_errors(default=0, log=False)
    async def compute(kind: str) -> int:
        if kind == "cancel":
            raise asyncio.CancelledError()
        raise RuntimeError(kind)

    assert await compute("x") == 0
    with pytest.raises(asyncio.CancelledError):
        await compute("cancel")
