"""AnalyzerService wiring (behaviour lands with the analyzer issue). Every RPC needs the admin role."""

from __future__ import annotations

from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec

SERVICE_NAME = "rentscout.analyzer.v1.AnalyzerService"
ADMIN_METHODS = frozenset(analyzer_pb2.DESCRIPTOR.services_by_name["AnalyzerService"].methods_by_name)


class AnalyzerServicer(analyzer_pb2_grpc.AnalyzerServiceServicer):
    def __init__(self, resources: Resources) -> None:
        self.resources = resources


def create(resources: Resources) -> ServiceSpec:
    servicer = AnalyzerServicer(resources)
    return ServiceSpec(name=SERVICE_NAME, admin_methods=ADMIN_METHODS,
                       register=lambda server: analyzer_pb2_grpc.add_AnalyzerServiceServicer_to_server(servicer, server))
