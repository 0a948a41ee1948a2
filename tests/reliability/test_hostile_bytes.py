"""Hostile bytes end in exact statuses, with nothing secret in any log line: answers that echo huge input stay
small enough for a default client; bearer tokens with bytes that are not UTF-8 (or are Latin-1) sent over raw
HTTP/2 appear in no log line, grpc's own included; a call whose request message never comes is ended within
the bound, counted and logged once. Real server processes, raw HTTP/2 from the `h2` package."""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest

from harness import rawh2
from harness.polling import wait_until
from harness.rpcs import all_rpcs
from harness.secrets import ADMIN_TOKEN, READER_TOKEN
from harness.servers import ServerProcess
from rentscout.analyzer.v1 import analyzer_pb2, analyzer_pb2_grpc
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2, export_pb2_grpc
from rentscout.runtime.logs import GrpcLibraryRedaction
from rentscout.wire.badrequest import bad_request_violations

ADMIN = [("authorization", f"Bearer {ADMIN_TOKEN}")]
STATS = "/rentscout.export.v1.ExportService/GetExportStatistics"
OK, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 3, 4


async def test_answers_echoing_huge_input_fit_a_default_client(all_server: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(all_server.target) as channel:  # default options: 16 KiB metadata
        export = export_pb2_grpc.ExportServiceStub(channel)
        analyzer = analyzer_pb2_grpc.AnalyzerServiceStub(channel)

        async def export_error(request: export_pb2.ExportPropertiesRequest) -> grpc.aio.AioRpcError:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in export.ExportProperties(request, metadata=ADMIN, timeout=30):
                    pass
            return err.value

        csv = export_pb2.EXPORT_FORMAT_CSV
        long_cities = [f"{i}" + "Город" * 60 for i in range(1000)]
        errors = [
            await export_error(export_pb2.ExportPropertiesRequest(format=csv, columns=["c" * 1_000_000])),
            await export_error(
                export_pb2.ExportPropertiesRequest(format=csv, filter=common_pb2.PropertyFilter(cities=long_cities))
            ),
        ]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await analyzer.AnalyzeQuery(
                analyzer_pb2.AnalyzeQueryRequest(sql="SELECT " + "x" * 10_000), metadata=ADMIN, timeout=30
            )
        errors.append(err.value)
    for error in errors:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), (error.details() or "")[:300])
        details = error.details()
        assert details is not None
        size = len(details.encode()) + sum(len(k) + len(v) for k, v in error.trailing_metadata())
        assert size < 8 * 1024, size
        assert bad_request_violations(error.trailing_metadata())
    field, description = bad_request_violations(errors[1].trailing_metadata())[-1]
    assert field == "request" and "more problem(s) not listed" in description  # 1000 violations, counted


def test_tokens_with_hostile_bytes_never_reach_a_log_line(all_server: ServerProcess) -> None:
    methods = ["/grpc.health.v1.Health/Check", STATS, "/rentscout.cache.v1.CacheQueryService/Cities"]
    for token in (ADMIN_TOKEN, READER_TOKEN):
        for bad in (b"\xff", b"\xe9", b"\xc3", b"\x80\x80", "é".encode("latin-1") + b" tail"):
            value = b"Bearer " + token.encode() + bad
            for path in methods:
                reply = rawh2.call(
                    all_server.target, path, headers=[(b"authorization", value), (b"x-api-key", value)], body=rawh2.frame(b"")
                )
                assert reply.ended and reply.grpc_status is not None, reply
                assert reply.grpc_status in (OK, 16), reply  # health is open; the rest: UNAUTHENTICATED
                assert token.encode() not in b"".join(reply.headers.values())
    lines = all_server.log_text().splitlines()
    assert any("grpc" in line and "Invalid encoding" in line for line in lines)  # grpc did log them, redacted
    for token in (ADMIN_TOKEN, READER_TOKEN):
        leaked = [line for line in lines if token in line]
        assert not leaked, leaked[:3]


def no_request_total(server: ServerProcess) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("rentscout_rpc_rejected_total{") and 'reason="no_request"' in line
    )


def test_every_call_without_its_request_ends(secured_env: dict[str, str], tmp_path: Path) -> None:
    server = ServerProcess("all", {**secured_env, "RENTSCOUT_REQUEST_TIMEOUT_SECONDS": "2"}, tmp_path).start()
    auth = [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode())]
    unary = [r.path for r in all_rpcs() if not r.method.client_streaming]
    try:

        def half_closed(path: str) -> int | None:  # no message at all
            return rawh2.call(server.target, path, headers=auth, body=None, wait=20).grpc_status

        def cut_short(path: str) -> int | None:  # a length prefix announcing 16 bytes, 2 sent, then half-closed
            return rawh2.call(server.target, path, headers=auth, body=b"\x00\x00\x00\x00\x10ab", wait=20).grpc_status

        def never_finished(path: str) -> int | None:  # the same, left open: only the bound ends it
            return rawh2.call(
                server.target, path, headers=auth, body=b"\x00\x00\x00\x00\x10ab", end_stream=False, wait=20
            ).grpc_status

        calls = (
            [(half_closed, STATS)] * 100
            + [(half_closed, p) for p in unary]
            + [(cut_short, p) for p in unary]
            + [(never_finished, p) for p in unary]
        )
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda c: c[0](c[1]), calls))
        expected = [INVALID_ARGUMENT] * (100 + 2 * len(unary)) + [DEADLINE_EXCEEDED] * len(unary)
        assert codes == expected  # every call ended (no None), with its exact status
        assert no_request_total(server) == len(calls)

        def logged() -> collections.Counter[str]:  # access lines, and the open services' one line each
            return collections.Counter(
                r["rpc.grpc.status_code"]
                for r in server.log_records()
                if r.get("rpc.grpc.status_code") in ("INVALID_ARGUMENT", "DEADLINE_EXCEEDED")
                and (r.get("event.action") == "rpc_without_request" or r.get("log.logger") == "rentscout.events")
            )

        once_each = collections.Counter({"INVALID_ARGUMENT": 100 + 2 * len(unary), "DEADLINE_EXCEEDED": len(unary)})
        assert wait_until(lambda: logged() == once_each, 10), logged()  # a line may follow its status by a moment
    finally:
        server.stop()
    assert not any(r.get("log.level") == "error" for r in server.log_records())


def test_grpc_library_records_keep_only_static_text() -> None:
    try:
        raise UnicodeDecodeError("utf-8", b"secret\xff", 6, 7, "invalid start byte")
    except UnicodeDecodeError:  # made with exc_info, as logging makes it (an assigned one stays narrowed for mypy)
        record = logging.LogRecord(
            "grpc._cython.cygrpc", logging.ERROR, "", 0, "Invalid encoding on %s", (b"Bearer secret\xff",), sys.exc_info()
        )
    assert GrpcLibraryRedaction().filter(record)
    assert record.getMessage() == "Invalid encoding on [redacted]" and record.exc_info is None
    assert record.fields == {"error.type": "UnicodeDecodeError"}  # type: ignore[attr-defined]
