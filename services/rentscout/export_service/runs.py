"""Export runs recorded in PostgreSQL (table export_runs, migration 0002), so every replica sees them all.

A run is inserted when a stream starts and closed when it ends. Each replica's heartbeat task refreshes
the progress of its open runs; an open run whose heartbeat is older than three intervals belongs to a
replica that died (or is badly stalled): statistics count it as abandoned, never in flight. Once it
has been silent for ten intervals, every replica's heartbeat closes it as `abandoned` for good (ended
at its last heartbeat, with the rows and bytes it recorded), so no run stays `running` forever. The
wider margin keeps a replica that was merely slow for a few beats from having its live runs closed.

Bookkeeping never outlives the server's bound (RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS) and never waits
on the caller's deadline: writes made after a stream ended run without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime

from rentscout.export.v1 import export_pb2
from rentscout.runtime import deadline
from rentscout.runtime.database import Database
from rentscout.wire import formats

_log = logging.getLogger(__name__)
END_TIMEOUT_SECONDS = 5.0
STALE_BEATS = 3  # an open run silent for this many heartbeat intervals is not in flight (statistics)
SWEEP_BEATS = 10  # ... and after this many it is closed as abandoned
SWEEP_SQL = """
UPDATE export_runs SET status = 'abandoned', ended_at = heartbeat_at, error_code = 'ABANDONED'
 WHERE ended_at IS NULL AND heartbeat_at < clock_timestamp() - make_interval(secs => $1)"""
REPLICA = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RunProgress:
    run_id: int
    rows: int = 0
    bytes: int = 0


class RunStore:
    def __init__(self, db: Database, heartbeat_seconds: float, retention_days: int) -> None:
        self._db = db
        self.heartbeat_seconds = heartbeat_seconds
        self.retention_days = retention_days
        self.open: dict[int, RunProgress] = {}
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start_run(self, export_id: bytes, fmt: str, resumed: bool, correlation_id: str | None) -> RunProgress:
        run_id = await self._db.fetchval(
            "INSERT INTO export_runs (export_id, format, resumed, replica, correlation_id) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING run_id",
            uuid.UUID(bytes=export_id),
            fmt,
            resumed,
            REPLICA,
            correlation_id,
        )
        progress = RunProgress(run_id)
        self.open[run_id] = progress
        return progress

    async def end_run(self, progress: RunProgress, status: str, error_code: str | None) -> None:
        """Close the run; best effort (the stream's outcome does not depend on this bookkeeping)."""
        self.open.pop(progress.run_id, None)
        try:
            await self._write(
                "UPDATE export_runs SET status = $2, ended_at = clock_timestamp(), heartbeat_at = clock_timestamp(), "
                "rows = $3, bytes = $4, error_code = $5 WHERE run_id = $1",
                progress.run_id,
                status,
                progress.rows,
                progress.bytes,
                error_code,
                timeout=END_TIMEOUT_SECONDS,
            )
        except Exception as exc:  # PostgreSQL down or slow: bookkeeping must never break an export
            _log.warning(
                "could not record the end of export run %s",
                progress.run_id,
                extra={"fields": {"error.type": type(exc).__name__, "error.message": str(exc)[:300]}},
            )

    async def _write(self, sql: str, *args: object, timeout: float) -> str:
        """One statement outside any call's deadline (the run may end after its RPC), within `timeout`
        and the server's bound."""
        deadline.set_from_time_remaining(None)  # this task's own context: the RPC's deadline is not ours
        return await self._db.execute(sql, *args, timeout=timeout)

    def end_run_later(self, progress: RunProgress, status: str, error_code: str | None) -> None:
        """For runs ending outside the RPC (cancellation): recorded by a tracked background task."""
        task = asyncio.get_running_loop().create_task(self.end_run(progress, status, error_code))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- heartbeat -------------------------------------------------------------------------------

    async def beat(self) -> None:
        runs = list(self.open.values())
        if runs:
            await self._write(
                "UPDATE export_runs r SET heartbeat_at = clock_timestamp(), rows = v.rows, bytes = v.bytes "
                "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(run_id, rows, bytes) "
                "WHERE r.run_id = v.run_id AND r.ended_at IS NULL",
                [p.run_id for p in runs],
                [p.rows for p in runs],
                [p.bytes for p in runs],
                timeout=max(self.heartbeat_seconds * 2, 1.0),
            )

    async def sweep(self) -> int:
        """Close the runs of replicas that died (heartbeat silent for SWEEP_BEATS intervals) as abandoned."""
        status = await self._write(SWEEP_SQL, self.heartbeat_seconds * SWEEP_BEATS, timeout=max(self.heartbeat_seconds * 2, 1.0))
        swept = int(status.rsplit(" ", 1)[-1]) if status.startswith("UPDATE") else 0
        if swept:
            _log.warning(
                "closed %d export run(s) of replicas that stopped sending heartbeats as abandoned",
                swept,
                extra={"fields": {"export.runs_abandoned": swept}},
            )
        return swept

    async def _loop(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.beat()
                await self.sweep()
                beats += 1
                if self.retention_days and beats % 720 == 1:  # at start, then every ~hour at 5 s
                    await self._write(
                        "DELETE FROM export_runs WHERE started_at < now() - make_interval(days => $1)",
                        self.retention_days,
                        timeout=30,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL down: the next beat tries again
                _log.debug("export heartbeat failed", extra={"fields": {"error.type": type(exc).__name__}})

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="export-heartbeat")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:
            await asyncio.wait(self._pending, timeout=END_TIMEOUT_SECONDS)

    # -- statistics ------------------------------------------------------------------------------

    async def statistics(self, since: datetime | None) -> export_pb2.GetExportStatisticsResponse:
        stale = self.heartbeat_seconds * STALE_BEATS
        rows = await self._db.fetch(
            """
            WITH r AS (
                SELECT format, rows, bytes,
                       CASE WHEN ended_at IS NOT NULL THEN status
                            WHEN heartbeat_at < clock_timestamp() - make_interval(secs => $2) THEN 'abandoned'
                            ELSE 'running' END AS state,
                       extract(epoch FROM ended_at - started_at) AS seconds
                FROM export_runs
                WHERE $1::timestamptz IS NULL OR started_at >= $1
            )
            SELECT format,
                   count(*) AS started,
                   count(*) FILTER (WHERE state = 'completed') AS completed,
                   count(*) FILTER (WHERE state = 'failed') AS failed,
                   count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
                   count(*) FILTER (WHERE state = 'abandoned') AS abandoned,
                   count(*) FILTER (WHERE state = 'running') AS running,
                   coalesce(sum(rows), 0)::bigint AS rows,
                   coalesce(sum(bytes), 0)::bigint AS bytes,
                   coalesce(sum(rows) FILTER (WHERE state = 'completed'), 0)::float8 AS done_rows,
                   coalesce(sum(seconds) FILTER (WHERE state = 'completed'), 0)::float8 AS done_seconds
            FROM r GROUP BY format ORDER BY format""",
            since,
            stale,
        )
        out = export_pb2.GetExportStatisticsResponse()
        for r in rows:
            out.exports_started += r["started"]
            out.exports_completed += r["completed"]
            out.exports_failed += r["failed"]
            out.exports_cancelled += r["cancelled"]
            out.exports_abandoned += r["abandoned"]
            out.exports_in_flight += r["running"]
            out.rows_exported += r["rows"]
            out.bytes_exported += r["bytes"]
            seconds = r["done_seconds"]
            out.by_format.add(
                format=formats.by_name(r["format"]).enum,
                exports=r["started"],
                rows=r["rows"],
                bytes=r["bytes"],
                mean_rows_per_second=r["done_rows"] / seconds if seconds > 0 else 0.0,
            )
        return out
