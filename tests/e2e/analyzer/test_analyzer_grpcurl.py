"""The real `rentscout serve analyzer` process, driven with the real grpcurl binary as an operator would.

(grpcurl prints the proto field names, e.g. execution_time_ms.)"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from harness.grpcurl import grpcurl
from harness.servers import ServerProcess

ADMIN, READER = "e2e-analyzer-admin", "e2e-analyzer-reader"
SERVICE = "rentscout.analyzer.v1.AnalyzerService"


def test_operator_session(service_env: dict[str, str], grpcurl_bin: str, hypopg: bool, tmp_path: Path) -> None:
    env = {
        **service_env,
        "RENTSCOUT_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:reader",
        "RENTSCOUT_ANALYZER_EXPLAIN_ROLE": "rentscout_explain",
    }
    server = ServerProcess("analyzer", env, tmp_path).start()
    admin = {"authorization": f"Bearer {ADMIN}", "x-correlation-id": "e2e-analyzer"}
    try:
        described = grpcurl(server.target, f"describe {SERVICE}")
        assert "rpc AnalyzeQuery" in described.stdout and "rpc SuggestIndexes" in described.stdout

        analyzed = grpcurl(
            server.target,
            f"{SERVICE}/AnalyzeQuery",
            {
                "sql": "SELECT id, title FROM properties WHERE url = $1",
                "params": [{"stringValue": "https://nowhere"}],
                "analyze": True,
                "buffers": True,
            },
            headers=admin,
        )
        assert analyzed.returncode == 0, analyzed.stderr
        reply = analyzed.json()
        assert reply["execution_time_ms"] > 0 and reply["plan"]["node_type"] == "Seq Scan"
        assert int(reply["plan"]["rows_removed_by_filter"]) == 20000
        assert reply["fingerprint"] and reply["raw_json"].lstrip().startswith("[")
        kinds = {i["kind"] for i in reply["insights"]}
        assert "INSIGHT_KIND_SEQ_SCAN_FILTER" in kinds

        refused = grpcurl(server.target, f"{SERVICE}/AnalyzeQuery", {"sql": "SELECT pg_sleep(5)", "analyze": True}, headers=admin)
        assert refused.returncode != 0
        assert "Code: InvalidArgument" in refused.stderr and "pg_sleep" in refused.stderr

        denied = grpcurl(
            server.target, f"{SERVICE}/GetTableStats", {"table": "properties"}, headers={"authorization": f"Bearer {READER}"}
        )
        assert denied.returncode != 0 and "Code: PermissionDenied" in denied.stderr

        stats = grpcurl(server.target, f"{SERVICE}/GetTableStats", {"table": "public.properties"}, headers=admin)
        assert stats.returncode == 0, stats.stderr
        assert stats.json()["table"] == "public.properties" and int(stats.json()["table_bytes"]) > 0

        slow = grpcurl(
            server.target, f"{SERVICE}/ListSlowQueries", {"limit": 5, "orderBy": "SLOW_QUERY_ORDER_CALLS"}, headers=admin
        )
        assert slow.returncode == 0, slow.stderr
        assert slow.json()["extension_version"]

        advice = grpcurl(
            server.target, f"{SERVICE}/SuggestIndexes", {"sql": "SELECT * FROM properties WHERE external_id = $1"}, headers=admin
        )
        assert advice.returncode == 0, advice.stderr
        suggestion = advice.json()["suggestions"][0]
        assert suggestion["columns"] == ["external_id"] and suggestion["hypopg_validated"] is True
        assert suggestion["create_statement"].startswith("CREATE INDEX CONCURRENTLY")

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
        assert 'rentscout_analyzer_analyses_total{mode="analyze",outcome="ok"} 1.0' in metrics
        assert 'rentscout_analyzer_rejected_statements_total{reason="function:sleep"} 1.0' in metrics
        assert 'rentscout_analyzer_index_suggestions_total{validated="true"}' in metrics
    finally:
        server.stop()
    records = server.log_records()
    access = [
        r for r in records if r.get("event.dataset") == "rentscout.access" and r.get("rpc.method") == f"/{SERVICE}/AnalyzeQuery"
    ]
    assert {r["rpc.grpc.status_code"] for r in access} == {"OK", "INVALID_ARGUMENT"}
    ok = next(r for r in access if r["rpc.grpc.status_code"] == "OK")
    assert ok["correlation.id"] == "e2e-analyzer" and ok["db.statement.fingerprint"] and ok["analyzer.insights"] >= 1
    assert not any("https://nowhere" in line for line in server.log_text().splitlines())  # parameters are never logged
