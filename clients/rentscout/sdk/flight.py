"""Arrow exports over Arrow Flight: pyarrow.flight's C++ client reads the export server's FlightService.

GetFlightInfo with the export request as a command (`FlightDescriptor.for_command`, a serialized
ExportPropertiesRequest) gives the schema and one endpoint per id range, in id order; each endpoint's DoGet
streams record batches. Every batch carries, as app_metadata, the ticket that resumes after it, so a stream cut
by the network continues with `do_get(Ticket(app_metadata))`: every row exactly once.

Resuming is paced and bounded like every SDK stream reader (`rentscout.sdk.resume.ResumeBudget`): a DoGet that
delivered a batch is a success for the target's breaker (shared with the client's unary calls) and resumes at once;
only DoGets that delivered nothing are failures and back off; an endpoint gives up only after `max_stall` seconds
(the CLI's `--resume-timeout`) without a batch, however often it was cut while advancing. A DoGet that delivers no
batch for that long is cancelled (a silent or black-holed connection) and counted as a break.

`parallel=N` reads up to N endpoints at once, each a few batches ahead, and yields their batches in endpoint
(id) order; memory stays bounded. Needs the `arrow` extra (pyarrow, which ships pyarrow.flight).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentscout.export.v1 import export_pb2
from rentscout.resilience.breaker import CircuitBreaker, CircuitOpenError
from rentscout.resilience.retry import RetryBudget, RetryPolicy
from rentscout.sdk import errors, metrics
from rentscout.sdk.export_stream import DEFAULT_MAX_STALL, default_resume_policy
from rentscout.sdk.invoker import BREAKERS, ClientConfig
from rentscout.sdk.invoker import retry_budget as target_retry_budget
from rentscout.sdk.resume import ResumeBudget, StreamAttempt
from rentscout.wire.metadata import AUTHORIZATION_HEADER, CORRELATION_HEADER

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.flight as fl

_log = logging.getLogger("rentscout.sdk.flight")

LOOKAHEAD = 4  # batches an endpoint's reader thread may hold ahead of the consumer
WATCH_INTERVAL = 0.25  # seconds between the stall watchdog's looks at a DoGet


def location(config: ClientConfig) -> str:
    """The Flight URI of a client's target (grpc:// or, with TLS, grpc+tls://)."""
    scheme = "grpc+tls" if config.channel.tls is not None else "grpc"
    return f"{scheme}://{config.target}"


def _transient(exc: BaseException) -> bool:
    """Failures a resume may cure: the connection or the server went away, not the request."""
    import pyarrow.flight as fl

    return isinstance(exc, (fl.FlightUnavailableError, fl.FlightCancelledError, fl.FlightTimedOutError)) or (
        isinstance(exc, fl.FlightInternalError) and "Server never sent" not in str(exc)
    )


@dataclass
class _End:
    error: BaseException | None = None


class _Silence:
    """Cancels a DoGet that delivers no batch for `first` seconds, then for `every` seconds after each batch.

    pyarrow's blocking `read_chunk` has no per-read timeout; `FlightStreamReader.cancel()` is thread-safe."""

    def __init__(self, first: float, every: float) -> None:
        self.limit = first
        self.every = every
        self.mark = time.monotonic()
        self.fired = False
        self._reader: Any = None
        self._done = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="flight-stall-watch").start()

    def watch(self, reader: Any) -> None:
        self._reader = reader
        if self.fired:
            reader.cancel()

    def heard(self) -> None:
        self.mark = time.monotonic()
        self.limit = self.every

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(min(WATCH_INTERVAL, self.every)):
            if time.monotonic() - self.mark > self.limit:
                self.fired = True
                if self._reader is not None:
                    self._reader.cancel()
                return


