"""A blocking `grpc.health.v1.Health/Check` (every RentScout server serves it): for probes and scripts."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check_health(target: str, service: str = "", timeout: float = 3.0, tls_ca: str | None = None) -> str:
    """The serving status name ('SERVING', 'NOT_SERVING' ...) of `service` ("" for the whole server)."""
    if tls_ca:
        with open(tls_ca, "rb") as f:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        # types-grpcio-health-checking declares HealthStub without its methods
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)  # type: ignore[attr-defined]
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
