"""The server interceptor every service runs behind.

For each RPC it: binds the correlation id (echoed in response metadata) and the deadline, opens a
server span from the incoming `traceparent`, authenticates and authorizes the caller, maps any
failure to a precise status (no traceback reaches the client), and emits one access-log line and
the RPC metrics. Health and reflection stay open and quiet (probes would drown the access log).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry import trace

from rentscout.runtime import context, deadline, logs, metrics
from rentscout.runtime.auth import READER, Authenticator
from rentscout.runtime.errors import ServiceError, classify
from rentscout.wire import tracing
from rentscout.wire.metadata import AUTHORIZATION_HEADER

_log = logging.getLogger("rentscout.rpc")

OPEN_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})


@dataclass
class _Call:
    method: str
    service: str
    short_method: str
    peer: str
    started: float = field(default_factory=time.perf_counter)
    code: grpc.StatusCode = grpc.StatusCode.OK
    role: str | None = None
    span: trace.Span | None = None
    tokens: list[Any] = field(default_factory=list)


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator, required_roles: Mapping[str, str]) -> None:
        """`required_roles` maps full method names ('/pkg.Service/Method') to a role; default reader."""
        self._auth = authenticator
        self._roles = dict(required_roles)

    # grpc.aio documents None for an unknown method (UNIMPLEMENTED).
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        service, _ = metrics.split_method(method)
        if handler is None or service in OPEN_SERVICES:
            return handler
        if handler.response_streaming:
            stream_behavior = handler.unary_stream or handler.stream_stream
            assert stream_behavior is not None
            wrapped: Any = self._wrap_stream(method, stream_behavior)
        else:
            unary_behavior = handler.unary_unary or handler.stream_unary
            assert unary_behavior is not None
            wrapped = self._wrap_unary(method, unary_behavior)
        factory = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        return factory(wrapped, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)

    # -- per-call steps ---------------------------------------------------------------------

    def _start(self, method: str, ctx: grpc.aio.ServicerContext[Any, Any]) -> _Call:
        """Bind the call's context (correlation id, deadline, span); cannot fail."""
        service, short = metrics.split_method(method)
        call = _Call(method=method, service=service, short_method=short, peer=ctx.peer() or "")
        md = tuple(ctx.invocation_metadata() or ())
        cid = context.correlation_id_from(md)
        context.correlation_id.set(cid)
        context.rpc_method.set(method)
        context.rpc_fields.set({})
        remaining = ctx.time_remaining()
        deadline.set_from_time_remaining(remaining if remaining is not None and remaining < 1e9 else None)
        call.span = tracing.tracer().start_span(
            method.lstrip("/"), context=tracing.extract(md), kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": short})
        call.tokens.append(trace.use_span(call.span, end_on_exit=False))
        call.tokens[-1].__enter__()
        metrics.RPC_IN_FLIGHT.labels(service, short).inc()
        return call

    async def _admit(self, call: _Call, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Echo the ids in response metadata, then authenticate and authorize the caller."""
        md = tuple(ctx.invocation_metadata() or ())
        echo = [(context.CORRELATION_HEADER, context.correlation_id.get() or ""), *tracing.inject({}).items()]
        await ctx.send_initial_metadata(tuple(echo))
        authorization = next((v for k, v in md if k == AUTHORIZATION_HEADER and isinstance(v, str)), None)
        principal = self._auth.authenticate(authorization)
        call.role = principal.role
        context.principal.set(principal)
        self._auth.authorize(principal, self._roles.get(call.method, READER), call.method)

    async def _fail(self, call: _Call, ctx: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
        """Record and re-raise as a gRPC status. Always raises."""
        if isinstance(exc, asyncio.CancelledError):
            call.code = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, grpc.aio.AbortError):  # the handler aborted with its own status
            code: grpc.StatusCode | None = ctx.code()  # None when the handler set no code
            call.code = code or grpc.StatusCode.UNKNOWN
            raise exc
        error = classify(exc)
        if error is None:
            cid = context.correlation_id.get()
            _log.error("unhandled error in %s", call.method, exc_info=exc)
            error = ServiceError(f"internal error (correlation id {cid})")
        elif error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and error is not exc:
            _log.warning("%s: %s", error.code.name, error.message,
                         extra={"fields": {"error.type": type(exc).__name__, "error.message": str(exc)[:500]}})
        call.code = error.code
        if call.span is not None:
            call.span.set_status(trace.Status(trace.StatusCode.ERROR, error.code.name))
        status = error.to_status()
        await ctx.abort(status.code, status.details, status.trailing_metadata)

    def _finish(self, call: _Call) -> None:
        elapsed = time.perf_counter() - call.started
        code = call.code.name
        metrics.RPC_IN_FLIGHT.labels(call.service, call.short_method).dec()
        metrics.RPC_TOTAL.labels(call.service, call.short_method, code).inc()
        metrics.RPC_DURATION.labels(call.service, call.short_method, code).observe(elapsed)
        if call.span is not None:
            call.span.set_attribute("rpc.grpc.status_code", call.code.value[0])
        logs.log_rpc(call.method, code, elapsed, call.peer, call.role, **(context.rpc_fields.get() or {}))
        for token in reversed(call.tokens):
            token.__exit__(None, None, None)
        if call.span is not None:
            call.span.end()

    # -- wrappers ---------------------------------------------------------------------------

    def _wrap_unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = self._start(method, ctx)
            try:
                await self._admit(call, ctx)
                result = behavior(request, ctx)
                return await result if inspect.isawaitable(result) else result
            except BaseException as exc:
                await self._fail(call, ctx, exc)
            finally:
                self._finish(call)

        return wrapped

    def _wrap_stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):  # writes with ctx.write()
            return self._wrap_unary(method, behavior)

        async def wrapped(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
            """Drive the handler's generator from the RPC's own task, writing each message. When the client
            cancels, the generator is closed right here, in the RPC's context, rather than by a garbage
            collector's finalizer task later (which logged an INTERNAL error and delayed its cleanup)."""
            call = self._start(method, ctx)
            stream: Any = None
            destroyed = False
            try:
                await self._admit(call, ctx)
                stream = behavior(request, ctx)
                async for item in stream:
                    try:
                        await ctx.write(item)
                    except Exception as exc:  # grpc's ExecuteBatchError: the call is over, nothing can be sent
                        left = ctx.time_remaining()
                        call.code = (grpc.StatusCode.DEADLINE_EXCEEDED if left is not None and left <= 0
                                     else grpc.StatusCode.CANCELLED)
                        _log.debug("stream ended by the transport: %s", type(exc).__name__)
                        return
            except GeneratorExit:  # this coroutine is being destroyed (its task was dropped): await nothing
                destroyed = True
                call.code = grpc.StatusCode.CANCELLED
                raise
            except BaseException as exc:
                await self._fail(call, ctx, exc)
            finally:
                try:
                    if stream is not None and not destroyed:
                        await stream.aclose()  # may be cancelled again (server shutdown): still finish
                finally:
                    self._finish(call)

        return wrapped
