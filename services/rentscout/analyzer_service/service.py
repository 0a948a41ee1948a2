"""AnalyzerService: EXPLAIN insights, slow queries, index advice and table health. Every RPC needs admin."""

from __future__ import annotations

import logging
import math

import grpc

from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.analyzer_service import convert, explain, index_advisor, limits, metrics, slow_queries, table_stats
from rentscout.analyzer_service.params import ParamError, from_proto
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.runtime.config import load
from rentscout.runtime.context import annotate
from rentscout.runtime.errors import InvalidArgument, Violations
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec

_log = logging.getLogger(__name__)
SERVICE_NAME = "rentscout.analyzer.v1.AnalyzerService"
ADMIN_METHODS = frozenset(analyzer_pb2.DESCRIPTOR.services_by_name["AnalyzerService"].methods_by_name)
MAX_PARAMS = 100
SLOW_LIMIT_DEFAULT, SLOW_LIMIT_MAX = 20, 500
SUGGEST_LIMIT_DEFAULT, SUGGEST_LIMIT_MAX = 10, 100
SLOW_ORDERS = {
    analyzer_pb2.SLOW_QUERY_ORDER_UNSPECIFIED: "total_time",
    analyzer_pb2.SLOW_QUERY_ORDER_TOTAL_TIME: "total_time",
    analyzer_pb2.SLOW_QUERY_ORDER_MEAN_TIME: "mean_time",
    analyzer_pb2.SLOW_QUERY_ORDER_CALLS: "calls",
    analyzer_pb2.SLOW_QUERY_ORDER_MAX_TIME: "max_time",
    analyzer_pb2.SLOW_QUERY_ORDER_TEMP_BLOCKS: "temp_blocks",
}


def _limit(v: Violations, value: int, default: int, maximum: int) -> int:
    v.check(0 <= value <= maximum, "limit", f"must be from 1 to {maximum} (0 means {default})")
    return value or default


class AnalyzerServicer(analyzer_pb2_grpc.AnalyzerServiceServicer):
    def __init__(self, resources: Resources, settings: AnalyzerSettings) -> None:
        self.resources = resources
        self.settings = settings
        self.slots = limits.Slots(settings.max_concurrent_statements)
        self.answer_cap = convert.answer_cap(resources.settings.max_send_message_bytes)

    async def AnalyzeQuery(
        self,
        request: analyzer_pb2.AnalyzeQueryRequest,
        context: grpc.aio.ServicerContext[analyzer_pb2.AnalyzeQueryRequest, analyzer_pb2.AnalyzeQueryResponse],
    ) -> analyzer_pb2.AnalyzeQueryResponse:
        if len(request.params) > MAX_PARAMS:
            raise InvalidArgument("params", f"at most {MAX_PARAMS} parameters are supported")
        try:
            params = from_proto(request.params)
        except ParamError as exc:
            raise InvalidArgument(exc.field, str(exc)) from None
        with self.slots.take(), limits.budget(self.settings):
            result = await explain.analyze_query(
                self.resources.db,
                self.settings,
                request.sql,
                params,
                analyze=request.analyze,
                buffers=request.buffers,
                reads=self.resources.reads if request.on_standby else None,
            )
        return convert.analysis(result, self.answer_cap)

    async def ListSlowQueries(
        self,
        request: analyzer_pb2.ListSlowQueriesRequest,
        context: grpc.aio.ServicerContext[analyzer_pb2.ListSlowQueriesRequest, analyzer_pb2.ListSlowQueriesResponse],
    ) -> analyzer_pb2.ListSlowQueriesResponse:
        v = Violations()
        v.check(math.isfinite(request.min_mean_ms) and request.min_mean_ms >= 0, "min_mean_ms", "must be a number >= 0")
        v.check(request.min_calls >= 0, "min_calls", "must be >= 0")
        order = SLOW_ORDERS.get(request.order_by)
        v.check(order is not None, "order_by", "is not a known SlowQueryOrder")
        limit = _limit(v, request.limit, SLOW_LIMIT_DEFAULT, SLOW_LIMIT_MAX)
        v.raise_if_any()
        # each node keeps its own pg_stat_statements: the primary's, or a standby's when asked
        async with self.resources.reads.connection(standby=request.on_standby) as (conn, node):
            ext, rows = await slow_queries.list_slow_queries(
                conn, min_calls=request.min_calls, min_mean_ms=request.min_mean_ms, order=order or "total_time", limit=limit
            )
        metrics.SLOW_QUERIES.set(len(rows))
        annotate(**{"analyzer.slow_queries": len(rows)})
        return convert.slow_queries(ext.version, rows, node, self.answer_cap)

    async def SuggestIndexes(
        self,
        request: analyzer_pb2.SuggestIndexesRequest,
        context: grpc.aio.ServicerContext[analyzer_pb2.SuggestIndexesRequest, analyzer_pb2.SuggestIndexesResponse],
    ) -> analyzer_pb2.SuggestIndexesResponse:
        v = Violations()
        source = request.WhichOneof("source")
        v.check(source is not None, "source", "set one of table, sql or from_slow_queries")
        if source == "from_slow_queries":
            v.check(request.from_slow_queries, "from_slow_queries", "must be true when it is the source")
        limit = _limit(v, request.limit, SUGGEST_LIMIT_DEFAULT, SUGGEST_LIMIT_MAX)
        v.raise_if_any()
        with self.slots.take(), limits.budget(self.settings):
            result = await index_advisor.suggest(
                self.resources.db,
                self.resources.settings,
                self.settings,
                limit=limit,
                table=request.table if source == "table" else None,
                sql=request.sql if source == "sql" else None,
                from_slow=source == "from_slow_queries",
            )
        annotate(**{"analyzer.index_suggestions": len(result.suggestions), "analyzer.index_issues": len(result.issues)})
        return convert.advice(result, self.answer_cap)

    async def GetTableStats(
        self,
        request: analyzer_pb2.GetTableStatsRequest,
        context: grpc.aio.ServicerContext[analyzer_pb2.GetTableStatsRequest, analyzer_pb2.GetTableStatsResponse],
    ) -> analyzer_pb2.GetTableStatsResponse:
        stats = await table_stats.get_table_stats(self.resources.db, self.settings, request.table, request.exact_bloat)
        annotate(**{"analyzer.table": stats.table, "analyzer.recommendations": len(stats.recommendations)})
        return convert.table_stats(stats)


def create(resources: Resources, settings: AnalyzerSettings | None = None) -> ServiceSpec:
    """`settings` defaults to the environment (tests pass their own)."""
    settings = settings or load(AnalyzerSettings)
    if settings.unprivileged_opt_out:
        _log.warning(
            "UNSAFE: RENTSCOUT_ANALYZER_RUN_AS_SERVICE_USER=true: caller-written statements run with the "
            "service's own database privileges, not as a low-privilege role; only the catalog check "
            "stands between them and whatever this user may do"
        )
    servicer = AnalyzerServicer(resources, settings)
    return ServiceSpec(
        name=SERVICE_NAME,
        admin_methods=ADMIN_METHODS,
        register=lambda server: analyzer_pb2_grpc.add_AnalyzerServiceServicer_to_server(servicer, server),
    )
