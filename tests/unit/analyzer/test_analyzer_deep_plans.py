"""Plans of any depth: JSON decoded without recursion, the tree built and walked without it, the answer flat
and under the size cap; the SDK and the CLI rebuild and draw the deepest one."""

from __future__ import annotations

import json
import sys

import pytest
from rich.console import Console

from rentscout.analyzer.v1 import analyzer_pb2
from rentscout.analyzer_service import convert
from rentscout.analyzer_service.explain import Analysis
from rentscout.analyzer_service.insights import analyze_plan
from rentscout.analyzer_service.jsontext import loads, loads_iterative
from rentscout.analyzer_service.plan import parse_explain
from rentscout.cli.analyze import MAX_DRAWN_DEPTH, plan_tree
from rentscout.sdk.analyzer import plan_tree as rebuild

DEPTH = 5 * sys.getrecursionlimit()  # far beyond any recursion, and beyond orjson's 1024 levels


def deep_explain(depth: int) -> str:
    """EXPLAIN ANALYZE (FORMAT JSON) text of a chain of nested loops `depth` levels deep."""
    leaf = {
        "Node Type": "Function Scan",
        "Function Name": "generate_series",
        "Alias": "g",
        "Startup Cost": 0.0,
        "Total Cost": 0.01,
        "Plan Rows": 1,
        "Plan Width": 0,
        "Actual Total Time": 0.001,
        "Actual Rows": 1,
        "Actual Loops": 1,
        "Parent Relationship": "Inner",
    }
    head = (
        '{"Node Type": "Nested Loop", "Join Type": "Inner", "Startup Cost": 0.0, "Total Cost": 1.0, '
        '"Plan Rows": 1, "Plan Width": 0, "Actual Total Time": 0.01, "Actual Rows": 1, "Actual Loops": 1, '
        '"Parent Relationship": "Outer", "Plans": ['
    )
    text = head * depth + json.dumps(leaf) + (", " + json.dumps(leaf) + "]}") * depth
    return f'[{{"Plan": {text}, "Planning Time": 1.0, "Execution Time": 2.0}}]'


def test_iterative_json_matches_the_standard_decoder() -> None:
    for doc in ["{}", "[]", '[1, 2.5, -3e2, "a\\n\\u00e9\\"", true, false, null, {"k": [{}]}]', deep_explain(3)]:
        assert loads_iterative(doc) == json.loads(doc)
    for bad in ["[1,]", '{"a" 1}', "[1 2]", "nul", "[1]x", "", '"open']:
        with pytest.raises(ValueError):
            loads_iterative(bad)


def test_a_plan_deeper_than_any_recursion_limit_is_parsed_and_answered_flat() -> None:
    raw = deep_explain(DEPTH)
    with pytest.raises(RecursionError):
        json.loads(raw)  # what the server used to do
    assert isinstance(loads(raw), list)
    result = parse_explain(raw)
    nodes = list(result.nodes())
    assert len(nodes) == 2 * DEPTH + 1 and max(n.depth for n in nodes) == DEPTH
    assert all(nodes[n.parent_index].depth == n.depth - 1 for n in nodes[1:])
    insights = analyze_plan(result)
    reply = convert.analysis(Analysis(result, insights, "f"), cap=64 * 1024 * 1024)
    assert not reply.truncated and len(reply.nodes) == reply.node_count == len(nodes)
    decoded = analyzer_pb2.AnalyzeQueryResponse.FromString(reply.SerializeToString())  # what the SDK does
    tree = rebuild(decoded)
    assert tree is not None and sum(1 for _ in tree.walk()) == len(nodes)
    assert max(depth for _, depth in tree.walk()) == DEPTH


def test_an_answer_over_the_cap_drops_the_raw_json_then_keeps_a_prefix_of_the_nodes() -> None:
    result = parse_explain(deep_explain(300))
    full = convert.analysis(Analysis(result, [], "f"), cap=64 * 1024 * 1024)
    no_raw = convert.analysis(Analysis(result, [], "f"), cap=full.ByteSize() - 1)
    assert no_raw.truncated and not no_raw.raw_json and len(no_raw.nodes) == no_raw.node_count == 601
    cap = 20_000
    cut = convert.analysis(Analysis(result, [], "f"), cap=cap)
    assert cut.truncated and cut.ByteSize() <= cap and 0 < len(cut.nodes) < cut.node_count == 601
    assert all(0 <= n.parent < i for i, n in enumerate(cut.nodes) if i)  # every kept node's parent is kept
    tree = rebuild(cut)
    assert tree is not None and sum(1 for _ in tree.walk()) == len(cut.nodes)


def test_the_cli_draws_the_deepest_plan_with_bounded_lines() -> None:
    reply = convert.analysis(Analysis(parse_explain(deep_explain(DEPTH)), [], "f"), cap=64 * 1024 * 1024)
    tree = rebuild(analyzer_pb2.AnalyzeQueryResponse.FromString(reply.SerializeToString()))
    assert tree is not None
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(plan_tree(tree, analyzed=True))
    text = console.export_text()
    lines = text.splitlines()
    assert len([line for line in lines if "Nested Loop" in line]) == DEPTH
    assert f"level {DEPTH}:" in text
    assert max(len(line) for line in lines) <= 200 and MAX_DRAWN_DEPTH < DEPTH


def test_a_reply_with_a_missing_parent_leaves_that_branch_out() -> None:
    nodes = [
        analyzer_pb2.PlanNode(node_type="Limit", parent=-1),
        analyzer_pb2.PlanNode(node_type="Sort", parent=0),
        analyzer_pb2.PlanNode(node_type="Orphan", parent=7),
        analyzer_pb2.PlanNode(node_type="Below", parent=2),
    ]
    tree = rebuild(analyzer_pb2.AnalyzeQueryResponse(nodes=nodes))
    assert tree is not None and [t.node.node_type for t, _ in tree.walk()] == ["Limit", "Sort"]
    assert rebuild(analyzer_pb2.AnalyzeQueryResponse()) is None
