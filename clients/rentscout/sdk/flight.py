"""Arrow exports over Arrow Flight: pyarrow.flight's C++ client reads the export server's FlightService.

GetFlightInfo with the export request as a command (`FlightDescriptor.for_command`, a serialized
ExportPropertiesRequest) gives the schema and one endpoint per id range, in id order; each endpoint's DoGet
streams record batches. Every batch carries, as app_metadata, the ticket that resumes after it, so a stream cut
by the network continues with `do_get(Ticket(app_metadata))`: every row exactly once.

The resume loop (`endpoint_batches`) is deliberately small and self-contained: consecutive failures without
progress are bounded by `max_resumes`; any batch received resets the count.

`parallel=N` reads up to N endpoints at once, each a few batches ahead, and yields their batches in endpoint
(id) order; memory stays bounded. Needs the `arrow` extra (pyarrow, which ships pyarrow.flight).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentscout.export.v1 import export_pb2
from rentscout.sdk.invoker import ClientConfig
from rentscout.wire.metadata import AUTHORIZATION_HEADER, CORRELATION_HEADER

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.flight as fl

LOOKAHEAD = 4  # batches an endpoint's reader thread may hold ahead of the consumer
RESUME_BACKOFF = 0.2  # seconds, times the attempt number


def location(config: ClientConfig) -> str:
    """The Flight URI of a client's target (grpc:// or, with TLS, grpc+tls://)."""
    scheme = "grpc+tls" if config.channel.tls is not None else "grpc"
    return f"{scheme}://{config.target}"


def _transient(exc: BaseException) -> bool:
    """Failures a resume may cure: the connection or the server went away, not the request."""
    import pyarrow.flight as fl

    return isinstance(exc, (fl.FlightUnavailableError, fl.FlightCancelledError, fl.FlightTimedOutError)) or (
        isinstance(exc, fl.FlightInternalError) and "Server never sent" not in str(exc))


@dataclass
class _End:
    error: BaseException | None = None


class FlightExports:
    """Arrow exports of one export server over Flight (one pyarrow.flight client, thread-safe)."""

    def __init__(self, config: ClientConfig, *, max_resumes: int = 5) -> None:
        self.config = config
        self.max_resumes = max_resumes
        self.resumes = 0  # streams continued after a failure, over this object's life
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
                kept = [(k, v) for k, v in self.config.channel.options()
                        if k not in ("grpc.service_config", "grpc.max_receive_message_length")]
                kwargs: dict[str, Any] = {"generic_options": kept}
                if tls is not None:
                    kwargs.update(tls_root_certs=Path(tls.ca_file).read_bytes() if tls.ca_file else None,
                                  cert_chain=Path(tls.cert_file).read_bytes() if tls.cert_file else None,
                                  private_key=Path(tls.key_file).read_bytes() if tls.key_file else None,
                                  override_hostname=tls.server_name)
                self._client = fl.FlightClient(location(self.config), **kwargs)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def options(self, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = (),
                correlation_id: str | None = None) -> fl.FlightCallOptions:
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

    def endpoint_batches(self, ticket: bytes, options: fl.FlightCallOptions) -> Iterator[pa.RecordBatch]:
        """One endpoint's batches; a cut stream resumes after its last batch (app_metadata)."""
        import pyarrow.flight as fl

        failures = 0
        while True:
            try:
                reader = self.client.do_get(fl.Ticket(ticket), options)
                while True:
                    try:
                        chunk = reader.read_chunk()
                    except StopIteration:
                        return
                    if chunk.data is not None and chunk.data.num_rows:
                        if chunk.app_metadata is not None:
                            ticket = chunk.app_metadata.to_pybytes()
                        failures = 0
                        yield chunk.data
            except Exception as exc:
                failures += 1
                if not _transient(exc) or failures > self.max_resumes:
                    raise
                self.resumes += 1
                time.sleep(RESUME_BACKOFF * failures)

    def read(self, request: export_pb2.ExportPropertiesRequest, *, parallel: int = 1, timeout: float | None = None,
             metadata: Sequence[tuple[str, str]] = (), correlation_id: str | None = None) -> pa.RecordBatchReader:
        """A RecordBatchReader over the whole export, batches in id order, up to `parallel` endpoints read at once."""
        import pyarrow as pa

        options = self.options(timeout, metadata, correlation_id)
        info = self.info(request, options)
        tickets = [ep.ticket.ticket for ep in info.endpoints]
        return pa.RecordBatchReader.from_batches(info.schema, self._ordered(tickets, options, max(1, parallel)))

    def _ordered(self, tickets: list[bytes], options: fl.FlightCallOptions, parallel: int) -> Iterator[pa.RecordBatch]:
        if parallel == 1:
            for ticket in tickets:
                yield from self.endpoint_batches(ticket, options)
            return
        stop = threading.Event()
        feeds: list[queue.Queue[Any]] = []

        def pump(ticket: bytes, feed: queue.Queue[Any]) -> None:
            try:
                for batch in self.endpoint_batches(ticket, options):
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

        def start(index: int) -> None:
            feeds.append(queue.Queue(LOOKAHEAD))
            threading.Thread(target=pump, args=(tickets[index], feeds[index]), daemon=True,
                             name=f"flight-endpoint-{index}").start()

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
