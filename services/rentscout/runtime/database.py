"""The asyncpg pool every service uses: lazy connections, deadline-bounded, UNAVAILABLE when down.

Overload is not an outage: a call that finds every pooled connection busy past its budget gets
RESOURCE_EXHAUSTED with a retry pushback (the database answers, this process is at its limit), and every
statement waits at most `lock_timeout` for a lock (a migration's ALTER TABLE), then fails the same way
instead of holding its connection. Readiness never competes for the pool: `probe` uses a connection of its
own with its own short timeout, so a saturated pool leaves the replica in the load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from rentscout.runtime import deadline, logs
from rentscout.runtime.classify import classify
from rentscout.runtime.config import RuntimeSettings
from rentscout.runtime.errors import LOCKED_RETRY_AFTER_SECONDS, DeadlineExceeded, ResourceExhausted, Unavailable

_log = logging.getLogger(__name__)


def _release_done(task: asyncio.Future[None]) -> None:
    """Retrieve a release's outcome so that nothing is left for "Task exception was never retrieved"."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        _log.debug(
            "a database connection could not be reset in time and was closed",
            extra={"fields": {"error.type": type(exc).__name__}},
        )


class Releases:
    """Connection releases that run while the caller goes on with work of its own (parsing what it read),
    all finished when the block ends: `async with Releases() as later: ... db.connection(later=later)`.
    The reset's round trip then overlaps that work, and nothing is left running after the block."""

    def __init__(self) -> None:
        self._pending: list[asyncio.Future[None]] = []

    def add(self, release: asyncio.Future[None]) -> None:
        self._pending.append(release)

    async def sent(self) -> None:
        """Let the releases added so far send their reset: each is a task whose first step writes it, and a
        task only runs when its creator yields. Work after this overlaps the reset's round trip."""
        await asyncio.sleep(0)

    async def __aenter__(self) -> Releases:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pending, self._pending = self._pending, []
        for release in pending:
            with contextlib.suppress(Exception):  # _release_done logged it; the connection was terminated
                await asyncio.shield(release)


