"""Rendering chunks off the event loop, one chunk ahead, for formats whose rendering is real work (Arrow:
`ChunkWriter.threaded`). Their writer releases the GIL while it decodes, so the loop keeps reading COPY output
and sending messages while a worker thread renders the next chunk.

Chunks keep their order, their resume tokens and their row counts: what a chunk covers (rows, last key, the rows
before it) is fixed in order when it is submitted; only its bytes are made in the thread. At most two chunks are
in hand (one rendering, one being assembled), so memory stays bounded; a message is counted as sent only when
it is handed to gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from rentscout.export.v1 import export_pb2
from rentscout.export_service.tokens import ResumeState
from rentscout.wire.formats import ChunkWriter, Segment

Message = export_pb2.ExportPropertiesResponse
MakeChunk = Callable[[bytes, int, ResumeState], Message]  # ExportRun._chunk: counts and stamps the token


@dataclass
class _Pending:
    data: asyncio.Future[bytes]
    rows: int
    state: ResumeState


class AheadRenderer:
    """Renders each chunk in a worker thread while the previous one is being sent."""

    def __init__(self, writer: ChunkWriter, make_chunk: MakeChunk, start: ResumeState) -> None:
        """`start`: the stream's state (its WAL position `lsn` is the serving node's, see pump.Started)."""
        self.writer = writer
        self.make_chunk = make_chunk
        self.start = start
        self.rows_before = start.rows_sent  # rows of the chunks submitted so far, and of earlier streams
        self._pending: _Pending | None = None

    async def submit(self, parts: list[Segment]) -> Message | None:
        """Start rendering `parts`; returns the previous chunk's message once it is rendered (None for the first)."""
        rows = sum(p.rows for p in parts)
        st = self.start
        state = ResumeState(st.export_id, self.writer.last_key(parts), st.upper_id, self.rows_before + rows, lsn=st.lsn)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self.writer.render, parts, self.rows_before)
        # a stream that ends early never awaits its last future: mark its error retrieved (awaiting still raises it)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.rows_before += rows
        previous, self._pending = self._pending, _Pending(future, rows, state)
        return await self._finish(previous) if previous is not None else None

    async def drain(self) -> Message | None:
        """The last chunk's message, if one is still rendering."""
        previous, self._pending = self._pending, None
        return await self._finish(previous) if previous is not None else None

    async def _finish(self, pending: _Pending) -> Message:
        return self.make_chunk(await pending.data, pending.rows, pending.state)
