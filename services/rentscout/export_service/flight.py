"""Arrow Flight on the export port: `arrow.flight.protocol.FlightService` beside ExportService, same runtime.

- ListFlights: the datasets (`properties`).
- GetFlightInfo / GetSchema: `FlightDescriptor.for_path("properties")` is the whole table; `for_command(bytes)`
  takes a serialized ExportPropertiesRequest (filter, columns, limit; format unset or ARROW). The FlightInfo has
  the Arrow schema (the IPC format's types), the row count and one endpoint per partition: PlanExport's id ranges,
  one per RENTSCOUT_EXPORT_FLIGHT_ROWS_PER_ENDPOINT estimated rows, at most RENTSCOUT_EXPORT_FLIGHT_MAX_ENDPOINTS;
  each endpoint has a signed ticket (flight_tickets) and RENTSCOUT_EXPORT_ADVERTISED_ADDRESS as its location.
- DoGet: the schema, then the window's record batches, each with the ticket that resumes after it as
  `app_metadata`. Batches are decoded from COPY BINARY by ADBC in worker threads (arrow_source); a large window
  without a limit is cut into RENTSCOUT_EXPORT_FLIGHT_READERS consecutive sub-ranges read over as many
  connections at once and sent in order, each at most FEED_DEPTH batches ahead: memory stays bounded and a slow
  client slows PostgreSQL down. A DoGet is an export like any other: a slot (RENTSCOUT_EXPORT_MAX_CONCURRENT),
  a run in export_runs, the export metrics and log lines.
- Every other Flight RPC is UNIMPLEMENTED, saying what to use instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import orjson
from google.protobuf.message import DecodeError

from rentscout.arrow_flight.protocol import flight_pb2
from rentscout.export.v1 import export_pb2
from rentscout.export_service import sqlgen, telemetry
from rentscout.export_service.arrow_source import AdbcWindow, Conformer, WindowQuery, adbc_uri, missing, select_list
from rentscout.export_service.columns import Catalog
from rentscout.export_service.flight_data import flight_data, identity
from rentscout.export_service.flight_tickets import TicketCodec, parse, verified_state
from rentscout.export_service.request import ExportSpec, build_spec, check_static, resolve_columns
from rentscout.export_service.runs import RunStore
from rentscout.export_service.settings import ExportSettings
from rentscout.export_service.stream import ExportRun, Slots, StreamStart
from rentscout.export_service.tokens import KeyRing, ResumeState
from rentscout.runtime import context, deadline
from rentscout.runtime.database import Database
from rentscout.runtime.errors import InvalidArgument, ServiceError, Unavailable, Unimplemented, Violations
from rentscout.runtime.replicas import ReadRouter
from rentscout.wire.schema import KEY, TABLE
from rentscout.wire.sql import ident


class ExportState(Protocol):
    """What Flight shares with the ExportService servicer (structurally, so neither module imports the other)."""

    @property
    def settings(self) -> ExportSettings: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def keys(self) -> KeyRing: ...
    @property
    def runs(self) -> RunStore: ...
    @property
    def slots(self) -> Slots: ...
    @property
    def db(self) -> Database: ...
    @property
    def reads(self) -> ReadRouter: ...


SERVICE_NAME = flight_pb2.DESCRIPTOR.services_by_name["FlightService"].full_name
DATASET = TABLE
ARROW = export_pb2.EXPORT_FORMAT_ARROW
FEED_DEPTH = 2  # decoded batches a reader may hold ahead of the sender
MIN_IDS_PER_READER = 100_000  # a window is cut for several readers only when it spans this many ids per reader
APPLICATION_NAME = "rentscout-export-flight"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    """One decoded batch: its FlightData bytes without app_metadata, rows, last key and body size."""

    message: Any  # the encapsulated IPC message (a pyarrow Buffer)
    rows: int
    last_id: int
    nbytes: int


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


class Feed:
    """A reader thread's batches, handed to the event loop at most FEED_DEPTH ahead (back-pressure)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, source: AdbcWindow | None = None) -> None:
        self.loop = loop
        self.source = source
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.room = threading.Semaphore(FEED_DEPTH)
        self.stop = threading.Event()

    def put(self, item: Any, force: bool = False) -> bool:
        """From the reader thread; waits for room (False once the stream was stopped)."""
        while not force and not self.room.acquire(timeout=0.2):
            if self.stop.is_set():
                return False
        if self.stop.is_set() and not force:
            return False
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody reads any more
            return False
        return True

    async def get(self, bound: float) -> Any:
        """The next item; waiting on PostgreSQL (an empty feed) is bounded by the server's bound."""
        try:
            item = await asyncio.wait_for(self.queue.get(), bound)
        except TimeoutError:
            if deadline.expired():
                raise
            raise Unavailable(
                f"PostgreSQL sent nothing for {bound:g}s during the Flight export (RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS)"
            ) from None
        self.room.release()
        return item


