"""Internal results -> protobuf messages (one place, so the wire shape is easy to review).

Every answer stays below a byte cap under the server's max message size (`answer_cap`): an answer
gRPC refused to send would reach the caller as RESOURCE_EXHAUSTED while the handler had returned OK.
What does not fit is left out from the end, and the answer's `truncated` flag says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from rentscout.analyzer.v1 import analyzer_pb2
from rentscout.analyzer_service.explain import Analysis
from rentscout.analyzer_service.index_advisor import Advice
from rentscout.analyzer_service.insights import Insight
from rentscout.analyzer_service.plan import Buffers, Node
from rentscout.analyzer_service.slow_queries import SlowQuery
from rentscout.analyzer_service.table_stats import TableStats
from rentscout.common.v1 import common_pb2
from rentscout.runtime.replicas import PRIMARY
from rentscout.wire.enums import BLOAT_METHOD, INDEX_ISSUE_KIND, INSIGHT_KIND, RECOMMENDATION_ACTION, SEVERITY, enum_value


def severity(name: str) -> common_pb2.Severity:
    return enum_value(SEVERITY, f"SEVERITY_{name}")


def buffers(b: Buffers) -> analyzer_pb2.BufferStats:
    return analyzer_pb2.BufferStats(**vars(b))


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def plan_node(node: Node) -> analyzer_pb2.PlanNode:
    return analyzer_pb2.PlanNode(
        node_type=node.node_type,
        relation_name=node.relation_name,
        index_name=node.index_name,
        join_type=node.join_type,
        startup_cost=node.startup_cost,
        total_cost=node.total_cost,
        plan_rows=node.plan_rows,
        actual_rows=node.actual_rows,
        actual_loops=node.actual_loops,
        inclusive_time_ms=node.inclusive_time_ms,
        exclusive_time_ms=node.exclusive_time_ms,
        percent_of_total=node.percent_of_total,
        filter=node.filter,
        index_cond=node.index_cond,
        rows_removed_by_filter=node.rows_removed_by_filter,
        workers_planned=node.workers_planned,
        workers_launched=node.workers_launched,
        sort_method=node.sort_method,
        sort_space_type=node.sort_space_type,
        sort_space_used_kb=node.sort_space_used_kb,
        exact_heap_blocks=node.exact_heap_blocks,
        lossy_heap_blocks=node.lossy_heap_blocks,
        buffers=buffers(node.buffers),
        row_estimate_factor=node.row_estimate_factor,
        parent_relationship=node.parent_relationship,
        rows_removed_by_filter_total=node.total_removed_by_filter,
        filter_totals_exact=node.filter_totals is not None,
        parent=node.parent_index,
        depth=node.depth,
    )


def insight(i: Insight) -> analyzer_pb2.Insight:
    return analyzer_pb2.Insight(
        kind=enum_value(INSIGHT_KIND, f"INSIGHT_KIND_{i.kind}"),
        severity=severity(i.severity),
        message=i.message,
        node=i.node,
        evidence=i.evidence,
    )


def answer_cap(max_send_message_bytes: int) -> int:
    """The largest answer the analyzer sends: a tenth below the server's max message size."""
    return max_send_message_bytes * 9 // 10


