"""Client-side Prometheus metrics (names prefixed `rentscout_client_`), labelled by target."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BREAKER_STATE = Gauge(
    "rentscout_client_breaker_state", "Circuit breaker state per target: 0 closed, 1 open, 2 half-open.", ["target"]
)
BREAKER_TRANSITIONS = Counter(
    "rentscout_client_breaker_transitions_total", "Circuit breaker state changes.", ["target", "from_state", "to_state"]
)
BREAKER_CALLS = Counter(
    "rentscout_client_breaker_calls_total",
    "Calls seen by a breaker: success, failure (with _slow when slow), ignored, rejected (failed fast).",
    ["target", "outcome"],
)
RETRIES = Counter(
    "rentscout_client_retries_total",
    "Attempts retried, by target, method and the status that caused them.",
    ["target", "method", "code"],
)
STREAM_RESUMES = Counter(
    "rentscout_client_export_resumes_total", "Export streams resumed from a resume token after a break.", ["target"]
)