def _adbc_error(exc: BaseException) -> ServiceError:
    """An ADBC failure as a status that echoes no database value."""
    state = getattr(exc, "sqlstate", None) or ""
    if state == "57014":
        return Unavailable("PostgreSQL cancelled the export's query (statement timeout or shutdown)")
    return Unavailable(
        f"PostgreSQL failed during the Flight export ({type(exc).__name__}{', SQLSTATE ' + state if state else ''})"
    )


def read_window(feed: Feed, conform: Conformer) -> None:
    """A reader thread: open, decode, conform and serialize each batch, hand it over; close the connection."""
    window = feed.source
    assert window is not None
    try:
        window.open()
        while not feed.stop.is_set():
            batch = window.next()
            if batch is None:
                break
            if batch.num_rows == 0:
                continue
            out, last = conform(batch)
            message = out.serialize()
            if not feed.put(Piece(message, out.num_rows, last, message.size)):
                break
        feed.put(_END, force=True)
    except BaseException as exc:  # handed to the RPC, which maps it to a status
        error = exc if isinstance(exc, ServiceError) else _adbc_error(exc)
        feed.put(_Failed(error), force=True)
    finally:
        window.close()


class FlightServicer:
    def __init__(self, export: ExportState) -> None:
        """Shares the export servicer's settings, catalog, resume-token codec, run store and slots."""
        self.export = export
        self.settings = export.settings
        readers = self.settings.max_concurrent * self.settings.flight_readers
        self.pool = concurrent.futures.ThreadPoolExecutor(readers, thread_name_prefix="flight-reader")

    async def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- requests ------------------------------------------------------------------------------

    async def _spec(self, request: export_pb2.ExportPropertiesRequest, prefix: str) -> ExportSpec:
        if (why := missing()) is not None:
            raise Unimplemented(why)
        v = Violations()
        if request.format not in (export_pb2.EXPORT_FORMAT_UNSPECIFIED, ARROW):
            v.add(f"{prefix}format", "must be EXPORT_FORMAT_ARROW or unset: Flight streams are Arrow")
        v.raise_if_any()
        request.format = ARROW
        where = check_static(request, self.settings, v, prefix)
        v.raise_if_any()
        columns = resolve_columns(request.columns, await self.export.catalog.columns(), v, prefix)
        v.raise_if_any()
        return build_spec(request, where, columns, self.settings)

    def _command(self, descriptor: flight_pb2.FlightDescriptor) -> export_pb2.ExportPropertiesRequest:
        if descriptor.type == flight_pb2.FlightDescriptor.PATH:
            if list(descriptor.path) != [DATASET]:
                raise InvalidArgument("path", f"unknown dataset {'/'.join(descriptor.path)!r}; known: {DATASET}")
            return export_pb2.ExportPropertiesRequest(format=ARROW)
        if descriptor.type == flight_pb2.FlightDescriptor.CMD:
            try:
                request = export_pb2.ExportPropertiesRequest.FromString(descriptor.cmd)
            except DecodeError:
                raise InvalidArgument("cmd", "is not a serialized rentscout.export.v1.ExportPropertiesRequest") from None
            if request.resume_token:
                raise InvalidArgument("cmd.resume_token", "must be empty: DoGet resumes with a batch's app_metadata")
            return request
        raise InvalidArgument("type", f"must be PATH ([{DATASET!r}]) or CMD (a serialized ExportPropertiesRequest)")

    def _schema_bytes(self, spec: ExportSpec) -> bytes:
        return bytes(Conformer(spec.columns, spec.hidden_key).schema.serialize().to_pybytes())

    # -- discovery -----------------------------------------------------------------------------

    async def ListFlights(self, request: flight_pb2.Criteria, context_: Any) -> AsyncIterator[flight_pb2.FlightInfo]:
        yield await self._info(flight_pb2.FlightDescriptor(type=flight_pb2.FlightDescriptor.PATH, path=[DATASET]))

    async def GetFlightInfo(self, request: flight_pb2.FlightDescriptor, context_: Any) -> flight_pb2.FlightInfo:
        return await self._info(request)

    async def GetSchema(self, request: flight_pb2.FlightDescriptor, context_: Any) -> flight_pb2.SchemaResult:
        spec = await self._spec(self._command(request), "cmd." if request.type == request.CMD else "")
        return flight_pb2.SchemaResult(schema=self._schema_bytes(spec))

    async def _estimate(self, spec: ExportSpec) -> int:
        plan = await self.export.reads.fetchval(sqlgen.explain_sql(spec.where, sqlgen.Window(None, None, spec.effective_limit)))
        return int(orjson.loads(plan)[0]["Plan"]["Plan Rows"])

    async def _histogram_cuts(self, spec: ExportSpec, parts: int) -> list[int]:
        """For the whole table (no filter, no limit): `parts` - 1 ids that cut it into ranges of about equal rows,
        from the planner's histogram of the key (free, where PlanExport's exact cut scans every id). The ranges tile
        the key space whatever the histogram's age; only their balance depends on it. [] when there is none."""
        if spec.where or spec.limit:
            return []
        bounds = await self.export.reads.fetchval(
            "SELECT s.histogram_bounds::text::bigint[] FROM pg_stats s JOIN pg_class c ON c.oid = $1::regclass "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE s.schemaname = n.nspname AND s.tablename = c.relname "
            "AND s.attname = $2",
            TABLE,
            KEY,
        )
        if not bounds or len(bounds) < parts + 1:
            return []
        cuts = sorted({int(bounds[len(bounds) * k // parts]) for k in range(1, parts)})
        return cuts if len(cuts) == parts - 1 else []

    async def _info(self, descriptor: flight_pb2.FlightDescriptor) -> flight_pb2.FlightInfo:
        request = self._command(descriptor)
        spec = await self._spec(request, "cmd." if descriptor.type == descriptor.CMD else "")
        s = self.settings
        estimate = await self._estimate(spec)
        wanted = min(s.flight_max_endpoints, max(1, -(-estimate // s.flight_rows_per_endpoint)))
        export_id = uuid.uuid4()
        windows: list[tuple[int | None, int | None]] = [(None, None)]
        total = estimate
        if wanted > 1 and (cuts := await self._histogram_cuts(spec, wanted)):
            bounds: list[int | None] = [None, *cuts, None]
            windows = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        elif wanted > 1:
            rows = await self.export.reads.fetch(sqlgen.plan_sql(spec.where, spec.effective_limit, wanted))
            ranges = sqlgen.plan_ranges(rows, spec.effective_limit)
            total = sum(r.rows for r in ranges)
            windows = [(r.after_id, r.upper_id) for r in ranges] or windows
        info = flight_pb2.FlightInfo(
            schema=self._schema_bytes(spec), flight_descriptor=descriptor, total_records=total, total_bytes=-1, ordered=True
        )
        tickets = TicketCodec(await self.export.keys.codec())
        for after, upper in windows:
            endpoint = info.endpoint.add()
            endpoint.ticket.ticket = tickets.ticket(request, spec.fingerprint, ResumeState(export_id.bytes, after, upper, 0))
            if s.advertised_address:
                endpoint.location.add(uri=s.advertised_address)
        context.annotate(**{"export.id": str(export_id), "export.partitions": len(windows)})
        return info

    # -- DoGet ---------------------------------------------------------------------------------

    async def DoGet(self, request: flight_pb2.Ticket, context_: Any) -> AsyncIterator[bytes]:
        """Pre-encoded FlightData (see flight_data): the schema, then each batch with its resume ticket."""
        export_request = parse(request.ticket)
        spec = await self._spec(export_request, "ticket.")
        state = await verified_state(self.export.keys, export_request, spec.fingerprint)
        start = StreamStart(spec, state, resumed=state.rows_sent > 0)  # an endpoint's own ticket has sent nothing
        export = self.export
        codec = await export.keys.codec()
        export.slots.take()
        try:
            progress = await export.runs.start_run(state.export_id, spec.format.name, start.resumed, context.correlation_id.get())
            run = ExportRun(start, codec, export.runs, export.slots, None, progress)
        except BaseException:
            export.slots.release()
            raise
        context_.add_done_callback(run.interrupted)
        run.log_start()
        feeds: list[Feed] = []
        try:
            yield flight_data(Conformer(spec.columns, spec.hidden_key).schema.serialize())
            remaining = max(spec.effective_limit - state.rows_sent, 0)
            if remaining and not state.done:
                windows = await self._split(spec, state)
                feeds = self._start_readers(spec, windows, remaining)
                async for message in self._batches(run, export_request, state, feeds):
                    yield message
            run.close("completed", None, record_later=False)
            await export.runs.end_run(progress, "completed", None)
        except (GeneratorExit, asyncio.CancelledError):
            run.interrupted(context_)
            raise
        except Exception as exc:
            run.close("failed", telemetry.code_of(exc))
            raise
        finally:
            for feed in feeds:
                feed.stop.set()

    async def _split(self, spec: ExportSpec, state: ResumeState) -> list[sqlgen.Window]:
        """The window as consecutive sub-windows for the configured readers (one when small or limited)."""
        whole = sqlgen.Window(state.after_id, state.upper_id, None)
        readers = self.settings.flight_readers
        if readers < 2 or spec.limit:
            return [whole]
        key = f"{ident(TABLE)}.{ident(KEY)}"
        row = await self.export.reads.fetchrow(
            f"SELECT min({key}) AS lo, max({key}) AS hi FROM {ident(TABLE)} WHERE {sqlgen.where_sql('', whole)}"
        )
        if row is None or row["lo"] is None or row["hi"] - row["lo"] < readers * MIN_IDS_PER_READER:
            return [whole]
        lo, hi = int(row["lo"]), int(row["hi"])
        step = (hi - lo) // readers
        cuts = [lo - 1 + step * k for k in range(1, readers)]
        bounds = [state.after_id, *cuts, state.upper_id]
        return [sqlgen.Window(bounds[i], bounds[i + 1], None) for i in range(readers)]

    def _start_readers(self, spec: ExportSpec, windows: list[sqlgen.Window], remaining: int) -> list[Feed]:
        loop = asyncio.get_running_loop()
        s = self.settings
        uri = adbc_uri(self.export.db.dsn, deadline.remaining(), APPLICATION_NAME, s.statement_timeout_ms)
        batch_bytes = spec.bytes_per_chunk
        select = select_list(spec.columns, spec.hidden_key)
        feeds = []
        for window in windows:
            sql = sqlgen.select_sql(select, spec.where, sqlgen.Window(window.after_id, window.upper_id, remaining))
            feed = Feed(loop, AdbcWindow(WindowQuery(uri, sql, batch_bytes)))
            self.pool.submit(read_window, feed, Conformer(spec.columns, spec.hidden_key))
            feeds.append(feed)
        return feeds

    async def _batches(
        self, run: ExportRun, request: export_pb2.ExportPropertiesRequest, state: ResumeState, feeds: list[Feed]
    ) -> AsyncIterator[bytes]:
        fmt = run.spec.format.name
        tickets = TicketCodec(run.codec)  # the run's key signs every resume ticket it sends
        rows_sent = state.rows_sent
        bound = deadline.bound()
        try:
            for feed in feeds:
                while True:
                    item = await feed.get(bound)
                    if item is _END:
                        break
                    if isinstance(item, _Failed):
                        raise item.error
                    rows_sent += item.rows
                    after = ResumeState(state.export_id, item.last_id, state.upper_id, rows_sent)
                    ticket = tickets.ticket(request, run.spec.fingerprint, after)
                    message = flight_data(item.message, ticket)
                    run.rows_sent = rows_sent
                    run.progress.rows += item.rows
                    run.progress.bytes += item.nbytes
                    telemetry.EXPORT_ROWS.labels(fmt).inc(item.rows)
                    telemetry.EXPORT_BYTES.labels(fmt).inc(item.nbytes)
                    yield message
        finally:
            for feed in feeds:
                feed.stop.set()
                if feed.source is not None:
                    feed.source.cancel()

    # -- the rest of Flight --------------------------------------------------------------------

    @staticmethod
    def _unimplemented(what: str) -> Unimplemented:
        return Unimplemented(
            f"{what} is not served here: this Flight service only exports (ListFlights, "
            "GetFlightInfo, GetSchema, DoGet); authenticate with an `authorization: Bearer` header"
        )

    async def Handshake(self, request_iterator: Any, context_: Any) -> None:
        raise self._unimplemented("Handshake")

    async def PollFlightInfo(self, request: flight_pb2.FlightDescriptor, context_: Any) -> None:
        raise self._unimplemented("PollFlightInfo (exports start at once: use GetFlightInfo)")

    async def DoPut(self, request_iterator: Any, context_: Any) -> None:
        raise self._unimplemented("DoPut")

    async def DoExchange(self, request_iterator: Any, context_: Any) -> None:
        raise self._unimplemented("DoExchange")

    async def DoAction(self, request: flight_pb2.Action, context_: Any) -> None:
        raise self._unimplemented("DoAction")

    async def ListActions(self, request: flight_pb2.Empty, context_: Any) -> None:
        raise self._unimplemented("ListActions (there are no actions)")


_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def register(servicer: FlightServicer, server: grpc.aio.Server) -> None:
    """Add FlightService, every method from the service descriptor; DoGet's messages are FlightData encoded by
    hand (flight_data), so its serializer is the identity."""
    handlers = {}
    for method in flight_pb2.DESCRIPTOR.services_by_name["FlightService"].methods:
        request_class = getattr(flight_pb2, method.input_type.name)
        response_class = getattr(flight_pb2, method.output_type.name)
        factory: Any = _FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            request_deserializer=request_class.FromString,
            response_serializer=identity if method.name == "DoGet" else response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
