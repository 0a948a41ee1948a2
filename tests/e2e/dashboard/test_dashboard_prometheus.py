"""The shipped Grafana dashboard against a real Prometheus scraping the three real services: after traffic
of every kind (none of it failing), every panel's every query returns data, and the error panels read 0
rather than "No data" (a panel must tell "nothing fails" from "broken")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.grpcurl import grpcurl
from harness.prometheus import Prometheus, running_prometheus
from harness.promql import DASHBOARDS
from harness.servers import ServerProcess

ADMIN, READER = "e2e-dash-admin-token", "e2e-dash-reader-token"
CACHE, ANALYZER = "rentscout.cache.v1.CacheQueryService", "rentscout.analyzer.v1.AnalyzerService"
WAIT = 90  # a generous cap: scrapes every second, a rate needs two samples


def panel_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, PromQL with the dashboard's variables as Grafana fills them for "All")."""
    doc = json.loads(path.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("${service}", ".*").replace("$service", ".*").replace("$__rate_interval", "1m")
            out.append((panel["title"], expr))
    return out


@pytest.fixture(scope="module")
def scraped(service_env: dict[str, str], grpcurl_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    tmp = tmp_path_factory.mktemp("dashboard")
    env = {**service_env, "RENTSCOUT_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:reader"}
    servers = {name: ServerProcess(name, env, tmp / name) for name in ("export", "cache-query", "analyzer")}
    try:
        for server in servers.values():
            server.start()
        with running_prometheus(tmp / "prometheus", [f"127.0.0.1:{s.metrics_port}" for s in servers.values()]) as prom:
            traffic(servers, tmp)
            yield prom
    finally:
        for server in servers.values():
            server.stop()


def traffic(servers: dict[str, ServerProcess], tmp: Path) -> None:
    """One call of each kind the dashboard shows, every one of them successful."""
    reader, admin = {"authorization": f"Bearer {READER}"}, {"authorization": f"Bearer {ADMIN}"}
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "rentscout.main",
            "export",
            "--target",
            servers["export"].target,
            "--token",
            READER,
            "--format",
            "jsonl",
            "--city",
            "Moscow",
            "--limit",
            "500",
            "--rows-per-chunk",
            "100",
            "-o",
            str(tmp / "moscow.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert export.returncode == 0, export.stderr
    cache = servers["cache-query"].target
    for method, body in (
        ("PopularProperties", {"city": "Moscow", "limit": 3}),  # a miss, then a hit
        ("PopularProperties", {"city": "Moscow", "limit": 3}),
        ("PriceStats", {"city": "Kazan"}),
        ("Cities", {}),
        ("PropertyTypes", {}),
        ("GetCacheStats", {}),
    ):
        assert grpcurl(cache, f"{CACHE}/{method}", body, headers=reader).returncode == 0, method
    analyzer = servers["analyzer"].target
    # a filter no index serves, discarding every row: a SEQ_SCAN_FILTER insight whatever indexes exist
    for method, request in (
        (
            "AnalyzeQuery",
            {
                "sql": "SELECT id FROM properties WHERE title LIKE $1",
                "params": [{"stringValue": "%rs-dashboard-none%"}],
                "analyze": True,
            },
        ),
        ("ListSlowQueries", {"limit": 3}),
        ("GetTableStats", {"table": "properties"}),
        ("SuggestIndexes", {"table": "properties"}),
    ):
        out = grpcurl(analyzer, f"{ANALYZER}/{method}", request, headers=admin)
        assert out.returncode == 0, (method, out.stderr)


def answers(prom: Prometheus, queries: list[tuple[str, str]]) -> dict[str, list[dict[str, Any]]]:
    return {expr: prom.query(expr) for _, expr in queries}


def test_every_panel_query_returns_data_after_traffic(scraped: Prometheus) -> None:
    queries = [q for path in DASHBOARDS for q in panel_queries(path)]
    assert len(queries) >= 19
    ratio = next(expr for title, expr in queries if title.startswith("Error ratio"))
    served = {"rentscout.export.v1.ExportService", CACHE, ANALYZER}
    end = time.monotonic() + WAIT
    while True:  # until every panel has data and the error ratio has each service's series (scrapes trail the calls)
        results = answers(scraped, queries)
        empty = [f"{title}: {expr}" for title, expr in queries if not results[expr]]
        services = {series["metric"]["grpc_service"] for series in results[ratio]}
        if (not empty and services >= served) or time.monotonic() > end:
            break
        time.sleep(1)
    assert not empty, "panels without data after traffic of every kind:\n" + "\n".join(empty)
    # nothing failed: the error panels read 0 (not "No data"), for every service and method that served calls
    assert services >= served
    assert all(float(series["value"][1]) == 0 for series in results[ratio]), results[ratio]
    errors = next(expr for title, expr in queries if title == "RPC errors by method and code")
    assert {series["metric"]["grpc_code"] for series in results[errors]} == {"none"}
    assert all(float(series["value"][1]) == 0 for series in results[errors])
    # a query type that only missed (PriceStats, Cities, PropertyTypes above) has a hit ratio too: 0
    by_type = next(expr for title, expr in queries if title == "Cache hit ratio by query type")
    ratios = {s["metric"].get("query_type"): float(s["value"][1]) for s in results[by_type] if "query_type" in s["metric"]}
    missed = {s["metric"]["query_type"] for s in scraped.query("rentscout_cache_misses_total")}
    assert missed <= set(ratios) and len(missed) >= 3, (missed, ratios)
