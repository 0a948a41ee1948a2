"""AnalyzerClient: EXPLAIN insights, slow queries, index advice, table health (admin role)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import timestamp_pb2

from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.sdk.base import BaseClient, SyncClient
from rentscout.sdk.sync import sync_methods
from rentscout.wire.enums import SLOW_QUERY_ORDER, enum_value


def query_param(value: Any) -> analyzer_pb2.QueryParam:
    """A Python value as a bound parameter ($1, $2, ...)."""
    if value is None:
        return analyzer_pb2.QueryParam(null_value=True)
    if isinstance(value, bool):
        return analyzer_pb2.QueryParam(bool_value=value)
    if isinstance(value, int):
        return analyzer_pb2.QueryParam(int_value=value)
    if isinstance(value, float):
        return analyzer_pb2.QueryParam(double_value=value)
    if isinstance(value, dt.datetime):
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
        return analyzer_pb2.QueryParam(timestamp_value=ts)
    if isinstance(value, str):
        return analyzer_pb2.QueryParam(string_value=value)
    raise TypeError(f"cannot bind a {type(value).__name__} as a query parameter")


@dataclass
class PlanTree:
    """One node of a plan rebuilt from AnalyzeQueryResponse.nodes (a flat list, so that any depth decodes)."""

    node: analyzer_pb2.PlanNode
    children: list[PlanTree] = field(default_factory=list)

    def walk(self) -> Iterator[tuple[PlanTree, int]]:
        """(tree node, depth) for this node and all below it, depth first, without recursion."""
        stack: list[tuple[PlanTree, int]] = [(self, 0)]
        while stack:
            tree, depth = stack.pop()
            yield tree, depth
            stack.extend((child, depth + 1) for child in reversed(tree.children))


def plan_tree(reply: analyzer_pb2.AnalyzeQueryResponse) -> PlanTree | None:
    """The plan of `reply` as a tree (None when it has no nodes). A node whose parent is missing (a reply
    `truncated` by the server keeps a prefix, so none is) is left out rather than guessed at."""
    trees: list[PlanTree | None] = []
    for node in reply.nodes:
        tree = PlanTree(node)
        parent = trees[node.parent] if 0 <= node.parent < len(trees) else None
        if parent is not None:
            parent.children.append(tree)
            trees.append(tree)
        else:
            trees.append(tree if not trees else None)
    return trees[0] if trees else None


class AnalyzerClient(BaseClient):
    SERVICE = "rentscout.analyzer.v1.AnalyzerService"
    STUB = analyzer_pb2_grpc.AnalyzerServiceStub

    async def analyze_query(
        self, sql: str, params: Sequence[Any] = (), *, analyze: bool = False, buffers: bool = False, **call: Any
    ) -> analyzer_pb2.AnalyzeQueryResponse:
        """EXPLAIN (ANALYZE executes the statement read-only, so it is not retried on overload)."""
        request = analyzer_pb2.AnalyzeQueryRequest(
            sql=sql, params=[query_param(p) for p in params], analyze=analyze, buffers=buffers
        )
        return await self._call("AnalyzeQuery", request, analyzer_pb2.AnalyzeQueryResponse, idempotent=not analyze, **call)

    async def list_slow_queries(
        self, *, min_mean_ms: float = 0.0, min_calls: int = 0, order_by: str | int = "total_time", limit: int = 20, **call: Any
    ) -> analyzer_pb2.ListSlowQueriesResponse:
        request = analyzer_pb2.ListSlowQueriesRequest(
            min_mean_ms=min_mean_ms, min_calls=min_calls, limit=limit, order_by=enum_value(SLOW_QUERY_ORDER, order_by)
        )
        return await self._call("ListSlowQueries", request, analyzer_pb2.ListSlowQueriesResponse, **call)

    async def suggest_indexes(
        self, *, table: str | None = None, sql: str | None = None, from_slow_queries: bool = False, limit: int = 10, **call: Any
    ) -> analyzer_pb2.SuggestIndexesResponse:
        """Exactly one source: a table, a query, or the slow queries."""
        if sum((table is not None, sql is not None, from_slow_queries)) != 1:
            raise ValueError("give exactly one of table, sql and from_slow_queries")
        request = analyzer_pb2.SuggestIndexesRequest(limit=limit)
        if table is not None:
            request.table = table
        elif sql is not None:
            request.sql = sql
        else:
            request.from_slow_queries = True
        return await self._call("SuggestIndexes", request, analyzer_pb2.SuggestIndexesResponse, **call)

    async def table_stats(self, table: str, *, exact_bloat: bool = False, **call: Any) -> analyzer_pb2.GetTableStatsResponse:
        request = analyzer_pb2.GetTableStatsRequest(table=table, exact_bloat=exact_bloat)
        return await self._call("GetTableStats", request, analyzer_pb2.GetTableStatsResponse, **call)


@sync_methods(AnalyzerClient)
class SyncAnalyzerClient(SyncClient):
    ASYNC = AnalyzerClient
