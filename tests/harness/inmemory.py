"""In-memory RPCs with grpcio-testing: a service's real servicer behind the real RuntimeInterceptor
(auth, correlation id, error mapping), served by `grpc_testing` without sockets, ports or a database.

    server = InMemoryServer(probe_service.create(resources), tokens={"t": "admin"})
    reply = server.unary("GetExportStatistics", request, metadata=[("authorization", "Bearer t")])
    reply.code, reply.response, reply.trailing_metadata

Requests and responses cross as on the wire: the handler gets the request's bytes through its own
deserializer (or the bytes themselves), and bytes it answers with are decoded as the method's response.
The servicers are grpc.aio coroutines; grpc_testing drives sync servicers from its own threads, so
each call runs its coroutine there (`asyncio.run`) with a context that maps the grpc.aio
ServicerContext calls the runtime makes onto grpc_testing's. Unary methods only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc_testing
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from rentscout.runtime.auth import Authenticator
from rentscout.runtime.interceptors import RuntimeInterceptor
from rentscout.runtime.server import ServiceSpec

Metadata = Sequence[tuple[str, str | bytes]]


class _Aborted(grpc.aio.AbortError):
    """What grpc.aio raises from ServicerContext.abort()."""


class _AioContext:
    """The grpc.aio ServicerContext surface the runtime uses, over a grpc_testing ServicerContext."""

    def __init__(self, ctx: Any, request: Any = grpc.aio.EOF) -> None:
        self._ctx = ctx
        self._code: grpc.StatusCode | None = None
        self._request = request  # what read() returns once (the runtime reads a unary request itself)

    async def read(self) -> Any:
        request, self._request = self._request, grpc.aio.EOF
        return request

    def invocation_metadata(self) -> Metadata:
        return tuple(self._ctx.invocation_metadata())

    def peer(self) -> str:
        return "in-memory"

    def time_remaining(self) -> float | None:
        return self._ctx.time_remaining()  # type: ignore[no-any-return]

    async def send_initial_metadata(self, metadata: Metadata) -> None:
        self._ctx.send_initial_metadata(metadata)

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        self._ctx.set_trailing_metadata(metadata)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        # grpc_testing's own abort() drops trailing metadata (the BadRequest details live there), so
        # end the call with a pending status instead, as a completed-without-response RPC.
        self._code = code
        self._ctx.set_trailing_metadata(trailing_metadata)
        self._ctx.set_code(code)
        self._ctx.set_details(details)
        raise _Aborted()


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


class _Collector:
    """Stands in for grpc.aio.Server while a ServiceSpec registers its handlers."""

    def __init__(self) -> None:
        self.generic: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        pass  # the generic handlers already route every method


@dataclass(frozen=True)
class Reply:
    response: Any
    initial_metadata: Metadata
    trailing_metadata: Metadata
    code: grpc.StatusCode
    details: str


class InMemoryServer:
    def __init__(self, spec: ServiceSpec, tokens: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        collector = _Collector()
        spec.register(collector)  # type: ignore[arg-type]  # only the registration calls are needed
        self._handlers = collector.generic
        self._interceptor = RuntimeInterceptor(Authenticator(dict(tokens or {})), spec.required_roles())
        self._service = descriptor_pool.Default().FindServiceByName(spec.name)
        servicer = type("InMemoryServicer", (), {m.name: staticmethod(self._method(m.name)) for m in self._service.methods})()
        self._server = grpc_testing.server_from_dictionary({self._service: servicer}, grpc_testing.strict_real_time())

    async def _continuation(self, details: grpc.HandlerCallDetails) -> Any:
        for generic in self._handlers:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    def _method(self, name: str) -> Callable[[Message, Any], Message | None]:
        full = f"/{self.spec.name}/{name}"
        output = GetMessageClass(self._service.methods_by_name[name].output_type)

        def call(request: Message, ctx: Any) -> Message | None:
            async def run() -> Any:
                handler = await self._interceptor.intercept_service(
                    self._continuation, _CallDetails(full, tuple(ctx.invocation_metadata()))
                )
                wire = request.SerializeToString()  # what the handler gets off the wire
                assert handler is not None and handler.stream_unary is not None, f"no unary handler for {full}"
                decode = handler.request_deserializer
                aio_ctx = _AioContext(ctx, decode(wire) if decode else wire)
                # a grpc.aio handler: no request iterator (it reads the one request from aio_ctx), the aio context
                response = await handler.stream_unary(None, aio_ctx)  # type: ignore[arg-type]
                if isinstance(response, bytes):  # a handler that answers with wire bytes
                    return output.FromString(response)
                return response

            try:
                return asyncio.run(run())  # type: ignore[no-any-return]
            except _Aborted:
                return None

        return call

    def unary(self, method: str, request: Message, metadata: Metadata = (), timeout: float | None = None) -> Reply:
        rpc = self._server.invoke_unary_unary(self._service.methods_by_name[method], tuple(metadata), request, timeout)
        response, trailing, code, details = rpc.termination()
        try:
            initial = tuple(rpc.initial_metadata())
        except ValueError:  # ended before sending any
            initial = ()
        return Reply(response, initial, tuple(trailing), code, details)
