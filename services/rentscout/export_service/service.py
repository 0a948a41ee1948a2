"""ExportService wiring (behaviour lands with the export issue)."""

from __future__ import annotations

from rentscout.export.v1 import export_pb2_grpc
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec

SERVICE_NAME = "rentscout.export.v1.ExportService"


class ExportServicer(export_pb2_grpc.ExportServiceServicer):
    def __init__(self, resources: Resources) -> None:
        self.resources = resources


def create(resources: Resources) -> ServiceSpec:
    servicer = ExportServicer(resources)
    return ServiceSpec(name=SERVICE_NAME,
                       register=lambda server: export_pb2_grpc.add_ExportServiceServicer_to_server(servicer, server))
