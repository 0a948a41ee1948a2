"""One ExportProperties stream: header, chunks of whole rows with resume tokens, closing bytes, summary.

The RPC's generator consumes the CopyPump's queue; each `yield` returns only once gRPC took the message,
so the COPY behind it is paced by the client. Whatever ends the RPC (completion, error, client cancel,
deadline) ends the run exactly once: the gRPC done-callback stops the COPY at once even if the
generator itself is finalized later.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import grpc
from google.protobuf.duration_pb2 import Duration

from rentscout.export.v1 import export_pb2
from rentscout.export_service import sqlgen, telemetry
from rentscout.export_service.framing import ChunkAssembler
from rentscout.export_service.pump import END, CopyJob, CopyPump, Failure, Started
from rentscout.export_service.render import AheadRenderer
from rentscout.export_service.request import ExportSpec
from rentscout.export_service.runs import RunProgress, RunStore
from rentscout.export_service.tokens import ResumeState, TokenCodec
from rentscout.runtime import context, logs
from rentscout.runtime.errors import ResourceExhausted
from rentscout.wire.formats import Segment

STATUS = {
    "completed": export_pb2.EXPORT_STATUS_COMPLETED,
    "failed": export_pb2.EXPORT_STATUS_FAILED,
    "cancelled": export_pb2.EXPORT_STATUS_CANCELLED,
}


@dataclass(frozen=True)
class StreamStart:
    spec: ExportSpec
    state: ResumeState  # where this stream starts (fresh: nothing sent, whole id range)
    resumed: bool


class Slots:
    """Exports admitted on this replica (RESOURCE_EXHAUSTED past the maximum)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.used = 0

    def take(self) -> None:
        if self.used >= self.maximum:
            raise ResourceExhausted(
                f"this replica already runs {self.used} exports (RENTSCOUT_EXPORT_MAX_CONCURRENT={self.maximum}); "
                "retry later or on another replica"
            )
        self.used += 1
        telemetry.EXPORTS_IN_FLIGHT.inc()

    def release(self) -> None:
        self.used -= 1
        telemetry.EXPORTS_IN_FLIGHT.dec()


