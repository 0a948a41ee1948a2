"""Helpers of the export tests: read a stream, parse each format back, query the reference rows."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc

from harness.servers import in_process
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.export_service.pump import CopyPump
from rentscout.export_service.service import ExportServicer, build
from rentscout.export_service.settings import ExportSettings
from rentscout.runtime.resources import Resources
from rentscout.runtime.server import ServiceHost, ServiceSpec
from rentscout.wire.badrequest import bad_request_violations
from rentscout.wire.schema import COLUMN_NAMES

CSV, JSON, JSONL = export_pb2.EXPORT_FORMAT_CSV, export_pb2.EXPORT_FORMAT_JSON, export_pb2.EXPORT_FORMAT_JSONL
FORMATS = (CSV, JSON, JSONL)  # the text formats (Arrow has tests of its own)
ARROW = export_pb2.EXPORT_FORMAT_ARROW
COLUMNS = COLUMN_NAMES
TRICKY_CITY = "Zz Tricky"
TEST_SETTINGS = ExportSettings(token_secret="test-secret", heartbeat_seconds=0.2, max_concurrent=4)
# Channel options for a client that holds an export unread: without BDP probing the client's HTTP/2
# window stays small (~64 KiB), so the export stays running; with it, a whole test table (several MB)
# can finish into the window before the test looks.
SMALL_WINDOW: tuple[tuple[str, int], ...] = (("grpc.http2.bdp_probe", 0),)


class MeteredPump(CopyPump):
    """A CopyPump that counts the bytes the server read from PostgreSQL (for back-pressure tests)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.bytes_read = 0

    async def deliver(self, block: bytes | bytearray) -> None:
        self.bytes_read += len(block)
        await super().deliver(block)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


@dataclass
class ExportServer:
    host: ServiceHost
    servicer: ExportServicer
    channel: grpc.aio.Channel
    stub: export_pb2_grpc.ExportServiceAsyncStub
    pumps: list[MeteredPump] = field(default_factory=list)  # of every stream, in order

    def running_pumps(self) -> list[MeteredPump]:
        return [p for p in self.pumps if p.running]


@contextlib.asynccontextmanager
async def serve(env: dict[str, str], settings: ExportSettings) -> AsyncIterator[ExportServer]:
    """An in-process export server with these settings, and a channel to it."""
    holder: dict[str, ExportServicer] = {}
    pumps: list[MeteredPump] = []

    def pump(*args: Any) -> MeteredPump:
        pumps.append(MeteredPump(*args))
        return pumps[-1]

    def factory(resources: Resources) -> ServiceSpec:
        servicer, spec = build(resources, settings, pump)
        holder["servicer"] = servicer
        return spec

    async with in_process([factory], env) as host:
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{host.port}", options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)]
        )
        try:
            yield ExportServer(host, holder["servicer"], channel, export_pb2_grpc.ExportServiceStub(channel), pumps)
        finally:
            await channel.close()


@dataclass
class Stream:
    header: export_pb2.ExportHeader | None = None
    chunks: list[export_pb2.ExportChunk] = field(default_factory=list)
    summary: export_pb2.ExportSummary | None = None

    @property
    def data(self) -> bytes:
        return b"".join(c.data for c in self.chunks)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)


async def collect(
    stub: export_pb2_grpc.ExportServiceAsyncStub,
    req: export_pb2.ExportPropertiesRequest,
    stop_after_chunks: int | None = None,
    timeout: float = 60,
) -> Stream:
    """Read a whole stream (or cancel it after `stop_after_chunks` data chunks, like a broken connection)."""
    out = Stream()
    call = stub.ExportProperties(req, timeout=timeout)
    async for msg in call:
        kind = msg.WhichOneof("payload")
        if kind == "header":
            out.header = msg.header
        elif kind == "chunk":
            out.chunks.append(msg.chunk)
            if stop_after_chunks is not None and len(out.chunks) >= stop_after_chunks:
                call.cancel()
                break
        else:
            out.summary = msg.summary
    return out


