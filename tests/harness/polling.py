"""Waiting for something that happens in the background (cleanup, LISTEN/NOTIFY, pub/sub, refreshes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], Any] | None = None, timeout: float = 10.0) -> T:
    """Poll `probe` until `ok(result)` is truthy, or until `timeout`; returns the last result.

    Without `ok` the probe is a predicate: it must come to return True, and the test fails with its
    last value if it does not. With `ok` the caller asserts on the returned result.
    """
    end = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        done = result is True if ok is None else ok(result)
        if done or asyncio.get_running_loop().time() > end:
            if ok is None:
                assert result is True, result
            return result
        await asyncio.sleep(0.05)


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> bool:
    """Blocking twin of `eventually` for threads and sync tests: True once `predicate()` is truthy."""
    import time

    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(interval)
