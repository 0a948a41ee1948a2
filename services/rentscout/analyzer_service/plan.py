"""EXPLAIN (FORMAT JSON) output as a typed tree, with times a human can compare.

EXPLAIN reports per-node "Actual Total Time" as the average of one loop, including the node's
children, summed over every process of a parallel plan. So, per node:
  inclusive = total time x loops, divided by the processes running it under a Gather
              (workers launched + the leader), so it reads as wall-clock time;
  exclusive = inclusive - the inclusive time of its children (never below zero);
  percent   = exclusive / the whole execution time.
Row estimates are compared per loop (EXPLAIN reports both per loop).

A plan can nest thousands of levels (a join of hundreds of relations is a chain of joins), so nothing
here recurses: the JSON is decoded by `jsontext`, the tree built and walked with explicit stacks, and
`ExplainResult.node_list` holds every node in depth-first order (a parent before its children).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rentscout.analyzer_service import jsontext

BUFFER_KEYS = {
    "shared_hit": "Shared Hit Blocks",
    "shared_read": "Shared Read Blocks",
    "shared_dirtied": "Shared Dirtied Blocks",
    "shared_written": "Shared Written Blocks",
    "local_hit": "Local Hit Blocks",
    "local_read": "Local Read Blocks",
    "local_dirtied": "Local Dirtied Blocks",
    "local_written": "Local Written Blocks",
    "temp_read": "Temp Read Blocks",
    "temp_written": "Temp Written Blocks",
}
# Nodes below which a parent may stop pulling rows early, so an over-estimate is not a misestimate.
_EARLY_STOP_JOINS = {"Semi", "Anti"}


@dataclass
class Buffers:
    shared_hit: int = 0
    shared_read: int = 0
    shared_dirtied: int = 0
    shared_written: int = 0
    local_hit: int = 0
    local_read: int = 0
    local_dirtied: int = 0
    local_written: int = 0
    temp_read: int = 0
    temp_written: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Buffers:
        data = data or {}
        return cls(**{attr: int(data.get(key, 0) or 0) for attr, key in BUFFER_KEYS.items()})

    def any(self) -> bool:
        return any(vars(self).values())


@dataclass
class Node:
    node_type: str
    raw: dict[str, Any]
    relation_name: str = ""
    alias: str = ""
    index_name: str = ""
    join_type: str = ""
    parent_relationship: str = ""
    subplan_name: str = ""
    startup_cost: float = 0.0
    total_cost: float = 0.0
    plan_rows: float = 0.0
    plan_width: int = 0
    actual_rows: float = 0.0
    actual_loops: int = 0
    actual_total_time: float = 0.0
    analyzed: bool = False
    filter: str = ""
    index_cond: str = ""
    rows_removed_by_filter: int = 0  # per loop, as EXPLAIN reports it (rounded)
    filter_totals: tuple[int, int] | None = None  # (removed, kept) over all loops, when counted exactly
    rows_removed_by_recheck: int = 0
    workers_planned: int = 0
    workers_launched: int = 0
    sort_method: str = ""
    sort_space_type: str = ""
    sort_space_used_kb: int = 0
    hash_batches: int = 0
    original_hash_batches: int = 0
    hashagg_batches: int = 0
    disk_usage_kb: int = 0
    exact_heap_blocks: int = 0
    lossy_heap_blocks: int = 0
    buffers: Buffers = field(default_factory=Buffers)
    children: list[Node] = field(default_factory=list)
    parent_index: int = -1  # index of the parent in ExplainResult.node_list (-1: the root)
    depth: int = 0
    # derived
    processes: int = 1  # processes sharing this node's loops (parallel plans)
    early_stop: bool = False  # an ancestor may stop reading this node before it is exhausted
    inclusive_time_ms: float = 0.0
    exclusive_time_ms: float = 0.0
    percent_of_total: float = 0.0
    row_estimate_factor: float = 0.0

    @property
    def label(self) -> str:
        """'Seq Scan on properties', 'Index Scan using idx on t', 'Sort' ..."""
        text = self.node_type
        if self.index_name:
            text += f" using {self.index_name}"
        if self.relation_name:
            text += f" on {self.relation_name}"
            if self.alias and self.alias != self.relation_name:
                text += f" {self.alias}"
        if self.subplan_name:
            text += f" ({self.subplan_name})"
        return text

    @property
    def total_rows(self) -> float:
        """Rows produced over all loops: exact when counted (`filter_counts`), else per loop x loops."""
        return self.filter_totals[1] if self.filter_totals else self.actual_rows * max(self.actual_loops, 1)

    @property
    def total_removed_by_filter(self) -> int:
        """Rows the filter discarded over all loops: exact when counted, else per loop x loops."""
        return self.filter_totals[0] if self.filter_totals else self.rows_removed_by_filter * max(self.actual_loops, 1)

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first (a parent before its children), without recursion."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass
class ExplainResult:
    root: Node
    planning_time_ms: float = 0.0
    execution_time_ms: float = 0.0
    planning_buffers: Buffers = field(default_factory=Buffers)
    analyzed: bool = False
    raw_json: str = ""
    node_list: list[Node] = field(default_factory=list)  # depth first; filled by parse_explain

    @property
    def buffers(self) -> Buffers:
        """Execution buffers: the root node's, which include every node below it."""
        return self.root.buffers

    def nodes(self) -> Iterator[Node]:
        return iter(self.node_list) if self.node_list else self.root.walk()


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    return int(value) if isinstance(value, (int, float)) else 0


