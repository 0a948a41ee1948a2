"""Exact filter counts for parallel sequential scans.

PostgreSQL 15 prints a node's counters per loop, rounded to a whole row (`nfiltered / nloops`,
"%.0f"), and a parallel scan has a loop per process: per loop x loops is then off by up to half
the number of processes, and EXPLAIN has no option that prints the total. A parallel sequential
scan that read its whole table, though, filtered exactly the rows its table holds in the
statement's snapshot, and the analysis transaction is REPEATABLE READ: one count over the table
with the same filter, in the same transaction and as the same role, gives the totals.

Counted only where that holds: a "Parallel Aware" Seq Scan of a table the catalog check resolved
(the only table of that name the statement reads, as EXPLAIN prints no schema, and not under row
security, which hides from a count rows the scan counted as removed), under nodes that read all of
their input when their own output is read to the end (no Limit, join, subplan, window run
condition or set operation that may stop early), with a filter free of subplan references. The
counts must also agree with what EXPLAIN printed (each total divided by the loops rounds to the
printed figure), which turns away a scan that stopped early after all. When they do not agree, or
the count fails or would not fit in the deadline, the per-loop figures stand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import asyncpg

from rentscout.analyzer_service import session
from rentscout.analyzer_service.insights import TableHealth
from rentscout.analyzer_service.plan import ExplainResult, Node
from rentscout.analyzer_service.safety import Rejected, parse_select
from rentscout.analyzer_service.sqltext import TAG, qualified, quote_ident
from rentscout.runtime import deadline

_log = logging.getLogger(__name__)

# Nodes that read all of their input when their own output is read to the end (EXPLAIN ANALYZE reads
# the root's to the end).
DRAINING = frozenset({"Aggregate", "Gather", "Gather Merge", "Sort", "Incremental Sort", "Unique", "Group", "Append"})
# Filters naming a value another node computes: a count over the table alone cannot evaluate them.
_FOREIGN_VALUES = ("SubPlan", "InitPlan", "$")


@dataclass(frozen=True)
class Count:
    node: Node
    sql: str


# How PostgreSQL's FORMAT JSON prints a parallel-aware node: a plan without it has nothing to count.
PARALLEL_AWARE = '"Parallel Aware": true'


def may_count(raw: str) -> bool:
    """Whether the plan's JSON text may hold a node `countable` picks (never False when it does), so that
    a plan without one is parsed after its connection is released."""
    return PARALLEL_AWARE in raw


def countable(result: ExplainResult, tables: Mapping[str, TableHealth]) -> list[Count]:
    """The parallel scans of `result` whose totals a count can give exactly, each with its count."""
    if not result.analyzed:
        return []
    return [
        Count(node, count_sql(tables[node.relation_name], node))
        for node in _drained_scans(result.root, parent_drains=True)
        if node.relation_name in tables
    ]


def _drained_scans(root: Node, parent_drains: bool) -> Iterator[Node]:
    """Depth first with an explicit stack (plans can nest thousands of levels)."""
    stack = [(root, parent_drains)]
    while stack:
        node, drained = stack.pop()
        if (
            drained
            and node.node_type == "Seq Scan"
            and node.raw.get("Parallel Aware") is True
            and node.actual_loops > 1
            and node.filter
            and not any(s in node.filter for s in _FOREIGN_VALUES)
        ):
            yield node
        drains = drained and node.node_type in DRAINING
        # an InitPlan or SubPlan may be run for fewer rows than its table holds
        stack.extend((child, drains and not child.subplan_name) for child in reversed(node.children))


def count_sql(table: TableHealth, node: Node) -> str:
    """The filter as EXPLAIN printed it (PostgreSQL's own deparse: unqualified columns, names qualified
    where the search_path would not find them), over the same table under the same alias."""
    alias = quote_ident(node.alias or node.relation_name)
    return (
        f"SELECT {TAG} pg_catalog.count(*) FILTER (WHERE ({node.filter}) IS NOT TRUE) AS removed, "
        f"pg_catalog.count(*) FILTER (WHERE ({node.filter})) AS kept "
        f"FROM ONLY {qualified(table.schema, table.name)} AS {alias}"
    )


def agrees(node: Node, removed: int, kept: int) -> bool:
    """Whether totals fit what EXPLAIN printed per loop (C's "%.0f" and Python's round() both round half
    to even, on the same double)."""
    loops = node.actual_loops
    return round(removed / loops) == node.rows_removed_by_filter and round(kept / loops) == node.actual_rows


async def fill(conn: asyncpg.Connection, result: ExplainResult, tables: Mapping[str, TableHealth]) -> None:
    """Set `filter_totals` on every countable node, inside the statement's transaction; call it last (a
    count that fails leaves the transaction aborted)."""
    for count in countable(result, tables):
        node = count.node
        # a count costs about what the scan did: skipped when the deadline leaves less than twice that
        if deadline.remaining() < 2 * node.inclusive_time_ms / 1000 + 0.1:
            return
        try:
            parse_select(count.sql)  # the static rules hold for what PostgreSQL printed, too
            # the filter quotes the caller's constants: the unnamed statement, gone after the request
            row = await (await session.prepare(conn, count.sql)).fetchrow(timeout=deadline.remaining())
        except (Rejected, asyncpg.PostgresError, TimeoutError) as exc:
            _log.debug("filter count skipped", extra={"fields": {"error.type": type(exc).__name__}})
            return
        assert row is not None  # an aggregate without GROUP BY returns one row
        removed, kept = int(row["removed"]), int(row["kept"])
        if agrees(node, removed, kept):
            node.filter_totals = (removed, kept)
        else:
            _log.debug(
                "filter count disagrees with EXPLAIN; per-loop figures kept",
                extra={"fields": {"analyzer.table": node.relation_name}},
            )
