"""Export runs recorded in PostgreSQL (table export_runs, migration 0002), so every replica sees them all.

A run is inserted when a stream starts and closed when it ends. Each replica's heartbeat task refreshes
the progress of its open runs; an open run whose heartbeat is older than three intervals belongs to a
replica that died: it is not in flight and counts as failed.
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
from rentscout.runtime.database import Database
from rentscout.wire import formats

_log = logging.getLogger(__name__)
END_TIMEOUT_SECONDS = 5.0
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
            uuid.UUID(bytes=export_id), fmt, resumed, REPLICA, correlation_id)
        progress = RunProgress(run_id)
        self.open[run_id] = progress
        return progress

    async def end_run(self, progress: RunProgress, status: str, error_code: str | None) -> None:
        """Close the run; best effort (the stream's outcome does not depend on this bookkeeping)."""
        self.open.pop(progress.run_id, None)
        try:
            await asyncio.wait_for(self._db.pool.execute(
                "UPDATE export_runs SET status = $2, ended_at = clock_timestamp(), heartbeat_at = clock_timestamp(), "
                "rows = $3, bytes = $4, error_code = $5 WHERE run_id = $1",
                progress.run_id, status, progress.rows, progress.bytes, error_code), END_TIMEOUT_SECONDS)
        except Exception as exc:  # PostgreSQL down or slow: bookkeeping must never break an export
            _log.warning("could not record the end of export run %s", progress.run_id,
                         extra={"fields": {"error.type": type(exc).__name__, "error.message": str(exc)[:300]}})

    def end_run_later(self, progress: RunProgress, status: str, error_code: str | None) -> None:
        """For runs ending outside the RPC (cancellation): recorded by a tracked background task."""
        task = asyncio.get_running_loop().create_task(self.end_run(progress, status, error_code))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- heartbeat -------------------------------------------------------------------------------

    async def beat(self) -> None:
        runs = list(self.open.values())
        if runs:
            await asyncio.wait_for(self._db.pool.execute(
                "UPDATE export_runs r SET heartbeat_at = clock_timestamp(), rows = v.rows, bytes = v.bytes "
                "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(run_id, rows, bytes) "
                "WHERE r.run_id = v.run_id AND r.ended_at IS NULL",
                [p.run_id for p in runs], [p.rows for p in runs], [p.bytes for p in runs]),
                max(self.heartbeat_seconds * 2, 1.0))

    async def _loop(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.beat()
                beats += 1
                if self.retention_days and beats % 720 == 1:  # at start, then every ~hour at 5 s
                    await asyncio.wait_for(self._db.pool.execute(
                        "DELETE FROM export_runs WHERE started_at < now() - make_interval(days => $1)",
                        self.retention_days), 30)
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
        stale = self.heartbeat_seconds * 3
        rows = await self._db.fetch(
            """
            WITH r AS (
                SELECT format, rows, bytes,
                       CASE WHEN ended_at IS NOT NULL THEN status
                            WHEN heartbeat_at < clock_timestamp() - make_interval(secs => $2) THEN 'failed'
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
                   count(*) FILTER (WHERE state = 'running') AS running,
                   coalesce(sum(rows), 0)::bigint AS rows,
                   coalesce(sum(bytes), 0)::bigint AS bytes,
                   coalesce(sum(rows) FILTER (WHERE state = 'completed'), 0)::float8 AS done_rows,
                   coalesce(sum(seconds) FILTER (WHERE state = 'completed'), 0)::float8 AS done_seconds
            FROM r GROUP BY format ORDER BY format""", since, stale)
        out = export_pb2.GetExportStatisticsResponse()
        for r in rows:
            out.exports_started += r["started"]
            out.exports_completed += r["completed"]
            out.exports_failed += r["failed"]
            out.exports_cancelled += r["cancelled"]
            out.exports_in_flight += r["running"]
            out.rows_exported += r["rows"]
            out.bytes_exported += r["bytes"]
            seconds = r["done_seconds"]
            out.by_format.add(format=formats.by_name(r["format"]).enum, exports=r["started"], rows=r["rows"], bytes=r["bytes"],
                              mean_rows_per_second=r["done_rows"] / seconds if seconds > 0 else 0.0)
        return out
