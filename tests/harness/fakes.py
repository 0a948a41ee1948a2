"""Scripted servicers for SDK tests, hosted by the real runtime (ServiceHost, interceptor, auth, logs)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import orjson
from google.protobuf import duration_pb2

from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.cache.v1 import cache_pb2, cache_pb2_grpc
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.runtime.errors import InvalidArgument, Unavailable
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceSpec

CACHE_SERVICE = "rentscout.cache.v1.CacheQueryService"


class ScriptedCache(cache_pb2_grpc.CacheQueryServiceServicer):
    """PriceStats fails `failures` times (UNAVAILABLE) then answers count=42; records each call's metadata.

    Cities always answers INVALID_ARGUMENT with a field violation; PopularProperties aborts with the
    status and trailing metadata in `abort_with`; PropertyTypes sleeps `delay` seconds first.
    """

    # not scripted: the generated servicer's own methods answer UNIMPLEMENTED (named here, so the fake is concrete)
    Invalidate = cache_pb2_grpc.CacheQueryServiceServicer.Invalidate
    InvalidateRelated = cache_pb2_grpc.CacheQueryServiceServicer.InvalidateRelated
    GetCacheStats = cache_pb2_grpc.CacheQueryServiceServicer.GetCacheStats

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}
        self.metadata: list[dict[str, str]] = []
        self.abort_with: tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]] = (grpc.StatusCode.UNAVAILABLE, "busy", ())
        self.delay = 0.0

    def _seen(self, name: str, context: grpc.aio.ServicerContext[Any, Any]) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        return self.calls[name]

    async def PriceStats(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> cache_pb2.PriceStatsResponse:
        if self._seen("PriceStats", context) <= self.failures:
            raise Unavailable("warming up")
        return cache_pb2.PriceStatsResponse(count=42, median=1234.0)

    async def Cities(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> cache_pb2.CitiesResponse:
        self._seen("Cities", context)
        raise InvalidArgument([("city", "must not be empty")])

    async def PopularProperties(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self._seen("PopularProperties", context)
        code, details, trailing = self.abort_with
        await context.abort(code, details, trailing_metadata=trailing)

    async def PropertyTypes(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> cache_pb2.PropertyTypesResponse:
        self._seen("PropertyTypes", context)
        await asyncio.sleep(self.delay)
        return cache_pb2.PropertyTypesResponse()


def factory(
    servicer: Any,
    name: str = CACHE_SERVICE,
    add: Callable[[Any, grpc.aio.Server], None] = cache_pb2_grpc.add_CacheQueryServiceServicer_to_server,
    admin_methods: frozenset[str] = frozenset(),
) -> Callable[[Resources], ServiceSpec]:
    def create(resources: Resources) -> ServiceSpec:
        return ServiceSpec(name=name, register=lambda server: add(servicer, server), admin_methods=admin_methods)

    return create


# -- an ExportService following the proto contract over real PostgreSQL rows ------------------------

EXPORT_SERVICE = "rentscout.export.v1.ExportService"
EXPORT_COLUMNS = ["id", "city", "property_type", "price", "rooms", "area", "is_active", "title"]


def _token(last_id: int, rows: int, hi: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"last": last_id, "rows": rows, "hi": hi})).decode()


def _untoken(token: str) -> tuple[int, int, int]:
    data = orjson.loads(base64.urlsafe_b64decode(token))
    return data["last"], data["rows"], data["hi"]


class ContractExport(export_pb2_grpc.ExportServiceServicer):
    """Keyset pages of `properties` by id, framed per format like the contract says, with scripted breaks.

    `breaks[n] = (chunks, code)` makes the n-th stream (0-based) fail with `code` after sending
    `chunks` chunks; JSON streams resumed from a token continue the array (leading comma, no `[`).
    Only the city filter and the limit-free path are implemented: enough to check the consumer.
    """

    # not served: the generated servicer's own method answers UNIMPLEMENTED (named here, so the fake is concrete)
    GetExportStatistics = export_pb2_grpc.ExportServiceServicer.GetExportStatistics

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.breaks: dict[int, tuple[int, grpc.StatusCode]] = {}
        self.streams = 0
        self.requests: list[export_pb2.ExportPropertiesRequest] = []
        self.chunk_delay = 0.0
        self.misreport_resumed_rows = 0  # a buggy server: subtracted from rows_already_sent when resuming

    def _where(self, request: export_pb2.ExportPropertiesRequest) -> tuple[str, list[Any]]:
        cities = list(request.filter.cities)
        return ("AND city = ANY($3::text[])", [cities]) if cities else ("", [])

    async def PlanExport(self, request: export_pb2.PlanExportRequest, context: Any) -> export_pb2.PlanExportResponse:
        where, args = self._where(request.export)
        ids = [
            r["id"]
            for r in await self.resources.db.fetch(
                f"SELECT id FROM properties WHERE id > $1 AND id <= $2 {where} ORDER BY id", 0, 2**62, *args
            )
        ]
        n = max(1, min(request.partitions, len(ids)))
        parts = []
        for i in range(n):
            chunk = ids[i * len(ids) // n : (i + 1) * len(ids) // n]
            if not chunk:
                continue
            parts.append(
                export_pb2.ExportPartition(
                    index=i,
                    first_id=chunk[0],
                    last_id=chunk[-1],
                    estimated_rows=len(chunk),
                    resume_token=_token(chunk[0] - 1, 0, chunk[-1]),
                )
            )
        return export_pb2.PlanExportResponse(partitions=parts, estimated_total_rows=len(ids), export_id="plan-1")

    async def ExportProperties(
        self, request: export_pb2.ExportPropertiesRequest, context: Any
    ) -> AsyncIterator[export_pb2.ExportPropertiesResponse]:
        number = self.streams
        self.streams += 1
        self.requests.append(request)
        last, sent, hi = _untoken(request.resume_token) if request.resume_token else (0, 0, 2**62)
        resumed = bool(request.resume_token)
        where, args = self._where(request)
        total = await self.resources.db.fetchval(
            f"SELECT count(*) FROM properties WHERE id > $1 AND id <= $2 {where}", last, hi, *args
        )
        fmt = request.format
        yield export_pb2.ExportPropertiesResponse(
            header=export_pb2.ExportHeader(
                format=fmt,
                columns=EXPORT_COLUMNS,
                estimated_total_rows=total,
                export_id=f"exp-{number}",
                resumed=resumed,
                rows_already_sent=sent - (self.misreport_resumed_rows if sent else 0),
            )
        )
        per_chunk = request.rows_per_chunk or 1000
        started = time.monotonic()
        first_chunk = True
        chunks = rows_total = 0
        while True:
            records = await self.resources.db.fetch(
                f"SELECT {', '.join(EXPORT_COLUMNS)} FROM properties WHERE id > $1 AND id <= $2 {where} "
                f"ORDER BY id LIMIT {per_chunk}",
                last,
                hi,
                *args,
            )
            if number in self.breaks and chunks >= self.breaks[number][0]:
                await context.abort(self.breaks[number][1], "scripted break")
            if not records:
                break
            data = self._encode(
                fmt,
                [dict(r) for r in records],
                first=first_chunk and not resumed,
                continuing=not first_chunk or (resumed and sent > 0),
            )
            first_chunk = False
            last = records[-1]["id"]
            sent += len(records)
            rows_total += len(records)
            chunks += 1
            yield export_pb2.ExportPropertiesResponse(
                chunk=export_pb2.ExportChunk(data=data, rows=len(records), rows_sent=sent, resume_token=_token(last, sent, hi))
            )
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        tail = b"]\n" if fmt == export_pb2.EXPORT_FORMAT_JSON else b""
        if fmt == export_pb2.EXPORT_FORMAT_JSON and first_chunk and not resumed:
            tail = b"[]\n"
        if tail:
            yield export_pb2.ExportPropertiesResponse(
                chunk=export_pb2.ExportChunk(data=tail, rows=0, rows_sent=sent, resume_token=_token(last, sent, hi))
            )
        yield export_pb2.ExportPropertiesResponse(
            summary=export_pb2.ExportSummary(
                rows=rows_total,
                status=export_pb2.EXPORT_STATUS_COMPLETED,
                export_id=f"exp-{number}",
                duration=duration_pb2.Duration(nanos=int((time.monotonic() - started) * 1e9) % 10**9),
            )
        )

    @staticmethod
    def _encode(fmt: int, rows: list[dict[str, Any]], *, first: bool, continuing: bool) -> bytes:
        if fmt == export_pb2.EXPORT_FORMAT_CSV:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            if first:
                writer.writerow(EXPORT_COLUMNS)
            writer.writerows([["t" if v is True else "f" if v is False else v for v in r.values()] for r in rows])
            return buf.getvalue().encode()
        lines = [orjson.dumps(r, option=orjson.OPT_PASSTHROUGH_DATACLASS) for r in rows]
        if fmt == export_pb2.EXPORT_FORMAT_JSONL:
            return b"".join(line + b"\n" for line in lines)
        return (b"[\n" if first else b",\n" if continuing else b"") + b",\n".join(lines)


def export_factory(holder: list[ContractExport]) -> Callable[[Resources], ServiceSpec]:
    def create(resources: Resources) -> ServiceSpec:
        servicer = ContractExport(resources)
        holder.append(servicer)
        return ServiceSpec(
            name=EXPORT_SERVICE, register=lambda server: export_pb2_grpc.add_ExportServiceServicer_to_server(servicer, server)
        )

    return create


# -- an AnalyzerService with canned answers (the CLI's rendering is what is under test) ------------------

ANALYZER_SERVICE = "rentscout.analyzer.v1.AnalyzerService"


class CannedAnalyzer(analyzer_pb2_grpc.AnalyzerServiceServicer):
    # not canned: the generated servicer's own methods answer UNIMPLEMENTED (named here, so the fake is concrete)
    ListSlowQueries = analyzer_pb2_grpc.AnalyzerServiceServicer.ListSlowQueries
    SuggestIndexes = analyzer_pb2_grpc.AnalyzerServiceServicer.SuggestIndexes

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def AnalyzeQuery(self, request: analyzer_pb2.AnalyzeQueryRequest, context: Any) -> analyzer_pb2.AnalyzeQueryResponse:
        self.requests.append(request)
        scan = analyzer_pb2.PlanNode(
            node_type="Seq Scan",
            relation_name="properties",
            total_cost=431.0,
            plan_rows=12,
            actual_rows=1450,
            actual_loops=1,
            inclusive_time_ms=3.2,
            exclusive_time_ms=3.2,
            percent_of_total=80.0,
            filter="(city = $1)",
            rows_removed_by_filter=18550,
            row_estimate_factor=120.8,
        )
        sort = analyzer_pb2.PlanNode(
            node_type="Sort",
            total_cost=440.0,
            plan_rows=12,
            actual_rows=1450,
            actual_loops=1,
            inclusive_time_ms=4.0,
            exclusive_time_ms=0.8,
            percent_of_total=20.0,
            sort_method="quicksort",
            sort_space_type="Memory",
            sort_space_used_kb=215,
            parent=-1,
        )
        scan.parent, scan.depth = 0, 1
        insight = analyzer_pb2.Insight(
            kind=analyzer_pb2.INSIGHT_KIND_ROW_MISESTIMATE,
            severity=common_pb2.SEVERITY_WARNING,
            message="row estimate off by 121x",
            node="Seq Scan on properties",
            evidence={"estimated_rows": "12", "actual_rows": "1450"},
        )
        return analyzer_pb2.AnalyzeQueryResponse(
            planning_time_ms=0.12,
            execution_time_ms=4.1,
            total_cost=440.0,
            estimated_rows=12,
            actual_rows=1450,
            plan=sort,
            nodes=[sort, scan],
            node_count=2,
            insights=[insight],
            raw_json="[]",
            fingerprint="abc123",
            buffers=analyzer_pb2.BufferStats(shared_hit=300, shared_read=12),
        )

    async def GetTableStats(self, request: analyzer_pb2.GetTableStatsRequest, context: Any) -> analyzer_pb2.GetTableStatsResponse:
        self.requests.append(request)
        return analyzer_pb2.GetTableStatsResponse(
            table=request.table,
            live_rows=20000,
            dead_rows=5000,
            dead_ratio=0.2,
            table_bytes=4 << 20,
            recommendations=[
                analyzer_pb2.Recommendation(
                    action=analyzer_pb2.RECOMMENDATION_ACTION_VACUUM,
                    severity=common_pb2.SEVERITY_WARNING,
                    reason="20% dead rows",
                    statement=f"VACUUM (ANALYZE) {request.table}",
                )
            ],
        )