async def read_partitions(
    stub: export_pb2_grpc.ExportServiceAsyncStub, plan: export_pb2.PlanExportResponse, req: export_pb2.ExportPropertiesRequest
) -> list[bytes]:
    """The data of each PlanExport partition's stream (each a complete file), checked complete and as planned."""
    out = []
    for part in plan.partitions:
        p = export_pb2.ExportPropertiesRequest()
        p.CopyFrom(req)
        p.resume_token = part.resume_token
        stream = await collect(stub, p)
        assert stream.summary is not None and stream.summary.status == export_pb2.EXPORT_STATUS_COMPLETED
        assert stream.rows == part.estimated_rows
        out.append(stream.data)
    return out


async def rpc_error(coro_or_call: Any) -> grpc.aio.AioRpcError:
    """The error an RPC (unary awaitable or stream) ends with; fails if it succeeds."""
    try:
        if hasattr(coro_or_call, "__aiter__"):
            async for _ in coro_or_call:
                pass
        else:
            await coro_or_call
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError("the RPC succeeded")


def violated_fields(err: grpc.aio.AioRpcError) -> list[str]:
    return [f for f, _ in bad_request_violations(err.trailing_metadata())]


def parse_csv(data: bytes) -> list[list[str | None]]:
    """RFC 4180 as COPY writes it, keeping NULL (unquoted empty) apart from '' (quoted empty)."""
    text, rows, row, i, n = data.decode(), [], [], 0, len(data.decode())
    while i < n:
        if text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.index('"', j)
                buf.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                else:
                    i = k + 1
                    break
            value: str | None = "".join(buf)
        else:
            j = i
            while j < n and text[j] not in ",\n":
                j += 1
            value = text[i:j] or None
            i = j
        row.append(value)
        if i < n and text[i] == ",":
            i += 1
            if i == n or text[i] == "\n":
                row.append(None)
        if i < n and text[i] == "\n":
            rows.append(row)
            row = []
            i += 1
    assert not row, "the CSV does not end with a newline"
    return rows


def parse(fmt: int, data: bytes) -> list[Any]:
    """Rows of an export: CSV as lists of text (header first), JSON/JSONL as dicts."""
    if fmt == CSV:
        return parse_csv(data)
    if fmt == JSON:
        rows: list[Any] = json.loads(data)
        return rows
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


async def reference(
    conn: asyncpg.Connection, fmt: int, where: str = "TRUE", columns: tuple[str, ...] = COLUMNS, limit: int | None = None
) -> list[Any]:
    """The same rows straight from PostgreSQL: its text output of each value (CSV), or row_to_json."""
    await conn.execute("SET TimeZone = 'UTC'")
    tail = f"FROM properties WHERE {where} ORDER BY id" + (f" LIMIT {limit}" if limit else "")
    if fmt == CSV:
        select = ", ".join(f"CASE WHEN {c} IS NULL THEN NULL ELSE concat({c}) END" for c in columns)
        rows = await conn.fetch(f"SELECT {select} {tail}")
        return [list(columns), *[list(r) for r in rows]]
    rows = await conn.fetch(f"SELECT row_to_json(t)::text FROM (SELECT {', '.join(columns)} {tail}) t")
    return [json.loads(r[0]) for r in rows]


TRICKY_TITLES = [
    'quote " inside',
    'comma, and "both"',
    "new\nline",
    "crlf\r\nend",
    "trailing backslash \\",
    "\\N",
    "back\\slash\\n not a newline",
    "tab\tand\vvtab\band\fform",
    "ctrl \x01\x02\x1f\x7f",
    "",
    "unicode ünïcødé 日本 🏠",
    "\n12345,forged,row",
    '"',
    "\\",
    ',"\n"',
    "\\v\\\\v",
    "record separator \x1e looks like the key-quote marker",
    '\x1e"\x1e:\x1e',
]


