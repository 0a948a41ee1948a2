"""A blocking `grpc.health.v1.Health/Check` (every RentScout server serves it): for probes and scripts, and
`health_stub`, the Health client typed once for every caller."""

from __future__ import annotations

from typing import Protocol, cast, overload

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc


class HealthClient(Protocol):
    """The Health stub over a blocking channel."""

    Check: grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
    Watch: grpc.UnaryStreamMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


class AsyncHealthClient(Protocol):
    """The Health stub over a grpc.aio channel: its calls are awaited (Check) or async-iterated (Watch)."""

    Check: grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
    Watch: grpc.aio.UnaryStreamMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


@overload
def health_stub(channel: grpc.aio.Channel) -> AsyncHealthClient: ...
@overload
def health_stub(channel: grpc.Channel) -> HealthClient: ...
def health_stub(channel: grpc.Channel | grpc.aio.Channel) -> HealthClient | AsyncHealthClient:
    """`health_pb2_grpc.HealthStub(channel)`, typed: types-grpcio-health-checking declares the stub without its
    methods, so the cast to what grpcio builds (one multicallable per method, of the channel's kind) is here only."""
    stub = health_pb2_grpc.HealthStub(channel)
    if isinstance(channel, grpc.aio.Channel):
        return cast(AsyncHealthClient, stub)
    return cast(HealthClient, stub)


def check_health(target: str, service: str = "", timeout: float = 3.0, tls_ca: str | None = None) -> str:
    """The serving status name ('SERVING', 'NOT_SERVING' ...) of `service` ("" for the whole server)."""
    if tls_ca:
        with open(tls_ca, "rb") as f:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        reply = health_stub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
