import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from rentscout.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InsightKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSIGHT_KIND_UNSPECIFIED: _ClassVar[InsightKind]
    INSIGHT_KIND_ROW_MISESTIMATE: _ClassVar[InsightKind]
    INSIGHT_KIND_SEQ_SCAN_FILTER: _ClassVar[InsightKind]
    INSIGHT_KIND_DISK_SPILL: _ClassVar[InsightKind]
    INSIGHT_KIND_LOSSY_BITMAP: _ClassVar[InsightKind]
    INSIGHT_KIND_DOMINANT_NODE: _ClassVar[InsightKind]
    INSIGHT_KIND_LARGE_OFFSET: _ClassVar[InsightKind]
    INSIGHT_KIND_STALE_STATISTICS: _ClassVar[InsightKind]
    INSIGHT_KIND_WORKERS_NOT_LAUNCHED: _ClassVar[InsightKind]
    INSIGHT_KIND_MISSING_JOIN_INDEX: _ClassVar[InsightKind]

class SlowQueryOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOW_QUERY_ORDER_UNSPECIFIED: _ClassVar[SlowQueryOrder]
    SLOW_QUERY_ORDER_TOTAL_TIME: _ClassVar[SlowQueryOrder]
    SLOW_QUERY_ORDER_MEAN_TIME: _ClassVar[SlowQueryOrder]
    SLOW_QUERY_ORDER_CALLS: _ClassVar[SlowQueryOrder]
    SLOW_QUERY_ORDER_MAX_TIME: _ClassVar[SlowQueryOrder]
    SLOW_QUERY_ORDER_TEMP_BLOCKS: _ClassVar[SlowQueryOrder]

class IndexIssueKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INDEX_ISSUE_KIND_UNSPECIFIED: _ClassVar[IndexIssueKind]
    INDEX_ISSUE_KIND_DUPLICATE: _ClassVar[IndexIssueKind]
    INDEX_ISSUE_KIND_UNUSED: _ClassVar[IndexIssueKind]
    INDEX_ISSUE_KIND_INVALID: _ClassVar[IndexIssueKind]

class RecommendationAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECOMMENDATION_ACTION_UNSPECIFIED: _ClassVar[RecommendationAction]
    RECOMMENDATION_ACTION_VACUUM: _ClassVar[RecommendationAction]
    RECOMMENDATION_ACTION_ANALYZE: _ClassVar[RecommendationAction]
    RECOMMENDATION_ACTION_REWRITE: _ClassVar[RecommendationAction]

class BloatMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLOAT_METHOD_UNSPECIFIED: _ClassVar[BloatMethod]
    BLOAT_METHOD_ESTIMATE: _ClassVar[BloatMethod]
    BLOAT_METHOD_PGSTATTUPLE_APPROX: _ClassVar[BloatMethod]
INSIGHT_KIND_UNSPECIFIED: InsightKind
INSIGHT_KIND_ROW_MISESTIMATE: InsightKind
INSIGHT_KIND_SEQ_SCAN_FILTER: InsightKind
INSIGHT_KIND_DISK_SPILL: InsightKind
INSIGHT_KIND_LOSSY_BITMAP: InsightKind
INSIGHT_KIND_DOMINANT_NODE: InsightKind
INSIGHT_KIND_LARGE_OFFSET: InsightKind
INSIGHT_KIND_STALE_STATISTICS: InsightKind
INSIGHT_KIND_WORKERS_NOT_LAUNCHED: InsightKind
INSIGHT_KIND_MISSING_JOIN_INDEX: InsightKind
SLOW_QUERY_ORDER_UNSPECIFIED: SlowQueryOrder
SLOW_QUERY_ORDER_TOTAL_TIME: SlowQueryOrder
SLOW_QUERY_ORDER_MEAN_TIME: SlowQueryOrder
SLOW_QUERY_ORDER_CALLS: SlowQueryOrder
SLOW_QUERY_ORDER_MAX_TIME: SlowQueryOrder
SLOW_QUERY_ORDER_TEMP_BLOCKS: SlowQueryOrder
INDEX_ISSUE_KIND_UNSPECIFIED: IndexIssueKind
INDEX_ISSUE_KIND_DUPLICATE: IndexIssueKind
INDEX_ISSUE_KIND_UNUSED: IndexIssueKind
INDEX_ISSUE_KIND_INVALID: IndexIssueKind
RECOMMENDATION_ACTION_UNSPECIFIED: RecommendationAction
RECOMMENDATION_ACTION_VACUUM: RecommendationAction
RECOMMENDATION_ACTION_ANALYZE: RecommendationAction
RECOMMENDATION_ACTION_REWRITE: RecommendationAction
BLOAT_METHOD_UNSPECIFIED: BloatMethod
BLOAT_METHOD_ESTIMATE: BloatMethod
BLOAT_METHOD_PGSTATTUPLE_APPROX: BloatMethod

