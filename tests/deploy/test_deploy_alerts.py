"""The alert rules under deploy/prometheus, run by promtool: they parse, and each alert fires on synthetic
series shaped like its incident (once per fleet, whatever the number of pods) and stays quiet otherwise
(deploy/prometheus/tests/rentscout-alerts-test.yml). Every alert has a runbook section, reads only metrics
the services export continuously, and every metric a panel or rule queries exists in the code."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from harness import promql
from harness.deps import require
from harness.manifests import ROOT

RULES = ROOT / "deploy" / "prometheus" / "rentscout-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "rentscout-alerts-test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
# Gauges set only when someone calls an RPC (ListSlowQueries): an alert on them reads a stale number.
ON_DEMAND = {"rentscout_analyzer_slow_queries_count"}
# Modules that declare the services' metrics (imported so that the registry holds them all).
METRIC_MODULES = (
    "rentscout.runtime.metrics",
    "rentscout.runtime.replicas",
    "rentscout.export_service.telemetry",
    "rentscout.cache_service.metrics",
    "rentscout.analyzer_service.metrics",
)


def promtool() -> str:
    found = subprocess.run(["sh", "-c", "command -v promtool"], capture_output=True, text=True).stdout.strip()
    require(bool(found), "promtool (apt-get install prometheus; scripts/bootstrap.sh does it)")
    return found


def alerts() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_checks_the_rules() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in proc.stdout


def test_every_alert_fires_on_its_incident_and_stays_quiet_otherwise() -> None:
    proc = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120, cwd=RULE_TESTS.parent
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in alerts():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']}: no test where it stays quiet"
        for case in mine:
            for alert in case["exp_alerts"]:
                assert not {"pod", "instance"} & set(alert["exp_labels"]), f"{rule['alert']}: one alert per fleet"


def test_promtool_would_notice_an_alert_that_does_not_fire(tmp_path: Path) -> None:
    """The unit tests are not vacuous: an error-ratio rule with a threshold nothing reaches fails them."""
    (tmp_path / "tests").mkdir()
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("> 0.05", "> 0.5", 1))
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    proc = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=120, cwd=tmp_path / "tests"
    )
    assert proc.returncode != 0 and "RentScoutHighErrorRatio" in proc.stdout + proc.stderr


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)  # `# comments` in code blocks are no headings
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#{1,6} (.+)$", prose, re.M)}


def test_every_alert_has_a_runbook_section_and_reads_continuous_metrics() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path.endswith("/docs/operations.md") and anchor in anchors, f"{rule['alert']}: {url}"
        assert rule["labels"]["severity"] in ("page", "ticket", "info")
        assert not promql.metric_names(rule["expr"]) & ON_DEMAND, f"{rule['alert']} reads a gauge set on demand"
    wanted = {
        "RentScoutTargetDown",
        "RentScoutHighLatencyP99",
        "RentScoutReplicaLag",
        "RentScoutRejectingRpcs",
        "RentScoutRedisDown",
        "RentScoutHighErrorRatio",
        "RentScoutCacheBreakerOpen",
        "RentScoutNotReady",
        "RentScoutSchemaBehind",
        "RentScoutSlowQueries",
    }
    assert wanted <= {r["alert"] for r in alerts()}


def exported_names() -> set[str]:
    """Every sample name the services' metrics produce (counters' _total, histograms' _bucket ...)."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    return set(REGISTRY._names_to_collectors)  # filled from each collector's describe() at registration


@pytest.mark.parametrize("source", [*promql.DASHBOARDS, *promql.RULES], ids=lambda p: p.name)
def test_every_metric_a_panel_or_alert_queries_is_one_the_services_export(source: Path) -> None:
    exprs = promql.dashboard_exprs(source) if source.suffix == ".json" else promql.rule_exprs(source)
    used = {name for expr in exprs for name in promql.metric_names(expr)} - promql.PROMETHEUS_SERIES
    assert used
    missing = sorted(used - exported_names())
    assert not missing, f"{source.name} queries metrics no service exports: {missing}"


def test_the_metric_check_notices_a_typo() -> None:
    assert "rentscout_export_rows_total" in exported_names()
    assert "rentscout_export_row_total" not in exported_names()
    assert "rentscout_rpc_duration_seconds_bucket" in exported_names()
