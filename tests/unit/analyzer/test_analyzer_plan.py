"""Plan parsing and the time corrections (loops, parallel workers, children)."""

from __future__ import annotations

import json

import pytest

from harness.plans import doc, node
from rentscout.analyzer_service import filter_counts
from rentscout.analyzer_service.catalog_policy import Resolution
from rentscout.analyzer_service.insights import TableHealth
from rentscout.analyzer_service.plan import parse_explain


def test_loops_and_children_are_accounted_for() -> None:
    plan = node(
        "Nested Loop",
        node("Seq Scan", time=2.0, rows=10, plan_rows=10, **{"Relation Name": "a", "Parent Relationship": "Outer"}),
        node(
            "Index Scan",
            time=0.5,
            loops=10,
            rows=1,
            plan_rows=1,
            **{"Relation Name": "b", "Index Name": "b_pkey", "Parent Relationship": "Inner"},
        ),
        time=10.0,
        rows=10,
        plan_rows=10,
        **{"Join Type": "Inner"},
    )
    result = parse_explain(doc(plan, execution=10.5))
    root = result.root
    outer, inner = root.children
    assert inner.inclusive_time_ms == pytest.approx(5.0)  # 0.5 ms x 10 loops
    assert outer.inclusive_time_ms == pytest.approx(2.0)
    assert root.exclusive_time_ms == pytest.approx(3.0)  # 10 - 2 - 5
    assert inner.percent_of_total == pytest.approx(100 * 5.0 / 10.5)
    assert inner.label == "Index Scan using b_pkey on b"
    assert result.execution_time_ms == 10.5 and result.analyzed


def test_parallel_nodes_are_divided_by_the_processes_running_them() -> None:
    scan = node(
        "Parallel Seq Scan",
        time=30.0,
        loops=3,
        rows=100,
        plan_rows=100,
        **{"Relation Name": "t", "Parent Relationship": "Outer", "Rows Removed by Filter": 9900},
    )
    partial = node("Aggregate", scan, time=31.0, loops=3, **{"Parent Relationship": "Outer", "Partial Mode": "Partial"})
    gather = node(
        "Gather",
        partial,
        time=33.0,
        rows=3,
        plan_rows=2,
        **{"Workers Planned": 2, "Workers Launched": 2, "Parent Relationship": "Outer"},
    )
    result = parse_explain(doc(node("Aggregate", gather, time=33.5), execution=34.0))
    g = result.root.children[0]
    agg = g.children[0]
    s = agg.children[0]
    assert s.processes == 3 and s.inclusive_time_ms == pytest.approx(30.0)  # not 90
    assert agg.exclusive_time_ms == pytest.approx(1.0)
    assert g.exclusive_time_ms == pytest.approx(2.0)
    assert sum(n.exclusive_time_ms for n in result.nodes()) == pytest.approx(result.root.inclusive_time_ms)


def test_workers_not_launched_means_the_leader_ran_alone() -> None:
    scan = node("Parallel Seq Scan", time=30.0, loops=1, **{"Parent Relationship": "Outer"})
    gather = node("Gather", scan, time=31.0, **{"Workers Planned": 2, "Workers Launched": 0})
    result = parse_explain(doc(gather, execution=31.0))
    assert result.root.children[0].processes == 1
    assert result.root.children[0].inclusive_time_ms == pytest.approx(30.0)


def test_exclusive_time_never_goes_negative() -> None:
    # A CTE scan's time includes its InitPlan, which is also a child: subtracting both over-counts.
    cte = node("Seq Scan", time=8.0, **{"Parent Relationship": "InitPlan", "Subplan Name": "CTE x"})
    scan = node("CTE Scan", time=9.0, **{"Parent Relationship": "Outer", "CTE Name": "x"})
    result = parse_explain(doc(node("Hash Join", cte, scan, time=10.0), execution=10.0))
    assert all(n.exclusive_time_ms >= 0 for n in result.nodes())
    assert result.root.children[0].label == "Seq Scan (CTE x)"
    assert result.root.children[1].relation_name == "x"


def test_row_estimate_factor_and_never_executed_nodes() -> None:
    under = node("Seq Scan", time=1.0, rows=12000, plan_rows=10, **{"Parent Relationship": "Outer"})
    never = node("Index Scan", time=0.0, loops=0, rows=0, plan_rows=50, **{"Parent Relationship": "Inner"})
    result = parse_explain(doc(node("Nested Loop", under, never, time=2.0), execution=2.0))
    assert result.root.children[0].row_estimate_factor == pytest.approx(1200.0)
    assert result.root.children[1].row_estimate_factor == 0.0
    assert result.root.row_estimate_factor == 1.0


def test_early_stop_marks_nodes_below_limits_semi_joins_and_subplans() -> None:
    scan = node("Index Scan", time=0.1, rows=10, plan_rows=20000, **{"Parent Relationship": "Outer"})
    limit = node("Limit", scan, time=0.2, rows=10, plan_rows=10)
    result = parse_explain(doc(limit, execution=0.3))
    assert result.root.children[0].early_stop and not result.root.early_stop
    semi = node(
        "Nested Loop",
        node("Seq Scan", time=1.0, **{"Parent Relationship": "Outer"}),
        node("Index Scan", time=1.0, **{"Parent Relationship": "Inner"}),
        time=3.0,
        **{"Join Type": "Semi"},
    )
    r2 = parse_explain(doc(semi, execution=3.0))
    assert r2.root.children[1].early_stop


