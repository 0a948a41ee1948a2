"""Rules that turn a parsed plan into findings an operator can act on, each with its evidence.

Thresholds follow what the plan visualisers (pgMustard, PEV2, pganalyze) treat as noteworthy, with
floors so that tiny queries and tables do not raise alarms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rentscout.analyzer_service.plan import ExplainResult, Node
from rentscout.analyzer_service.safety import OffsetRef

INFO, WARNING, CRITICAL = "INFO", "WARNING", "CRITICAL"

MISESTIMATE_LEVELS = ((1000.0, CRITICAL), (100.0, WARNING), (10.0, INFO))
MISESTIMATE_MIN_ROWS = 100  # the larger side (over all loops) must be at least this many rows
MAX_MISESTIMATES = 5
SEQ_SCAN_MIN_REMOVED = 1000
SEQ_SCAN_REMOVED_FRACTION = 0.9
DOMINANT_PERCENT = 50.0
DOMINANT_MIN_EXECUTION_MS = 5.0
LARGE_OFFSET = 1000
HUGE_OFFSET = 100_000
STALE_MIN_MODIFICATIONS = 1000
STALE_FRACTION = 0.2
NEVER_ANALYZED_MIN_ROWS = 1000
BLOCK_BYTES = 8192
NESTED_LOOP_MIN_OUTER_ROWS = 100  # plan only: fewer outer rows rescan a small inner side cheaply
SORT_TUPLE_OVERHEAD_BYTES = 24  # per row in a sort's memory beside its data (tuple header and slot)


@dataclass
class Insight:
    kind: str  # InsightKind name without the prefix, e.g. "ROW_MISESTIMATE"
    severity: str  # INFO, WARNING, CRITICAL
    message: str
    node: str = ""
    evidence: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableHealth:
    """The planner-relevant statistics state of one table."""

    schema: str
    name: str
    reltuples: float  # -1 when never vacuumed or analyzed (PostgreSQL 14+)
    relpages: int
    n_live_tup: int
    n_mod_since_analyze: int
    last_analyze: datetime | None = None
    last_autoanalyze: datetime | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def last_analyzed(self) -> datetime | None:
        stamps = [s for s in (self.last_analyze, self.last_autoanalyze) if s is not None]
        return max(stamps) if stamps else None


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def staleness(t: TableHealth, min_modifications: int = STALE_MIN_MODIFICATIONS) -> tuple[str, str] | None:
    """(severity, reason) when the planner's statistics of `t` are likely out of date."""
    known = max(t.reltuples, 0.0)
    if t.last_analyzed is None:
        rows = max(t.n_live_tup, t.n_mod_since_analyze, int(known))
        if rows >= max(NEVER_ANALYZED_MIN_ROWS, min_modifications):
            return WARNING, f"{t.qualified} has never been analyzed and holds about {rows} rows"
        return None
    mods = t.n_mod_since_analyze
    if mods < max(min_modifications, 1) or mods < STALE_FRACTION * known:
        return None
    severity = CRITICAL if mods >= max(known, 1.0) else WARNING
    share = f"{100.0 * mods / known:.0f}% of" if known >= 1 else "more rows than"
    return severity, (
        f"{mods} rows of {t.qualified} changed since its last analyze ({share} the {known:.0f} rows the planner assumes)"
    )


def analyze_plan(
    result: ExplainResult,
    *,
    offsets: Sequence[OffsetRef] = (),
    params: Sequence[object] = (),
    tables: Mapping[str, TableHealth] | None = None,
    work_mem: str = "",
) -> list[Insight]:
    """Every insight for one plan, most severe first."""
    found: list[Insight] = []
    if result.analyzed:
        found += misestimates(result.nodes())
        found += seq_scan_filters(result.nodes())
        found += disk_spills(result.nodes(), work_mem)
        found += lossy_bitmaps(result.nodes(), work_mem)
        found += dominant_node(result)
        found += workers_not_launched(result.nodes())
    else:  # EXPLAIN without ANALYZE: what the estimates alone show
        found += estimated_seq_scan_filters(result.nodes(), tables or {})
        found += nested_loops_rescanning(result.nodes())
        found += estimated_sorts_over_work_mem(result.nodes(), work_mem)
    found += large_offsets(result, offsets, params)
    found += stale_statistics(result, tables or {})
    order = {CRITICAL: 0, WARNING: 1, INFO: 2}
    return sorted(found, key=lambda i: order.get(i.severity, 3))


