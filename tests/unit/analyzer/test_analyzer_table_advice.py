"""GetTableStats recommendations and their floors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.analyzer_service.table_stats import PGSTATTUPLE_APPROX, TableStats, recommend

LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = AnalyzerSettings(rewrite_min_bloat_bytes=1024 * 1024)


def stats(**kw: Any) -> TableStats:
    base: dict[str, Any] = dict(
        table="s.t", live_rows=100_000, dead_rows=0, reltuples=100_000.0, last_analyze=LONG_AGO, table_bytes=50 * 1024 * 1024
    )
    base.update(kw)
    return TableStats(**base)


def actions(s: TableStats, settings: AnalyzerSettings = SETTINGS) -> dict[str, str]:
    return {r.action: r.severity for r in recommend(s, "s", "t", settings)}


def test_a_healthy_table_gets_nothing() -> None:
    assert actions(stats()) == {}


def test_dead_rows_ask_for_vacuum_above_the_floor_only() -> None:
    assert actions(stats(dead_rows=30_000)) == {"VACUUM": "WARNING"}
    assert actions(stats(dead_rows=150_000)) == {"VACUUM": "CRITICAL"}
    assert actions(stats(live_rows=40, dead_rows=60, reltuples=40.0)) == {}  # a tiny table never alarms
    rec = recommend(stats(dead_rows=30_000), "s", "t", SETTINGS)[0]
    assert rec.statement == 'VACUUM (ANALYZE) "s"."t";' and "last vacuum: never" in rec.reason


def test_modifications_ask_for_analyze() -> None:
    assert actions(stats(modifications_since_analyze=30_000)) == {"ANALYZE": "WARNING"}
    assert actions(stats(modifications_since_analyze=200_000)) == {"ANALYZE": "CRITICAL"}
    assert actions(stats(last_analyze=None, reltuples=-1.0)) == {"ANALYZE": "WARNING"}


def test_bloat_asks_for_a_rewrite_after_vacuum() -> None:
    bloated = dict(bloat_bytes=40 * 1024 * 1024, bloat_ratio=0.8)
    assert actions(stats(**bloated)) == {"REWRITE": "CRITICAL"}
    assert actions(stats(dead_rows=150_000, **bloated)) == {"VACUUM": "CRITICAL", "REWRITE": "INFO"}
    assert actions(stats(bloat_bytes=40 * 1024 * 1024, bloat_ratio=0.1)) == {}
    assert actions(stats(**bloated), AnalyzerSettings()) == {}  # below the default 64 MiB floor
    assert actions(stats(bloat_known=False, **bloated)) == {}
    rec = recommend(stats(bloat_method=PGSTATTUPLE_APPROX, **bloated), "s", "t", SETTINGS)[0]
    assert "pgstattuple_approx" in rec.reason and "pg_repack" in rec.reason
    assert rec.statement == 'VACUUM (FULL, ANALYZE) "s"."t";'
