"""Prometheus metrics: per-RPC counters and latency histograms, served on a separate HTTP port."""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_LE: tuple[str, ...] = tuple(floatToGoString(b) for b in (*LATENCY_BUCKETS, math.inf))  # type: ignore[no-untyped-call, unused-ignore]


class MethodCounts:
    """One method's numbers: calls in flight, and per status code the calls, their summed duration and
    the calls per latency bucket (not cumulative; the last one is +Inf)."""

    __slots__ = ("in_flight", "outcomes")

    def __init__(self) -> None:
        self.in_flight = 0
        self.outcomes: dict[str, Outcome] = {}

    def outcome(self, code: str) -> Outcome:
        found = self.outcomes.get(code)
        if found is None:
            found = self.outcomes[code] = Outcome()
        return found


class Outcome:
    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def observe(self, seconds: float) -> None:
        """Count one call that took `seconds`."""
        self.sum += seconds
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds


class RpcMetrics(Collector):
    """`rentscout_rpc_requests_total`, `rentscout_rpc_duration_seconds` and `rentscout_rpc_in_flight`, by
    service, method (and code): plain numbers the event loop updates, turned into metric families when
    scraped. (prometheus_client's own children take a lock per update and walk a histogram's buckets in
    Python: four of those per call were a tenth of a near-cache hit's server time.)"""

    def __init__(self) -> None:
        self._methods: dict[tuple[str, str], MethodCounts] = {}

    def method(self, service: str, method: str) -> MethodCounts:
        """The numbers of one method (kept for good: the services' methods are a fixed set)."""
        found = self._methods.get((service, method))
        if found is None:
            found = self._methods[(service, method)] = MethodCounts()
        return found

    def calls_by_code(self, service: str) -> dict[str, int]:
        """The calls of `service`'s methods so far, by status code."""
        totals: dict[str, int] = {}
        for (name, _), counts in list(self._methods.items()):
            if name == service:
                for code, out in list(counts.outcomes.items()):
                    totals[code] = totals.get(code, 0) + out.count
        return totals

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        total, duration, in_flight = self._families()
        for (service, method), counts in list(self._methods.items()):  # a scrape runs on its own thread
            in_flight.add_metric([service, method], counts.in_flight)
            for code, out in list(counts.outcomes.items()):
                labels = [service, method, code]
                cumulative, buckets = 0, []
                for le, n in zip(_LE, list(out.buckets), strict=True):
                    cumulative += n
                    buckets.append((le, cumulative))
                total.add_metric(labels, cumulative)
                duration.add_metric(labels, buckets, out.sum)
        yield from (total, duration, in_flight)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily, GaugeMetricFamily]:
        labels = ["grpc_service", "grpc_method", "grpc_code"]
        return (CounterMetricFamily("rentscout_rpc_requests", "RPCs handled, by method and gRPC status code.",
                                    labels=labels),
                HistogramMetricFamily("rentscout_rpc_duration_seconds", "RPC latency, by method and gRPC status code.",
                                      labels=labels),
                GaugeMetricFamily("rentscout_rpc_in_flight", "RPCs being handled now.", labels=labels[:2]))


RPCS = RpcMetrics()
REGISTRY.register(RPCS)
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