def misestimates(nodes: Iterable[Node]) -> list[Insight]:
    out: list[tuple[float, Insight]] = []
    for node in nodes:
        factor = node.row_estimate_factor
        if factor < MISESTIMATE_LEVELS[-1][0]:
            continue
        under = node.actual_rows > node.plan_rows
        if not under and node.early_stop:
            continue  # a Limit / semi-join / EXISTS stopped reading early: expected, not a misestimate
        loops = max(node.actual_loops, 1)
        if max(node.plan_rows, node.actual_rows) * loops < MISESTIMATE_MIN_ROWS:
            continue
        severity = next(level for threshold, level in MISESTIMATE_LEVELS if factor >= threshold)
        direction = "under" if under else "over"
        message = (
            f"{node.label}: the planner expected {_fmt(node.plan_rows)} rows but got {_fmt(node.actual_rows)}"
            f"{' per loop' if loops > 1 else ''} ({direction}-estimated {factor:.0f}x); stale or missing "
            f"statistics, correlated columns (CREATE STATISTICS) or a too-small statistics target"
        )
        out.append(
            (
                factor,
                Insight(
                    "ROW_MISESTIMATE",
                    severity,
                    message,
                    node.label,
                    {
                        "estimated_rows": _fmt(node.plan_rows),
                        "actual_rows": _fmt(node.actual_rows),
                        "loops": str(loops),
                        "factor": f"{factor:.1f}",
                        "direction": direction,
                    },
                ),
            )
        )
    out.sort(key=lambda pair: -pair[0])
    return [insight for _, insight in out[:MAX_MISESTIMATES]]


def seq_scan_filters(nodes: Iterable[Node]) -> list[Insight]:
    out = []
    for node in nodes:
        if "Seq Scan" not in node.node_type or node.actual_loops == 0:
            continue
        removed, kept = node.total_removed_by_filter, node.total_rows
        if removed < SEQ_SCAN_MIN_REMOVED:
            continue
        fraction = removed / (removed + kept)
        if fraction < SEQ_SCAN_REMOVED_FRACTION:
            continue
        severity = CRITICAL if fraction >= 0.99 and removed >= 100_000 else WARNING
        out.append(
            Insight(
                "SEQ_SCAN_FILTER",
                severity,
                f"{node.label} read {_fmt(removed + kept)} rows and its filter discarded {100 * fraction:.1f}% "
                f"of them; an index on the filtered columns would read only the {_fmt(kept)} it keeps",
                node.label,
                {
                    "rows_removed_by_filter": _fmt(removed),
                    "rows_returned": _fmt(kept),
                    "removed_percent": f"{100 * fraction:.2f}",
                    "filter": node.filter,
                    "relation": node.relation_name,
                },
            )
        )
    return out


def estimated_seq_scan_filters(nodes: Iterable[Node], tables: Mapping[str, TableHealth]) -> list[Insight]:
    """Plan only: a sequential scan whose filter the planner expects to keep a small share of the table."""
    out = []
    for node in nodes:
        health = tables.get(node.relation_name)
        if "Seq Scan" not in node.node_type or not node.filter or health is None:
            continue
        scanned = max(health.reltuples, float(health.n_live_tup or 0))
        kept = node.plan_rows * node.processes  # a parallel scan's estimate is per process
        if scanned - kept < SEQ_SCAN_MIN_REMOVED or kept / scanned > 1 - SEQ_SCAN_REMOVED_FRACTION:
            continue
        fraction = 1 - kept / scanned
        out.append(
            Insight(
                "SEQ_SCAN_FILTER",
                WARNING,
                f"{node.label} is estimated to read about {_fmt(scanned)} rows and keep {_fmt(kept)} "
                f"({100 * fraction:.1f}% discarded by its filter); an index on the filtered columns would "
                f"read only those",
                node.label,
                {
                    "estimated": "true",
                    "estimated_rows_scanned": _fmt(scanned),
                    "estimated_rows_returned": _fmt(kept),
                    "removed_percent": f"{100 * fraction:.2f}",
                    "filter": node.filter,
                    "relation": node.relation_name,
                },
            )
        )
    return out


def _scanned_relation(node: Node) -> Node | None:
    """The Seq Scan under a join's inner side (directly or through Materialize)."""
    while node.node_type == "Materialize" and node.children:
        node = node.children[0]
    return node if "Seq Scan" in node.node_type else None