class QueryParam(_message.Message):
    __slots__ = ("string_value", "int_value", "double_value", "bool_value", "null_value", "timestamp_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    NULL_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    double_value: float
    bool_value: bool
    null_value: bool
    timestamp_value: _timestamp_pb2.Timestamp
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., null_value: _Optional[bool] = ..., timestamp_value: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AnalyzeQueryRequest(_message.Message):
    __slots__ = ("sql", "params", "analyze", "buffers", "on_standby")
    SQL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ANALYZE_FIELD_NUMBER: _ClassVar[int]
    BUFFERS_FIELD_NUMBER: _ClassVar[int]
    ON_STANDBY_FIELD_NUMBER: _ClassVar[int]
    sql: str
    params: _containers.RepeatedCompositeFieldContainer[QueryParam]
    analyze: bool
    buffers: bool
    on_standby: bool
    def __init__(self, sql: _Optional[str] = ..., params: _Optional[_Iterable[_Union[QueryParam, _Mapping]]] = ..., analyze: _Optional[bool] = ..., buffers: _Optional[bool] = ..., on_standby: _Optional[bool] = ...) -> None: ...

class BufferStats(_message.Message):
    __slots__ = ("shared_hit", "shared_read", "shared_dirtied", "shared_written", "local_hit", "local_read", "local_dirtied", "local_written", "temp_read", "temp_written")
    SHARED_HIT_FIELD_NUMBER: _ClassVar[int]
    SHARED_READ_FIELD_NUMBER: _ClassVar[int]
    SHARED_DIRTIED_FIELD_NUMBER: _ClassVar[int]
    SHARED_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    LOCAL_HIT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_READ_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DIRTIED_FIELD_NUMBER: _ClassVar[int]
    LOCAL_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    TEMP_READ_FIELD_NUMBER: _ClassVar[int]
    TEMP_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    shared_hit: int
    shared_read: int
    shared_dirtied: int
    shared_written: int
    local_hit: int
    local_read: int
    local_dirtied: int
    local_written: int
    temp_read: int
    temp_written: int
    def __init__(self, shared_hit: _Optional[int] = ..., shared_read: _Optional[int] = ..., shared_dirtied: _Optional[int] = ..., shared_written: _Optional[int] = ..., local_hit: _Optional[int] = ..., local_read: _Optional[int] = ..., local_dirtied: _Optional[int] = ..., local_written: _Optional[int] = ..., temp_read: _Optional[int] = ..., temp_written: _Optional[int] = ...) -> None: ...

class PlanNode(_message.Message):
    __slots__ = ("node_type", "relation_name", "index_name", "join_type", "startup_cost", "total_cost", "plan_rows", "actual_rows", "actual_loops", "inclusive_time_ms", "exclusive_time_ms", "percent_of_total", "filter", "index_cond", "rows_removed_by_filter", "workers_planned", "workers_launched", "sort_method", "sort_space_type", "sort_space_used_kb", "exact_heap_blocks", "lossy_heap_blocks", "buffers", "row_estimate_factor", "parent_relationship", "rows_removed_by_filter_total", "filter_totals_exact", "parent", "depth")
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RELATION_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    JOIN_TYPE_FIELD_NUMBER: _ClassVar[int]
    STARTUP_COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    PLAN_ROWS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_LOOPS_FIELD_NUMBER: _ClassVar[int]
    INCLUSIVE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_OF_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    INDEX_COND_FIELD_NUMBER: _ClassVar[int]
    ROWS_REMOVED_BY_FILTER_FIELD_NUMBER: _ClassVar[int]
    WORKERS_PLANNED_FIELD_NUMBER: _ClassVar[int]
    WORKERS_LAUNCHED_FIELD_NUMBER: _ClassVar[int]
    SORT_METHOD_FIELD_NUMBER: _ClassVar[int]
    SORT_SPACE_TYPE_FIELD_NUMBER: _ClassVar[int]
    SORT_SPACE_USED_KB_FIELD_NUMBER: _ClassVar[int]
    EXACT_HEAP_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    LOSSY_HEAP_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BUFFERS_FIELD_NUMBER: _ClassVar[int]
    ROW_ESTIMATE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    PARENT_RELATIONSHIP_FIELD_NUMBER: _ClassVar[int]
    ROWS_REMOVED_BY_FILTER_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILTER_TOTALS_EXACT_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    node_type: str
    relation_name: str
    index_name: str
    join_type: str
    startup_cost: float
    total_cost: float
    plan_rows: float
    actual_rows: float
    actual_loops: int
    inclusive_time_ms: float
    exclusive_time_ms: float
    percent_of_total: float
    filter: str
    index_cond: str
    rows_removed_by_filter: int
    workers_planned: int
    workers_launched: int
    sort_method: str
    sort_space_type: str
    sort_space_used_kb: int
    exact_heap_blocks: int
    lossy_heap_blocks: int
    buffers: BufferStats
    row_estimate_factor: float
    parent_relationship: str
    rows_removed_by_filter_total: int
    filter_totals_exact: bool
    parent: int
    depth: int
    def __init__(self, node_type: _Optional[str] = ..., relation_name: _Optional[str] = ..., index_name: _Optional[str] = ..., join_type: _Optional[str] = ..., startup_cost: _Optional[float] = ..., total_cost: _Optional[float] = ..., plan_rows: _Optional[float] = ..., actual_rows: _Optional[float] = ..., actual_loops: _Optional[int] = ..., inclusive_time_ms: _Optional[float] = ..., exclusive_time_ms: _Optional[float] = ..., percent_of_total: _Optional[float] = ..., filter: _Optional[str] = ..., index_cond: _Optional[str] = ..., rows_removed_by_filter: _Optional[int] = ..., workers_planned: _Optional[int] = ..., workers_launched: _Optional[int] = ..., sort_method: _Optional[str] = ..., sort_space_type: _Optional[str] = ..., sort_space_used_kb: _Optional[int] = ..., exact_heap_blocks: _Optional[int] = ..., lossy_heap_blocks: _Optional[int] = ..., buffers: _Optional[_Union[BufferStats, _Mapping]] = ..., row_estimate_factor: _Optional[float] = ..., parent_relationship: _Optional[str] = ..., rows_removed_by_filter_total: _Optional[int] = ..., filter_totals_exact: _Optional[bool] = ..., parent: _Optional[int] = ..., depth: _Optional[int] = ...) -> None: ...

class Insight(_message.Message):
    __slots__ = ("kind", "severity", "message", "node", "evidence")
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    kind: InsightKind
    severity: _common_pb2.Severity
    message: str
    node: str
    evidence: _containers.ScalarMap[str, str]
    def __init__(self, kind: _Optional[_Union[InsightKind, str]] = ..., severity: _Optional[_Union[_common_pb2.Severity, str]] = ..., message: _Optional[str] = ..., node: _Optional[str] = ..., evidence: _Optional[_Mapping[str, str]] = ...) -> None: ...

class AnalyzeQueryResponse(_message.Message):
    __slots__ = ("planning_time_ms", "execution_time_ms", "total_cost", "estimated_rows", "actual_rows", "buffers", "planning_buffers", "plan", "raw_json", "insights", "fingerprint", "node", "nodes", "truncated", "node_count")
    PLANNING_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_ROWS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    BUFFERS_FIELD_NUMBER: _ClassVar[int]
    PLANNING_BUFFERS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    RAW_JSON_FIELD_NUMBER: _ClassVar[int]
    INSIGHTS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    planning_time_ms: float
    execution_time_ms: float
    total_cost: float
    estimated_rows: float
    actual_rows: float
    buffers: BufferStats
    planning_buffers: BufferStats
    plan: PlanNode
    raw_json: str
    insights: _containers.RepeatedCompositeFieldContainer[Insight]
    fingerprint: str
    node: str
    nodes: _containers.RepeatedCompositeFieldContainer[PlanNode]
    truncated: bool
    node_count: int
    def __init__(self, planning_time_ms: _Optional[float] = ..., execution_time_ms: _Optional[float] = ..., total_cost: _Optional[float] = ..., estimated_rows: _Optional[float] = ..., actual_rows: _Optional[float] = ..., buffers: _Optional[_Union[BufferStats, _Mapping]] = ..., planning_buffers: _Optional[_Union[BufferStats, _Mapping]] = ..., plan: _Optional[_Union[PlanNode, _Mapping]] = ..., raw_json: _Optional[str] = ..., insights: _Optional[_Iterable[_Union[Insight, _Mapping]]] = ..., fingerprint: _Optional[str] = ..., node: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[PlanNode, _Mapping]]] = ..., truncated: _Optional[bool] = ..., node_count: _Optional[int] = ...) -> None: ...

