"""The server interceptor every service runs behind.

For each RPC it: binds the correlation id (echoed in response metadata) and the deadline, opens a
server span from the incoming `traceparent`, admits the call under the concurrency limit
(RESOURCE_EXHAUSTED past it, logged and counted), authenticates and authorizes the caller, refuses a
request that could not be decoded (INVALID_ARGUMENT naming the request type), maps any failure to a
precise status (no traceback reaches the client), and emits one access-log line and the RPC metrics.
Health and reflection stay open, quiet (probes would drown the access log) and outside the limit
(probes must answer under overload), but their undecodable requests get INVALID_ARGUMENT too.

Cost: the wrapped handler of a method is built at its first call and reused; what every call of a
method shares (names, role, metric children, access-log fields) is built once with it. A call reads
its metadata once and, while nothing exports spans, opens a non-recording span (see wire.tracing).

Arrival: grpc.aio reads a unary request before any handler code runs, and a call whose message never
comes (half-closed empty, or a truncated length prefix) then waits for ever, in no log and no metric.
Every unary-request method is therefore served as request-streaming (the same bytes on the wire): the
wrapped behavior reads the one message itself within RENTSCOUT_REQUEST_TIMEOUT_SECONDS (ArrivalWatch), and a call with
no message ends INVALID_ARGUMENT (closed without one) or DEADLINE_EXCEEDED (none in time), counted in
rentscout_rpc_rejected_total{reason="no_request"} and logged once (its access line).

Stalls: a response stream with a stall bound (ServiceSpec.stall_timeouts) whose consumer takes no message
for that long is ended ABORTED (resumable): the handler's generator gets `ConsumerStalled` at its yield,
frees what it holds, and the call leaves the in-flight count at once; the status follows the messages the
client still has to read.

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
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from rentscout.runtime import context, deadline, logs, metrics
from rentscout.runtime.auth import READER, Authenticator
from rentscout.runtime.classify import classify
from rentscout.runtime.decoding import Undecodable, safe_deserializer
from rentscout.runtime.errors import ConsumerStalled, DeadlineExceeded, InvalidArgument, ResourceExhausted, ServiceError
from rentscout.wire import tracing
from rentscout.wire.correlation import choose_correlation_id, new_correlation_id
from rentscout.wire.metadata import AUTHORIZATION_HEADER, CORRELATION_HEADER, REQUEST_ID_HEADER

_log = logging.getLogger("rentscout.rpc")

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


async def _checked(requests: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
    """A request stream that aborts with INVALID_ARGUMENT at the first undecodable message."""
    async for request in requests:
        if isinstance(request, Undecodable):
            status = request.error().to_status()
            await ctx.abort(status.code, status.details, status.trailing_metadata)
        yield request


def _rebuild(handler: grpc.RpcMethodHandler[Any, Any], wrapped: Any, method: str) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with behavior `wrapped` and its request deserializer made safe (see Undecodable). Always
    request-streaming: `wrapped` of a unary-request method reads its one message itself (see Arrival)."""
    factory = grpc.stream_stream_rpc_method_handler if handler.response_streaming else grpc.stream_unary_rpc_method_handler
    return factory(
        wrapped,
        request_deserializer=safe_deserializer(handler.request_deserializer, method),
        response_serializer=handler.response_serializer,
    )


