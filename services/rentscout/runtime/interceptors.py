"""The server interceptor every service runs behind.

For each RPC it: binds the correlation id (echoed in response metadata) and the deadline, opens a
server span from the incoming `traceparent`, admits the call under the concurrency limit
(RESOURCE_EXHAUSTED past it, logged and counted), authenticates and authorizes the caller, refuses a
request that could not be decoded (INVALID_ARGUMENT naming the request type), maps any failure to a
precise status (no traceback reaches the client), and emits one access-log line and the RPC metrics.
Health and reflection stay open, quiet (probes would drown the access log) and outside the limit
(probes must answer under overload), but their undecodable requests get INVALID_ARGUMENT too.

Decoding: grpc calls a handler's request deserializer before any handler code runs, and reports its
exception as UNKNOWN naming an internal class. Every handler is therefore returned with its
deserializer wrapped: a request that cannot be decoded (not a valid message, or a string field that
is not valid UTF-8) becomes an `Undecodable` marker, which the wrapped behavior turns into the status.
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
from google.protobuf.message import DecodeError
from opentelemetry import trace

from rentscout.runtime import context, deadline, logs, metrics
from rentscout.runtime.auth import READER, Authenticator
from rentscout.runtime.errors import InvalidArgument, ResourceExhausted, ServiceError, classify
from rentscout.wire import tracing
from rentscout.wire.metadata import AUTHORIZATION_HEADER

_log = logging.getLogger("rentscout.rpc")

OPEN_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})


@dataclass(frozen=True)
class Undecodable:
    """Stands for a request message whose bytes could not be decoded."""

    type_name: str
    reason: str = "malformed protobuf, or a string field that is not valid UTF-8"

    def error(self) -> InvalidArgument:
        return InvalidArgument("request", f"cannot be decoded as a {self.type_name} message ({self.reason})")


def _type_name(deserializer: Any, method: str) -> str:
    message_class = getattr(deserializer, "__self__", None)  # Message.FromString is a classmethod
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "")) or f"request of {method}"


def safe_deserializer(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any] | None:
    """`deserializer` that returns an Undecodable marker instead of raising."""
    if deserializer is None:
        return None
    type_name = _type_name(deserializer, method)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:  # "Error parsing message with type 'x': String field had bad UTF-8"
            reason = str(exc).rpartition("': ")[2].strip()
            return Undecodable(type_name, reason[:200]) if reason and "<" not in reason else Undecodable(type_name)
        except Exception:  # anything a custom deserializer raises: its text is not the caller's business
            return Undecodable(type_name)

    return deserialize


async def _checked(requests: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
    """A request stream that aborts with INVALID_ARGUMENT at the first undecodable message."""
    async for request in requests:
        if isinstance(request, Undecodable):
            status = request.error().to_status()
            await ctx.abort(status.code, status.details, status.trailing_metadata)
        yield request


def _rebuild(handler: grpc.RpcMethodHandler[Any, Any], wrapped: Any, method: str) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with behavior `wrapped` and its request deserializer made safe (see Undecodable)."""
    factory: Callable[..., grpc.RpcMethodHandler[Any, Any]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return factory(wrapped, request_deserializer=safe_deserializer(handler.request_deserializer, method),
                   response_serializer=handler.response_serializer)


def _check_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """A request-streaming behavior whose request stream aborts at an undecodable message; of the same kind
    (grpc.aio tells async generators from coroutines by their function)."""
    if inspect.isasyncgenfunction(behavior):
        async def generator(requests: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async for item in behavior(_checked(requests, ctx), ctx):
                yield item

        return generator

    async def coroutine(requests: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
        result = behavior(_checked(requests, ctx), ctx)
        return await result if inspect.isawaitable(result) else result

    return coroutine


def _behavior(handler: grpc.RpcMethodHandler[Any, Any]) -> Callable[..., Any]:
    behavior = (handler.unary_stream or handler.stream_stream) if handler.response_streaming else \
        (handler.unary_unary or handler.stream_unary)
    assert behavior is not None
    return behavior


def _guard_open(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """Health and reflection: only the undecodable-request check, nothing else."""
    behavior = _behavior(handler)

    async def refuse(request: Undecodable, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
        status = request.error().to_status()
        await ctx.abort(status.code, status.details, status.trailing_metadata)

    if handler.request_streaming:
        wrapped: Any = _check_stream(behavior)
    elif handler.response_streaming:
        async def unary_stream(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(request, Undecodable):
                await refuse(request, ctx)
            result = behavior(request, ctx)
            if inspect.isasyncgen(result):
                async for item in result:
                    await ctx.write(item)
            elif inspect.isawaitable(result):
                await result

        wrapped = unary_stream
    else:
        async def unary(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(request, Undecodable):
                await refuse(request, ctx)
            result = behavior(request, ctx)
            return await result if inspect.isawaitable(result) else result

        wrapped = unary
    return _rebuild(handler, wrapped, method)


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
    counted: bool = False  # in the interceptor's in-flight count


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator, required_roles: Mapping[str, str],
                 max_concurrent_rpcs: int | None = None) -> None:
        """`required_roles` maps full method names ('/pkg.Service/Method') to a role; default reader.
        `max_concurrent_rpcs` bounds the RPCs handled at once (health and reflection not counted)."""
        self._auth = authenticator
        self._roles = dict(required_roles)
        self._max_concurrent = max_concurrent_rpcs
        self.in_flight = 0

    # grpc.aio documents None for an unknown method (UNIMPLEMENTED).
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        service, _ = metrics.split_method(method)
        if handler is None:
            return handler
        if service in OPEN_SERVICES:
            return _guard_open(method, handler)
        behavior = _behavior(handler)
        if handler.request_streaming:
            behavior = _check_stream(behavior)
        wrapped: Any = (self._wrap_stream(method, behavior) if handler.response_streaming
                        else self._wrap_unary(method, behavior))
        return _rebuild(handler, wrapped, method)

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

    def _enter(self, call: _Call) -> None:
        """Count the call in flight, or refuse it over the limit (logged and counted, once per rejection)."""
        if self._max_concurrent is not None and self.in_flight >= self._max_concurrent:
            metrics.RPC_REJECTED.labels(call.service, call.short_method, "concurrency").inc()
            _log.warning("rejected %s: %d RPCs in flight, the limit (RENTSCOUT_MAX_CONCURRENT_RPCS) is %d",
                         call.method, self.in_flight, self._max_concurrent,
                         extra={"fields": {"event.category": "overload", "event.action": "rpc_rejected",
                                           "rpc.in_flight": self.in_flight, "rpc.limit": self._max_concurrent}})
            raise ResourceExhausted(f"the server is at its limit of {self._max_concurrent} concurrent calls; "
                                    "retry with backoff")
        self.in_flight += 1
        call.counted = True

    def _leave(self, call: _Call) -> None:
        if call.counted:
            call.counted = False
            self.in_flight -= 1

    async def _admit(self, call: _Call, ctx: grpc.aio.ServicerContext[Any, Any], request: Any = None) -> None:
        """Admit the call under the limit, echo the ids in response metadata, authenticate and authorize
        the caller, then refuse an undecodable request."""
        self._enter(call)
        md = tuple(ctx.invocation_metadata() or ())
        echo = [(context.CORRELATION_HEADER, context.correlation_id.get() or ""), *tracing.inject({}).items()]
        await ctx.send_initial_metadata(tuple(echo))
        authorization = next((v for k, v in md if k == AUTHORIZATION_HEADER and isinstance(v, str)), None)
        principal = self._auth.authenticate(authorization)
        call.role = principal.role
        context.principal.set(principal)
        self._auth.authorize(principal, self._roles.get(call.method, READER), call.method)
        if isinstance(request, Undecodable):
            raise request.error()

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
        self._leave(call)
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
                await self._admit(call, ctx, request)
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
                await self._admit(call, ctx, request)
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
