"""LISTEN for property changes on a dedicated PostgreSQL connection (not from the pool).

Migration 0003 makes every statement that changes `properties` NOTIFY `rentscout_cache` at commit
with the cities and types it touched. Notifications sent while this connection is down are lost,
so after every reconnection `on_gap` runs (the service then drops every entry): correctness first.
A periodic `SELECT 1` detects a connection that died silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from rentscout.cache_service import metrics

_log = logging.getLogger(__name__)
CHANNEL = "rentscout_cache"


class ChangeListener:
    def __init__(self, dsn: str, on_change: Callable[[dict[str, Any]], Awaitable[None]],
                 on_gap: Callable[[], Awaitable[None]], *, connect_timeout: float, check_interval: float = 5.0) -> None:
        self._dsn = dsn
        self._on_change = on_change
        self._on_gap = on_gap
        self._connect_timeout = connect_timeout
        self._check_interval = check_interval
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.connections = 0  # successful LISTENs so far (reconnections = connections - 1)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._queue.put_nowait(payload)

    async def run(self) -> None:
        consumer = asyncio.create_task(self._consume(), name="cache-change-consumer")
        try:
            await self._listen_forever()
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    async def _listen_forever(self) -> None:
        backoff = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout,
                                             server_settings={"application_name": "rentscout-cache-listener"})
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(CHANNEL, self._notified)
                self.connections += 1
                if self.connections > 1:
                    _log.warning("change listener reconnected; dropping every entry (changes may have been missed)")
                    await self._on_gap()
                self.connected.set()
                metrics.LISTENER_UP.set(1)
                backoff = 0.2
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._check_interval)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=self._connect_timeout)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning("change listener: %s; reconnecting in %.1fs", type(exc).__name__, backoff,
                             extra={"fields": {"error.type": type(exc).__name__, "error.message": str(exc)[:300]}})
            finally:
                self.connected.clear()
                metrics.LISTENER_UP.set(0)
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _consume(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                change = orjson.loads(payload)
                if not isinstance(change, dict):
                    raise TypeError("payload is not an object")
            except (orjson.JSONDecodeError, TypeError):
                _log.warning("ignoring a malformed change notification", extra={"fields": {"payload": payload[:200]}})
                continue
            try:
                await self._on_change(change)
            except Exception:  # one bad notification must not stop invalidation for good
                _log.exception("handling a change notification failed")
