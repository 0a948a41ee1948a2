"""ExportService: streaming exports of `properties` (CSV, JSON array, JSON Lines), resumable and back-pressured.

Design notes (see also sqlgen, framing, pump, stream, and the formats in rentscout.wire.formats):
- PostgreSQL renders every byte with COPY, ordered by id; the server slices at row boundaries, so chunks
  are whole rows and concatenated chunks are one valid file. Keyset windows (id > last sent), never OFFSET.
- A resume token continues after the last row of its chunk. CSV's header and JSON's '[' open only a
  stream that starts at row 0 (a fresh export or a PlanExport partition); a resumed JSON stream starts
  with ',' so original + resumed chunks concatenate into one array.
- PlanExport cuts the (filtered, limited) id sequence into N contiguous ranges of equal row counts
  (ntile over the ids). The ranges tile the whole key space, so rows inserted later are still in
  exactly one partition. With a limit, the boundary is the id of the limit-th row at planning time.
  Each partition is a complete file of its own (header / brackets included).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import grpc

from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.export_service import flight, sqlgen, telemetry
from rentscout.export_service.columns import Catalog
from rentscout.export_service.pump import CopyJob, CopyPump
from rentscout.export_service.request import build_spec, check_static, resolve_columns
from rentscout.export_service.runs import RunStore
from rentscout.export_service.settings import ExportSettings
from rentscout.export_service.stream import ExportRun, Slots, StreamStart, copy_job
from rentscout.export_service.tokens import KeyRing, ResumeState
from rentscout.runtime import context
from rentscout.runtime.config import load
from rentscout.runtime.errors import ConsumerStalled, InvalidArgument, Violations
from rentscout.runtime.replicas import ReadRouter
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec
from rentscout.runtime.timestamps import to_datetime

SERVICE_NAME = telemetry.SERVICE_NAME
MAX_PARTITIONS = 64
_log = logging.getLogger(__name__)

PumpFactory = Callable[[ReadRouter, CopyJob], CopyPump]


class ExportServicer(export_pb2_grpc.ExportServiceServicer):
    def __init__(self, resources: Resources, settings: ExportSettings, pump: PumpFactory = CopyPump) -> None:
        """`pump` makes each stream's PostgreSQL side (a seam for tests that watch the COPY)."""
        self.resources = resources
        self.pump = pump
        self.db = resources.db
        self.reads = resources.reads  # streams and PlanExport read from standbys when there are any
        self.settings = settings
        self.catalog = Catalog(resources.db)
        self.keys = KeyRing(resources.db, settings.token_secret, settings.token_secret_previous)
        self.runs = RunStore(resources.db, settings.heartbeat_seconds, settings.runs_retention_days)
        self.slots = Slots(settings.max_concurrent)

    async def _start(self, request: export_pb2.ExportPropertiesRequest) -> StreamStart:
        v = Violations()
        where = check_static(request, self.settings, v)
        v.raise_if_any()
        columns = resolve_columns(request.columns, await self.catalog.columns(), v)
        v.raise_if_any()
        spec = build_spec(request, where, columns, self.settings)
        if request.resume_token:
            return StreamStart(spec, await self.keys.decode(request.resume_token, spec.fingerprint), resumed=True)
        return StreamStart(spec, ResumeState(uuid.uuid4().bytes, None, None, 0), resumed=False)

    async def ExportProperties(
        self,
        request: export_pb2.ExportPropertiesRequest,
        context_: grpc.aio.ServicerContext[export_pb2.ExportPropertiesRequest, export_pb2.ExportPropertiesResponse],
    ) -> AsyncIterator[export_pb2.ExportPropertiesResponse]:
        start = await self._start(request)
        codec = await self.keys.codec()
        job = copy_job(start.spec, start.state, self.settings.statement_timeout_ms)
        pump = None if start.state.done else self.pump(self.reads, job)
        self.slots.take()
        try:
            if pump is not None:
                pump.start()  # the COPY gets under way while the run is recorded (a resumed stream waits less)
            progress = await self.runs.start_run(
                start.state.export_id, start.spec.format.name, start.resumed, context.correlation_id.get()
            )
            run = ExportRun(start, codec, self.runs, self.slots, pump, progress)
        except BaseException:
            if pump is not None:
                await pump.stop()
            self.slots.release()
            raise
        # stops the COPY at once, whatever ends the call (the ignore: types-grpcio declares the callback
        # type, _DoneCallback, as a plain class rather than a Protocol, so no function can match it)
        context_.add_done_callback(run.interrupted)  # type: ignore[arg-type]
        run.log_start()
        try:
            async for message in run.messages():
                yield message
        except (GeneratorExit, asyncio.CancelledError):
            run.interrupted(context_)
            raise
        except ConsumerStalled:  # the runtime's stall bound (RENTSCOUT_EXPORT_STALL_TIMEOUT_SECONDS)
            run.close("abandoned", grpc.StatusCode.ABORTED.name)
            raise
        except Exception as exc:
            run.close("failed", telemetry.code_of(exc))
            raise
        finally:
            if pump is not None:
                await pump.stop()

    async def PlanExport(
        self,
        request: export_pb2.PlanExportRequest,
        context_: grpc.aio.ServicerContext[export_pb2.PlanExportRequest, export_pb2.PlanExportResponse],
    ) -> export_pb2.PlanExportResponse:
        v = Violations()
        req = request.export
        where = check_static(req, self.settings, v, prefix="export.")
        if req.resume_token:
            v.add("export.resume_token", "must be empty: PlanExport splits a whole export")
        if not 1 <= request.partitions <= MAX_PARTITIONS:
            v.add("partitions", f"must be from 1 to {MAX_PARTITIONS}")
        v.raise_if_any()
        columns = resolve_columns(req.columns, await self.catalog.columns(), v, prefix="export.")
        v.raise_if_any()
        spec = build_spec(req, where, columns, self.settings)
        rows = await self.reads.fetch(sqlgen.plan_sql(spec.where, spec.effective_limit, request.partitions))
        codec = await self.keys.codec()
        export_id = uuid.uuid4()
        out = export_pb2.PlanExportResponse(export_id=str(export_id))
        total = sum(r["n"] for r in rows)
        if not rows:
            state = ResumeState(export_id.bytes, None, None, 0)
            out.partitions.add(
                index=0, first_id=0, last_id=0, estimated_rows=0, resume_token=codec.encode(spec.fingerprint, state)
            )
        for i, r in enumerate(sqlgen.plan_ranges(rows, spec.effective_limit)):
            state = ResumeState(export_id.bytes, r.after_id, r.upper_id, 0)
            out.partitions.add(
                index=i,
                first_id=r.first_id,
                last_id=r.last_id,
                estimated_rows=r.rows,
                resume_token=codec.encode(spec.fingerprint, state),
            )
        out.estimated_total_rows = total
        context.annotate(**{"export.id": str(export_id), "export.partitions": len(out.partitions)})
        return out

    async def GetExportStatistics(
        self,
        request: export_pb2.GetExportStatisticsRequest,
        context_: grpc.aio.ServicerContext[export_pb2.GetExportStatisticsRequest, export_pb2.GetExportStatisticsResponse],
    ) -> export_pb2.GetExportStatisticsResponse:
        since = None
        if request.HasField("since"):
            try:
                since = to_datetime(request.since)
            except ValueError as exc:
                raise InvalidArgument("since", str(exc)) from None
        return await self.runs.statistics(since)