def test_buffers_planning_and_plain_explain() -> None:
    plan = node(
        "Seq Scan", time=1.0, **{"Shared Hit Blocks": 5, "Shared Read Blocks": 2, "Temp Written Blocks": 7, "Relation Name": "t"}
    )
    result = parse_explain(doc(plan, execution=1.0, Planning={"Shared Hit Blocks": 42, "Shared Read Blocks": 1}))
    assert (result.buffers.shared_hit, result.buffers.shared_read, result.buffers.temp_written) == (5, 2, 7)
    assert (result.planning_buffers.shared_hit, result.planning_buffers.shared_read) == (42, 1)
    plain = parse_explain(json.loads(doc(node("Seq Scan", plan_rows=123))))
    assert not plain.analyzed and plain.root.inclusive_time_ms == 0.0 and plain.root.plan_rows == 123
    assert plain.root.row_estimate_factor == 0.0


def test_garbage_is_not_a_plan() -> None:
    with pytest.raises(ValueError):
        parse_explain("[]")
    with pytest.raises(ValueError):
        parse_explain('{"nope": 1}')


def _parallel_scan(**extra: object) -> dict[str, object]:
    return node(
        "Seq Scan",
        time=5.0,
        loops=3,
        rows=26,
        **{
            "Relation Name": "t",
            "Alias": "x",
            "Parallel Aware": True,
            "Filter": "(c = 5)",
            "Rows Removed by Filter": 66600,
            **extra,
        },
    )


def test_only_parallel_scans_read_to_the_end_are_counted() -> None:
    tables = {
        "t": TableHealth(
            schema="s",
            name="t",
            reltuples=0,
            relpages=0,
            n_live_tup=0,
            n_mod_since_analyze=0,
            last_analyze=None,
            last_autoanalyze=None,
        )
    }

    def counted(plan: dict[str, object]) -> list[str]:
        return [c.sql for c in filter_counts.countable(parse_explain(doc(plan, execution=6.0)), tables)]

    gathered = node("Aggregate", node("Gather", node("Aggregate", _parallel_scan(), time=5, loops=3), time=5), time=6)
    assert counted(gathered) == [
        "SELECT /* rentscout-analyzer */ pg_catalog.count(*) FILTER (WHERE ((c = 5)) IS NOT TRUE)"
        ' AS removed, pg_catalog.count(*) FILTER (WHERE ((c = 5))) AS kept FROM ONLY "s"."t" AS "x"'
    ]
    assert counted(node("Limit", node("Gather", _parallel_scan(), time=5), time=6)) == []  # may stop early
    assert counted(node("Hash Join", node("Gather", _parallel_scan(), time=5), time=6)) == []
    assert counted(node("Gather", _parallel_scan(**{"Filter": "(c = $0)"}), time=5)) == []  # an InitPlan's value
    assert counted(node("Gather", _parallel_scan(**{"Parallel Aware": False}), time=5)) == []
    initplan = node("Aggregate", node("Gather", _parallel_scan(), time=5, **{"Subplan Name": "InitPlan 1"}), time=6)
    assert counted(initplan) == []  # run by another node, which may stop it early
    assert counted(node("Gather", _parallel_scan(**{"Relation Name": "other"}), time=5)) == []  # not resolved


def test_a_plan_without_a_parallel_aware_node_is_known_uncountable_before_parsing() -> None:
    """may_count decides whether the plan is parsed before its connection is released: never False for a plan
    countable picks a node from (the real format is covered by the parallel scan test against PostgreSQL)."""
    gathered = doc(node("Aggregate", node("Gather", _parallel_scan(), time=5), time=6), execution=6.0)
    assert filter_counts.may_count(gathered)
    serial = doc(node("Aggregate", _parallel_scan(**{"Parallel Aware": False}), time=6), execution=6.0)
    assert not filter_counts.may_count(serial)


def test_counted_totals_must_round_to_what_explain_printed() -> None:
    scan = parse_explain(doc(_parallel_scan(), execution=6.0)).root  # 66600 removed and 26 kept per loop, 3 loops
    assert filter_counts.agrees(scan, 199_801, 78)  # 66600.33 and 26
    assert not filter_counts.agrees(scan, 199_700, 78)  # a scan that stopped early
    assert not filter_counts.agrees(scan, 199_801, 90)


def test_tables_read_in_two_schemas_or_under_row_security_are_not_counted() -> None:
    health = TableHealth(
        schema="a",
        name="t",
        reltuples=0,
        relpages=0,
        n_live_tup=0,
        n_mod_since_analyze=0,
        last_analyze=None,
        last_autoanalyze=None,
    )
    other = TableHealth(
        schema="a",
        name="u",
        reltuples=0,
        relpages=0,
        n_live_tup=0,
        n_mod_since_analyze=0,
        last_analyze=None,
        last_autoanalyze=None,
    )
    resolution = Resolution(tables={"t": health, "u": other}, shared_names=frozenset({"t"}))
    assert resolution.countable_tables() == {"u": other}
    secured = Resolution(tables={"t": health, "u": other}, row_security_names=frozenset({"u"}))
    assert secured.countable_tables() == {"t": health}