class Database:
    """A pool that starts even when PostgreSQL is down; calls then fail fast with UNAVAILABLE."""

    def __init__(self, settings: RuntimeSettings, application_name: str, dsn: str | None = None) -> None:
        self.settings = settings
        self.application_name = application_name
        self.dsn = dsn or settings.database_url
        self._pool: asyncpg.Pool | None = None
        self._reset_done: set[int] = set()  # server pids of connections give_back has just reset
        self._probe: asyncpg.Connection | None = None  # readiness' own connection, never a pool slot
        self._probe_lock = asyncio.Lock()

    def server_settings(self, suffix: str = "") -> dict[str, str]:
        """Session settings of every connection: who it is, and how long one statement and one lock wait last."""
        s = self.settings
        return {
            "application_name": self.application_name + suffix,
            "statement_timeout": str(s.db_statement_timeout_ms),
            "lock_timeout": str(s.db_lock_timeout_ms),
        }

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("the database pool is not started")
        return self._pool

    async def start(self) -> None:
        s = self.settings
        kwargs: dict[str, Any] = dict(
            dsn=self.dsn,
            max_size=s.db_pool_max_size,
            timeout=s.db_connect_timeout_seconds,
            max_inactive_connection_lifetime=300.0,
            reset=self._pool_reset,
            server_settings=self.server_settings(),
        )
        try:
            self._pool = await asyncpg.create_pool(min_size=s.db_pool_min_size, **kwargs)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            _log.warning("database unreachable at start; connecting lazily", extra={"fields": {"error.type": type(exc).__name__}})
            self._pool = await asyncpg.create_pool(min_size=0, **kwargs)

    async def close(self, timeout: float = 5.0) -> None:
        if self._probe is not None:
            self._probe.terminate()
            self._probe = None
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None

    @asynccontextmanager
    async def connection(self, later: Releases | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, acquired within the RPC deadline, the connect timeout and the server's bound.

        Whatever ends the block, the connection goes back within the bound: released when PostgreSQL
        answers its reset in time, else terminated (a frozen server never holds a task). With `later`,
        the block ends as soon as the release has started, and `later` waits for it."""
        cap = self.settings.db_connect_timeout_seconds
        timeout = deadline.remaining(cap)
        try:
            conn = await self.pool.acquire(timeout=timeout)
        except TimeoutError:
            if deadline.expired():
                raise DeadlineExceeded("the deadline expired while waiting for a database connection") from None
            if self.saturated():
                raise ResourceExhausted(
                    f"every database connection of this server is busy (RENTSCOUT_DB_POOL_MAX_SIZE="
                    f"{self.settings.db_pool_max_size}); retry shortly",
                    retry_after=LOCKED_RETRY_AFTER_SECONDS,
                ) from None
            raise Unavailable("no database connection could be obtained in time") from None
        except Exception as exc:
            raise (classify(exc) or exc) from None
        try:
            # a pool hands out a PoolConnectionProxy, which forwards every Connection method; the
            # asyncpg stubs do not model it as a Connection
            yield conn  # type: ignore[misc]
        except TimeoutError:
            if not deadline.expired():  # the server's bound, not the caller's deadline: PostgreSQL is stuck
                conn.terminate()  # a reset would wait on it too
            raise
        finally:
            if later is None:
                await self.give_back(conn)
            else:
                later.add(self._start_release(conn))

    def _start_release(self, conn: Any) -> asyncio.Future[None]:
        """The release as a task of its own (its first step sends the reset), whose outcome is logged, never
        left unretrieved; nothing can cancel it from outside but a shutdown."""
        release = asyncio.ensure_future(self._release(conn))
        release.add_done_callback(_release_done)
        return release

    async def give_back(self, conn: Any) -> None:
        """Return a pooled connection within the bound, in a task of its own that cannot be left with an
        unretrieved exception: if this task is cancelled meanwhile, the release still finishes (or
        terminates the connection) and its outcome is logged, never dropped."""
        release = self._start_release(conn)
        try:
            await asyncio.shield(release)
        except Exception:  # _release_done logged it; the connection was terminated
            return

    async def _release(self, conn: Any) -> None:
        """Reset, then release: one round trip, even for a caller that left its transaction open for the
        release to roll back (the analyzer's, which only ever rolls back); asyncpg's own release would
        spend a round trip on that ROLLBACK. A connection whose reset fails or times out is terminated."""
        pid = conn.get_server_pid()
        try:
            if not conn.is_closed():
                rollback = "ROLLBACK; " if conn.is_in_transaction() else ""
                await conn.execute(rollback + conn.get_reset_query(), timeout=deadline.bound())
                self._reset_done.add(pid)
        except BaseException:
            conn.terminate()
            raise
        finally:
            try:
                await self.pool.release(conn, timeout=deadline.bound())
            finally:
                self._reset_done.discard(pid)

    async def _pool_reset(self, conn: asyncpg.Connection) -> None:
        """The pool's reset: nothing more for a connection `_release` has just reset (pids are unique among
        one server's live connections, and the mark lasts only for that release)."""
        if conn.get_server_pid() not in self._reset_done:
            await conn.reset()

    async def _run(self, kind: str, sql: str, args: tuple[Any, ...], timeout: float | None) -> Any:
        started = time.perf_counter()
        async with self.connection() as conn:
            result = await getattr(conn, kind)(sql, *args, timeout=deadline.remaining(timeout))
        rows = len(result) if isinstance(result, list) else None
        logs.log_db_query(sql, time.perf_counter() - started, rows)
        return result

    async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run("fetch", sql, args, timeout)
        return rows

    async def fetchrow(self, sql: str, *args: Any, timeout: float | None = None) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._run("fetchrow", sql, args, timeout)
        return row

    async def fetchval(self, sql: str, *args: Any, timeout: float | None = None) -> Any:
        return await self._run("fetchval", sql, args, timeout)

    async def execute(self, sql: str, *args: Any, timeout: float | None = None) -> str:
        status: str = await self._run("execute", sql, args, timeout)
        return status

    def saturated(self) -> bool:
        """Every connection the pool may open is open and handed out (overload, not an outage)."""
        pool = self._pool
        return pool is not None and pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0

    async def ping(self, timeout: float) -> bool:
        """One `SELECT 1` within `timeout` on the probe's own connection (see `probe`)."""
        return await self.probe("SELECT 1", timeout) is not None

    async def probe(self, sql: str, timeout: float) -> asyncpg.Record | None:
        """The first row of `sql` (None: no answer within `timeout`), on a connection of the probe's own, opened
        when needed and kept between probes: a busy pool or a locked table never makes a replica look down.
        A connection that did not answer in time is terminated, and the next probe opens a new one."""
        async with self._probe_lock:
            try:
                async with asyncio.timeout(timeout):
                    if self._probe is None or self._probe.is_closed():
                        self._probe = await asyncpg.connect(
                            self.dsn, timeout=timeout, server_settings=self.server_settings(":probe")
                        )
                    row: asyncpg.Record | None = await self._probe.fetchrow(sql)
                    return row
            except Exception as exc:
                if self._probe is not None:
                    self._probe.terminate()
                    self._probe = None
                _log.debug("database probe failed", extra={"fields": {"error.type": type(exc).__name__}})
                return None
