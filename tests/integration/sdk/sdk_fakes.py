"""Scripted servicers for SDK tests, hosted by the real runtime (ServiceHost, interceptor, auth, logs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from harness.servers import settings_for
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.runtime.errors import InvalidArgument, Unavailable
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceFactory, ServiceHost, ServiceSpec

CACHE_SERVICE = "rentscout.cache.v1.CacheQueryService"


class ScriptedCache(cache_pb2_grpc.CacheQueryServiceServicer):
    """PriceStats fails `failures` times (UNAVAILABLE) then answers count=42; records each call's metadata.

    Cities always answers INVALID_ARGUMENT with a field violation; PopularProperties aborts with the
    status and trailing metadata in `abort_with`; PropertyTypes sleeps `delay` seconds first.
    """

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}
        self.metadata: list[dict[str, str]] = []
        self.abort_with: tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]] = (
            grpc.StatusCode.UNAVAILABLE, "busy", ())
        self.delay = 0.0

    def _seen(self, name: str, context: grpc.aio.ServicerContext) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        return self.calls[name]

    async def PriceStats(self, request: Any, context: grpc.aio.ServicerContext) -> cache_pb2.PriceStatsResponse:
        if self._seen("PriceStats", context) <= self.failures:
            raise Unavailable("warming up")
        return cache_pb2.PriceStatsResponse(count=42, median=1234.0)

    async def Cities(self, request: Any, context: grpc.aio.ServicerContext) -> cache_pb2.CitiesResponse:
        self._seen("Cities", context)
        raise InvalidArgument([("city", "must not be empty")])

    async def PopularProperties(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._seen("PopularProperties", context)
        code, details, trailing = self.abort_with
        await context.abort(code, details, trailing_metadata=trailing)

    async def PropertyTypes(self, request: Any, context: grpc.aio.ServicerContext) -> cache_pb2.PropertyTypesResponse:
        self._seen("PropertyTypes", context)
        await asyncio.sleep(self.delay)
        return cache_pb2.PropertyTypesResponse()


def factory(servicer: Any, name: str = CACHE_SERVICE,
            add: Callable[[Any, grpc.aio.Server], None] = cache_pb2_grpc.add_CacheQueryServiceServicer_to_server,
            admin_methods: frozenset[str] = frozenset()) -> Callable[[Resources], ServiceSpec]:
    def create(resources: Resources) -> ServiceSpec:
        return ServiceSpec(name=name, register=lambda server: add(servicer, server), admin_methods=admin_methods)

    return create


@contextlib.asynccontextmanager
async def host_on(port: int, factories: Sequence[ServiceFactory], env: dict[str, str],
                  **overrides: Any) -> AsyncIterator[ServiceHost]:
    """Like harness.servers.in_process, but on a chosen port (to restart a server where clients expect it)."""
    overrides.setdefault("health_check_interval_seconds", 0.2)
    host = ServiceHost(factories, settings_for(env, **overrides), label="test", host="127.0.0.1", port=port,
                       metrics_port=None)
    await host.start()
    try:
        yield host
    finally:
        await host.stop(grace=0.5)
