"""The export service's own metrics and its start/end log lines."""

from __future__ import annotations

import logging

import grpc
from prometheus_client import Counter, Gauge, Histogram

from rentscout.runtime.errors import classify

_log = logging.getLogger("rentscout.export_service")

EXPORT_ROWS = Counter("rentscout_export_rows_total", "Rows sent by exports, by format.", ["format"])
EXPORT_BYTES = Counter("rentscout_export_bytes_total", "Bytes of data sent by exports, by format.", ["format"])
EXPORT_DURATION = Histogram(
    "rentscout_export_duration_seconds", "Duration of export streams, by format and final status.",
    ["format", "status"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
EXPORTS_IN_FLIGHT = Gauge("rentscout_exports_in_flight", "Export streams running on this replica.")
EXPORTS_TOTAL = Counter("rentscout_exports_total", "Export streams ended, by format and status.", ["format", "status"])
EXPORT_ERRORS = Counter("rentscout_export_errors_total", "Export service RPCs that failed, by gRPC status code.",
                        ["code"])


def code_of(exc: BaseException) -> str:
    error = classify(exc)
    return (error.code if error is not None else grpc.StatusCode.INTERNAL).name


def log_start(fields: dict[str, object]) -> None:
    _log.info("export started", extra={"fields": fields})


def log_end(fields: dict[str, object], failed: bool) -> None:
    _log.log(logging.WARNING if failed else logging.INFO, "export finished", extra={"fields": fields})
