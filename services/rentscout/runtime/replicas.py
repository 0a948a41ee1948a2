"""Reads from PostgreSQL's streaming standbys, writes (and everything else) on the primary.

`ReadRouter` hands out a connection for a read that tolerates replication: a healthy standby in
round-robin order, else the primary. A standby is healthy while it answers, is in recovery and
replays within RENTSCOUT_DATABASE_MAX_REPLICA_LAG; a monitor task checks each one every health
interval and logs one line per change of state. A read that must see a given commit (a cache fill
after an invalidation, a resumed export) names its LSN: a standby serves it only once
`pg_last_wal_replay_lsn()` has reached it, waiting at most RENTSCOUT_DATABASE_REPLICA_WAIT_MS, and the
primary serves it otherwise. Every fallback counts in `rentscout_db_read_fallbacks_total{reason}`.

With no standby configured the router is the primary's pool and costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg
from prometheus_client import Counter, Gauge

from rentscout.runtime import deadline, logs
from rentscout.runtime.config import RuntimeSettings
from rentscout.runtime.database import Database
from rentscout.runtime.errors import ServiceError

_log = logging.getLogger(__name__)

PRIMARY = "primary"
FALLBACKS = Counter(
    "rentscout_db_read_fallbacks_total", "Reads that could have gone to a standby but went to the primary, by reason.", ["reason"]
)
LAG = Gauge(
    "rentscout_db_replica_lag_seconds",
    "Replay lag of each standby (seconds; -1 while unreachable, +Inf while behind by an unknown time).",
    ["node"],
)
UP = Gauge("rentscout_db_replica_up", "1 while a standby is used for reads, else 0.", ["node"])

# Lag is 0 while the standby has replayed all it received (an idle primary sends nothing, and the
# time since the last replayed commit would grow for no reason); else the age of that last commit, or
# infinite when it has replayed no commit since it started (how far behind it is cannot be known, so
# it counts as lagging rather than as current).
_STATE_SQL = """
SELECT pg_catalog.pg_is_in_recovery() AS in_recovery, pg_catalog.pg_last_wal_replay_lsn()::text AS replay_lsn,
       CASE WHEN pg_catalog.pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_catalog.pg_last_wal_replay_lsn()
            THEN 0.0
            ELSE coalesce(extract(epoch FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()),
                          'Infinity')
       END::float8 AS lag"""
_REPLAY_SQL = "SELECT pg_catalog.pg_last_wal_replay_lsn()::text"
NODE_LSN_SQL = (
    "SELECT (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() "
    "ELSE pg_catalog.pg_current_wal_insert_lsn() END)::text"
)
# the insert position: with synchronous_commit = off a commit record may not be written yet, and it counts
CURRENT_LSN_SQL = "SELECT pg_catalog.pg_current_wal_insert_lsn()::text"
# what a standby can have received: the flush position (committed catalog changes, with synchronous_commit)
FLUSHED_LSN_SQL = "SELECT pg_catalog.pg_current_wal_flush_lsn()::text"
POLL_SECONDS = 0.01


def parse_lsn(text: str | None) -> int:
    """'16/B374D848' -> 0x16B374D848 (0 for NULL, which a standby that replayed nothing reports)."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def node_name(dsn: str) -> str:
    """host:port of a DSN, never its credentials (for logs and metric labels)."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


@dataclass
class Standby:
    name: str
    db: Database
    healthy: bool = False
    reason: str = "unchecked"  # why it is not used: unchecked, down, lagging, not_in_recovery
    lag: float = -1.0
    replay_lsn: int = 0


class ReadRouter:
    """Connections for reads that tolerate replication; see the module docstring."""

    def __init__(self, settings: RuntimeSettings, primary: Database, application_name: str) -> None:
        self.settings = settings
        self.primary = primary
        self.standbys = [
            Standby(node_name(dsn), Database(settings, application_name, dsn))
            for dsn in filter(None, settings.database_read_url.split(","))
        ]
        self._turn = itertools.count()
        self._monitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for standby in self.standbys:
            await standby.db.start()
        if self.standbys:
            await self.check()
            self._monitor = asyncio.create_task(self._watch(), name="replica-monitor")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for standby in self.standbys:
            await standby.db.close()

    # -- health -------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_check_interval_seconds)
            await self.check()

    async def check(self) -> None:
        """Probe every standby once (bounded by the connect timeout) and record its state."""
        await asyncio.gather(*(self._check(s) for s in self.standbys))

    async def _check(self, standby: Standby) -> None:
        timeout = self.settings.db_connect_timeout_seconds
        row = await standby.db.probe(_STATE_SQL, timeout)  # its own connection: a busy pool is not "down"
        if row is None:  # any failure to answer means: do not read from it
            self._set(standby, False, "down", -1.0, error="no answer")
            return
        standby.replay_lsn = parse_lsn(row["replay_lsn"])
        if not row["in_recovery"]:
            self._set(standby, False, "not_in_recovery", 0.0)
        elif row["lag"] > self.settings.database_max_replica_lag:
            self._set(standby, False, "lagging", row["lag"])
        else:
            self._set(standby, True, "", row["lag"])

    def _set(self, standby: Standby, healthy: bool, reason: str, lag: float, error: str = "") -> None:
        changed = healthy != standby.healthy or (not healthy and reason != standby.reason)
        standby.healthy, standby.reason, standby.lag = healthy, reason, lag
        LAG.labels(standby.name).set(lag)
        UP.labels(standby.name).set(1 if healthy else 0)
        if changed:
            fields: dict[str, Any] = {"db.node": standby.name}
            if math.isfinite(lag):
                fields["db.replica.lag_seconds"] = round(lag, 3)
            if error:
                fields["error.type"] = error
            if healthy:
                _log.info("standby in use for reads", extra={"fields": fields})
            else:
                _log.warning(
                    f"standby not used for reads ({reason}); reading from the primary",
                    extra={"fields": {**fields, "db.replica.state": reason}},
                )

    # -- routing ------------------------------------------------------------------------------

    def _candidates(self) -> list[Standby]:
        healthy = [s for s in self.standbys if s.healthy]
        if not healthy:
            return []
        start = next(self._turn) % len(healthy)
        return healthy[start:] + healthy[:start]

    async def _caught_up(self, standby: Standby, conn: asyncpg.Connection, min_lsn: int) -> bool:
        """Whether `standby` has replayed `min_lsn`, waiting for it within the configured bound."""
        if standby.replay_lsn >= min_lsn:
            return True
        end = time.monotonic() + self.settings.database_replica_wait_ms / 1000
        while True:
            standby.replay_lsn = max(
                standby.replay_lsn,
                parse_lsn(await conn.fetchval(_REPLAY_SQL, timeout=deadline.remaining(self.settings.db_connect_timeout_seconds))),
            )
            if standby.replay_lsn >= min_lsn:
                return True
            if time.monotonic() + POLL_SECONDS > end or ((left := deadline.remaining()) is not None and left < 0.05):
                return False
            await asyncio.sleep(POLL_SECONDS)

    async def _standby_connection(self, stack: contextlib.AsyncExitStack, min_lsn: int) -> tuple[asyncpg.Connection, str] | str:
        """A standby connection entered on `stack`, or the reason there is none."""
        if min_lsn >= CommitWatermark.UNKNOWN:
            return "primary_lsn_unknown"
        reason = "no_healthy_standby"
        for standby in self._candidates():
            inner = contextlib.AsyncExitStack()
            try:
                conn = await inner.enter_async_context(standby.db.connection())
                if min_lsn and not await self._caught_up(standby, conn, min_lsn):
                    await inner.aclose()
                    reason = "replay_behind"
                    continue
            except (ServiceError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
                await inner.aclose()
                self._set(standby, False, "down", -1.0, error=type(exc).__name__)  # until the monitor sees it back
                reason = "standby_down"
                continue
            stack.push_async_exit(inner)
            return conn, standby.name
        return reason

    @contextlib.asynccontextmanager
    async def connection(self, min_lsn: int = 0, *, standby: bool = True) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
        """(connection, node name) for one read; `min_lsn`: the commit the read must see (0: any);
        `standby=False`: the primary's (for what each node keeps for itself, like pg_stat_statements)."""
        async with contextlib.AsyncExitStack() as stack:
            if self.standbys and standby:
                found = await self._standby_connection(stack, min_lsn)
                if not isinstance(found, str):
                    yield found
                    return
                FALLBACKS.labels(found).inc()
            conn = await stack.enter_async_context(self.primary.connection())
            yield conn, PRIMARY

    def at(self, min_lsn: int) -> ReadView:
        return ReadView(self, min_lsn)

    async def _run(self, kind: str, sql: str, args: tuple[Any, ...], min_lsn: int) -> Any:
        """One statement on the node `connection` picks, logged like Database's own (plus the node)."""
        started = time.perf_counter()
        async with self.connection(min_lsn) as (conn, node):
            result = await getattr(conn, kind)(sql, *args, timeout=deadline.remaining())
        rows = len(result) if isinstance(result, list) else None
        logs.log_db_query(sql, time.perf_counter() - started, rows, logging.DEBUG, **{"db.node": node})
        return result

    async def fetch(self, sql: str, *args: Any, min_lsn: int = 0) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run("fetch", sql, args, min_lsn)
        return rows

    async def fetchrow(self, sql: str, *args: Any, min_lsn: int = 0) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._run("fetchrow", sql, args, min_lsn)
        return row

    async def fetchval(self, sql: str, *args: Any, min_lsn: int = 0) -> Any:
        return await self._run("fetchval", sql, args, min_lsn)


