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
(bytes forming one valid file, see the format's `Stitcher`), or `rows()` (dicts; also `async for`).
Resuming starts once a stream has started (its header arrived). Before that, the export is
one call like any other: the client's retry policy (`ClientConfig.retry`, `reconnect_wait`) and
`connect_timeout` (10 s) bound it, so a target that cannot be reached fails in seconds, naming the
address, instead of waiting out the resume budget. Once started, resuming is paced and bounded
by progress (`rentscout.sdk.resume.ResumeBudget`): a segment that delivered a whole chunk is a
success for the target's breaker and resumes at once; only segments that delivered nothing are
failures and back off (`resume`'s delays; its `max_attempts` is not a limit here); the export gives
up only after `max_stall` seconds (the CLI's `--resume-timeout`) without a new chunk, however often
it was cut while advancing. An open stream that delivers no message for `max_stall` is cut and
resumed like a broken one. The target's breaker and retry budget are shared with unary calls: an
open breaker is waited out (until its next probe) within that budget, an exhausted retry budget
slows resuming to the policy's `max_delay`. A cut after progress (GOAWAY, a proxy's RST) is logged
at info level, as is a single empty attempt right after it; consecutive empty attempts at warning
level. Once cut, an export whose request left the chunk size to the server resumes with chunks of
at most `RESUMED_BYTES_PER_CHUNK` (the size is not part of the resume token's fingerprint): a cut
loses the chunk in flight, so smaller chunks lose less, and a link that cuts every few hundred KB
still lets whole chunks through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from rentscout.export.v1 import export_pb2
from rentscout.resilience.breaker import CircuitOpenError as BreakerOpen
from rentscout.resilience.retry import RetryPolicy
from rentscout.sdk import errors, formats, metrics
from rentscout.sdk.invoker import Invoker
from rentscout.sdk.resume import ResumeBudget, StreamAttempt
from rentscout.wire.metadata import PREVIOUS_ATTEMPTS_HEADER

_log = logging.getLogger("rentscout.sdk.export")

# Resuming is always safe for an export (a read), so overload codes resume too.
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED})
# A connection reset in the middle of a stream surfaces as one of these.
RESUMABLE_MID_STREAM = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


# Once a stream was cut, resumed segments ask for chunks of at most this size (unless the request chose a size):
# a cut loses the partial chunk in flight, so on a link that cuts, smaller chunks waste less and always progress.
RESUMED_BYTES_PER_CHUNK = 256 * 1024
# Longest time an export waits for progress (a chunk) across breaks before giving up.
DEFAULT_MAX_STALL = 300.0
# Before re-opening a broken stream, wait up to this long for the channel to reconnect.
DEFAULT_RECONNECT_WAIT = 10.0
# Longest time the attempts to *start* an export may take (no header yet) before it fails.
DEFAULT_CONNECT_TIMEOUT = 10.0


def default_resume_policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=8, initial_delay=0.2, max_delay=10.0)


class _Silent(Exception):
    """No message arrived on an open stream for the whole no-progress budget."""


@dataclass(frozen=True)
class SegmentStart:
    """A server stream began (the first one, or one resumed after a break)."""

    header: export_pb2.ExportHeader
    number: int


