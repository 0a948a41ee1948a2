"""Prometheus metrics: per-RPC counters and latency histograms, served on a separate HTTP port."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

RPC_TOTAL = Counter(
    "rentscout_rpc_requests_total", "RPCs handled, by method and gRPC status code.",
    ["grpc_service", "grpc_method", "grpc_code"])
RPC_DURATION = Histogram(
    "rentscout_rpc_duration_seconds", "RPC latency, by method and gRPC status code.",
    ["grpc_service", "grpc_method", "grpc_code"], buckets=LATENCY_BUCKETS)
RPC_IN_FLIGHT = Gauge("rentscout_rpc_in_flight", "RPCs being handled now.", ["grpc_service", "grpc_method"])
RPC_REJECTED = Counter(
    "rentscout_rpc_rejected_total", "RPCs refused before any work because the server was at a limit, by reason.",
    ["grpc_service", "grpc_method", "reason"])
DEPENDENCY_UP = Gauge("rentscout_dependency_up", "1 when the dependency answered its last probe.", ["dependency"])


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    _, service, method = [*full_method.split("/"), "", ""][:3]
    return service, method


def serve(port: int | None, host: str) -> int | None:
    """Start the /metrics endpoint on `host` in a daemon thread; returns the bound port (None when disabled).

    `host` is RENTSCOUT_METRICS_HOST, else the address the gRPC server binds: a server kept on loopback
    never exposes its metrics on every interface."""
    if not port:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = server.server_address[1]
    _log.info("metrics listening on %s:%d", host, bound,
              extra={"fields": {"server.address": host, "url.port": bound, "url.path": "/metrics"}})
    return int(bound)