def _varint_size(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def _entry_size(
    message: analyzer_pb2.PlanNode
    | analyzer_pb2.SlowQuery
    | analyzer_pb2.Insight
    | analyzer_pb2.IndexSuggestion
    | analyzer_pb2.IndexIssue
    | str,
) -> int:
    """Bytes one element of a repeated field (tag < 16) takes in its parent."""
    n = len(message.encode()) if isinstance(message, str) else message.ByteSize()
    return 1 + _varint_size(n) + n


def fitting(
    items: Sequence[
        analyzer_pb2.PlanNode
        | analyzer_pb2.SlowQuery
        | analyzer_pb2.Insight
        | analyzer_pb2.IndexSuggestion
        | analyzer_pb2.IndexIssue
        | str
    ],
    budget: int,
) -> int:
    """How many of `items`, from the first, fit in `budget` bytes."""
    used = 0
    for count, item in enumerate(items):
        used += _entry_size(item)
        if used > budget:
            return count
    return len(items)


def analysis(a: Analysis, cap: int) -> analyzer_pb2.AnalyzeQueryResponse:
    r = a.result
    nodes = [plan_node(n) for n in r.nodes()]
    reply = analyzer_pb2.AnalyzeQueryResponse(
        planning_time_ms=r.planning_time_ms,
        execution_time_ms=r.execution_time_ms,
        total_cost=r.root.total_cost,
        estimated_rows=r.root.plan_rows,
        actual_rows=r.root.total_rows if r.analyzed else 0.0,
        buffers=buffers(r.buffers),
        planning_buffers=buffers(r.planning_buffers),
        plan=nodes[0],
        raw_json=r.raw_json,
        insights=[insight(i) for i in a.insights],
        fingerprint=a.fingerprint,
        node=a.node,
        node_count=len(nodes),
    )
    reply.nodes.extend(nodes)
    if reply.ByteSize() <= cap:
        return reply
    # too large: first without PostgreSQL's JSON, then with the first nodes only (a prefix of a depth-first
    # order keeps every node's parent), then with the first insights only
    reply.truncated = True
    reply.raw_json = ""
    if reply.ByteSize() <= cap:
        return reply
    del reply.nodes[:]
    reply.nodes.extend(nodes[: fitting(nodes, cap - reply.ByteSize())])
    if reply.ByteSize() > cap:
        kept = list(reply.insights)
        del reply.insights[:]
        reply.insights.extend(kept[: fitting(kept, cap - reply.ByteSize())])
    return reply


def slow_queries(version: str, rows: list[SlowQuery], node: str, cap: int) -> analyzer_pb2.ListSlowQueriesResponse:
    queries = [
        analyzer_pb2.SlowQuery(
            query_id=q.query_id,
            query=q.shown.text,
            withheld=q.shown.withheld,
            calls=q.calls,
            total_time_ms=q.total_time_ms,
            mean_time_ms=q.mean_time_ms,
            max_time_ms=q.max_time_ms,
            rows=q.rows,
            cache_hit_ratio=q.cache_hit_ratio,
            temp_blks_read=q.temp_blks_read,
            temp_blks_written=q.temp_blks_written,
            stddev_time_ms=q.stddev_time_ms,
        )
        for q in rows
    ]
    reply = analyzer_pb2.ListSlowQueriesResponse(extension_version=version, node=node)
    kept = fitting(queries, cap - reply.ByteSize())
    reply.queries.extend(queries[:kept])
    reply.truncated = kept < len(queries)
    return reply


def advice(a: Advice, cap: int) -> analyzer_pb2.SuggestIndexesResponse:
    """Each suggestion's statements, then suggestions, then issues are cut (from the end) to fit `cap`: a
    suggestion keeps at least its first statement while any other suggestion has more."""
    suggestions = [
        analyzer_pb2.IndexSuggestion(
            table=s.candidate.relation.display,
            columns=list(s.candidate.columns),
            create_statement=s.candidate.create_statement(),
            reason=s.reason,
            estimated_size_bytes=s.size_bytes,
            hypopg_validated=s.validated,
            cost_before=s.cost_before,
            cost_after=s.cost_after,
            queries=s.queries,
        )
        for s in a.suggestions
    ]
    issues = [
        analyzer_pb2.IndexIssue(
            kind=enum_value(INDEX_ISSUE_KIND, f"INDEX_ISSUE_KIND_{i.kind}"),
            index_name=i.index.display,
            table=i.index.table,
            definition=i.index.definition,
            size_bytes=i.index.size_bytes,
            detail=i.detail,
        )
        for i in a.issues
    ]
    reply = analyzer_pb2.SuggestIndexesResponse(
        hypopg_available=a.hypopg_available, method=a.method, node=PRIMARY, suggestions=suggestions, index_issues=issues
    )
    if reply.ByteSize() <= cap:
        return reply
    reply.truncated = True
    for s in reply.suggestions:  # first: one statement per suggestion
        del s.queries[1:]
    if reply.ByteSize() > cap:
        kept_issues = list(reply.index_issues)
        del reply.index_issues[:]
        kept = list(reply.suggestions)
        del reply.suggestions[:]
        reply.suggestions.extend(kept[: fitting(kept, cap - reply.ByteSize())])
        reply.index_issues.extend(kept_issues[: fitting(kept_issues, cap - reply.ByteSize())])
    return reply


def table_stats(s: TableStats) -> analyzer_pb2.GetTableStatsResponse:
    return analyzer_pb2.GetTableStatsResponse(
        table=s.table,
        live_rows=s.live_rows,
        dead_rows=s.dead_rows,
        dead_ratio=s.dead_ratio,
        table_bytes=s.table_bytes,
        index_bytes=s.index_bytes,
        toast_bytes=s.toast_bytes,
        total_bytes=s.total_bytes,
        bloat_bytes=s.bloat_bytes,
        bloat_ratio=s.bloat_ratio,
        bloat_method=enum_value(BLOAT_METHOD, f"BLOAT_METHOD_{s.bloat_method}"),
        seq_scans=s.seq_scans,
        idx_scans=s.idx_scans,
        last_vacuum=timestamp(s.last_vacuum),
        last_autovacuum=timestamp(s.last_autovacuum),
        last_analyze=timestamp(s.last_analyze),
        last_autoanalyze=timestamp(s.last_autoanalyze),
        modifications_since_analyze=s.modifications_since_analyze,
        recommendations=[
            analyzer_pb2.Recommendation(
                action=enum_value(RECOMMENDATION_ACTION, f"RECOMMENDATION_ACTION_{r.action}"),
                severity=severity(r.severity),
                reason=r.reason,
                statement=r.statement,
            )
            for r in s.recommendations
        ],
    )