class ExportStream:
    """One export (a request, or a PlanExport partition's token); see the module docstring."""

    def __init__(
        self,
        invoker: Invoker,
        request: export_pb2.ExportPropertiesRequest,
        *,
        resume: RetryPolicy | None = None,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
        correlation_id: str | None = None,
        on_chunk: Callable[[ExportStream, export_pb2.ExportChunk], object] | None = None,
        max_stall: float = DEFAULT_MAX_STALL,
        reconnect_wait: float = DEFAULT_RECONNECT_WAIT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self._invoker = invoker
        self.max_stall = max_stall
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
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
        self._first_failure: errors.RentScoutError | None = None  # the most telling error while starting
        self._opened = 0.0  # when the first attempt started
        self._largest_chunk = 0  # bytes of the largest chunk received (about the server's chunk size)
        self.budget = ResumeBudget(
            self._resume, max_stall, breaker=invoker.breaker, retry_budget=invoker.budget, clock=invoker.clock
        )

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
        stitcher: formats.Stitcher | None = None  # made once the first header says the format
        async for event in self.events():
            stitcher = stitcher or formats.stitcher(self.format, self.columns)
            if isinstance(event, SegmentStart):
                owed = stitcher.start_segment(event.header.columns)
                if owed:
                    yield owed
            else:
                out = stitcher.feed(event.data)
                if out:
                    yield out
        tail = (stitcher or formats.stitcher(self.format, self.columns)).finish()
        if tail:
            yield tail

    async def rows(self) -> AsyncIterator[dict[str, Any]]:
        decode: formats.RowDecoder | None = None  # made once the first header says the format and columns
        async for event in self.events():
            if isinstance(event, export_pb2.ExportChunk):
                decode = decode or formats.row_decoder(self.format, self.columns)
                parsed = decode(event.data)
                if len(parsed) != event.rows:
                    raise errors.ExportIntegrityError(
                        f"a chunk announced {event.rows} rows but holds {len(parsed)}", target=self._invoker.config.target
                    )
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
        budget = self.budget
        self._opened = budget.last_progress = clock.monotonic()
        starts = 0  # failed attempts to start (no header yet)
        segment = 0
        while True:
            segment += 1
            request = export_pb2.ExportPropertiesRequest()
            request.CopyFrom(self.request)
            request.resume_token = self.resume_token
            if segment > 1 and not request.bytes_per_chunk and not 0 < self._largest_chunk <= RESUMED_BYTES_PER_CHUNK:
                request.bytes_per_chunk = RESUMED_BYTES_PER_CHUNK
            got_message = False
            seg_base = seg_rows = 0
            failure: BaseException | None = None
            attempt: StreamAttempt | None = None
            timeout: float | None = None
            try:
                attempt = budget.attempt()
            except BreakerOpen as exc:
                failure = exc
            if attempt is not None:
                timeout, failure = await self._prepare(segment, attempt, deadline)
            if failure is None:
                assert attempt is not None
                seg_md = md if segment == 1 else [*md, (PREVIOUS_ATTEMPTS_HEADER, str(segment - 1))]
                call = inv.stub.ExportProperties(request, timeout=timeout, metadata=seg_md)
                try:
                    async for message in self._messages(call):
                        got_message = True
                        kind = message.WhichOneof("payload")
                        if kind == "chunk":
                            chunk = message.chunk
                            seg_rows += chunk.rows
                            self._check_chunk(chunk, seg_base + seg_rows)
                            self.rows_received += chunk.rows
                            self.bytes_received += len(chunk.data)
                            self._largest_chunk = max(self._largest_chunk, len(chunk.data))
                            if chunk.resume_token:
                                self.resume_token = chunk.resume_token
                            attempt.chunk()
                            if self._on_chunk is not None:
                                self._on_chunk(self, chunk)
                            yield chunk
                        elif kind == "header":
                            seg_base = self._check_header(message.header, segment, bool(request.resume_token))
                            yield SegmentStart(message.header, segment)
                        elif kind == "summary":
                            self.summary = message.summary
                except grpc.aio.AioRpcError as exc:
                    failure = errors.from_rpc_error(
                        exc, method=self._method, target=inv.config.target, correlation_id=self.correlation_id
                    )
                    if not self._resumable(failure, got_message):
                        attempt.failed(failure)
                        raise failure from exc
                except _Silent:
                    call.cancel()
                    failure = errors.UnavailableError(
                        f"no message from {inv.config.target} for {self.max_stall:g}s",
                        method=self._method,
                        target=inv.config.target,
                        correlation_id=self.correlation_id,
                    )
                except BaseException:  # the consumer stopped reading (GeneratorExit), cancellation, integrity error
                    call.cancel()
                    attempt.abandoned()
                    raise
                else:
                    if self.summary is not None:
                        attempt.finished()
                        self._finished()
                        return
                    attempt.abandoned()  # a clean end without a summary: odd, but not the target failing
                    failure = errors.UnavailableError(
                        "the export stream ended without a summary",
                        method=self._method,
                        target=inv.config.target,
                        correlation_id=self.correlation_id,
                    )
            assert failure is not None
            if self.header is None:
                if attempt is not None:
                    attempt.failed(failure)
                    starts += 1
                delay = self._start_delay(failure, starts, deadline)
                _log.info(
                    "export did not start (%s); retrying in %.2fs",
                    failure,
                    delay,
                    extra={"fields": {"retry.attempt": starts, "server.address": inv.config.target}},
                )
                await clock.async_sleep(delay)
                continue
            try:
                delay = budget.broke(
                    attempt,
                    failure,
                    deadline=deadline,
                    context=f"export stopped after {self.rows_received} rows and {self.resumes} resume(s)",
                )
            except BreakerOpen as exc:
                raise errors.gave_up_unavailable(
                    exc, method=self._method, target=inv.config.target, correlation_id=self.correlation_id
                ) from exc
            if attempt is not None:
                self.resumes += 1
                metrics.STREAM_RESUMES.labels(inv.config.target).inc()
            _log.log(
                logging.INFO if budget.routine else logging.WARNING,
                "export stream broke after %d rows (%s); resuming in %.2fs",
                self.rows_received,
                failure,
                delay,
                extra={
                    "fields": {
                        "export.rows": self.rows_received,
                        "export.resumes": self.resumes,
                        "server.address": inv.config.target,
                    }
                },
            )
            if delay > 0:
                await clock.async_sleep(delay)

    async def _messages(self, call: Any) -> AsyncIterator[export_pb2.ExportPropertiesResponse]:
        """The call's messages; raises `_Silent` when none arrives for `max_stall` (a frozen connection)."""
        messages = call.__aiter__()
        while True:
            try:
                async with asyncio.timeout(self.max_stall):
                    message = await anext(messages)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _Silent from None
            yield message

    async def _prepare(
        self, segment: int, attempt: StreamAttempt, deadline: float | None
    ) -> tuple[float | None, BaseException | None]:
        """The segment's timeout, after waiting (resumed segments only) for the channel to reconnect.

        Returns a failure when no connection came up: for a resumed stream, when one connection attempt
        failed (refused, or no HTTP/2 handshake) or the no-progress budget ran out while waiting.
        """
        inv = self._invoker
        timeout = None if deadline is None else deadline - inv.clock.monotonic()
        if timeout is not None and timeout <= 0:
            attempt.abandoned()
            raise errors.DeadlineExceededError(
                "the export's deadline expired", target=inv.config.target, method=self._method, correlation_id=self.correlation_id
            )
        if segment == 1:
            return timeout, None
        if self.header is None:  # still starting: a short wait, within what connect_timeout leaves
            left = self.connect_timeout - (inv.clock.monotonic() - self._opened)
            wait = max(0.0, min(inv.config.reconnect_wait, left))
            wait = wait if timeout is None else min(timeout, wait)
            ready = await inv.wait_ready(wait)
        else:
            wait = min(self.reconnect_wait, max(self.budget.remaining(), 0.001))
            wait = wait if timeout is None else min(timeout, wait)
            ready = await inv.wait_connected(wait)
        if ready:
            return (None if deadline is None else deadline - inv.clock.monotonic()), None
        failure = errors.UnavailableError(
            f"no connection to {inv.config.target} within {wait:.1f}s",
            method=self._method,
            target=inv.config.target,
            correlation_id=self.correlation_id,
        )
        return timeout, failure

    @property
    def _method(self) -> str:
        return f"/{self._invoker.service}/ExportProperties"

    def _resumable(self, failure: errors.RentScoutError, got_message: bool) -> bool:
        return failure.code in RESUMABLE or (got_message and failure.code in RESUMABLE_MID_STREAM)

    def _start_delay(self, failure: BaseException, attempts: int, deadline: float | None) -> float:
        """Backoff before another attempt to start the export; raises when starting must stop.

        Only a transient refusal (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, an open breaker) gets
        here. An unreachable target gets the client's retry policy (its attempts, like any unary
        call); a server that answered "busy" is waited for with the resume policy's backoff.
        `connect_timeout` and the deadline bound both. The error raised is the first one (the real
        cause, e.g. "Connection refused"), with the target's address and what was tried.
        """
        inv = self._invoker
        if self._first_failure is None and isinstance(failure, errors.RentScoutError):
            self._first_failure = failure
        unreachable = isinstance(failure, errors.UnavailableError)  # includes an open breaker
        policy = inv.config.retry if unreachable else self._resume
        if isinstance(failure, BreakerOpen):
            delay = max(failure.retry_after, 0.001)
        else:
            pushback = getattr(failure, "retry_pushback", None)
            inv.budget.record_failure()
            delay = pushback if pushback is not None and pushback >= 0 else policy.delay(max(attempts, 1))
        now = inv.clock.monotonic()
        spent = now - self._opened
        reason = None
        if unreachable and attempts >= policy.max_attempts:
            reason = f"{attempts} attempt(s) in {spent:.1f}s"
        elif spent + delay > self.connect_timeout:
            reason = f"no stream within {self.connect_timeout:.0f}s ({attempts} attempt(s))"
        elif deadline is not None and now + delay >= deadline:
            reason = f"the deadline left no time for another attempt after {attempts}"
        if reason is None:
            return delay
        cause = self._first_failure or failure
        if not isinstance(cause, errors.RentScoutError):
            raise cause
        raised = errors.error_class(cause.code)(
            f"cannot start the export on {inv.config.target}: {cause.details}",
            code=cause.code,
            method=self._method,
            target=inv.config.target,
            correlation_id=cause.correlation_id or self.correlation_id,
        )
        raised.add_note(f"gave up: {reason}")
        raise raised from cause

    def _check_header(self, header: export_pb2.ExportHeader, segment: int, sent_token: bool) -> int:
        """Remember the first header; a later one must continue exactly where the received rows end."""
        if self.header is None:
            self.header = header
            self._base = header.rows_already_sent
            if header.columns:
                self.columns = list(header.columns)
            return header.rows_already_sent
        expected = self._base + self.rows_received if sent_token else 0
        if header.resumed != sent_token or header.rows_already_sent != expected:
            raise errors.ExportIntegrityError(
                f"stream {segment} reports {header.rows_already_sent} rows already sent (resumed={header.resumed}) "
                f"but {expected} were received before it",
                target=self._invoker.config.target,
                correlation_id=self.correlation_id,
            )
        return header.rows_already_sent

    def _check_chunk(self, chunk: export_pb2.ExportChunk, expected_rows_sent: int) -> None:
        if chunk.rows_sent and chunk.rows_sent != expected_rows_sent:
            raise errors.ExportIntegrityError(
                f"chunk says {chunk.rows_sent} rows sent, {expected_rows_sent} were received",
                target=self._invoker.config.target,
                correlation_id=self.correlation_id,
            )

    def _finished(self) -> None:
        if self.summary is not None and self.summary.status == export_pb2.EXPORT_STATUS_FAILED:
            raise errors.InternalError(
                "the server reported the export as failed",
                method=self._method,
                target=self._invoker.config.target,
                correlation_id=self.correlation_id,
            )