class ListSlowQueriesRequest(_message.Message):
    __slots__ = ("min_mean_ms", "min_calls", "order_by", "limit", "on_standby")
    MIN_MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_CALLS_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ON_STANDBY_FIELD_NUMBER: _ClassVar[int]
    min_mean_ms: float
    min_calls: int
    order_by: SlowQueryOrder
    limit: int
    on_standby: bool
    def __init__(self, min_mean_ms: _Optional[float] = ..., min_calls: _Optional[int] = ..., order_by: _Optional[_Union[SlowQueryOrder, str]] = ..., limit: _Optional[int] = ..., on_standby: _Optional[bool] = ...) -> None: ...

class SlowQuery(_message.Message):
    __slots__ = ("query_id", "query", "calls", "total_time_ms", "mean_time_ms", "max_time_ms", "rows", "cache_hit_ratio", "temp_blks_read", "temp_blks_written", "stddev_time_ms", "withheld")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    TEMP_BLKS_READ_FIELD_NUMBER: _ClassVar[int]
    TEMP_BLKS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    STDDEV_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    query: str
    calls: int
    total_time_ms: float
    mean_time_ms: float
    max_time_ms: float
    rows: int
    cache_hit_ratio: float
    temp_blks_read: int
    temp_blks_written: int
    stddev_time_ms: float
    withheld: str
    def __init__(self, query_id: _Optional[str] = ..., query: _Optional[str] = ..., calls: _Optional[int] = ..., total_time_ms: _Optional[float] = ..., mean_time_ms: _Optional[float] = ..., max_time_ms: _Optional[float] = ..., rows: _Optional[int] = ..., cache_hit_ratio: _Optional[float] = ..., temp_blks_read: _Optional[int] = ..., temp_blks_written: _Optional[int] = ..., stddev_time_ms: _Optional[float] = ..., withheld: _Optional[str] = ...) -> None: ...

