"""OpenTelemetry tracing with W3C `traceparent` carried in gRPC metadata.

A real TracerProvider always runs so that trace and span ids exist for logs and propagation; spans
are exported only when asked: `OTEL_TRACES_EXPORTER` (`console`, or `otlp` when the OTLP exporter package
is installed, as it is in the image), else OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces-only
variant) names a collector, else nothing.

While nothing exports (the provider installed here, with no exporter), `start_server_span` makes a
non-recording span that still has its own span id in the caller's trace (or a new trace), sampled
as the SDK's default parent-based sampler would: logs and the `traceparent` sent back carry the same
ids a recorded span would have, at a fraction of its cost.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from random import getrandbits
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

_log = logging.getLogger(__name__)
_configured = False
_quiet: TracerProvider | None = None  # the provider installed here, when it exports nothing
_tracer: tuple[object, trace.Tracer] | None = None  # (provider, its tracer)
_fields: tuple[TextMapPropagator, frozenset[str]] | None = None  # (global propagator, the headers it reads)
# The propagator OpenTelemetry installed from OTEL_PROPAGATORS, when that is its default (W3C trace
# context, then baggage): while it is the global one, `response_headers` may write traceparent itself.
_W3C_TEXTMAP = (
    propagate.get_global_textmap()
    if os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage").replace(" ", "") == "tracecontext,baggage"
    else None
)


def _exporter(name: str) -> SpanExporter | None:
    if name in ("", "none"):
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            # optional dependency (opentelemetry-exporter-otlp), not installed for the type check
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            _log.warning("OTEL_TRACES_EXPORTER=otlp but opentelemetry-exporter-otlp is not installed; not exporting")
            return None
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    _log.warning("unknown OTEL_TRACES_EXPORTER %r; not exporting", name)
    return None


def exporter_name(environ: Mapping[str, str]) -> str:
    """`OTEL_TRACES_EXPORTER` when set; else `otlp` when an OTLP endpoint is configured; else `none`."""
    explicit = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if explicit:
        return explicit
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return "otlp" if (endpoint or "").strip() else "none"


def configure(service_name: str, service_version: str) -> None:
    """Install the tracer provider once per process."""
    global _configured, _quiet
    if _configured:
        return
    _configured = True
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name), "service.version": service_version}
    )
    provider = TracerProvider(resource=resource)
    exporter = _exporter(exporter_name(os.environ))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        _quiet = provider
    trace.set_tracer_provider(provider)


def tracer() -> trace.Tracer:
    """The project's tracer of the current global provider (made once per provider)."""
    global _tracer
    provider = trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, trace.get_tracer("rentscout"))
    return _tracer[1]


def propagation_fields() -> frozenset[str]:
    """The metadata keys the global propagator reads (`traceparent`, `tracestate`, `baggage` by default)."""
    global _fields
    textmap = propagate.get_global_textmap()
    if _fields is None or _fields[0] is not textmap:
        _fields = (textmap, frozenset(textmap.fields))
    return _fields[1]


_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)


def start_server_span(name: str, parent: Context | None, attributes: Mapping[str, Any]) -> trace.Span:
    """The span of an RPC this server handles, child of `parent` (the extracted caller context, empty
    when the caller sent none; None: the current context). Recorded when something may export it, else
    non-recording with real ids (random, as the SDK's default id generator makes them)."""
    provider = trace.get_tracer_provider()
    if provider is not _quiet or _quiet is None:
        return tracer().start_span(name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes)
    span_id = getrandbits(64) or 1
    up = trace.get_current_span(parent).get_span_context() if parent is None or parent else None
    if up is not None and up.is_valid:  # the caller's trace; sampled as the caller decided (parent-based)
        return trace.NonRecordingSpan(trace.SpanContext(up.trace_id, span_id, False, up.trace_flags, up.trace_state))
    # a new trace, sampled (the default sampler's root decision)
    return trace.NonRecordingSpan(trace.SpanContext(getrandbits(128) or 1, span_id, False, _SAMPLED))


def extract(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context:
    """Parent context from incoming metadata (`traceparent`, `tracestate`)."""
    carrier = {k: v for k, v in metadata or () if isinstance(v, str)}
    return propagate.extract(carrier)


def hex_ids(span: trace.Span) -> tuple[str, str]:
    """`span`'s trace and span ids as the 32 and 16 hex digits logs and `traceparent` write ("" when invalid)."""
    ctx = span.get_span_context()
    return (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") if ctx.is_valid else ("", "")


def response_headers(span: trace.Span, baggage: bool, ids: tuple[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """What `inject` adds for `span`, the current span, as metadata pairs. Written directly (the W3C
    `traceparent`, and `tracestate` when set) while the default propagators are in use and the context
    holds no baggage (`baggage`: whether the caller sent any); else through the propagators. `ids`:
    `hex_ids(span)`, when the caller has them already."""
    if baggage or _W3C_TEXTMAP is None or propagate.get_global_textmap() is not _W3C_TEXTMAP:
        return tuple(inject({}).items())
    trace_id, span_id = hex_ids(span) if ids is None else ids
    if not trace_id:
        return ()
    ctx = span.get_span_context()
    parent = (("traceparent", f"00-{trace_id}-{span_id}-{ctx.trace_flags:02x}"),)
    return (*parent, ("tracestate", ctx.trace_state.to_header())) if ctx.trace_state else parent


def inject(carrier: dict[str, str] | None = None) -> Mapping[str, str]:
    """The current context as metadata headers to send downstream (or back to a caller)."""
    carrier = {} if carrier is None else carrier
    propagate.inject(carrier)
    return carrier
