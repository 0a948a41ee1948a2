"""Server bootstrap on grpc.aio: services, health, reflection, auth, TLS, metrics, graceful stop.

A service module exposes `create(resources) -> ServiceSpec`; `ServiceHost` runs any set of them in
one process (one service per Kubernetes Deployment, or all three for local use).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from rentscout.runtime import deadline, metrics
from rentscout.runtime.auth import Authenticator, load_tokens
from rentscout.runtime.config import ConfigError, RuntimeSettings
from rentscout.runtime.health import NOT_SERVING, SERVING, DependencyMonitor
from rentscout.runtime.interceptors import RuntimeInterceptor
from rentscout.runtime.resources import Resources
from rentscout.wire import tracing

_log = logging.getLogger(__name__)
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
_REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"
LOOPBACK = "127.0.0.1"


@dataclass
class ServiceSpec:
    """What a service contributes to a server."""

    name: str  # full proto service name, e.g. "rentscout.export.v1.ExportService"
    register: Callable[[grpc.aio.Server], None]
    also: tuple[str, ...] = ()  # other services `register` adds (health and reflection name them too)
    admin_methods: frozenset[str] = frozenset()  # short method names that need the admin role
    needs_redis: bool = False  # readiness follows Redis too
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # response-streaming methods (short names of this service, or full "/service/Method" names of another it
    # registers) -> the longest their consumer may take no message (seconds)
    stall_timeouts: Mapping[str, float] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.also)

    def required_roles(self) -> Mapping[str, str]:
        return {f"/{self.name}/{m}": "admin" for m in self.admin_methods}

    def stall_bounds(self) -> Mapping[str, float]:
        return {m if m.startswith("/") else f"/{self.name}/{m}": seconds for m, seconds in self.stall_timeouts.items()}


ServiceFactory = Callable[[Resources], "ServiceSpec | Awaitable[ServiceSpec]"]


def server_options(s: RuntimeSettings) -> list[tuple[str, int]]:
    """Deliberate transport settings: bounded messages, keepalive both ways, recycled connections."""
    opts = [
        ("grpc.max_receive_message_length", s.max_receive_message_bytes),
        ("grpc.max_send_message_length", s.max_send_message_bytes),
        ("grpc.keepalive_time_ms", int(s.keepalive_time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.so_reuseport", 0),
        # Overload: a connection carries at most max_concurrent_streams calls; beyond, its client queues
        # them (HTTP/2 flow). grpc core's own overload protection is off: it cancels or refuses (RST_STREAM,
        # seen by clients as CANCELLED or UNAVAILABLE, logged nowhere) calls of a burst. The interceptor
        # refuses what exceeds RENTSCOUT_MAX_CONCURRENT_RPCS with RESOURCE_EXHAUSTED, a log line and a metric.
        ("grpc.max_concurrent_streams", s.max_concurrent_streams),
        ("grpc.http.overload_protection", 0),
    ]
    if s.max_connection_age_seconds > 0:
        opts += [
            ("grpc.max_connection_age_ms", int(s.max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", int(s.max_connection_age_grace_seconds * 1000)),
        ]
    return opts


def server_credentials(s: RuntimeSettings) -> grpc.ServerCredentials | None:
    if not (s.tls_cert_file or s.tls_key_file):
        if s.tls_client_ca_file:
            raise ConfigError("RENTSCOUT_TLS_CLIENT_CA_FILE: needs RENTSCOUT_TLS_CERT_FILE and RENTSCOUT_TLS_KEY_FILE")
        return None
    if not (s.tls_cert_file and s.tls_key_file):
        raise ConfigError("RENTSCOUT_TLS_CERT_FILE and RENTSCOUT_TLS_KEY_FILE must be set together")

    def read(path: str, var: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{var}: cannot read {path}: {exc.strerror}") from None

    key = read(s.tls_key_file, "RENTSCOUT_TLS_KEY_FILE")
    cert = read(s.tls_cert_file, "RENTSCOUT_TLS_CERT_FILE")
    ca = read(s.tls_client_ca_file, "RENTSCOUT_TLS_CLIENT_CA_FILE") if s.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def _register_reflection_v1() -> None:
    """Put grpc/reflection/v1/reflection.proto into the default descriptor pool (once).

    grpcio-reflection ships only the v1alpha file; v1 is the same file under another package. The
    servicer answers from the default pool, so without this a client could list
    grpc.reflection.v1.ServerReflection but not describe it ("Symbol not found").
    """
    pool = descriptor_pool.Default()
    with contextlib.suppress(KeyError):
        pool.FindFileByName(_REFLECTION_V1_FILE)
        return
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    alpha = proto.package
    proto.name, proto.package = _REFLECTION_V1_FILE, REFLECTION_V1.rsplit(".", 1)[0]
    for message in proto.message_type:
        for fld in message.field:
            if fld.type_name.startswith(f".{alpha}."):
                fld.type_name = f".{proto.package}." + fld.type_name[len(alpha) + 2 :]
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{alpha}.", f".{proto.package}.", 1)
            method.output_type = method.output_type.replace(f".{alpha}.", f".{proto.package}.", 1)
    proto.options.Clear()  # v1alpha's java/objc options name the v1alpha package
    pool.Add(proto)


def _enable_reflection(server: grpc.aio.Server, names: Sequence[str]) -> None:
    """Reflection v1alpha (grpcio-reflection) and v1 (same wire messages, so the same servicer)."""
    _register_reflection_v1()
    all_names = [*names, health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1]
    reflection.enable_server_reflection(all_names, server)
    servicer = reflection.aio.ReflectionServicer(all_names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),))


class ServiceHost:
    """One gRPC server process hosting some services, with its whole lifecycle."""

    def __init__(
        self,
        factories: Sequence[ServiceFactory],
        settings: RuntimeSettings,
        *,
        label: str,
        host: str,
        port: int,
        metrics_port: int | None,
        version: str = "0.0.0",
    ) -> None:
        self.settings = settings
        self.label = label
        self.host = host
        self.port = port
        self.metrics_port = metrics_port
        self.version = version
        self._factories = list(factories)
        self.resources = Resources(settings, f"rentscout-{label}")
        self.health = health.aio.HealthServicer()
        self.specs: list[ServiceSpec] = []
        self._server: grpc.aio.Server | None = None
        self.interceptor: RuntimeInterceptor | None = None
        self.metrics_host = ""
        self.metrics_bound: int | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stopping = False

    def _bind_host(self, auth: Authenticator) -> str:
        if auth.enabled or self.settings.allow_insecure or self.host in (LOOPBACK, "localhost", "::1"):
            if not auth.enabled:
                _log.warning("authentication is disabled: no tokens configured (RENTSCOUT_AUTH_TOKENS)")
            return self.host
        _log.warning(
            "no auth tokens configured: listening on loopback only (%s instead of %s); "
            "set RENTSCOUT_AUTH_TOKENS, or RENTSCOUT_ALLOW_INSECURE=true to expose an unauthenticated server",
            LOOPBACK,
            self.host,
        )
        return LOOPBACK

    async def start(self) -> int:
        """Start serving; returns the bound gRPC port."""
        tracing.configure(f"rentscout-{self.label}", self.version)
        deadline.configure(self.settings.dependency_timeout_seconds)
        auth = Authenticator(load_tokens(self.settings.auth_tokens, self.settings.auth_tokens_file))
        credentials = server_credentials(self.settings)
        host = self._bind_host(auth)
        await self.resources.start()
        for factory in self._factories:
            spec = factory(self.resources)
            self.specs.append(await spec if inspect.isawaitable(spec) else spec)
        roles: dict[str, str] = {}
        stalls: dict[str, float] = {}
        for spec in self.specs:
            roles.update(spec.required_roles())
            stalls.update(spec.stall_bounds())
        # the interceptor enforces the concurrency limit (grpc's own would refuse silently, health included),
        # the wait for a unary request's message, and the stall bounds of response streams
        self.interceptor = RuntimeInterceptor(
            auth,
            roles,
            self.settings.max_concurrent_rpcs,
            request_timeout=self.settings.request_timeout_seconds,
            stall_timeouts=stalls,
        )
        server = grpc.aio.server(interceptors=[self.interceptor], options=server_options(self.settings))
        for spec in self.specs:
            spec.register(server)
            for name in spec.names:
                await self.health.set(name, NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self.health.set("", SERVING)
        _enable_reflection(server, [name for s in self.specs for name in s.names])
        address = f"{host}:{self.port}" if ":" not in host else f"[{host}]:{self.port}"
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        if not bound:
            raise OSError(f"cannot bind {address}")
        self.port = bound
        # /metrics is bound before the server starts answering, so whoever sees SERVING can scrape it
        self.metrics_host = self.settings.metrics_host or host
        self.metrics_bound = metrics.serve(self.metrics_port, self.metrics_host)
        await server.start()
        self._server = server
        for spec in self.specs:
            for hook in spec.on_start:
                await hook()
        monitor = DependencyMonitor(
            self.health,
            self.resources,
            [(n, s.needs_redis) for s in self.specs for n in s.names],
            self.settings.health_check_interval_seconds,
        )
        await monitor.probe_once()
        self._monitor_task = asyncio.create_task(monitor.run(), name="health-monitor")
        _log.info(
            "serving %s on %s:%d%s",
            ", ".join(n for s in self.specs for n in s.names),
            host,
            bound,
            " (TLS)" if credentials else "",
            extra={"fields": {"server.address": host, "server.port": bound}},
        )
        return bound

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING at once, refuse new RPCs, let in-flight ones finish, close pools."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        _log.info("shutting down: health NOT_SERVING, %.1fs grace for in-flight RPCs", grace)
        await self.health.enter_graceful_shutdown()
        if self._monitor_task:
            self._monitor_task.cancel()
        if self._server is not None:
            await self._server.stop(grace)
        if self.interceptor is not None:
            self.interceptor.arrival.close()
        for spec in self.specs:
            for hook in spec.on_stop:
                try:
                    await hook()
                except Exception:
                    _log.exception("stop hook of %s failed", spec.name)
        await self.resources.close()
        _log.info("stopped")
        self._stopped.set()

    async def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()