def nested_loops_rescanning(nodes: Iterable[Node]) -> list[Insight]:
    """Plan only: a nested loop that scans its inner table once per outer row, for want of an index."""
    out = []
    for node in nodes:
        if node.node_type != "Nested Loop" or len(node.children) != 2:
            continue
        outer, inner = node.children
        scan = _scanned_relation(inner)
        if scan is None or outer.plan_rows < NESTED_LOOP_MIN_OUTER_ROWS:
            continue
        out.append(
            Insight(
                "MISSING_JOIN_INDEX",
                WARNING,
                f"{node.label} is planned to scan {scan.relation_name or 'its inner side'} sequentially "
                f"for each of about {_fmt(outer.plan_rows)} outer rows; an index on the join columns of "
                f"{scan.relation_name or 'the inner table'} lets each loop look its rows up",
                node.label,
                {
                    "estimated": "true",
                    "estimated_outer_rows": _fmt(outer.plan_rows),
                    "inner": scan.label,
                    "join_filter": node.filter or scan.filter,
                },
            )
        )
    return out


def work_mem_kb(text: str) -> int | None:
    """'4MB' -> 4096 (SHOW work_mem); None when it cannot be read."""
    units = {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].strip().isdigit():
            return int(text[: -len(unit)]) * factor
    return None


def estimated_sorts_over_work_mem(nodes: Iterable[Node], work_mem: str) -> list[Insight]:
    """Plan only: a sort whose estimated input exceeds work_mem, so it will likely sort on disk."""
    limit_kb = work_mem_kb(work_mem)
    out = []
    for node in nodes:
        if node.node_type not in ("Sort", "Incremental Sort") or limit_kb is None:
            continue
        size_kb = node.plan_rows * node.processes * (node.plan_width + SORT_TUPLE_OVERHEAD_BYTES) / 1024
        if size_kb <= limit_kb:
            continue
        out.append(
            Insight(
                "DISK_SPILL",
                WARNING,
                f"{node.label} is estimated to sort about {_fmt(size_kb / 1024)} MB, more than work_mem "
                f"({work_mem}): it will likely sort on disk; raise work_mem for this query or sort fewer rows",
                node.label,
                {
                    "estimated": "true",
                    "estimated_sort_kb": f"{size_kb:.0f}",
                    "work_mem": work_mem,
                    "estimated_rows": _fmt(node.plan_rows * node.processes),
                },
            )
        )
    return out


