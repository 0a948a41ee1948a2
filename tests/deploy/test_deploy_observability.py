"""The Grafana dashboard and the Prometheus alert rules under deploy/, read statically. (That every metric
they query is exported by a live server: tests/e2e/runtime/test_operability.py.)"""

from __future__ import annotations

import json

import pytest
import yaml

from harness import promql

REQUIRED_ALERTS = {
    "RentScoutHighErrorRatio",
    "RentScoutCacheBreakerOpen",
    "RentScoutNotReady",
    "RentScoutCacheHitRatioDrop",
    "RentScoutExportStalled",
}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (grpc_method) (rate(rentscout_rpc_requests_total{grpc_code!="OK", grpc_service=~"$service"}'
            "[$__rate_interval]))",
            {"rentscout_rpc_requests_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(rentscout_rpc_duration_seconds_bucket[5m])))",
            {"rentscout_rpc_duration_seconds_bucket"},
        ),
        (
            "sum(rate(a_total[15m])) / (sum(rate(a_total[15m])) + sum(b_total offset 1h)) < 0.5 * c and on (instance) d > 1",
            {"a_total", "b_total", "c", "d"},
        ),
        ('max by (instance) (x{dependency="postgresql"}) == 0 unless ignoring (job) y', {"x", "y"}),
        ("label_values(rentscout_rpc_requests_total, grpc_service)", {"rentscout_rpc_requests_total", "grpc_service"}),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert promql.metric_names(expr) == names


def test_the_dashboard_covers_rpcs_exports_cache_breaker_and_slow_queries() -> None:
    (path,) = promql.DASHBOARDS
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)  # picks the Prometheus at import
    used = promql.deploy_metric_names()
    for metric in (
        "rentscout_rpc_requests_total",
        "rentscout_rpc_duration_seconds_bucket",
        "rentscout_export_rows_total",
        "rentscout_cache_hits_total",
        "rentscout_cache_misses_total",
        "rentscout_cache_breaker_state",
        "rentscout_analyzer_slow_queries_count",
    ):
        assert any(metric in promql.metric_names(t["expr"]) for p in panels for t in p["targets"]), metric
    assert used


def test_alert_rules_are_complete_and_cover_what_operators_page_on() -> None:
    (path,) = promql.RULES
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["expr"].strip() and rule["for"]
        assert rule["labels"]["severity"] in ("page", "ticket", "info")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