class NoRequest(Exception):
    """A unary call whose request message did not come; `error` is its status."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


class ArrivalWatch:
    """The unary calls still waiting for their request message, each ended once it has waited `timeout`.

    One sweep a second (a quarter of the bound, if shorter) cancels the overdue ones, instead of a timer per
    call: asyncio.timeout costs ~15 us a call (its cancelled timer handles pile up in the loop's heap), the
    dictionary ~1 us. A call is thus ended between `timeout` and one sweep interval later."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._waiting: dict[asyncio.Task[Any], float] = {}  # task -> when its wait is over
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def receive(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The one request message of a unary-request call, within the bound; raises NoRequest."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        self._waiting[task] = loop.time() + self.timeout
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="request-arrival-sweeper")
        try:
            request = await ctx.read()
        except asyncio.CancelledError:
            if task not in self._expired:  # the client left, or the server stops
                raise
            self._expired.discard(task)
            task.uncancel()
            raise NoRequest(
                DeadlineExceeded(
                    f"the request message did not arrive within {self.timeout:g}s (RENTSCOUT_REQUEST_TIMEOUT_SECONDS)"
                )
            ) from None
        finally:
            self._waiting.pop(task, None)
        if request is grpc.aio.EOF:
            raise NoRequest(
                InvalidArgument("request", "the call was closed without a request message (or with an incomplete one)")
            )
        return request

    async def _sweep(self) -> None:
        """Runs while calls wait (started again by the next one after it ended)."""
        try:
            while self._waiting:
                await asyncio.sleep(min(1.0, self.timeout / 4))
                now = asyncio.get_running_loop().time()
                for task, due in list(self._waiting.items()):
                    if due <= now and task not in self._expired and not task.done():
                        self._expired.add(task)
                        task.cancel()
        finally:
            self._sweeper = None

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()


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
    behavior = (
        (handler.unary_stream or handler.stream_stream)
        if handler.response_streaming
        else (handler.unary_unary or handler.stream_unary)
    )
    assert behavior is not None
    return behavior


def _guard_open(method: str, handler: grpc.RpcMethodHandler[Any, Any], arrival: ArrivalWatch) -> grpc.RpcMethodHandler[Any, Any]:
    """Health and reflection: only the arrival bound and the undecodable-request check, nothing else."""
    behavior = _behavior(handler)
    service, short = metrics.split_method(method)

    async def refuse(request: Undecodable, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
        status = request.error().to_status()
        await ctx.abort(status.code, status.details, status.trailing_metadata)

    async def first(ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await arrival.receive(ctx)
        except NoRequest as exc:  # these calls have no access line: this is their one log line
            metrics.RPC_REJECTED.labels(service, short, "no_request").inc()
            _log.warning(
                "%s: %s",
                method,
                exc.error.message,
                extra={
                    "fields": {
                        "event.category": "network",
                        "event.action": "rpc_without_request",
                        "rpc.method": method,
                        "rpc.grpc.status_code": exc.error.code.name,
                    }
                },
            )
            status = exc.error.to_status()
            await ctx.abort(status.code, status.details, status.trailing_metadata)

    if handler.request_streaming:
        wrapped: Any = _check_stream(behavior)
    elif handler.response_streaming:

        async def unary_stream(requests: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request = await first(ctx)
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

        async def unary(requests: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request = await first(ctx)
            if isinstance(request, Undecodable):
                await refuse(request, ctx)
            result = behavior(request, ctx)
            return await result if inspect.isawaitable(result) else result

        wrapped = unary
    return _rebuild(handler, wrapped, method)


class _Method:
    """What every call of one method shares, built at its first call: names, required role, span name and
    attributes, metric children and access-log lines (per status code)."""

    __slots__ = ("_outcomes", "attributes", "counts", "name", "role", "service", "short", "span_name")

    def __init__(self, name: str, role: str) -> None:
        self.name, self.role = name, role
        self.service, self.short = metrics.split_method(name)
        self.span_name = name.lstrip("/")
        self.attributes = {"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": self.short}
        self.counts = metrics.RPCS.method(self.service, self.short)
        self._outcomes: dict[grpc.StatusCode, tuple[metrics.Outcome, logs.AccessLine]] = {}

    def outcome(self, code: grpc.StatusCode) -> tuple[metrics.Outcome, logs.AccessLine]:
        """(the metrics' numbers, the access-log line) of calls ending with `code`."""
        found = self._outcomes.get(code)
        if found is None:
            found = self._outcomes[code] = (self.counts.outcome(code.name), logs.access_line(self.name, code.name))
        return found


class _Call:
    __slots__ = (
        "authorization",
        "baggage",
        "code",
        "correlation_id",
        "counted",
        "finished",
        "hex_ids",
        "ids",
        "m",
        "peer",
        "role",
        "span",
        "started",
    )

    def __init__(self, m: _Method, peer: str) -> None:
        self.started = time.perf_counter()
        self.m = m
        self.peer = peer
        self.code = grpc.StatusCode.OK
        self.role: str | None = None
        self.span: trace.Span | None = None
        self.hex_ids = ("", "")  # the span's trace and span ids in hex (for the trace headers and the access line)
        self.counted = False  # in the interceptor's in-flight count
        self.finished = False  # counted and logged (a stalled stream is, before its status is sent)
        self.correlation_id = ""
        self.authorization: str | None = None
        self.baggage = False  # the caller sent baggage (it goes back with the trace headers)
        self.ids: tuple[tuple[str, str], ...] = ()  # correlation id and trace headers echoed to the caller


_NO_PARENT = otel_context.Context()  # no traceparent: the server span starts a new trace
_MAX_CACHED_METHODS = 1024  # the services' methods are a fixed set; this only bounds what callers could make


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        required_roles: Mapping[str, str],
        max_concurrent_rpcs: int | None = None,
        *,
        request_timeout: float = 10.0,
        stall_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        """`required_roles` maps full method names ('/pkg.Service/Method') to a role; default reader.
        `max_concurrent_rpcs` bounds the RPCs handled at once (health and reflection not counted).
        `request_timeout` bounds the wait for a unary request's message; `stall_timeouts` maps full method
        names of response streams to the longest their consumer may take no message (see Stalls)."""
        self._auth = authenticator
        self._roles = dict(required_roles)
        self._max_concurrent = max_concurrent_rpcs
        self.arrival = ArrivalWatch(request_timeout)
        self._stalls = dict(stall_timeouts or {})
        self.in_flight = 0
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}  # method -> wrapped handler, built once

    # grpc.aio documents None for an unknown method (UNIMPLEMENTED).
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = self._wrap(method, handler)
        if len(self._handlers) < _MAX_CACHED_METHODS:
            self._handlers[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        service, _ = metrics.split_method(method)
        if service in OPEN_SERVICES:
            return _guard_open(method, handler, self.arrival)
        behavior = _behavior(handler)
        receives = not handler.request_streaming
        if not receives:
            behavior = _check_stream(behavior)
        m = _Method(method, self._roles.get(method, READER))
        wrapped: Any = (
            self._wrap_stream(m, behavior, receives, self._stalls.get(method))
            if handler.response_streaming
            else self._wrap_unary(m, behavior, receives=receives)
        )
        return _rebuild(handler, wrapped, method)

    # -- per-call steps ---------------------------------------------------------------------

    def _start(self, m: _Method, ctx: grpc.aio.ServicerContext[Any, Any]) -> _Call:
        """Bind the call's context (correlation id, deadline, span); cannot fail."""
        call = _Call(m, ctx.peer() or "")
        carrier: dict[str, str] | None = None
        correlation = request_id = None
        trace_fields = tracing.propagation_fields()
        for key, value in ctx.invocation_metadata() or ():  # one pass over the metadata
            if not isinstance(value, str):
                continue
            if key in trace_fields:
                if carrier is None:
                    carrier = {}
                carrier[key] = value
            elif key == CORRELATION_HEADER:
                correlation = value if correlation is None else correlation
            elif key == REQUEST_ID_HEADER:
                request_id = value if request_id is None else request_id
            elif key == AUTHORIZATION_HEADER and call.authorization is None:
                call.authorization = value
        call.correlation_id = cid = (
            new_correlation_id() if correlation is None and request_id is None else choose_correlation_id(correlation, request_id)
        )
        context.correlation_id.set(cid)
        context.rpc_method.set(m.name)
        context.rpc_fields.set({})
        remaining = ctx.time_remaining()
        deadline.set_from_time_remaining(remaining if remaining is not None and remaining < 1e9 else None)
        if carrier:
            call.baggage = "baggage" in carrier
            parent = propagate.extract(carrier)
        else:
            parent = _NO_PARENT
        call.span = span = tracing.start_server_span(m.span_name, parent, m.attributes)
        call.hex_ids = tracing.hex_ids(span)
        # the caller's context (its baggage too) with this span: what the handler's own calls carry on. Like
        # the ContextVars above it is never reset: grpc.aio runs each RPC in a task (and context) of its own
        otel_context.attach(trace.set_span_in_context(span, parent))
        m.counts.in_flight.inc()
        return call

    def _refuse(self, call: _Call) -> None:
        """Refuse a call over the concurrency limit (logged and counted, once per rejection). Always raises."""
        m = call.m
        metrics.RPC_REJECTED.labels(m.service, m.short, "concurrency").inc()
        _log.warning(
            "rejected %s: %d RPCs in flight, the limit (RENTSCOUT_MAX_CONCURRENT_RPCS) is %d",
            m.name,
            self.in_flight,
            self._max_concurrent,
            extra={
                "fields": {
                    "event.category": "overload",
                    "event.action": "rpc_rejected",
                    "rpc.in_flight": self.in_flight,
                    "rpc.limit": self._max_concurrent,
                }
            },
        )
        raise ResourceExhausted(f"the server is at its limit of {self._max_concurrent} concurrent calls; retry with backoff")

    @staticmethod
    def _ids(call: _Call) -> tuple[tuple[str, str], ...]:
        """The ids echoed in response metadata. A stream sends them in its headers at once (a consumer of a
        long export sees them before any data); a unary call carries them in its trailers, which travel
        with the response and the status in one batch (grpc.aio sends explicit headers in a batch of
        their own: +14% on a trivial call)."""
        trace_headers = tracing.response_headers(call.span, call.baggage, call.hex_ids) if call.span is not None else ()
        call.ids = ((CORRELATION_HEADER, call.correlation_id), *trace_headers)
        return call.ids

    async def _request(self, call: _Call, ctx: grpc.aio.ServicerContext[Any, Any], request: Any, receives: bool) -> Any:
        """The call's request: `request` as given, or (`receives`) its one message read within the bound."""
        if not receives:
            return request
        try:
            return await self.arrival.receive(ctx)
        except NoRequest as exc:
            metrics.RPC_REJECTED.labels(call.m.service, call.m.short, "no_request").inc()
            raise exc.error from None

    def _admit(self, call: _Call) -> None:
        """Admit the call under the limit, authenticate and authorize the caller."""
        if self._max_concurrent is not None and self.in_flight >= self._max_concurrent:
            self._refuse(call)
        self.in_flight += 1
        call.counted = True
        principal = self._auth.authenticate(call.authorization)
        call.role = principal.role
        context.principal.set(principal)
        self._auth.authorize(principal, call.m.role, call.m.name)

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
        if isinstance(error, ConsumerStalled):  # the status waits for a reader: count and log the call now
            call.code = error.code
            self._finish(call)
        if error is None:
            cid = context.correlation_id.get()
            _log.error("unhandled error in %s", call.m.name, exc_info=exc)
            error = ServiceError(f"internal error (correlation id {cid})")
        elif error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and error is not exc:
            _log.warning(
                "%s: %s",
                error.code.name,
                error.message,
                extra={"fields": {"error.type": type(exc).__name__, "error.message": str(exc)[:500]}},
            )
        call.code = error.code
        if call.span is not None:
            call.span.set_status(trace.Status(trace.StatusCode.ERROR, error.code.name))
        status = error.to_status()
        await ctx.abort(status.code, status.details, (*call.ids, *status.trailing_metadata))

    def _finish(self, call: _Call) -> None:
        if call.finished:
            return
        call.finished = True
        if call.counted:
            call.counted = False
            self.in_flight -= 1
        elapsed = time.perf_counter() - call.started
        m = call.m
        counts, access = m.outcome(call.code)
        m.counts.in_flight.dec()
        counts.observe(elapsed)
        span = call.span
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", call.code.value[0])
        access.emit(elapsed, call.peer, call.role, context.rpc_fields.get(), (call.correlation_id, *call.hex_ids))
        if span is not None:
            span.end()

    # -- wrappers (built once per method) ---------------------------------------------------

    def _wrap_unary(
        self, m: _Method, behavior: Callable[..., Any], streaming: bool = False, receives: bool = False
    ) -> Callable[..., Awaitable[Any]]:
        """A unary handler, or (`streaming`) a response-streaming one that writes with ctx.write(); with
        `receives`, it reads its request message itself (see Arrival)."""
        if inspect.iscoroutinefunction(behavior):

            async def direct(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
                call = self._start(m, ctx)
                try:
                    if streaming:
                        await ctx.send_initial_metadata(self._ids(call))
                    else:
                        ctx.set_trailing_metadata(self._ids(call))
                    self._admit(call)
                    request = await self._request(call, ctx, request, receives)
                    if isinstance(request, Undecodable):
                        raise request.error()
                    return await behavior(request, ctx)
                except BaseException as exc:
                    await self._fail(call, ctx, exc)
                finally:
                    self._finish(call)

            return direct

        async def wrapped(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = self._start(m, ctx)
            try:
                if streaming:
                    await ctx.send_initial_metadata(self._ids(call))
                else:
                    ctx.set_trailing_metadata(self._ids(call))
                self._admit(call)
                request = await self._request(call, ctx, request, receives)
                if isinstance(request, Undecodable):
                    raise request.error()
                result = behavior(request, ctx)
                return await result if inspect.isawaitable(result) else result
            except BaseException as exc:
                await self._fail(call, ctx, exc)
            finally:
                self._finish(call)

        return wrapped

    def _wrap_stream(
        self, m: _Method, behavior: Callable[..., Any], receives: bool = False, stall: float | None = None
    ) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):  # writes with ctx.write()
            return self._wrap_unary(m, behavior, streaming=True, receives=receives)

        async def wrapped(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
            """Drive the handler's generator from the RPC's own task, writing each message. When the client
            cancels, the generator is closed right here, in the RPC's context, rather than by a garbage
            collector's finalizer task later (which logged an INTERNAL error and delayed its cleanup). A
            consumer that takes no message for `stall` seconds gets ConsumerStalled thrown into the generator."""
            call = self._start(m, ctx)
            stream: Any = None
            destroyed = False
            try:
                await ctx.send_initial_metadata(self._ids(call))
                self._admit(call)
                request = await self._request(call, ctx, request, receives)
                if isinstance(request, Undecodable):
                    raise request.error()
                stream = behavior(request, ctx)
                async for item in stream:
                    try:
                        if stall is None:
                            await ctx.write(item)
                        else:
                            async with asyncio.timeout(stall):
                                await ctx.write(item)
                    except TimeoutError:  # only the stall bound raises it here
                        stalled = ConsumerStalled(stall or 0.0)
                        await stream.athrow(stalled)  # the handler frees what it holds, and re-raises it
                        raise stalled from None  # (a handler that swallowed it ends the same way)
                    except Exception as exc:  # grpc's ExecuteBatchError: the call is over, nothing can be sent
                        left = ctx.time_remaining()
                        call.code = (
                            grpc.StatusCode.DEADLINE_EXCEEDED if left is not None and left <= 0 else grpc.StatusCode.CANCELLED
                        )
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
