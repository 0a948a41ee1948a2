"""Resume after a broken stream (each row exactly once), tamper-evident tokens, and PlanExport partitions."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import grpc
import pytest

from harness.export_server import (
    COLUMNS,
    CSV,
    FORMATS,
    JSON,
    JSONL,
    collect,
    parse,
    read_partitions,
    reference,
    rpc_error,
    violated_fields,
)
from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2
from rentscout.export_service.tokens import ResumeState, TokenCodec, key_from_secret

Req = export_pb2.ExportPropertiesRequest
MOSCOW = common_pb2.PropertyFilter(cities=["Moscow"])


def request(fmt: export_pb2.ExportFormat, **kw: Any) -> export_pb2.ExportPropertiesRequest:
    return Req(format=fmt, filter=MOSCOW, rows_per_chunk=400, **kw)


@pytest.mark.parametrize("columns", [(), ("title", "price")], ids=["all-columns", "no-id-column"])
@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_cut_stream_resumes_after_its_last_row_twice(
    export_server, pg_conn, fmt: export_pb2.ExportFormat, columns: tuple[str, ...]
) -> None:
    stub = export_server.stub
    whole = await collect(stub, request(fmt, columns=columns))
    first = await collect(stub, request(fmt, columns=columns), stop_after_chunks=3)
    assert first.summary is None and len(first.chunks) == 3
    second_req = request(fmt, columns=columns, resume_token=first.chunks[-1].resume_token)
    second_req.rows_per_chunk = 250  # chunk sizes may change on resume
    second = await collect(stub, second_req, stop_after_chunks=4)
    third = await collect(stub, request(fmt, columns=columns, resume_token=second.chunks[-1].resume_token))
    assert first.header is not None and second.header is not None and third.header is not None
    assert third.header.resumed and third.header.rows_already_sent == 3 * 400 + 4 * 250
    assert third.header.export_id == first.header.export_id == second.header.export_id
    data = first.data + second.data + third.data
    assert data == whole.data  # byte for byte: no row lost or repeated, header / '[' not repeated
    rows = parse(fmt, data)
    assert rows == await reference(pg_conn, fmt, "city = 'Moscow'", columns or COLUMNS)
    assert third.chunks[-1].rows_sent == whole.rows
    assert third.summary is not None and third.summary.rows == whole.rows - 3 * 400 - 4 * 250


async def test_json_resume_from_the_closing_chunk_sends_nothing_more(export_server) -> None:
    stub = export_server.stub
    whole = await collect(stub, request(JSON, limit=900))
    last_data, closing = whole.chunks[-2], whole.chunks[-1]
    assert closing.rows == 0 and closing.data == b"\n]\n"
    after_data = await collect(stub, request(JSON, limit=900, resume_token=last_data.resume_token))
    assert after_data.data == b"\n]\n" and after_data.header is not None and after_data.header.rows_already_sent == 900
    after_close = await collect(stub, request(JSON, limit=900, resume_token=closing.resume_token))
    assert after_close.chunks == [] and after_close.summary is not None
    assert after_close.summary.status == export_pb2.EXPORT_STATUS_COMPLETED


async def test_limit_counts_rows_of_earlier_streams(export_server) -> None:
    stub = export_server.stub
    first = await collect(stub, request(JSONL, limit=1000), stop_after_chunks=2)
    rest = await collect(stub, request(JSONL, limit=1000, resume_token=first.chunks[-1].resume_token))
    assert first.rows + rest.rows == 1000 and rest.header is not None and rest.header.rows_already_sent == 800


TAMPER = [
    ("flipped", lambda t: t[:30] + ("A" if t[30] != "A" else "B") + t[31:]),
    ("truncated", lambda t: t[:-4]),
    ("garbage", lambda t: "not a token at all!"),
    ("empty-ish", lambda t: "A"),
]


@pytest.mark.parametrize(("name", "mutate"), TAMPER, ids=[n for n, _ in TAMPER])
async def test_tampered_tokens_are_invalid_argument(export_server, name, mutate) -> None:
    stub = export_server.stub
    first = await collect(stub, request(CSV), stop_after_chunks=1)
    err = await rpc_error(stub.ExportProperties(request(CSV, resume_token=mutate(first.chunks[0].resume_token))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(err) == ["resume_token"]


@pytest.mark.parametrize("change", ["format", "filter", "columns", "limit"])
async def test_a_token_only_resumes_the_request_it_came_from(export_server, change: str) -> None:
    stub = export_server.stub
    first = await collect(stub, request(CSV), stop_after_chunks=1)
    other = request(CSV, resume_token=first.chunks[0].resume_token)
    if change == "format":
        other.format = JSONL
    elif change == "filter":
        other.filter.active_only = True
    elif change == "columns":
        other.columns.append("id")
    else:
        other.limit = 5
    err = await rpc_error(stub.ExportProperties(other))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(err) == ["resume_token"]
    assert "does not match" in (err.details() or "")


async def test_a_token_signed_with_another_secret_is_rejected(export_server) -> None:
    stub = export_server.stub
    first = await collect(stub, request(CSV), stop_after_chunks=1)
    raw = base64.urlsafe_b64decode(first.chunks[0].resume_token + "==")
    fingerprint = raw[2:18]  # payload: version, flags, fingerprint, ...: only the key is unknown to a forger
    forged = TokenCodec(key_from_secret("attacker")).encode(fingerprint, ResumeState(b"x" * 16, None, None, 0))
    err = await rpc_error(stub.ExportProperties(request(CSV, resume_token=forged)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "forged" in (err.details() or "")


@pytest.mark.parametrize("fmt", FORMATS)
async def test_plan_partitions_tile_the_export_exactly(export_server, pg_conn, fmt: export_pb2.ExportFormat) -> None:
    stub = export_server.stub
    req = Req(format=fmt, filter=MOSCOW)
    plan = await stub.PlanExport(export_pb2.PlanExportRequest(export=req, partitions=5))
    parts = list(plan.partitions)
    assert [p.index for p in parts] == [0, 1, 2, 3, 4]
    counts = [p.estimated_rows for p in parts]
    assert max(counts) - min(counts) <= 1 and sum(counts) == plan.estimated_total_rows
    assert all(a.last_id < b.first_id for a, b in itertools.pairwise(parts))
    files = await read_partitions(stub, plan, req)
    rows = []
    for data in files:  # each partition is a whole file of the format
        parsed = parse(fmt, data)
        rows += parsed[1:] if fmt == CSV else parsed
    expected = await reference(pg_conn, fmt, "city = 'Moscow'")
    assert rows == (expected[1:] if fmt == CSV else expected)


async def test_a_partition_stream_resumes_within_its_range(export_server) -> None:
    stub = export_server.stub
    req = Req(format=JSON, filter=MOSCOW, rows_per_chunk=100)
    plan = await stub.PlanExport(export_pb2.PlanExportRequest(export=req, partitions=3))
    middle = plan.partitions[1]
    whole = await collect(stub, Req(format=JSON, filter=MOSCOW, rows_per_chunk=100, resume_token=middle.resume_token))
    cut = await collect(
        stub, Req(format=JSON, filter=MOSCOW, rows_per_chunk=100, resume_token=middle.resume_token), stop_after_chunks=2
    )
    rest = await collect(stub, Req(format=JSON, filter=MOSCOW, rows_per_chunk=100, resume_token=cut.chunks[-1].resume_token))
    assert cut.data + rest.data == whole.data  # the resumed stream stops at the partition's upper bound
    ids = [r["id"] for r in parse(JSON, whole.data)]
    assert ids[0] == middle.first_id and ids[-1] == middle.last_id and len(ids) == middle.estimated_rows


async def test_plan_with_limit_covers_exactly_the_first_rows(export_server, pg_conn) -> None:
    stub = export_server.stub
    req = Req(format=JSONL, columns=["id"], limit=1_001)
    plan = await stub.PlanExport(export_pb2.PlanExportRequest(export=req, partitions=3))
    ids = [r["id"] for data in await read_partitions(stub, plan, req) for r in parse(JSONL, data)]
    assert ids == [r["id"] for r in await pg_conn.fetch("SELECT id FROM properties ORDER BY id LIMIT 1001")]


async def test_plan_ranges_also_hold_rows_inserted_after_planning(export_server, pg_conn) -> None:
    stub = export_server.stub
    req = Req(format=JSONL, columns=["id"], filter=common_pb2.PropertyFilter(cities=["Zz Late"]))
    await pg_conn.execute(
        "INSERT INTO properties (id, source, external_id, title, city, property_type, price) "
        "SELECT g, 'yandex', 'zz-late-' || g, 't', 'Zz Late', 'room', 1 FROM generate_series(10000201, 10000210) g"
    )
    try:
        plan = await stub.PlanExport(export_pb2.PlanExportRequest(export=req, partitions=20))
        assert len(plan.partitions) == 10  # fewer partitions than asked for a small export
        await pg_conn.execute(  # below the first and above the last partition's rows
            "INSERT INTO properties (id, source, external_id, title, city, property_type, price) VALUES "
            "(10000199, 'yandex', 'zz-late-a', 't', 'Zz Late', 'room', 1), "
            "(10000299, 'yandex', 'zz-late-c', 't', 'Zz Late', 'room', 1)"
        )
        ids = [r["id"] for data in await read_partitions_loose(stub, plan, req) for r in parse(JSONL, data)]
        assert ids == [10000199, *range(10000201, 10000211), 10000299]
    finally:
        await pg_conn.execute("DELETE FROM properties WHERE city = 'Zz Late'")


async def read_partitions_loose(stub, plan, req):
    """Partition files without checking row counts against the plan (rows were added since)."""
    out = []
    for part in plan.partitions:
        p = Req()
        p.CopyFrom(req)
        p.resume_token = part.resume_token
        out.append((await collect(stub, p)).data)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
async def test_plan_of_an_empty_export_is_one_empty_partition(export_server, fmt: export_pb2.ExportFormat) -> None:
    req = Req(format=fmt, columns=["id"], filter=common_pb2.PropertyFilter(cities=["Atlantis"]))
    plan = await export_server.stub.PlanExport(export_pb2.PlanExportRequest(export=req, partitions=4))
    assert len(plan.partitions) == 1 and plan.estimated_total_rows == 0
    (data,) = await read_partitions(export_server.stub, plan, req)
    assert data == {CSV: b"id\n", JSON: b"[]\n", JSONL: b""}[fmt]


@pytest.mark.parametrize(
    ("plan", "fields"),
    [
        (export_pb2.PlanExportRequest(export=Req(format=CSV), partitions=0), ["partitions"]),
        (export_pb2.PlanExportRequest(export=Req(format=CSV), partitions=65), ["partitions"]),
        (export_pb2.PlanExportRequest(export=Req(format=CSV, resume_token="x"), partitions=2), ["export.resume_token"]),
        (
            export_pb2.PlanExportRequest(
                export=Req(format=9, limit=-2),  # type: ignore[arg-type]  # an unknown format, on purpose
                partitions=2,
            ),
            ["export.format", "export.limit"],
        ),
        (export_pb2.PlanExportRequest(export=Req(format=CSV, columns=["nope"]), partitions=2), ["export.columns[0]"]),
    ],
)
async def test_plan_rejects_bad_requests(export_server, plan, fields: list[str]) -> None:
    err = await rpc_error(export_server.stub.PlanExport(plan))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and violated_fields(err) == fields
