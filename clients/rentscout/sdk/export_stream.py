"""A resumable export stream: every row exactly once, across broken connections and server restarts.

The server orders rows by primary key and puts a resume token on every chunk (opaque, "continue
after this chunk's last row"). The consumer keeps the token of the last chunk it fully received;
when the stream breaks (UNAVAILABLE, a reset surfacing as INTERNAL/UNKNOWN mid-stream, the server
restarting, RESOURCE_EXHAUSTED while replicas are busy) it waits with the retry policy's backoff
and opens a new stream with that token. Chunks hold whole rows, so nothing is delivered twice and
nothing is skipped; the row counters the server sends (`rows_already_sent`, `rows_sent`) are
checked against what was received, and any contradiction raises `ExportIntegrityError` instead of
silently producing a wrong file.

A stream can be read once, in one of three shapes: `chunks()` (ExportChunk messages), `data()`
(bytes forming one valid file, see `formats.Stitcher`), or `rows()` (dicts; also `async for`).
Breaks that made progress always resume; `resume.max_attempts` bounds consecutive breaks without a
single new chunk (the target's retry budget applies to those too).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from rentscout.export.v1 import export_pb2
from rentscout.sdk import errors, formats, metrics
from rentscout.sdk.breaker import CircuitOpenError as BreakerOpen
from rentscout.sdk.invoker import Invoker
from rentscout.sdk.retry import RetryPolicy

_log = logging.getLogger("rentscout.sdk.export")

# Resuming is always safe for an export (a read), so overload codes resume too.
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED})
# A connection reset in the middle of a stream surfaces as one of these.
RESUMABLE_MID_STREAM = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


def default_resume_policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=8, initial_delay=0.2, max_delay=10.0)


@dataclass(frozen=True)
class SegmentStart:
    """A server stream began (the first one, or one resumed after a break)."""

    header: export_pb2.ExportHeader
    number: int


class ExportStream:
    """One export (a request, or a PlanExport partition's token); see the module docstring."""

    def __init__(self, invoker: Invoker, request: export_pb2.ExportPropertiesRequest, *,
                 resume: RetryPolicy | None = None, timeout: float | None = None,
                 metadata: Sequence[tuple[str, str]] | None = None, correlation_id: str | None = None,
                 on_chunk: Callable[[ExportStream, export_pb2.ExportChunk], object] | None = None) -> None:
        self._invoker = invoker
        self.request = request
        self._resume = resume or default_resume_policy()
        self._timeout = timeout
        self._metadata = metadata
        self.correlation_id = correlation_id
        self._on_chunk = on_chunk
        self._used = False
        self.header: export_pb2.ExportHeader | None = None
        self.summary: export_pb2.ExportSummary | None = None
        self.columns: list[str] = list(request.columns)
        self.rows_received = 0
        self.bytes_received = 0
        self.resumes = 0
        self.resume_token = request.resume_token
        self._base = 0  # rows the server had sent before this stream's first segment (resume token given)

    @property
    def format(self) -> int:
        return self.header.format if self.header and self.header.format else self.request.format

    @property
    def estimated_total_rows(self) -> int:
        return self.header.estimated_total_rows if self.header else 0

    # -- the three shapes ------------------------------------------------------------------

    async def chunks(self) -> AsyncIterator[export_pb2.ExportChunk]:
        async for event in self.events():
            if isinstance(event, export_pb2.ExportChunk):
                yield event

    async def data(self) -> AsyncIterator[bytes]:
        """Bytes that concatenate to one valid file of the export's format."""
        stitcher = formats.Stitcher(self.request.format, self.columns)
        async for event in self.events():
            if isinstance(event, SegmentStart):
                stitcher.fmt = self.format
                owed = stitcher.start_segment(event.header.columns)
                if owed:
                    yield owed
            else:
                out = stitcher.feed(event.data)
                if out:
                    yield out
        tail = stitcher.finish()
        if tail:
            yield tail

    async def rows(self) -> AsyncIterator[dict[str, Any]]:
        async for event in self.events():
            if isinstance(event, export_pb2.ExportChunk):
                parsed = formats.parse_rows(self.format, event.data, self.columns)
                if len(parsed) != event.rows:
                    raise errors.ExportIntegrityError(
                        f"a chunk announced {event.rows} rows but holds {len(parsed)}", target=self._invoker.config.target)
                for row in parsed:
                    yield row

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self.rows()

    # -- the resumable core ----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[SegmentStart | export_pb2.ExportChunk]:
        """SegmentStart for every server stream, then its chunks; resumes across breaks."""
        if self._used:
            raise RuntimeError("an ExportStream can be read once; create a new one")
        self._used = True
        inv = self._invoker
        clock = inv.clock
        deadline = None if self._timeout is None else clock.monotonic() + self._timeout
        md, self.correlation_id = inv.metadata(self._metadata, self.correlation_id)
        stuck = 0  # consecutive segments that delivered no chunk
        segment = 0
        while True:
            segment += 1
            request = export_pb2.ExportPropertiesRequest()
            request.CopyFrom(self.request)
            request.resume_token = self.resume_token
            progressed = got_message = False
            seg_base = seg_rows = 0
            failure: BaseException
            try:
                permit = inv.breaker.acquire()
            except BreakerOpen as exc:
                failure = exc
            else:
                timeout = None if deadline is None else deadline - clock.monotonic()
                if timeout is not None and timeout <= 0:
                    inv.breaker.release(permit)
                    raise errors.DeadlineExceededError("the export's deadline expired", target=inv.config.target,
                                                       method=self._method, correlation_id=self.correlation_id)
                seg_md = md if segment == 1 else [*md, ("grpc-previous-rpc-attempts", str(segment - 1))]
                call = inv.stub.ExportProperties(request, timeout=timeout, metadata=seg_md)
                try:
                    async for message in call:
                        got_message = True
                        kind = message.WhichOneof("payload")
                        if kind == "chunk":
                            chunk = message.chunk
                            seg_rows += chunk.rows
                            self._check_chunk(chunk, seg_base + seg_rows)
                            self.rows_received += chunk.rows
                            self.bytes_received += len(chunk.data)
                            if chunk.resume_token:
                                self.resume_token = chunk.resume_token
                            progressed = True
                            stuck = 0
                            if self._on_chunk is not None:
                                self._on_chunk(self, chunk)
                            yield chunk
                        elif kind == "header":
                            seg_base = self._check_header(message.header, segment)
                            yield SegmentStart(message.header, segment)
                        elif kind == "summary":
                            self.summary = message.summary
                except grpc.aio.AioRpcError as exc:
                    failure = errors.from_rpc_error(exc, method=self._method, target=inv.config.target,
                                                    correlation_id=self.correlation_id)
                    inv.breaker.on_error(permit, failure, None)
                    if not self._resumable(failure, got_message):
                        raise failure from exc
                except BaseException:  # the consumer stopped reading (GeneratorExit), cancellation, integrity error
                    call.cancel()
                    inv.breaker.release(permit)
                    raise
                else:
                    if self.summary is not None:
                        inv.breaker.on_success(permit, None)
                        self._finished()
                        return
                    inv.breaker.release(permit)
                    failure = errors.UnavailableError("the export stream ended without a summary", method=self._method,
                                                      target=inv.config.target, correlation_id=self.correlation_id)
            stuck = 0 if progressed else stuck + 1
            delay = self._resume_delay(failure, stuck, deadline)
            self.resumes += 1
            metrics.STREAM_RESUMES.labels(inv.config.target).inc()
            _log.warning("export stream broke after %d rows (%s); resuming in %.2fs", self.rows_received, failure, delay,
                         extra={"fields": {"export.rows": self.rows_received, "export.resumes": self.resumes,
                                           "server.address": inv.config.target}})
            await clock.async_sleep(delay)

    @property
    def _method(self) -> str:
        return f"/{self._invoker.service}/ExportProperties"

    def _resumable(self, failure: errors.RentScoutError, got_message: bool) -> bool:
        return failure.code in RESUMABLE or (got_message and failure.code in RESUMABLE_MID_STREAM)

    def _resume_delay(self, failure: BaseException, stuck: int, deadline: float | None) -> float:
        """Backoff before the next segment; raises `failure` when resuming must stop."""
        policy, inv = self._resume, self._invoker
        reason = None
        pushback = failure.retry_after if isinstance(failure, BreakerOpen) else getattr(failure, "retry_pushback", None)
        if stuck:
            inv.budget.record_failure()
        if stuck >= policy.max_attempts:
            reason = f"{stuck} consecutive attempts delivered nothing"
        elif pushback is not None and pushback < 0:
            reason = "the server asked not to retry"
        elif stuck > 1 and not inv.budget.allows_retry():
            reason = "the retry budget of this target is exhausted"
        delay = 0.0
        if reason is None:
            delay = pushback if pushback is not None else policy.delay(max(stuck, 1))
            if deadline is not None and inv.clock.monotonic() + delay >= deadline:
                reason = "the export's deadline leaves no time to resume"
        if reason is not None:
            failure.add_note(f"export stopped after {self.rows_received} rows and {self.resumes} resume(s): {reason}")
            raise failure
        return delay

    def _check_header(self, header: export_pb2.ExportHeader, segment: int) -> int:
        if self.header is None:
            self.header = header
            self._base = header.rows_already_sent
            if header.columns:
                self.columns = list(header.columns)
        elif not header.resumed or header.rows_already_sent != self._base + self.rows_received:
            raise errors.ExportIntegrityError(
                f"resumed stream {segment} reports {header.rows_already_sent} rows already sent "
                f"(resumed={header.resumed}) but {self._base + self.rows_received} were received",
                target=self._invoker.config.target, correlation_id=self.correlation_id)
        return header.rows_already_sent

    def _check_chunk(self, chunk: export_pb2.ExportChunk, expected_rows_sent: int) -> None:
        if chunk.rows_sent and chunk.rows_sent != expected_rows_sent:
            raise errors.ExportIntegrityError(
                f"chunk says {chunk.rows_sent} rows sent, {expected_rows_sent} were received",
                target=self._invoker.config.target, correlation_id=self.correlation_id)

    def _finished(self) -> None:
        if self.summary is not None and self.summary.status == export_pb2.EXPORT_STATUS_FAILED:
            raise errors.InternalError("the server reported the export as failed", method=self._method,
                                       target=self._invoker.config.target, correlation_id=self.correlation_id)


async def drain(stream: ExportStream) -> int:
    """Read a stream to the end, discarding data; returns rows (for benchmarks and tests)."""
    async for _ in stream.chunks():
        pass
    return stream.rows_received
