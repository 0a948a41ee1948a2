"""LISTEN for property changes on a dedicated PostgreSQL connection (not from the pool).

Migration 0003 makes every statement that changes `properties` NOTIFY `rentscout_cache` at commit
with the cities and types it touched. Notifications sent while no connection listens are lost, so
`on_connect(first)` runs once LISTEN is active and the service decides what to drop (everything
after a reconnection). A `SELECT 1` every `check_interval` detects a connection that died
silently, then `on_alive` runs (the service keeps a heartbeat in Redis with it). Every wait (connect,
LISTEN, the check) is bounded by `connect_timeout`, so a frozen PostgreSQL means a reconnection loop,
never a listener stuck on a dead socket. Notifications that
queue up while one is handled are handled together, so a burst of writes costs one invalidation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import asyncpg
import orjson

from rentscout.cache_service import metrics

_log = logging.getLogger(__name__)
CHANNEL = "rentscout_cache"
MAX_BATCH = 1000


class ChangeListener:
    def __init__(self, dsn: str, on_changes: Callable[[list[dict[str, Any]]], Awaitable[None]],
                 on_connect: Callable[[bool], Awaitable[None]], on_alive: Callable[[], Awaitable[None]], *,
                 connect_timeout: float, check_interval: float = 1.0) -> None:
        self._dsn = dsn
        self._on_changes = on_changes
        self._on_connect = on_connect
        self._on_alive = on_alive
        self._connect_timeout = connect_timeout
        self._check_interval = check_interval
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.connections = 0  # successful LISTENs so far (reconnections = connections - 1)
        # set by stop(), which may run during any await below: an Event, whose checks the type checker
        # does not narrow away the way it would a bool attribute's
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # set when the connection is lost or stop() is called

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        # asyncpg passes the NOTIFY payload as str; its stubs type the listener's payload as object
        self._queue.put_nowait(cast(str, payload))

    async def run(self) -> None:
        consumer = asyncio.create_task(self._consume(), name="cache-change-consumer")
        try:
            await self._listen_forever()
        finally:
            consumer.cancel()
            await asyncio.wait({consumer}, timeout=1.0)

    async def _listen_forever(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout,
                                             server_settings={"application_name": "rentscout-cache-listener"})
                self._wake = lost = asyncio.Event()
                if self._stop.is_set():
                    break
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                # LISTEN is a statement too: a server that accepted the connection and froze must not hold us
                await asyncio.wait_for(conn.add_listener(CHANNEL, self._notified), self._connect_timeout)
                self.connections += 1
                await self._on_connect(self.connections == 1)
                self.connected.set()
                metrics.LISTENER_UP.set(1)
                backoff = 0.2
                while not lost.is_set():
                    await self._on_alive()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._check_interval)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=self._connect_timeout)
                if not self._stop.is_set():
                    _log.warning("change listener connection lost; reconnecting")
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning("change listener: %s; reconnecting in %.1fs", type(exc).__name__, backoff,
                             extra={"fields": {"error.type": type(exc).__name__, "error.message": str(exc)[:300]}})
            finally:
                self.connected.clear()
                metrics.LISTENER_UP.set(0)
                if conn is not None:
                    conn.terminate()
            if not self._stop.is_set():
                await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _consume(self) -> None:
        while not self._stop.is_set():
            payloads = [await self._queue.get()]
            while not self._queue.empty() and len(payloads) < MAX_BATCH:
                payloads.append(self._queue.get_nowait())
            changes = []
            for payload in payloads:
                try:
                    change = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    change = None
                if isinstance(change, dict):
                    changes.append(change)
                else:
                    _log.warning("ignoring a malformed change notification",
                                 extra={"fields": {"cache.listener.payload": payload[:200]}})
            if not changes:
                continue
            try:
                await self._on_changes(changes)
            except Exception:  # a bug handling one batch must not stop automatic invalidation for good
                _log.exception("handling change notifications failed")
