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
DEPENDENCY_UP = Gauge("rentscout_dependency_up", "1 when the dependency answered its last probe.", ["dependency"])


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    _, service, method = [*full_method.split("/"), "", ""][:3]
    return service, method


def serve(port: int | None, host: str = "0.0.0.0") -> int | None:
    """Start the /metrics endpoint in a daemon thread; returns the bound port (None when disabled)."""
    if not port and port != 0:
        return None
    if port == 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = server.server_address[1]
    _log.info("metrics listening", extra={"fields": {"url.port": bound, "url.path": "/metrics"}})
    return int(bound)
