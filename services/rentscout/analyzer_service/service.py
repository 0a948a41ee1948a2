"""AnalyzerService: EXPLAIN insights, slow queries, index advice and table health. Every RPC needs admin."""

from __future__ import annotations

import grpc

from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.analyzer_service import convert, explain
from rentscout.analyzer_service.params import ParamError, from_proto
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.runtime.config import load
from rentscout.runtime.errors import InvalidArgument
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec

SERVICE_NAME = "rentscout.analyzer.v1.AnalyzerService"
ADMIN_METHODS = frozenset(analyzer_pb2.DESCRIPTOR.services_by_name["AnalyzerService"].methods_by_name)
MAX_PARAMS = 100


class AnalyzerServicer(analyzer_pb2_grpc.AnalyzerServiceServicer):
    def __init__(self, resources: Resources, settings: AnalyzerSettings) -> None:
        self.resources = resources
        self.settings = settings

    async def AnalyzeQuery(self, request: analyzer_pb2.AnalyzeQueryRequest,
                           context: grpc.aio.ServicerContext) -> analyzer_pb2.AnalyzeQueryResponse:
        if len(request.params) > MAX_PARAMS:
            raise InvalidArgument("params", f"at most {MAX_PARAMS} parameters are supported")
        try:
            params = from_proto(request.params)
        except ParamError as exc:
            raise InvalidArgument("params", str(exc)) from None
        result = await explain.analyze_query(self.resources.db, self.settings, request.sql, params,
                                             analyze=request.analyze, buffers=request.buffers)
        return convert.analysis(result)


def create(resources: Resources, settings: AnalyzerSettings | None = None) -> ServiceSpec:
    """`settings` defaults to the environment (tests pass their own)."""
    servicer = AnalyzerServicer(resources, settings or load(AnalyzerSettings))
    return ServiceSpec(name=SERVICE_NAME, admin_methods=ADMIN_METHODS,
                       register=lambda server: analyzer_pb2_grpc.add_AnalyzerServiceServicer_to_server(servicer, server))
