"""Server spans and the trace headers sent back: the direct paths agree with OpenTelemetry's own."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from rentscout.wire import tracing

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(autouse=True)
def provider() -> None:
    tracing.configure("unit-tracing", "0")  # once per process; later calls keep the first provider


@pytest.mark.parametrize(
    "carrier",
    [
        {},
        {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},
        {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-00"},  # the caller did not sample
        {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01", "tracestate": "vendor=abc,other=1"},
        {"traceparent": "00-not-a-valid-header"},
    ],
)
def test_response_headers_are_what_the_propagators_inject(carrier: dict[str, str]) -> None:
    parent = propagate.extract(carrier) if carrier else otel_context.Context()
    span = tracing.start_server_span("svc/Method", parent, {"rpc.system": "grpc"})
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        direct = dict(tracing.response_headers(span, baggage=False))
        assert direct == dict(tracing.inject({}))
    finally:
        otel_context.detach(token)
    up = trace.get_current_span(parent).get_span_context()
    ours = span.get_span_context()
    assert ours.is_valid and ours.span_id != up.span_id
    if up.is_valid:  # the caller's trace, sampled as the caller decided
        assert (ours.trace_id, ours.trace_flags, ours.trace_state) == (up.trace_id, up.trace_flags, up.trace_state)
        assert direct["traceparent"].split("-")[1] == TRACE_ID
    else:
        assert ours.trace_flags.sampled


def test_baggage_goes_back_through_the_propagators() -> None:
    parent = propagate.extract({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01", "baggage": "k=v"})
    span = tracing.start_server_span("svc/Method", parent, {})
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        got = dict(tracing.response_headers(span, baggage=True))
        expected: dict[str, str] = {}  # OpenTelemetry's W3C propagators themselves, not the path under test
        TraceContextTextMapPropagator().inject(expected)
        W3CBaggagePropagator().inject(expected)
        assert got == expected
        assert got["traceparent"] == f"00-{TRACE_ID}-{span.get_span_context().span_id:016x}-01"
        assert got["baggage"] == "k=v"
    finally:
        otel_context.detach(token)