def disk_spills(nodes: Iterable[Node], work_mem: str) -> list[Insight]:
    out = []
    for node in nodes:
        evidence: dict[str, str] = {}
        spill_kb = 0
        if node.sort_space_type == "Disk" or node.sort_method.startswith("external"):
            evidence = {"sort_method": node.sort_method, "sort_space_used_kb": str(node.sort_space_used_kb)}
            spill_kb = node.sort_space_used_kb
            what = f"sorted on disk ({node.sort_method}, {node.sort_space_used_kb} kB)"
        elif node.hash_batches > 1:
            evidence = {"hash_batches": str(node.hash_batches), "original_hash_batches": str(node.original_hash_batches)}
            what = f"split its hash table into {node.hash_batches} batches on disk"
        elif node.hashagg_batches > 1 or node.disk_usage_kb > 0:
            evidence = {"hashagg_batches": str(node.hashagg_batches), "disk_usage_kb": str(node.disk_usage_kb)}
            spill_kb = node.disk_usage_kb
            what = f"spilled its hash aggregate to disk ({node.disk_usage_kb} kB in {node.hashagg_batches} batches)"
        else:
            continue
        temp = node.buffers.temp_written
        if temp:
            evidence["temp_written_blocks"] = str(temp)
            spill_kb = max(spill_kb, temp * BLOCK_BYTES // 1024)
        if work_mem:
            evidence["work_mem"] = work_mem
        severity = CRITICAL if spill_kb >= 1024 * 1024 else WARNING
        out.append(
            Insight(
                "DISK_SPILL",
                severity,
                f"{node.label} {what}: it did not fit in work_mem{f' ({work_mem})' if work_mem else ''}; "
                f"raise work_mem for this query or reduce the rows reaching it",
                node.label,
                evidence,
            )
        )
    return out


def lossy_bitmaps(nodes: Iterable[Node], work_mem: str) -> list[Insight]:
    out = []
    for node in nodes:
        if node.lossy_heap_blocks <= 0:
            continue
        evidence = {
            "exact_heap_blocks": str(node.exact_heap_blocks),
            "lossy_heap_blocks": str(node.lossy_heap_blocks),
            "rows_removed_by_index_recheck": str(node.rows_removed_by_recheck * max(node.actual_loops, 1)),
        }
        if work_mem:
            evidence["work_mem"] = work_mem
        out.append(
            Insight(
                "LOSSY_BITMAP",
                WARNING,
                f"{node.label}: {node.lossy_heap_blocks} heap blocks were lossy, so every row on them was "
                f"rechecked; the bitmap did not fit in work_mem",
                node.label,
                evidence,
            )
        )
    return out


def dominant_node(result: ExplainResult) -> list[Insight]:
    total = result.execution_time_ms or result.root.inclusive_time_ms
    if total < DOMINANT_MIN_EXECUTION_MS:
        return []
    node = max(result.nodes(), key=lambda n: n.exclusive_time_ms)
    if node.percent_of_total < DOMINANT_PERCENT:
        return []
    severity = WARNING if node.percent_of_total >= 80 and node.exclusive_time_ms >= 100 else INFO
    return [
        Insight(
            "DOMINANT_NODE",
            severity,
            f"{node.label} takes {node.percent_of_total:.0f}% of the execution time "
            f"({node.exclusive_time_ms:.1f} of {total:.1f} ms): start there",
            node.label,
            {
                "exclusive_time_ms": f"{node.exclusive_time_ms:.3f}",
                "execution_time_ms": f"{total:.3f}",
                "percent_of_total": f"{node.percent_of_total:.1f}",
            },
        )
    ]


def _offset_value(ref: OffsetRef, params: Sequence[object]) -> int | None:
    if ref.value is not None:
        return ref.value
    if ref.param is not None and 0 < ref.param <= len(params):
        value = params[ref.param - 1]
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    return None


def large_offsets(result: ExplainResult, offsets: Sequence[OffsetRef], params: Sequence[object]) -> list[Insight]:
    values = [v for v in (_offset_value(ref, params) for ref in offsets) if v is not None and v >= LARGE_OFFSET]
    if not values:
        return []
    offset = max(values)
    evidence = {"offset": str(offset)}
    limit = next((n for n in result.nodes() if n.node_type == "Limit"), None)
    if limit is not None and limit.analyzed and limit.children:
        fetched = limit.children[0].total_rows
        evidence["rows_fetched"] = _fmt(fetched)
        evidence["rows_discarded"] = _fmt(max(0.0, fetched - limit.total_rows))
    severity = CRITICAL if offset >= HUGE_OFFSET else WARNING
    return [
        Insight(
            "LARGE_OFFSET",
            severity,
            f"OFFSET {offset} makes PostgreSQL produce and throw away {offset} rows on every call; "
            f"use keyset pagination (WHERE (sort_key, id) > ($last_key, $last_id) ... LIMIT n)",
            limit.label if limit is not None else "",
            evidence,
        )
    ]


def stale_statistics(result: ExplainResult, tables: Mapping[str, TableHealth]) -> list[Insight]:
    out = []
    scanned = {n.relation_name: n for n in result.nodes() if n.relation_name}
    for name, node in scanned.items():
        health = tables.get(name)
        if health is None or (verdict := staleness(health)) is None:
            continue
        severity, reason = verdict
        last = health.last_analyzed
        out.append(
            Insight(
                "STALE_STATISTICS",
                severity,
                f"{reason}; run ANALYZE {health.qualified}",
                node.label,
                {
                    "table": health.qualified,
                    "n_mod_since_analyze": str(health.n_mod_since_analyze),
                    "reltuples": _fmt(max(health.reltuples, 0.0)),
                    "n_live_tup": str(health.n_live_tup),
                    "last_analyze": last.isoformat() if last else "never",
                },
            )
        )
    return out


def workers_not_launched(nodes: Iterable[Node]) -> list[Insight]:
    out = []
    for node in nodes:
        if node.node_type not in ("Gather", "Gather Merge") or not node.analyzed:
            continue
        if node.workers_launched >= node.workers_planned:
            continue
        severity = WARNING if node.workers_launched == 0 else INFO
        out.append(
            Insight(
                "WORKERS_NOT_LAUNCHED",
                severity,
                f"{node.label} planned {node.workers_planned} parallel workers but launched "
                f"{node.workers_launched}: the pool (max_parallel_workers / max_worker_processes) was "
                f"exhausted, so the query ran with less parallelism than planned",
                node.label,
                {"workers_planned": str(node.workers_planned), "workers_launched": str(node.workers_launched)},
            )
        )
    return out
