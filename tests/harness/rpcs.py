"""Every RPC of every RentScout service, from the generated descriptors, callable generically."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import descriptor as d
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from rentscout.analyzer.v1 import analyzer_pb2
from rentscout.cache.v1 import cache_pb2
from rentscout.export.v1 import export_pb2

FILES = (export_pb2.DESCRIPTOR, cache_pb2.DESCRIPTOR, analyzer_pb2.DESCRIPTOR)
# The documented role policy (README "Auth"): analyzer RPCs and cache invalidation need admin.
ADMIN_ONLY = frozenset(
    {
        "/rentscout.analyzer.v1.AnalyzerService/AnalyzeQuery",
        "/rentscout.analyzer.v1.AnalyzerService/ListSlowQueries",
        "/rentscout.analyzer.v1.AnalyzerService/SuggestIndexes",
        "/rentscout.analyzer.v1.AnalyzerService/GetTableStats",
        "/rentscout.cache.v1.CacheQueryService/Invalidate",
        "/rentscout.cache.v1.CacheQueryService/InvalidateRelated",
    }
)


@dataclass(frozen=True)
class Rpc:
    method: d.MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def streaming(self) -> bool:
        return self.method.server_streaming

    def request_class(self) -> type[Message]:
        return GetMessageClass(self.method.input_type)

    def callable(self, channel: grpc.Channel):  # type: ignore[no-untyped-def]
        response = GetMessageClass(self.method.output_type)
        factory = channel.unary_stream if self.streaming else channel.unary_unary
        return factory(self.path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=response.FromString)

    def invoke(
        self, channel: grpc.Channel, request: Message, metadata: list[tuple[str, str]] | None = None, timeout: float = 30
    ) -> list[Message]:
        """Call and drain: the list of responses (one for unary)."""
        call = self.callable(channel)
        if self.streaming:
            return list(call(request, metadata=metadata, timeout=timeout))
        return [call(request, metadata=metadata, timeout=timeout)]


def all_rpcs() -> list[Rpc]:
    return [Rpc(m) for f in FILES for s in f.services_by_name.values() for m in s.methods]
