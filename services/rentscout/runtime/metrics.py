"""Prometheus metrics: per-RPC counters and latency histograms, served on a separate HTTP port.

prometheus_client's own Counter, Histogram and Gauge, their children looked up once per method and code.
(A hand-written histogram stood here; measured, it saved about 2 us, under 0.5% of a near-cache hit's server time:
docs/architecture.md, "Fast paths measured".)
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_LABELS = ("grpc_service", "grpc_method", "grpc_code")
RPC_REQUESTS = Counter("rentscout_rpc_requests", "RPCs handled, by method and gRPC status code.", _LABELS)
RPC_DURATION = Histogram(
    "rentscout_rpc_duration_seconds", "RPC latency, by method and gRPC status code.", _LABELS, buckets=LATENCY_BUCKETS
)
RPC_IN_FLIGHT = Gauge("rentscout_rpc_in_flight", "RPCs being handled now.", _LABELS[:2])


class Outcome:
    """The metric children of one method ending with one status code (looked up once, kept by the interceptor)."""

    __slots__ = ("_count", "_duration")

    def __init__(self, service: str, method: str, code: str) -> None:
        self._count = RPC_REQUESTS.labels(service, method, code)
        self._duration = RPC_DURATION.labels(service, method, code)

    def observe(self, seconds: float) -> None:
        """Count one call that took `seconds`."""
        self._count.inc()
        self._duration.observe(seconds)


class MethodCounts:
    """One method's metric children: calls in flight, and an Outcome per status code."""

    __slots__ = ("in_flight", "method", "outcomes", "service")

    def __init__(self, service: str, method: str) -> None:
        self.service, self.method = service, method
        self.in_flight = RPC_IN_FLIGHT.labels(service, method)
        self.outcomes: dict[str, Outcome] = {}

    def outcome(self, code: str) -> Outcome:
        found = self.outcomes.get(code)
        if found is None:
            found = self.outcomes[code] = Outcome(self.service, self.method, code)
        return found


class RpcMetrics:
    """The per-method children, made once per method (the services' methods are a fixed set)."""

    def __init__(self) -> None:
        self._methods: dict[tuple[str, str], MethodCounts] = {}

    def method(self, service: str, method: str) -> MethodCounts:
        found = self._methods.get((service, method))
        if found is None:
            found = self._methods[(service, method)] = MethodCounts(service, method)
        return found

    @staticmethod
    def calls_by_code(service: str) -> dict[str, int]:
        """The calls of `service`'s methods so far, by status code (read from the counter's samples)."""
        totals: dict[str, int] = {}
        for family in RPC_REQUESTS.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("grpc_service") == service:
                    code = sample.labels["grpc_code"]
                    totals[code] = totals.get(code, 0) + int(sample.value)
        return totals


RPCS = RpcMetrics()
RPC_REJECTED = Counter(
    "rentscout_rpc_rejected_total",
    "RPCs refused before any work because the server was at a limit, by reason.",
    ["grpc_service", "grpc_method", "reason"],
)
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
    _log.info(
        "metrics listening on %s:%d",
        host,
        bound,
        extra={"fields": {"server.address": host, "url.port": bound, "url.path": "/metrics"}},
    )
    return int(bound)