class FlightExports:
    """Arrow exports of one export server over Flight (one pyarrow.flight client, thread-safe).

    `breaker` and `retry_budget` default to the target's process-wide ones (those the SDK's gRPC calls use);
    `resume` paces resuming and `max_stall` bounds the time without a batch, as for `ExportStream`."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        breaker: CircuitBreaker | None = None,
        retry_budget: RetryBudget | None = None,
        resume: RetryPolicy | None = None,
        max_stall: float = DEFAULT_MAX_STALL,
    ) -> None:
        self.config = config
        self.breaker = breaker if breaker is not None else BREAKERS.get(config.target, config.breaker)
        self.retry_budget = retry_budget if retry_budget is not None else target_retry_budget(config.target)
        self.resume_policy = resume or default_resume_policy()
        self.max_stall = max_stall
        self.resumes = 0  # streams continued after a break, over this object's life
        self._client: fl.FlightClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> fl.FlightClient:
        import pyarrow.flight as fl

        with self._lock:
            if self._client is None:
                tls = self.config.channel.tls
                # the SDK's channel settings (keepalive, reconnect backoff, user agent, extra options); the balancing
                # policy and the message limit stay Flight's own
                kept = [
                    (k, v)
                    for k, v in self.config.channel.options()
                    if k not in ("grpc.service_config", "grpc.max_receive_message_length")
                ]
                kwargs: dict[str, Any] = {"generic_options": kept}
                if tls is not None:
                    kwargs.update(
                        tls_root_certs=Path(tls.ca_file).read_bytes() if tls.ca_file else None,
                        cert_chain=Path(tls.cert_file).read_bytes() if tls.cert_file else None,
                        private_key=Path(tls.key_file).read_bytes() if tls.key_file else None,
                        override_hostname=tls.server_name,
                    )
                self._client = fl.FlightClient(location(self.config), **kwargs)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def options(
        self, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = (), correlation_id: str | None = None
    ) -> fl.FlightCallOptions:
        import pyarrow.flight as fl

        headers = [(k.encode(), v.encode()) for k, v in (*self.config.metadata, *metadata)]
        if self.config.token:
            headers.append((AUTHORIZATION_HEADER.encode(), f"Bearer {self.config.token}".encode()))
        if correlation_id:
            headers.append((CORRELATION_HEADER.encode(), correlation_id.encode()))
        # pyarrow takes bytes (its stubs say str)
        return fl.FlightCallOptions(timeout=timeout, headers=headers)  # type: ignore[arg-type, unused-ignore]

    def info(self, request: export_pb2.ExportPropertiesRequest, options: fl.FlightCallOptions) -> fl.FlightInfo:
        import pyarrow.flight as fl

        command = export_pb2.ExportPropertiesRequest()
        command.CopyFrom(request)
        command.format = export_pb2.EXPORT_FORMAT_ARROW
        return self.client.get_flight_info(fl.FlightDescriptor.for_command(command.SerializeToString()), options)

    def endpoint_batches(
        self, ticket: bytes, options: fl.FlightCallOptions, *, deadline: float | None = None
    ) -> Generator[pa.RecordBatch, None, None]:
        """One endpoint's batches; a cut stream resumes after its last batch (app_metadata), paced and bounded by
        progress (`ResumeBudget`). `deadline` (the resume policy's clock) is the whole read's, if any."""
        import pyarrow.flight as fl

        budget = ResumeBudget(self.resume_policy, self.max_stall, breaker=self.breaker, retry_budget=self.retry_budget)
        rows = resumes = 0
        while True:
            attempt: StreamAttempt | None = None
            try:
                attempt = budget.attempt()
            except CircuitOpenError as exc:
                failure: BaseException = exc
            else:
                silence = _Silence(max(budget.remaining(), 0.001), self.max_stall)
                reader: Any = None
                done = False
                try:
                    reader = self.client.do_get(fl.Ticket(ticket), options)
                    silence.watch(reader)
                    while True:
                        try:
                            chunk = reader.read_chunk()
                        except StopIteration:
                            done = True
                            attempt.finished()
                            return
                        if chunk.data is not None and chunk.data.num_rows:
                            if chunk.app_metadata is not None:
                                ticket = chunk.app_metadata.to_pybytes()
                            attempt.chunk()
                            silence.heard()
                            rows += chunk.data.num_rows
                            yield chunk.data
                except GeneratorExit:
                    attempt.abandoned()  # the consumer stopped: says nothing about the target
                    raise
                except Exception as exc:
                    if not (_transient(exc) or silence.fired):
                        attempt.abandoned()  # the server answered (bad ticket, auth, ...): not the target failing
                        raise
                    failure = exc
                    if silence.fired:
                        failure = fl.FlightUnavailableError(
                            f"no batch from {self.config.target} for {time.monotonic() - silence.mark:.1f}s"
                        )
                        failure.__cause__ = exc
                finally:
                    silence.stop()
                    if reader is not None and not done:
                        reader.cancel()  # a stream left behind would hold a server export slot until its deadline
            try:
                delay = budget.broke(
                    attempt,
                    failure,
                    deadline=deadline,
                    context=f"Flight export stopped after {rows} rows and {resumes} resume(s)",
                )
            except CircuitOpenError as exc:
                raise errors.gave_up_unavailable(
                    exc, method="/arrow.flight.protocol.FlightService/DoGet", target=self.config.target
                ) from exc
            if attempt is not None:
                resumes += 1
                with self._lock:
                    self.resumes += 1
                metrics.STREAM_RESUMES.labels(self.config.target).inc()
            _log.log(
                logging.INFO if budget.routine else logging.WARNING,
                "Flight stream broke after %d rows (%s); resuming in %.2fs",
                rows,
                failure,
                delay,
                extra={"fields": {"export.rows": rows, "export.resumes": resumes, "server.address": self.config.target}},
            )
            if delay > 0:
                self.resume_policy.clock.sleep(delay)

    def read(
        self,
        request: export_pb2.ExportPropertiesRequest,
        *,
        parallel: int = 1,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        correlation_id: str | None = None,
    ) -> pa.RecordBatchReader:
        """A RecordBatchReader over the whole export, batches in id order, up to `parallel` endpoints read at once."""
        import pyarrow as pa

        deadline = None if timeout is None else self.resume_policy.clock.monotonic() + timeout
        options = self.options(timeout, metadata, correlation_id)
        info = self.info(request, options)
        tickets = [ep.ticket.ticket for ep in info.endpoints]
        return pa.RecordBatchReader.from_batches(info.schema, self._ordered(tickets, options, max(1, parallel), deadline))

    def _ordered(
        self, tickets: list[bytes], options: fl.FlightCallOptions, parallel: int, deadline: float | None
    ) -> Iterator[pa.RecordBatch]:
        if parallel == 1:
            for ticket in tickets:
                yield from self.endpoint_batches(ticket, options, deadline=deadline)
            return
        stop = threading.Event()
        feeds: list[queue.Queue[Any]] = []

        def pump(ticket: bytes, feed: queue.Queue[Any]) -> None:
            batches = self.endpoint_batches(ticket, options, deadline=deadline)
            try:
                for batch in batches:
                    while not stop.is_set():
                        try:
                            feed.put(batch, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                feed.put(_End())
            except BaseException as exc:
                feed.put(_End(exc))
            finally:
                batches.close()  # stopped early: the DoGet is cancelled, its breaker permit given back

        def start(index: int) -> None:
            feeds.append(queue.Queue(LOOKAHEAD))
            threading.Thread(
                target=pump, args=(tickets[index], feeds[index]), daemon=True, name=f"flight-endpoint-{index}"
            ).start()

        try:
            for index in range(min(parallel, len(tickets))):
                start(index)
            for index in range(len(tickets)):
                while True:
                    item = feeds[index].get()
                    if isinstance(item, _End):
                        if item.error is not None:
                            raise item.error
                        break
                    yield item
                if len(feeds) < len(tickets):
                    start(len(feeds))
        finally:
            stop.set()


class FlightArrowStream:
    """An Arrow export read over Flight, for async code: `async for batch in ...` or `await read_all()`.

    `open()` (blocking: GetFlightInfo, then the batch reader) is what the sync client returns; the async faces run
    it and each blocking read in a worker thread, so the event loop never waits on pyarrow."""

    def __init__(self, open: Callable[[], pa.RecordBatchReader], flights: FlightExports) -> None:
        self._open = open
        self.flights = flights
        self.reader: pa.RecordBatchReader | None = None

    @property
    def schema(self) -> pa.Schema | None:
        return None if self.reader is None else self.reader.schema

    @property
    def resumes(self) -> int:
        """Breaks resumed by this client's Flight reader (all its exports)."""
        return self.flights.resumes

    def open(self) -> pa.RecordBatchReader:
        self.reader = self._open()
        return self.reader

    async def batches(self) -> AsyncIterator[pa.RecordBatch]:
        reader = await asyncio.to_thread(self.open)
        batches = iter(reader)
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            yield batch

    def __aiter__(self) -> AsyncIterator[pa.RecordBatch]:
        return self.batches()

    async def read_all(self) -> pa.Table:
        reader = await asyncio.to_thread(self.open)
        return await asyncio.to_thread(reader.read_all)