class ListSlowQueriesResponse(_message.Message):
    __slots__ = ("queries", "extension_version", "node", "truncated")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[SlowQuery]
    extension_version: str
    node: str
    truncated: bool
    def __init__(self, queries: _Optional[_Iterable[_Union[SlowQuery, _Mapping]]] = ..., extension_version: _Optional[str] = ..., node: _Optional[str] = ..., truncated: _Optional[bool] = ...) -> None: ...

class SuggestIndexesRequest(_message.Message):
    __slots__ = ("table", "sql", "from_slow_queries", "limit")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    FROM_SLOW_QUERIES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    table: str
    sql: str
    from_slow_queries: bool
    limit: int
    def __init__(self, table: _Optional[str] = ..., sql: _Optional[str] = ..., from_slow_queries: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class IndexSuggestion(_message.Message):
    __slots__ = ("table", "columns", "create_statement", "reason", "estimated_size_bytes", "hypopg_validated", "cost_before", "cost_after", "queries")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    CREATE_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HYPOPG_VALIDATED_FIELD_NUMBER: _ClassVar[int]
    COST_BEFORE_FIELD_NUMBER: _ClassVar[int]
    COST_AFTER_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    table: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    create_statement: str
    reason: str
    estimated_size_bytes: int
    hypopg_validated: bool
    cost_before: float
    cost_after: float
    queries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, table: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., create_statement: _Optional[str] = ..., reason: _Optional[str] = ..., estimated_size_bytes: _Optional[int] = ..., hypopg_validated: _Optional[bool] = ..., cost_before: _Optional[float] = ..., cost_after: _Optional[float] = ..., queries: _Optional[_Iterable[str]] = ...) -> None: ...

