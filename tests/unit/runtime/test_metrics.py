"""The RPC metrics are prometheus_client's own: counts, cumulative latency buckets, in-flight, and the
per-code totals the export service's error counter reads from them."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from rentscout.runtime import metrics

SERVICE = "rentscout.unit.v1.Metrics"


def test_calls_are_counted_by_code_with_cumulative_buckets() -> None:
    counts = metrics.RPCS.method(SERVICE, "Observe")
    assert metrics.RPCS.method(SERVICE, "Observe") is counts  # children looked up once per method
    counts.in_flight.inc()
    for seconds in (0.0004, 0.003, 0.003):
        counts.outcome("OK").observe(seconds)
    counts.outcome("UNAVAILABLE").observe(2.0)
    counts.in_flight.dec()
    body = generate_latest(REGISTRY).decode()
    labels = f'grpc_code="OK",grpc_method="Observe",grpc_service="{SERVICE}"'
    assert f"rentscout_rpc_requests_total{{{labels}}} 3.0" in body
    assert f'rentscout_rpc_duration_seconds_bucket{{{labels},le="0.0005"}} 1.0' in body
    assert f'rentscout_rpc_duration_seconds_bucket{{{labels},le="0.0025"}} 1.0' in body
    assert f'rentscout_rpc_duration_seconds_bucket{{{labels},le="0.005"}} 3.0' in body
    assert f'rentscout_rpc_duration_seconds_bucket{{{labels},le="+Inf"}} 3.0' in body
    assert f'rentscout_rpc_in_flight{{grpc_method="Observe",grpc_service="{SERVICE}"}} 0.0' in body
    assert metrics.RPCS.calls_by_code(SERVICE) == {"OK": 3, "UNAVAILABLE": 1}
