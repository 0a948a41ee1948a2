"""Each insight rule, its severity levels, and the floors that keep small things quiet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from harness.plans import doc, node
from rentscout.analyzer_service.insights import TableHealth, analyze_plan, staleness
from rentscout.analyzer_service.plan import parse_explain
from rentscout.analyzer_service.safety import OffsetRef


def kinds(insights) -> list[str]:
    return [i.kind for i in insights]


@pytest.mark.parametrize(
    ("plan_rows", "rows", "severity"), [(10, 150, "INFO"), (10, 1500, "WARNING"), (10, 12000, "CRITICAL"), (5000, 2, "CRITICAL")]
)
def test_row_misestimates_by_factor(plan_rows: float, rows: float, severity: str) -> None:
    scan = node("Seq Scan", time=1.0, rows=rows, plan_rows=plan_rows, **{"Relation Name": "t"})
    found = [i for i in analyze_plan(parse_explain(doc(scan, execution=1.0))) if i.kind == "ROW_MISESTIMATE"]
    assert len(found) == 1 and found[0].severity == severity
    assert found[0].evidence["estimated_rows"] == str(plan_rows) and found[0].evidence["actual_rows"] == str(rows)
    assert found[0].evidence["direction"] == ("under" if rows > plan_rows else "over")


def test_misestimate_floors_and_limit_early_stop() -> None:
    tiny = node("Seq Scan", time=1.0, rows=30, plan_rows=1)  # 30x but only 30 rows
    assert "ROW_MISESTIMATE" not in kinds(analyze_plan(parse_explain(doc(tiny, execution=1.0))))
    stopped = node(
        "Limit",
        node("Index Scan", time=0.1, rows=10, plan_rows=20000, **{"Parent Relationship": "Outer"}),
        time=0.1,
        rows=10,
        plan_rows=10,
    )
    assert "ROW_MISESTIMATE" not in kinds(analyze_plan(parse_explain(doc(stopped, execution=0.2))))


def test_seq_scan_filter_needs_a_large_discarded_share() -> None:
    def scan(removed: int, rows: int, loops: int = 1) -> list[str]:
        n = node(
            "Seq Scan",
            time=1.0,
            rows=rows,
            plan_rows=rows,
            loops=loops,
            **{"Relation Name": "t", "Filter": "(c = 42)", "Rows Removed by Filter": removed},
        )
        return [i.severity for i in analyze_plan(parse_explain(doc(n, execution=1.0))) if i.kind == "SEQ_SCAN_FILTER"]

    assert scan(29970, 30) == ["WARNING"]
    assert scan(999_000, 10) == ["CRITICAL"]
    assert scan(500, 5) == []  # below the floor
    assert scan(5000, 5000) == []  # only half discarded
    assert scan(300, 1, loops=10) == ["WARNING"]  # per-loop figures times loops


def test_disk_spills_of_sorts_hashes_and_hash_aggregates() -> None:
    sort = node(
        "Sort",
        time=5.0,
        **{"Sort Method": "external merge", "Sort Space Used": 3064, "Sort Space Type": "Disk", "Temp Written Blocks": 383},
    )
    hash_ = node("Hash", time=1.0, **{"Hash Batches": 8, "Original Hash Batches": 1})
    agg = node("Aggregate", time=1.0, **{"Strategy": "Hashed", "HashAgg Batches": 5, "Disk Usage": 2048})
    memory = node("Sort", time=1.0, **{"Sort Method": "quicksort", "Sort Space Type": "Memory", "Sort Space Used": 25})
    for plan, key in ((sort, "sort_method"), (hash_, "hash_batches"), (agg, "hashagg_batches")):
        found = [i for i in analyze_plan(parse_explain(doc(plan, execution=5.0)), work_mem="64kB") if i.kind == "DISK_SPILL"]
        assert len(found) == 1 and key in found[0].evidence and found[0].evidence["work_mem"] == "64kB"
    assert "DISK_SPILL" not in kinds(analyze_plan(parse_explain(doc(memory, execution=1.0))))


def test_lossy_bitmap_heap_scans() -> None:
    scan = node(
        "Bitmap Heap Scan",
        time=3.0,
        **{"Exact Heap Blocks": 100, "Lossy Heap Blocks": 900, "Rows Removed by Index Recheck": 5000, "Relation Name": "w"},
    )
    found = [i for i in analyze_plan(parse_explain(doc(scan, execution=3.0))) if i.kind == "LOSSY_BITMAP"]
    assert found and found[0].evidence["lossy_heap_blocks"] == "900" and found[0].node == "Bitmap Heap Scan on w"


def test_dominant_node_needs_a_share_and_a_minimum_duration() -> None:
    def dominant(total: float) -> list[str]:
        plan = node(
            "Hash Join",
            node("Seq Scan", time=total * 0.9, **{"Relation Name": "big"}),
            node("Seq Scan", time=total * 0.05, **{"Relation Name": "small"}),
            time=total,
        )
        return [i.node for i in analyze_plan(parse_explain(doc(plan, execution=total))) if i.kind == "DOMINANT_NODE"]

    assert dominant(200.0) == ["Seq Scan on big"]
    assert dominant(1.0) == []  # a 1 ms query has nothing to optimise


def test_large_offsets_from_constants_and_parameters() -> None:
    limit = node(
        "Limit",
        node("Index Scan", time=4.0, rows=5010, plan_rows=5010, **{"Parent Relationship": "Outer"}),
        time=4.0,
        rows=10,
        plan_rows=10,
    )
    result = parse_explain(doc(limit, execution=4.0))
    found = [i for i in analyze_plan(result, offsets=[OffsetRef(5000, None)]) if i.kind == "LARGE_OFFSET"]
    assert found[0].severity == "WARNING" and found[0].evidence["rows_discarded"] == "5000"
    by_param = analyze_plan(result, offsets=[OffsetRef(None, 2)], params=[10, "250000"])
    assert [i.severity for i in by_param if i.kind == "LARGE_OFFSET"] == ["CRITICAL"]
    assert "LARGE_OFFSET" not in kinds(analyze_plan(result, offsets=[OffsetRef(100, None)]))


def test_workers_planned_but_not_launched() -> None:
    gather = node("Gather", node("Parallel Seq Scan", time=1.0), time=1.0, **{"Workers Planned": 2, "Workers Launched": 0})
    found = [i for i in analyze_plan(parse_explain(doc(gather, execution=1.0))) if i.kind == "WORKERS_NOT_LAUNCHED"]
    assert found[0].severity == "WARNING" and found[0].evidence == {"workers_planned": "2", "workers_launched": "0"}
    partial = node("Gather", node("Parallel Seq Scan", time=1.0), time=1.0, **{"Workers Planned": 4, "Workers Launched": 3})
    assert [i.severity for i in analyze_plan(parse_explain(doc(partial, execution=1.0))) if i.kind == "WORKERS_NOT_LAUNCHED"] == [
        "INFO"
    ]


def health(**kw: Any) -> TableHealth:
    base: dict[str, Any] = dict(
        schema="s",
        name="t",
        reltuples=10_000.0,
        relpages=100,
        n_live_tup=10_000,
        n_mod_since_analyze=0,
        last_analyze=datetime(2026, 1, 1, tzinfo=UTC),
        last_autoanalyze=None,
    )
    base.update(kw)
    return TableHealth(**base)


def severity(table: TableHealth) -> str | None:
    """The severity staleness() gives, None when it finds nothing."""
    found = staleness(table)
    return None if found is None else found[0]


def test_staleness_rules() -> None:
    assert staleness(health()) is None
    assert staleness(health(n_mod_since_analyze=500)) is None  # below the floor
    assert staleness(health(n_mod_since_analyze=1500)) is None  # 15% < 20%
    assert severity(health(n_mod_since_analyze=3000)) == "WARNING"
    assert severity(health(n_mod_since_analyze=20000)) == "CRITICAL"
    assert severity(health(last_analyze=None, reltuples=-1, n_live_tup=5000)) == "WARNING"
    assert staleness(health(last_analyze=None, reltuples=-1, n_live_tup=10)) is None


def test_stale_statistics_insight_links_the_scanned_table() -> None:
    scan = node("Seq Scan", time=1.0, rows=21000, plan_rows=1000, **{"Relation Name": "t"})
    found = analyze_plan(
        parse_explain(doc(scan, execution=1.0)), tables={"t": health(reltuples=1000.0, n_mod_since_analyze=20000)}
    )
    stale = [i for i in found if i.kind == "STALE_STATISTICS"]
    assert stale[0].severity == "CRITICAL" and stale[0].evidence["n_mod_since_analyze"] == "20000"
    assert "ANALYZE s.t" in stale[0].message
    assert kinds(found)[0] in ("STALE_STATISTICS", "ROW_MISESTIMATE")  # most severe first


def test_plain_explain_only_gets_static_insights() -> None:
    plan = node("Limit", node("Seq Scan", plan_rows=10, **{"Relation Name": "t", "Parent Relationship": "Outer"}))
    found = analyze_plan(
        parse_explain(doc(plan)), offsets=[OffsetRef(20000, None)], tables={"t": health(n_mod_since_analyze=50000)}
    )
    assert sorted(kinds(found)) == ["LARGE_OFFSET", "STALE_STATISTICS"]


def test_work_mem_as_show_prints_it() -> None:
    from rentscout.analyzer_service.insights import work_mem_kb

    assert work_mem_kb("64kB") == 64 and work_mem_kb("4MB") == 4096 and work_mem_kb("1GB") == 1024**2
    assert work_mem_kb("") is None and work_mem_kb("lots") is None
