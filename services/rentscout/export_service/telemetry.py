"""The export service's own metrics and its start/end log lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from rentscout.export.v1 import export_pb2
from rentscout.runtime import metrics
from rentscout.runtime.classify import classify

SERVICE_NAME = export_pb2.DESCRIPTOR.services_by_name["ExportService"].full_name

_log = logging.getLogger("rentscout.export_service")

EXPORT_ROWS = Counter("rentscout_export_rows_total", "Rows sent by exports, by format.", ["format"])
EXPORT_BYTES = Counter("rentscout_export_bytes_total", "Bytes of data sent by exports, by format.", ["format"])
EXPORT_DURATION = Histogram(
    "rentscout_export_duration_seconds",
    "Duration of export streams, by format and final status.",
    ["format", "status"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
EXPORTS_IN_FLIGHT = Gauge("rentscout_exports_in_flight", "Export streams running on this replica.")
EXPORTS_TOTAL = Counter("rentscout_exports_total", "Export streams ended, by format and status.", ["format", "status"])


class ErrorsByCode(Collector):
    """`rentscout_export_errors_total{code}`: the export RPCs that failed (not cancelled by their client), read
    from the RPC counts the server interceptor keeps, so each failure is counted once, there."""

    HELP = "Export service RPCs that failed, by gRPC status code."
    NOT_ERRORS = frozenset({grpc.StatusCode.OK.name, grpc.StatusCode.CANCELLED.name})

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("rentscout_export_errors", self.HELP, labels=["code"])

    def collect(self) -> Iterator[Metric]:
        totals = {code: n for code, n in metrics.RPCS.calls_by_code(SERVICE_NAME).items() if code not in self.NOT_ERRORS}
        errors = CounterMetricFamily("rentscout_export_errors", self.HELP, labels=["code"])
        for code, value in sorted(totals.items()):
            errors.add_metric([code], value)
        yield errors


REGISTRY.register(ErrorsByCode())


def code_of(exc: BaseException) -> str:
    error = classify(exc)
    code: grpc.StatusCode = error.code if error is not None else grpc.StatusCode.INTERNAL
    return str(code.name)


def log_start(fields: dict[str, object]) -> None:
    _log.info("export started", extra={"fields": fields})


def log_end(fields: dict[str, object], failed: bool) -> None:
    _log.log(logging.WARNING if failed else logging.INFO, "export finished", extra={"fields": fields})
