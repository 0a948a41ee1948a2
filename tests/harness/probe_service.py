"""A test-only service that exercises the shared runtime (not a stand-in for PostgreSQL or Redis).

It implements the ExportService contract with behaviour chosen by the `x-test-action` metadata, so
runtime tests can trigger each path the interceptor must handle: success, bad input, an unexpected
error, a slow database statement, a long stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.runtime import errors
from rentscout.runtime.context import annotate
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec

NAME = "rentscout.export.v1.ExportService"


def _action(ctx: grpc.aio.ServicerContext[Any, Any]) -> str:
    return next((str(v) for k, v in ctx.invocation_metadata() or () if k == "x-test-action"), "ok")


class ProbeServicer(export_pb2_grpc.ExportServiceServicer):
    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    async def GetExportStatistics(
        self,
        request: export_pb2.GetExportStatisticsRequest,
        ctx: grpc.aio.ServicerContext[export_pb2.GetExportStatisticsRequest, export_pb2.GetExportStatisticsResponse],
    ) -> export_pb2.GetExportStatisticsResponse:
        action = _action(ctx)
        if action == "invalid":
            raise errors.InvalidArgument([("since", "must not be in the future"), ("since.nanos", "out of range")])
        if action == "boom":
            raise ValueError("secret internal detail")
        if action == "db":
            count = await self.resources.db.fetchval("SELECT count(*) FROM properties")
            annotate(**{"db.rows": count})
            return export_pb2.GetExportStatisticsResponse(exports_started=count)
        if action == "slow-db":
            await self.resources.db.execute("SELECT pg_sleep(30) /* probe-slow */")
        if action.startswith("sleep:"):
            await asyncio.sleep(float(action.split(":", 1)[1]))
        return export_pb2.GetExportStatisticsResponse(exports_started=1)

    async def PlanExport(
        self,
        request: export_pb2.PlanExportRequest,
        ctx: grpc.aio.ServicerContext[export_pb2.PlanExportRequest, export_pb2.PlanExportResponse],
    ) -> export_pb2.PlanExportResponse:
        return export_pb2.PlanExportResponse(estimated_total_rows=7)

    async def ExportProperties(
        self,
        request: export_pb2.ExportPropertiesRequest,
        ctx: grpc.aio.ServicerContext[export_pb2.ExportPropertiesRequest, export_pb2.ExportPropertiesResponse],
    ) -> AsyncIterator[export_pb2.ExportPropertiesResponse]:
        for i in range(request.limit or 5):
            await asyncio.sleep(request.rows_per_chunk / 1000 if request.rows_per_chunk else 0.05)
            yield export_pb2.ExportPropertiesResponse(chunk=export_pb2.ExportChunk(rows=1, rows_sent=i + 1))


def create(resources: Resources) -> ServiceSpec:
    servicer = ProbeServicer(resources)
    return ServiceSpec(
        name=NAME,
        admin_methods=frozenset({"PlanExport"}),
        register=lambda s: export_pb2_grpc.add_ExportServiceServicer_to_server(servicer, s),
    )