def _float(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _node(data: dict[str, Any]) -> Node:
    return Node(
        node_type=_str(data, "Node Type") or "?",
        raw=data,
        relation_name=_str(data, "Relation Name") or _str(data, "CTE Name") or _str(data, "Function Name"),
        alias=_str(data, "Alias"),
        index_name=_str(data, "Index Name"),
        join_type=_str(data, "Join Type"),
        parent_relationship=_str(data, "Parent Relationship"),
        subplan_name=_str(data, "Subplan Name"),
        startup_cost=_float(data, "Startup Cost"),
        total_cost=_float(data, "Total Cost"),
        plan_rows=_float(data, "Plan Rows"),
        plan_width=_int(data, "Plan Width"),
        actual_rows=_float(data, "Actual Rows"),
        actual_loops=_int(data, "Actual Loops"),
        actual_total_time=_float(data, "Actual Total Time"),
        analyzed="Actual Loops" in data,
        filter=_str(data, "Filter") or _str(data, "Join Filter"),
        index_cond=_str(data, "Index Cond") or _str(data, "Recheck Cond"),
        rows_removed_by_filter=_int(data, "Rows Removed by Filter") + _int(data, "Rows Removed by Join Filter"),
        rows_removed_by_recheck=_int(data, "Rows Removed by Index Recheck"),
        workers_planned=_int(data, "Workers Planned"),
        workers_launched=_int(data, "Workers Launched"),
        sort_method=_str(data, "Sort Method"),
        sort_space_type=_str(data, "Sort Space Type"),
        sort_space_used_kb=_int(data, "Sort Space Used"),
        hash_batches=_int(data, "Hash Batches"),
        original_hash_batches=_int(data, "Original Hash Batches"),
        hashagg_batches=_int(data, "HashAgg Batches"),
        disk_usage_kb=_int(data, "Disk Usage"),
        exact_heap_blocks=_int(data, "Exact Heap Blocks"),
        lossy_heap_blocks=_int(data, "Lossy Heap Blocks"),
        buffers=Buffers.from_json(data),
    )


def parse_tree(data: dict[str, Any]) -> list[Node]:
    """The plan under `data` as nodes in depth-first order (index 0 the root), children linked, without
    recursion."""
    nodes: list[Node] = []
    stack: list[tuple[dict[str, Any], int, int]] = [(data, -1, 0)]  # (json, parent index, depth)
    while stack:
        item, parent, depth = stack.pop()
        node = _node(item)
        node.parent_index, node.depth = parent, depth
        if parent >= 0:
            nodes[parent].children.append(node)
        index = len(nodes)
        nodes.append(node)
        children = [child for child in item.get("Plans") or () if isinstance(child, dict)]
        stack.extend((child, index, depth + 1) for child in reversed(children))
    return nodes


def parse_node(data: dict[str, Any]) -> Node:
    return parse_tree(data)[0]


def parse_explain(raw: str | list[Any] | dict[str, Any]) -> ExplainResult:
    """Parse EXPLAIN (FORMAT JSON) output (the text, or the already decoded list) and derive times."""
    raw_json = raw if isinstance(raw, str) else json.dumps(raw)
    doc = jsontext.loads(raw) if isinstance(raw, str) else raw
    if isinstance(doc, list):
        doc = doc[0] if doc else {}
    if not isinstance(doc, dict) or not isinstance(doc.get("Plan"), dict):
        raise ValueError("not EXPLAIN (FORMAT JSON) output: no Plan")
    node_list = parse_tree(doc["Plan"])
    root = node_list[0]
    result = ExplainResult(
        root=root,
        planning_time_ms=_float(doc, "Planning Time"),
        execution_time_ms=_float(doc, "Execution Time"),
        planning_buffers=Buffers.from_json(doc.get("Planning")),
        analyzed=root.analyzed,
        raw_json=raw_json,
        node_list=node_list,
    )
    derive(result)
    return result


def derive(result: ExplainResult) -> None:
    """Fill the derived fields: parallel process counts, early-stop flags, times and estimate factors."""
    _mark(result.root, processes=1, early_stop=False)
    if not result.analyzed:
        return
    for node in result.nodes():
        node.inclusive_time_ms = node.actual_total_time * node.actual_loops / max(node.processes, 1)
    for node in result.nodes():
        children = sum(child.inclusive_time_ms for child in node.children)
        node.exclusive_time_ms = max(0.0, node.inclusive_time_ms - children)
    total = result.execution_time_ms or result.root.inclusive_time_ms
    for node in result.nodes():
        node.percent_of_total = min(100.0, 100.0 * node.exclusive_time_ms / total) if total > 0 else 0.0
        node.row_estimate_factor = estimate_factor(node)


def _mark(root: Node, processes: int, early_stop: bool) -> None:
    """Set `processes` and `early_stop` on `root` and every node below it (top down, without recursion)."""
    root.processes, root.early_stop = processes, early_stop
    for node in root.walk():  # a parent is visited (and marked) before its children
        below = node.processes
        if node.node_type in ("Gather", "Gather Merge"):
            launched = node.workers_launched if node.analyzed else node.workers_planned
            below = launched + 1  # the leader participates too (parallel_leader_participation)
        stops = node.early_stop or node.node_type in ("Limit", "Merge Join") or node.join_type in _EARLY_STOP_JOINS
        for child in node.children:
            child_stop = stops or child.parent_relationship == "SubPlan"
            if node.node_type == "Nested Loop" and child.parent_relationship == "Inner":
                child_stop = child_stop or node.join_type in _EARLY_STOP_JOINS
            child.processes, child.early_stop = below, child_stop


def estimate_factor(node: Node) -> float:
    """max(estimated/actual, actual/estimated) per loop, >= 1; 0 when the node never ran."""
    if not node.analyzed or node.actual_loops == 0:
        return 0.0
    estimated = max(node.plan_rows, 1.0)
    actual = max(node.actual_rows, 1.0)
    return max(estimated / actual, actual / estimated)
