"""End to end: the real `rentscout serve export` process driven by the real grpcurl, as an operator would."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from harness.grpcurl import grpcurl
from harness.servers import ServerProcess

METHOD = "rentscout.export.v1.ExportService/ExportProperties"
CID = "e2e-export-7f3a"


@pytest.fixture
def export_process(service_env: dict[str, str], workdir: Path):
    server = ServerProcess("export", {**service_env, "RENTSCOUT_EXPORT_TOKEN_SECRET": "e2e-secret"}, workdir)
    server.start()
    yield server
    server.stop()


def chunks_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["chunk"] for m in messages if "chunk" in m]


def data_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(c.get("data", "")) for c in chunks_of(messages))


async def test_grpcurl_exports_jsonl_and_resumes_with_the_correlation_id_in_the_logs(
    export_process: ServerProcess, grpcurl_bin: str, database: str
) -> None:
    request = {
        "format": "EXPORT_FORMAT_JSONL",
        "limit": 50,
        "rowsPerChunk": 20,
        "filter": {"cities": ["Moscow"]},
        "columns": ["id", "city", "price", "created_at"],
    }
    out = grpcurl(export_process.target, METHOD, request, headers={"x-correlation-id": CID})
    assert out.returncode == 0, out.stderr
    messages = out.json_stream()
    header, summary = messages[0]["header"], messages[-1]["summary"]
    assert header["format"] == "EXPORT_FORMAT_JSONL" and header["columns"] == request["columns"]
    assert [int(c.get("rows", 0)) for c in chunks_of(messages)] == [20, 20, 10]
    assert summary["status"] == "EXPORT_STATUS_COMPLETED" and int(summary["rows"]) == 50
    rows = [json.loads(line) for line in data_of(messages).splitlines()]

    conn = await asyncpg.connect(database)
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        expected = [
            json.loads(r[0])
            for r in await conn.fetch(
                "SELECT row_to_json(t)::text FROM (SELECT id, city, price, created_at FROM properties "
                "WHERE city = 'Moscow' ORDER BY id LIMIT 50) t"
            )
        ]
    finally:
        await conn.close()
    assert rows == expected

    # a consumer whose stream broke after the first chunk resumes with that chunk's token
    token = chunks_of(messages)[0]["resume_token"]  # grpcurl prints proto field names
    resumed = grpcurl(
        export_process.target, METHOD, {**request, "resumeToken": token}, headers={"x-correlation-id": CID + "-resume"}
    )
    assert resumed.returncode == 0, resumed.stderr
    resumed_messages = resumed.json_stream()
    assert resumed_messages[0]["header"]["resumed"] is True
    assert data_of(messages) == base64.b64decode(chunks_of(messages)[0]["data"]) + data_of(resumed_messages)

    export_id = header["export_id"]
    lines = [
        r
        for r in export_process.log_records()
        if r.get("message") in ("export started", "export finished") and r.get("export.id") == export_id
    ]
    assert [r["message"] for r in lines] == ["export started", "export finished", "export started", "export finished"]
    assert [r["correlation.id"] for r in lines] == [CID, CID, CID + "-resume", CID + "-resume"]
    assert lines[1]["export.rows"] == 50 and lines[1]["export.bytes"] == int(summary["bytes"])
    assert lines[1]["export.format"] == "jsonl" and lines[1]["event.duration"] > 0
    access = [
        r
        for r in export_process.log_records()
        if r.get("rpc.method") == "/" + METHOD and r.get("event.dataset") == "rentscout.access"
    ]
    assert {r["correlation.id"] for r in access} == {CID, CID + "-resume"}


async def test_grpcurl_bad_input_names_the_field(export_process: ServerProcess, grpcurl_bin: str) -> None:
    out = grpcurl(export_process.target, METHOD, {"format": "EXPORT_FORMAT_CSV", "columns": ["nope"]}, verbose=True)
    assert out.returncode != 0
    assert "InvalidArgument" in out.stderr or "INVALID_ARGUMENT" in out.stderr.upper()
    assert "columns[0]" in out.stderr