class IndexIssue(_message.Message):
    __slots__ = ("kind", "index_name", "table", "definition", "size_bytes", "detail")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: IndexIssueKind
    index_name: str
    table: str
    definition: str
    size_bytes: int
    detail: str
    def __init__(self, kind: _Optional[_Union[IndexIssueKind, str]] = ..., index_name: _Optional[str] = ..., table: _Optional[str] = ..., definition: _Optional[str] = ..., size_bytes: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class SuggestIndexesResponse(_message.Message):
    __slots__ = ("suggestions", "hypopg_available", "method", "index_issues", "node", "truncated")
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    HYPOPG_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    INDEX_ISSUES_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    suggestions: _containers.RepeatedCompositeFieldContainer[IndexSuggestion]
    hypopg_available: bool
    method: str
    index_issues: _containers.RepeatedCompositeFieldContainer[IndexIssue]
    node: str
    truncated: bool
    def __init__(self, suggestions: _Optional[_Iterable[_Union[IndexSuggestion, _Mapping]]] = ..., hypopg_available: _Optional[bool] = ..., method: _Optional[str] = ..., index_issues: _Optional[_Iterable[_Union[IndexIssue, _Mapping]]] = ..., node: _Optional[str] = ..., truncated: _Optional[bool] = ...) -> None: ...

class GetTableStatsRequest(_message.Message):
    __slots__ = ("table", "exact_bloat")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    EXACT_BLOAT_FIELD_NUMBER: _ClassVar[int]
    table: str
    exact_bloat: bool
    def __init__(self, table: _Optional[str] = ..., exact_bloat: _Optional[bool] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("action", "severity", "reason", "statement")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    action: RecommendationAction
    severity: _common_pb2.Severity
    reason: str
    statement: str
    def __init__(self, action: _Optional[_Union[RecommendationAction, str]] = ..., severity: _Optional[_Union[_common_pb2.Severity, str]] = ..., reason: _Optional[str] = ..., statement: _Optional[str] = ...) -> None: ...

class GetTableStatsResponse(_message.Message):
    __slots__ = ("table", "live_rows", "dead_rows", "dead_ratio", "table_bytes", "index_bytes", "toast_bytes", "total_bytes", "bloat_bytes", "bloat_ratio", "bloat_method", "seq_scans", "idx_scans", "last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze", "modifications_since_analyze", "recommendations")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    LIVE_ROWS_FIELD_NUMBER: _ClassVar[int]
    DEAD_ROWS_FIELD_NUMBER: _ClassVar[int]
    DEAD_RATIO_FIELD_NUMBER: _ClassVar[int]
    TABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    INDEX_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOAST_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOAT_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOAT_RATIO_FIELD_NUMBER: _ClassVar[int]
    BLOAT_METHOD_FIELD_NUMBER: _ClassVar[int]
    SEQ_SCANS_FIELD_NUMBER: _ClassVar[int]
    IDX_SCANS_FIELD_NUMBER: _ClassVar[int]
    LAST_VACUUM_FIELD_NUMBER: _ClassVar[int]
    LAST_AUTOVACUUM_FIELD_NUMBER: _ClassVar[int]
    LAST_ANALYZE_FIELD_NUMBER: _ClassVar[int]
    LAST_AUTOANALYZE_FIELD_NUMBER: _ClassVar[int]
    MODIFICATIONS_SINCE_ANALYZE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    table: str
    live_rows: int
    dead_rows: int
    dead_ratio: float
    table_bytes: int
    index_bytes: int
    toast_bytes: int
    total_bytes: int
    bloat_bytes: int
    bloat_ratio: float
    bloat_method: BloatMethod
    seq_scans: int
    idx_scans: int
    last_vacuum: _timestamp_pb2.Timestamp
    last_autovacuum: _timestamp_pb2.Timestamp
    last_analyze: _timestamp_pb2.Timestamp
    last_autoanalyze: _timestamp_pb2.Timestamp
    modifications_since_analyze: int
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    def __init__(self, table: _Optional[str] = ..., live_rows: _Optional[int] = ..., dead_rows: _Optional[int] = ..., dead_ratio: _Optional[float] = ..., table_bytes: _Optional[int] = ..., index_bytes: _Optional[int] = ..., toast_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., bloat_bytes: _Optional[int] = ..., bloat_ratio: _Optional[float] = ..., bloat_method: _Optional[_Union[BloatMethod, str]] = ..., seq_scans: _Optional[int] = ..., idx_scans: _Optional[int] = ..., last_vacuum: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_autovacuum: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_analyze: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_autoanalyze: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modifications_since_analyze: _Optional[int] = ..., recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ...) -> None: ...