def build(
    resources: Resources, settings: ExportSettings | None = None, pump: PumpFactory = CopyPump
) -> tuple[ExportServicer, ServiceSpec]:
    """The servicer and its ServiceSpec (tests use the servicer to look inside, and may give the pump)."""
    settings = settings or load(ExportSettings)
    if not settings.token_secret:
        _log.info(
            "RENTSCOUT_EXPORT_TOKEN_SECRET is unset: resume tokens are signed with the key stored in "
            "PostgreSQL (token_signing_keys), shared by every replica of the database",
            extra={"fields": {"event.category": "configuration"}},
        )
    servicer = ExportServicer(resources, settings, pump)
    flights = flight.FlightServicer(servicer)

    def register(server: grpc.aio.Server) -> None:
        export_pb2_grpc.add_ExportServiceServicer_to_server(servicer, server)
        flight.register(flights, server)

    spec = ServiceSpec(
        name=SERVICE_NAME,
        register=register,
        also=(flight.SERVICE_NAME,),
        on_start=[servicer.runs.start],
        on_stop=[servicer.runs.stop, flights.stop],
        stall_timeouts={
            "ExportProperties": settings.stall_timeout_seconds,
            f"/{flight.SERVICE_NAME}/DoGet": settings.stall_timeout_seconds,
        },
    )
    return servicer, spec


def create(resources: Resources) -> ServiceSpec:
    return build(resources)[1]