class ExportRun:
    def __init__(
        self, start: StreamStart, codec: TokenCodec, store: RunStore, slots: Slots, pump: CopyPump | None, progress: RunProgress
    ) -> None:
        self.start = start
        self.spec = start.spec
        self.codec = codec
        self.store = store
        self.slots = slots
        self.pump = pump
        self.progress = progress
        self.export_id = str(uuid.UUID(bytes=start.state.export_id))
        self.correlation_id = context.correlation_id.get()
        self.rows_sent = start.state.rows_sent
        self.started = time.perf_counter()
        self.closed = False
        self.writer = self.spec.format.writer(self.spec.columns, self.spec.hidden_key)
        self.lsn = start.state.lsn  # of the node serving this stream, once it has started

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self, status: str, code: str | None, record_later: bool = True) -> None:
        """End the run once: stop the COPY, free the slot, count, log, record (later, unless done)."""
        if self.closed:
            return
        self.closed = True
        if self.pump is not None:
            self.pump.cancel()
        self.slots.release()
        elapsed = time.perf_counter() - self.started
        fmt = self.spec.format.name
        telemetry.EXPORTS_TOTAL.labels(fmt, status).inc()
        telemetry.EXPORT_DURATION.labels(fmt, status).observe(elapsed)
        fields: dict[str, object] = {
            "export.id": self.export_id,
            "export.format": fmt,
            "export.status": status,
            "export.rows": self.progress.rows,
            "export.bytes": self.progress.bytes,
            "export.rows_sent": self.rows_sent,
            "event.duration": logs.ns(elapsed),
        }
        if code:
            fields["error.code"] = code
        if self.correlation_id:  # the done-callback may run outside the RPC's context
            fields["correlation.id"] = self.correlation_id
        context.annotate(**{"export.id": self.export_id, "export.rows": self.progress.rows, "export.bytes": self.progress.bytes})
        telemetry.log_end(fields, failed=status == "failed")
        if record_later:
            self.store.end_run_later(self.progress, status, code)

    def interrupted(
        self,
        ctx: grpc.aio.ServicerContext[export_pb2.ExportPropertiesRequest, export_pb2.ExportPropertiesResponse],
    ) -> None:
        """The call ended before the stream did: its deadline passed (failed) or the client left (cancelled)."""
        left = ctx.time_remaining()
        if left is not None and left <= 0:
            self.close("failed", grpc.StatusCode.DEADLINE_EXCEEDED.name)
        else:
            self.close("cancelled", None)

    # -- the stream ------------------------------------------------------------------------------

    def header(self, estimate: int) -> export_pb2.ExportPropertiesResponse:
        return export_pb2.ExportPropertiesResponse(
            header=export_pb2.ExportHeader(
                format=self.spec.format.enum,
                columns=[c.name for c in self.spec.columns],
                estimated_total_rows=estimate,
                export_id=self.export_id,
                resumed=self.start.resumed,
                rows_already_sent=self.start.state.rows_sent,
            )
        )

    def _chunk(self, data: bytes, rows: int, state: ResumeState) -> export_pb2.ExportPropertiesResponse:
        self.rows_sent = state.rows_sent
        self.progress.rows += rows
        self.progress.bytes += len(data)
        fmt = self.spec.format.name
        telemetry.EXPORT_ROWS.labels(fmt).inc(rows)
        telemetry.EXPORT_BYTES.labels(fmt).inc(len(data))
        msg = export_pb2.ExportPropertiesResponse()
        chunk = msg.chunk  # filled in place: a nested constructor would copy the data twice more
        chunk.data = data
        chunk.rows = rows
        chunk.rows_sent = state.rows_sent
        chunk.resume_token = self.codec.encode(self.spec.fingerprint, state)
        return msg

    def data_chunk(self, parts: list[Segment]) -> export_pb2.ExportPropertiesResponse:
        rows = sum(p.rows for p in parts)
        last_id = self.writer.last_key(parts)
        data = self.writer.render(parts, self.rows_sent)
        st = self.start.state
        return self._chunk(data, rows, ResumeState(st.export_id, last_id, st.upper_id, self.rows_sent + rows, lsn=self.lsn))

    async def _render(self, parts: list[Segment], ahead: AheadRenderer | None) -> export_pb2.ExportPropertiesResponse | None:
        """The chunk of `parts`, or (rendering in a worker thread, one ahead) the previous chunk's, if any."""
        return self.data_chunk(parts) if ahead is None else await ahead.submit(parts)

    def summary(self, status: str) -> export_pb2.ExportPropertiesResponse:
        duration = Duration()
        duration.FromNanoseconds(int((time.perf_counter() - self.started) * 1e9))
        return export_pb2.ExportPropertiesResponse(
            summary=export_pb2.ExportSummary(
                rows=self.progress.rows,
                bytes=self.progress.bytes,
                duration=duration,
                status=STATUS[status],
                export_id=self.export_id,
            )
        )

    def log_start(self) -> None:
        st = self.start.state
        telemetry.log_start(
            {
                "export.id": self.export_id,
                "export.format": self.spec.format.name,
                "export.resumed": self.start.resumed,
                "export.rows_already_sent": st.rows_sent,
                "export.columns": len(self.spec.columns),
                "export.limit": self.spec.limit,
                "export.after_id": st.after_id,
                "export.upper_id": st.upper_id,
            }
        )

    async def messages(self) -> AsyncIterator[export_pb2.ExportPropertiesResponse]:
        """Header, data chunks, closing chunk, then (after recording completion) the summary."""
        st = self.start.state
        if self.pump is None:  # a token of a finished stream: nothing left to send
            yield self.header(0)
        else:
            queue = self.pump.queue
            first = await queue.get()
            if isinstance(first, Failure):
                raise first.error
            assert isinstance(first, Started)
            self.lsn = max(first.lsn, st.lsn)
            context.annotate(**{"db.node": first.node})
            yield self.header(first.estimate)
            splitter = self.spec.format.splitter(self.spec.columns)
            assembler = ChunkAssembler(self.spec.rows_per_chunk, self.spec.bytes_per_chunk)
            ahead = AheadRenderer(self.writer, self._chunk, replace(st, lsn=self.lsn)) if self.writer.threaded else None
            while True:
                item = await queue.get()
                if item is END:
                    break
                if isinstance(item, Failure):
                    raise item.error
                assert isinstance(item, (bytes, bytearray))  # only the first item is Started
                seg = splitter.feed(item)
                if seg is not None:
                    for parts in assembler.add(seg):
                        if (message := await self._render(parts, ahead)) is not None:
                            yield message
            splitter.finish()
            if (rest := assembler.flush()) is not None and (message := await self._render(rest, ahead)) is not None:
                yield message
            if ahead is not None and (message := await ahead.drain()) is not None:
                yield message
            closing = self.writer.trailer(st.rows_sent, self.rows_sent)
            if closing is not None:
                yield self._chunk(closing, 0, ResumeState(st.export_id, None, None, self.rows_sent, done=True, lsn=self.lsn))
        self.close("completed", None, record_later=False)
        await self.store.end_run(self.progress, "completed", None)
        yield self.summary("completed")


def copy_job(spec: ExportSpec, state: ResumeState, statement_timeout_ms: int) -> CopyJob:
    remaining = max(spec.effective_limit - state.rows_sent, 0)
    window = sqlgen.Window(state.after_id, state.upper_id, remaining)
    return CopyJob(
        spec.format.select_list(spec.columns, spec.hidden_key),
        spec.where,
        window,
        spec.format.copy_options,
        statement_timeout_ms,
        min_lsn=state.lsn,
    )
