"""CacheQueryService wiring (behaviour lands with the cache-query issue)."""

from __future__ import annotations

from rentscout.cache.v1 import cache_pb2_grpc
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec

SERVICE_NAME = "rentscout.cache.v1.CacheQueryService"


class CacheQueryServicer(cache_pb2_grpc.CacheQueryServiceServicer):
    def __init__(self, resources: Resources) -> None:
        self.resources = resources


def create(resources: Resources) -> ServiceSpec:
    servicer = CacheQueryServicer(resources)
    return ServiceSpec(name=SERVICE_NAME, admin_methods=frozenset({"Invalidate", "InvalidateRelated"}),
                       register=lambda server: cache_pb2_grpc.add_CacheQueryServiceServicer_to_server(servicer, server))