class Reads(Protocol):
    """What a read-only query needs of a pool: the primary's Database, or a ReadRouter view."""

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


class ReadView:
    """A ReadRouter bound to the commit its reads must see (`Reads` for code that takes a pool)."""

    def __init__(self, router: ReadRouter, min_lsn: int) -> None:
        self._router, self._min_lsn = router, min_lsn

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._router.fetch(sql, *args, min_lsn=self._min_lsn)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._router.fetchrow(sql, *args, min_lsn=self._min_lsn)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._router.fetchval(sql, *args, min_lsn=self._min_lsn)


class CommitWatermark:
    """The newest commit that later reads must see: the primary's WAL position when a change was heard of.

    A NOTIFY arrives after its transaction committed, so the primary's current LSN at that moment is
    at or past the commit: a standby that has replayed it shows the change. When the primary cannot
    be asked, every read goes to the primary until it can.
    """

    UNKNOWN = (1 << 64) - 1  # no standby has replayed this far: the primary serves

    def __init__(self, router: ReadRouter) -> None:
        self._router = router
        self.value = 0

    async def advance(self) -> None:
        if not self._router.standbys:
            return
        try:
            lsn = parse_lsn(await self._router.primary.fetchval(CURRENT_LSN_SQL))
        except (ServiceError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
            self.value = self.UNKNOWN
            return
        self.value = lsn if self.value == self.UNKNOWN else max(self.value, lsn)

    def view(self) -> ReadView:
        """Reads that see every change heard of so far."""
        return self._router.at(self.value)
