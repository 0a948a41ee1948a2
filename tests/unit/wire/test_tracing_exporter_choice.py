"""Tracing exports nothing unless configured: OTLP as soon as a collector endpoint is set (the image ships the
OTLP exporter), or whatever OTEL_TRACES_EXPORTER names."""

from __future__ import annotations

import pytest

from rentscout.wire.tracing import exporter_name


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "none"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, "none"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel-collector.observability:4317"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, "none"),  # explicit off wins
        ({"OTEL_TRACES_EXPORTER": "Console"}, "console"),
    ],
)
def test_the_exporter_follows_the_standard_variables(environ: dict[str, str], expected: str) -> None:
    assert exporter_name(environ) == expected
