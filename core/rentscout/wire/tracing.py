"""OpenTelemetry tracing with W3C `traceparent` carried in gRPC metadata.

A real TracerProvider always runs so that trace and span ids exist for logs and propagation; spans
are exported only when `OTEL_TRACES_EXPORTER` asks for it (`console`, or `otlp` when the OTLP
exporter package is installed). The default, like the SDK's unset variable here, is `none`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

_log = logging.getLogger(__name__)
_configured = False


def _exporter(name: str) -> SpanExporter | None:
    if name in ("", "none"):
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            # optional dependency (opentelemetry-exporter-otlp), not installed for the type check
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError:
            _log.warning("OTEL_TRACES_EXPORTER=otlp but opentelemetry-exporter-otlp is not installed; not exporting")
            return None
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    _log.warning("unknown OTEL_TRACES_EXPORTER %r; not exporting", name)
    return None


def configure(service_name: str, service_version: str) -> None:
    """Install the tracer provider once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name),
                                "service.version": service_version})
    provider = TracerProvider(resource=resource)
    exporter = _exporter(os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower())
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def tracer() -> trace.Tracer:
    return trace.get_tracer("rentscout")


def extract(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context:
    """Parent context from incoming metadata (`traceparent`, `tracestate`)."""
    carrier = {k: v for k, v in metadata or () if isinstance(v, str)}
    return propagate.extract(carrier)


def inject(carrier: dict[str, str] | None = None) -> Mapping[str, str]:
    """The current context as metadata headers to send downstream (or back to a caller)."""
    carrier = {} if carrier is None else carrier
    propagate.inject(carrier)
    return carrier
