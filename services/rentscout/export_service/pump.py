"""One export stream's PostgreSQL side: a task that runs EXPLAIN then COPY, feeding a bounded queue.

asyncpg pauses reading the socket while the COPY output callback awaits, and the callback awaits
`queue.put`, which waits while the consumer (the RPC, itself waiting for gRPC to send) is behind: so
PostgreSQL produces only as fast as the client consumes, and at most `QUEUE_BLOCKS` socket reads
(~256 KiB each) wait here. `cancel()` stops the query and returns the connection to the pool.

Stopping a COPY keeps its connection: asyncpg sends PostgreSQL a CancelRequest and discards the rest of
the COPY when the cancellation reaches it inside the output callback (or while it waits on a socket
read that has not arrived). A task cancelled in the instant between a read arriving and the task
resuming leaves the protocol mid-COPY with no CancelRequest sent (asyncpg 0.32), so its reset fails
and the pool must close it: 60 of 103 cuts cost a new PostgreSQL backend in `bench/export_bench.py
--flaky` (none since). So while the COPY runs, `cancel()` only asks, and the output callback raises at
the next block; a COPY whose PostgreSQL stays silent is cancelled outright after `SILENT_CANCEL_SECONDS`.

Inactivity: a COPY may rightly run for hours, so it is not bounded as a whole, only by the call's own
deadline. What is bounded is PostgreSQL's silence: while the pump waits on PostgreSQL (not on the
client), the next block must come within the server's bound (RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS),
or the stream fails with UNAVAILABLE and the stuck connection is terminated, never reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from rentscout.export_service import sqlgen
from rentscout.export_service.sqlgen import Window
from rentscout.runtime import deadline
from rentscout.runtime.errors import Unavailable
from rentscout.runtime.replicas import NODE_LSN_SQL, ReadRouter, parse_lsn

SMALL_BLOCK = 64 * 1024
COALESCE_SECONDS = 0.0005
QUEUE_BLOCKS = 1  # the kernel's socket buffer is the real buffer; a short queue makes reads larger
SILENT_CANCEL_SECONDS = 0.2  # a stop asked mid-COPY waits this long for the next block, then cancels outright


class _End:
    """The queue item after the last block."""


END = _End()


@dataclass(frozen=True)
class Failure:
    error: BaseException


@dataclass(frozen=True)
class CopyJob:
    select_list: list[str]
    where: str
    window: Window
    copy_options: Mapping[str, str]  # the format's (asyncpg copy_from_query options)
    statement_timeout_ms: int
    min_lsn: int = 0  # the WAL position the node read must have replayed (a resumed stream's)


@dataclass(frozen=True)
class Started:
    """The pump's first item: the planner's row estimate and the node that serves the COPY."""

    estimate: int
    node: str
    lsn: int  # that node's WAL position (replayed, on a standby) when the stream began


class CopyPump:
    """Queue items: first Started (or a Failure), then blocks (asyncpg's bytearrays), then END or a Failure."""

    def __init__(self, reads: ReadRouter, job: CopyJob) -> None:
        self.reads = reads
        self.job = job
        self.queue: asyncio.Queue[Started | bytes | bytearray | Failure | _End] = asyncio.Queue(QUEUE_BLOCKS)
        self.task: asyncio.Task[None] | None = None
        self._silence: asyncio.Timeout | None = None  # PostgreSQL's silence, rescheduled at every block
        self._copying = False  # inside copy_from_query, outside the output callback: cancel only by asking
        self._stop_asked = False

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="export-copy")

    def cancel(self) -> None:
        """Stop the query (see the module docstring for why mid-COPY this is a request, not a cancel)."""
        task = self.task
        if task is None or task.done():
            return
        if not self._copying:
            task.cancel()
        elif not self._stop_asked:
            self._stop_asked = True
            # whatever the task waits on by then (a silent PostgreSQL, or the queue after the COPY's last block)
            task.get_loop().call_later(SILENT_CANCEL_SECONDS, task.cancel)

    async def stop(self) -> None:
        """Cancel (if still running) and wait until the connection is back in the pool."""
        if self.task is None:
            return
        self.cancel()
        await asyncio.wait({self.task})

    async def deliver(self, block: bytes | bytearray) -> None:
        """COPY's output callback: hands one socket read to the RPC, waiting while it is behind."""
        if self._stop_asked:
            raise asyncio.CancelledError  # asyncpg cancels the COPY and keeps the connection usable
        self._copying = False  # a cancel landing in here is turned into a CancelRequest by asyncpg
        try:
            await self._deliver(block)
        finally:
            self._copying = True

    async def _deliver(self, block: bytes | bytearray) -> None:
        silence = self._silence
        if silence is not None:
            silence.reschedule(None)  # waiting on the client is not PostgreSQL's silence
        await self.queue.put(block)
        if silence is not None:
            silence.reschedule(asyncio.get_running_loop().time() + deadline.bound())
        if len(block) < SMALL_BLOCK:
            # PostgreSQL writes 8 KiB at a time and we read faster: let the socket buffer fill a little,
            # so the per-read costs (asyncio, asyncpg, framing) are paid per ~100 KiB, not per 8 KiB.
            await asyncio.sleep(COALESCE_SECONDS)

    async def _copy(self, conn: Any, job: CopyJob) -> None:
        bound = deadline.bound()
        try:
            async with asyncio.timeout(bound) as silence:
                self._silence = silence
                self._copying = True
                await conn.copy_from_query(
                    sqlgen.select_sql(job.select_list, job.where, job.window),
                    output=self.deliver,
                    timeout=deadline.call_remaining(),
                    **job.copy_options,
                )
        except TimeoutError:
            if self._silence is not None and self._silence.expired() and not deadline.expired():
                conn.terminate()  # stuck mid-COPY: never back into the pool (TimeoutError does not reach it)
                raise Unavailable(
                    f"PostgreSQL sent nothing for {bound:g}s during the export (RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS)"
                ) from None
            raise
        finally:
            self._silence = None
            self._copying = False

    async def _run(self) -> None:
        job, put = self.job, self.queue.put
        try:
            async with self.reads.connection(job.min_lsn) as (conn, node):
                await conn.execute(
                    sqlgen.SESSION_SETUP.format(timeout=int(job.statement_timeout_ms)), timeout=deadline.remaining()
                )
                lsn = parse_lsn(await conn.fetchval(NODE_LSN_SQL, timeout=deadline.remaining()))
                if job.window.limit == 0:
                    await put(Started(0, node, lsn))
                else:
                    plan = await conn.fetchval(sqlgen.explain_sql(job.where, job.window), timeout=deadline.remaining())
                    await put(Started(int(orjson.loads(plan)[0]["Plan"]["Plan Rows"]), node, lsn))
                    await self._copy(conn, job)
            await put(END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the RPC, which maps it to a status
            await put(Failure(exc))
