"""The change feed: reads `cache_changes` (migration 0008) on a dedicated connection (not from the pool).

NOTIFY `rentscout_cache` is a doorbell only: its payload is never read, so whoever may NOTIFY can at
most cause an extra read. Doorbells that ring while a read runs are coalesced into the next one; the
log is also read every `poll_interval` without one (a lost NOTIFY costs at most that long), which also
confirms the replica is caught up (see changes.py: the cache serves nothing while unconfirmed).

A reconnection resumes from the last applied position: nothing is dropped, nothing is flushed. A
replica that starts reads the retained log once (so it can use entries other replicas filled) and
treats entries older than its oldest row as unknown. Every wait is bounded by `timeout`. Rows older
than `retention` are pruned (the newest is kept); a replica that could not read for half that long
starts over like a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg

from rentscout.cache_service import metrics
from rentscout.cache_service.changes import ChangeLog

_log = logging.getLogger(__name__)
CHANNEL = "rentscout_cache"
BATCH = 5000
PRUNE_INTERVAL = 60.0
# One statement, so one snapshot: the rows after the newest seen, the rows of unresolved holes, and the
# snapshot's bounds (which resolve holes, see changes.py). The LEFT JOIN keeps one row when none changed.
READ_SQL = """
SELECT pg_snapshot_xmin(s.snap)::text::bigint AS xmin, pg_snapshot_xmax(s.snap)::text::bigint AS xmax, r.seq, r.tags
  FROM (SELECT pg_current_snapshot() AS snap) s
  LEFT JOIN (
        (SELECT seq, tags FROM cache_changes WHERE seq > $1 ORDER BY seq LIMIT $4)
        UNION ALL
        (SELECT c.seq, c.tags FROM unnest($2::bigint[], $3::bigint[]) AS h(lo, hi)
           JOIN cache_changes c ON c.seq BETWEEN h.lo AND h.hi)
  ) r ON true
 ORDER BY r.seq
"""
OLDEST_SQL = "SELECT min(seq) FROM cache_changes"
PRUNE_SQL = """DELETE FROM cache_changes
 WHERE at < clock_timestamp() - make_interval(secs => $1) AND seq < (SELECT max(seq) FROM cache_changes)"""
APPEND_SQL = "WITH c AS (INSERT INTO cache_changes (tags) VALUES ($1) RETURNING seq) SELECT seq, pg_notify($2, '') FROM c"


class Fetcher(Protocol):
    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...


class ChangeFeed:
    def __init__(
        self,
        dsn: str,
        log: ChangeLog,
        *,
        timeout: float,
        poll_interval: float,
        retention: float,
        listen: bool,
        before_apply: Callable[[], Awaitable[None]],
        on_changed: Callable[[set[str]], None],
    ) -> None:
        """`before_apply` runs before new rows take effect (the standby watermark); `on_changed` gets
        the tags they touched (best-effort cleanup in Redis)."""
        self._dsn = dsn
        self.log = log
        self._timeout = timeout
        self._poll = min(poll_interval, log.max_lag / 2)
        self._retention = retention
        self._listen = listen
        self._before_apply = before_apply
        self._on_changed = on_changed
        self._lock = asyncio.Lock()
        self._doorbell = asyncio.Event()
        self._stop = asyncio.Event()
        self.connected = asyncio.Event()
        self.connections = 0
        self.reads = 0  # reads of the log so far
        self._last_read = float("-inf")  # time.monotonic() at the start of the last successful read
        self.doorbells = 0

    def stop(self) -> None:
        self._stop.set()
        self._doorbell.set()

    def _rang(self, *_args: object) -> None:
        self.doorbells += 1
        self._doorbell.set()

    # -- one read of the log --------------------------------------------------------------------

    async def catch_up(self, db: Fetcher) -> None:
        """Read the log until nothing more is returned; then this replica has applied every change
        committed before the call."""
        async with self._lock:
            while await self._read(db) >= BATCH:
                pass

    async def _read(self, db: Fetcher) -> int:
        started = time.monotonic()
        log = self.log
        if log.floor >= 0 and started - self._last_read > self._retention / 2:
            _log.warning(
                "the change log was not read for %.0f s: starting over from its oldest row (older cache entries are misses)",
                started - self._last_read,
            )
            log.reset()
        first = log.floor < 0
        if first:  # (what the retained log changed before is not this replica's to clean up)
            log.start(await db.fetchval(OLDEST_SQL, timeout=self._timeout))
        lo, hi = log.holes()
        rows = await db.fetch(READ_SQL, log.newest, lo, hi, BATCH, timeout=self._timeout)
        changes = [(int(r["seq"]), list(r["tags"])) for r in rows if r["seq"] is not None]
        if changes:
            await self._before_apply()
        complete = len(changes) < BATCH  # else more rows wait: this read does not show the replica caught up
        changed = log.apply(changes, int(rows[0]["xmin"]), int(rows[0]["xmax"]), started if complete else None)
        self.reads += 1
        self._last_read = started
        metrics.CHANGE_LOG_POSITION.set(log.low)
        metrics.CHANGE_LOG_HOLES.set(log.pending_holes)
        if changed and not first:
            self._on_changed(changed)
        return len(changes)  # (a full batch asks for more)

    async def prune(self, db: Fetcher) -> int:
        """Delete rows older than the retention (never the newest); returns how many."""
        rows = await db.fetch(
            f"WITH d AS ({PRUNE_SQL} RETURNING 1) SELECT count(*) AS n FROM d", self._retention, timeout=self._timeout
        )
        return int(rows[0]["n"])

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=self._timeout, server_settings={"application_name": "rentscout-cache-listener"}
                )
                lost = asyncio.Event()

                def terminated(_conn: object, ev: asyncio.Event = lost) -> None:
                    ev.set()
                    self._doorbell.set()

                conn.add_termination_listener(terminated)
                if self._listen:  # LISTEN is a statement too: a frozen server must not hold us
                    await asyncio.wait_for(conn.add_listener(CHANNEL, self._rang), self._timeout)
                self.connections += 1
                metrics.LISTENER_UP.set(1)
                backoff = 0.2
                pruned = time.monotonic()
                while not lost.is_set() and not self._stop.is_set():
                    self._doorbell.clear()
                    await self.catch_up(conn)
                    self.connected.set()
                    if time.monotonic() - pruned > PRUNE_INTERVAL:
                        pruned = time.monotonic()
                        await self.prune(conn)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._doorbell.wait(), self._poll)
                if not self._stop.is_set():
                    _log.warning("change log connection lost; reconnecting (resumes from position %d)", self.log.low)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning(
                    "change log reader: %s; reconnecting in %.1fs",
                    type(exc).__name__,
                    backoff,
                    extra={"fields": {"error.type": type(exc).__name__, "error.message": str(exc)[:300]}},
                )
            except Exception:  # a bug must not stop the reader for good (meanwhile the cache is bypassed, never stale)
                _log.exception("change log reader failed; reconnecting in %.1fs", backoff)
            finally:
                self.connected.clear()
                metrics.LISTENER_UP.set(0)
                if conn is not None:
                    conn.terminate()
            if not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)


async def append(db: Fetcher, tags: list[str], timeout: float) -> int:
    """Log an explicit invalidation of `tags` (this service's role owns the log) and ring the doorbell."""
    rows = await db.fetch(APPEND_SQL, tags, CHANNEL, timeout=timeout)
    return int(rows[0]["seq"])