async def insert_tricky_rows(conn: asyncpg.Connection, first_id: int = 10_000_001) -> list[int]:
    """Rows whose text needs every kind of escaping, ids > 10M, city TRICKY_CITY (the caller deletes them)."""
    ids = []
    for i, title in enumerate(TRICKY_TITLES):
        pid = first_id + i
        ids.append(pid)
        await conn.execute(
            "INSERT INTO properties (id, source, external_id, title, city, district, address, property_type, price, "
            "currency, rooms, area, floor, lat, lon, url, views, is_active) VALUES "
            "($1, 'cian', $2, $3, $4, $5, $6, 'room', $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            pid,
            f"zz-tricky-{i}",
            title,
            TRICKY_CITY,
            None if i % 2 else title,
            None if i % 3 else "addr\n" + title,
            1000 + i,
            "A  " if i % 4 == 0 else "RUB",
            None if i % 5 == 0 else i,
            None if i % 6 == 0 else 1e-7 + i,
            None if i % 7 == 0 else -i,
            None if i % 8 == 0 else -89.999999,
            179.5,
            None if i % 9 == 0 else f'https://x.test/{i}?q="{i}"',
            i * 1000,
            i % 2 == 0,
        )
    return ids


# -- Arrow -----------------------------------------------------------------------------------------

EDGE_CITY = "Zz Arrow Edge"
INT64_MAX = 2**63 - 1


def adbc_table(dsn: str, sql: str) -> Any:
    """`sql` read into a pyarrow Table by the ADBC PostgreSQL driver (COPY BINARY, its own decoder), in UTC."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(sql)
        return cur.fetch_arrow_table()


def arrow_values(table: Any) -> dict[str, list[Any]]:
    """Column name -> values, times as integers (microseconds or days: no datetime range limits)."""
    import pyarrow as pa

    out = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        typ = column.type
        if pa.types.is_timestamp(typ):
            column = column.cast(pa.int64())
        elif pa.types.is_date32(typ):
            column = column.cast(pa.int32())
        out[name] = column.to_pylist()
    return out


# (title, area, created_at, updated_at, price): NULLs, NaN/Infinity, BC, infinite and far-future times,
# unicode and escaping, the largest bigint.
EDGE_ROWS: list[tuple[str, float | None, str, str, int]] = [
    ("nulls everywhere they are allowed", None, "2024-02-29 23:59:59.999999+00", "2024-03-01 00:00:00+00", 0),
    ("not a number", float("nan"), "0044-03-15 12:00:00.5+00 BC", "4713-01-01 00:00:00+00 BC", INT64_MAX),
    ("infinite area", float("inf"), "infinity", "-infinity", INT64_MAX - 1),
    ('unicode ünïcødé 日本 🏠 and "quotes", commas', 1e-300, "10000-01-01 00:00:00+00", "0001-01-01 00:00:00+00", 1),
    (
        "new\nline and \\N and \t tab",
        1.7976931348623157e308,
        "1969-12-31 23:59:59.000001+00",
        "1970-01-01 00:00:00+00",
        9_007_199_254_740_993,
    ),
    ("", 5e-324, "2000-01-01 00:00:00+00", "294246-12-31 23:59:59.999999+00", 42),
]


async def insert_edge_rows(conn: asyncpg.Connection, first_id: int = 20_000_001) -> list[int]:
    """EDGE_ROWS as properties of EDGE_CITY with ids from `first_id` (the caller deletes them)."""
    ids = []
    for i, (title, area, created, updated, price) in enumerate(EDGE_ROWS):
        pid = first_id + i
        ids.append(pid)
        nulls = i == 0
        await conn.execute(
            "INSERT INTO properties (id, source, external_id, title, city, district, address, property_type, price, "
            "currency, rooms, area, floor, lat, lon, url, views, is_active, created_at, updated_at) VALUES "
            "($1, 'yandex', $2, $3, $4, $5, $6, 'house', $7, 'EUR', $8, $9, $10, $11, $12, $13, $14, $15, "
            "$16::text::timestamptz, $17::text::timestamptz)",
            pid,
            f"zz-arrow-edge-{i}",
            title,
            EDGE_CITY,
            None if nulls else "Район №1",
            None if nulls else "",
            price,
            None if nulls else 32767,
            area,
            None if nulls else -32768,
            None if nulls else -90.0,
            None if nulls else 180.0,
            None if nulls else "https://x.test/ü",
            INT64_MAX if i == 1 else i,
            i % 2 == 0,
            created,
            updated,
        )
    return ids
