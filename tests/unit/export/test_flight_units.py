"""Pure parts of Arrow Flight: ADBC's timestamp overflow corrected, FlightData framing, tickets, range plans."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rentscout.arrow_flight.protocol import flight_pb2
from rentscout.export.v1 import export_pb2
from rentscout.export_service import sqlgen
from rentscout.export_service.arrow_source import PG_EPOCH_SHIFT_US, fix_times
from rentscout.export_service.flight_data import flight_data, split_message
from rentscout.export_service.flight_tickets import TicketCodec, parse
from rentscout.export_service.tokens import ResumeState, TokenCodec
from rentscout.runtime.errors import FailedPrecondition, InvalidArgument

pa = pytest.importorskip("pyarrow")
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)


def wrap64(v: int) -> int:
    return (v + 2**63) % 2**64 - 2**63


def test_fix_times_restores_infinities_and_keeps_finite_values() -> None:
    bc = -63_517_780_800_000_000  # 0044-03-15 12:00 BC: ADBC reads it right
    adbc = [wrap64(INT64_MAX + PG_EPOCH_SHIFT_US), wrap64(INT64_MIN + PG_EPOCH_SHIFT_US), bc, 0, None]
    array = pa.array(adbc, pa.int64()).view(pa.timestamp("us", tz="UTC"))
    fixed = fix_times(array, "created_at")
    assert fixed.type == pa.timestamp("us", tz="UTC")
    assert fixed.view(pa.int64()).to_pylist() == [INT64_MAX, INT64_MIN, bc, 0, None]
    plain = pa.array([bc, 1, None], pa.int64()).view(pa.timestamp("us", tz="UTC"))
    assert fix_times(plain, "x") is plain  # nothing special: untouched


def test_fix_times_dates_and_times_beyond_arrow() -> None:
    days = pa.array([(INT32_MAX + 10_957 + 2**31) % 2**32 - 2**31, INT32_MIN + 10_957, -2_440_550], pa.int32())
    assert fix_times(days.view(pa.date32()), "d").view(pa.int32()).to_pylist() == [INT32_MAX, INT32_MIN, -2_440_550]
    too_late = pa.array([wrap64(9_223_371_331_200_000_000 + PG_EPOCH_SHIFT_US)], pa.int64()).view(pa.timestamp("us"))
    with pytest.raises(FailedPrecondition, match="column updated_at holds a time after year 294246"):
        fix_times(too_late, "updated_at")


def test_flight_data_is_a_flightdata_message_arrow_reads_back() -> None:
    batch = pa.record_batch([pa.array([1, None, 3]), pa.array(["a", "b", None])], names=["id", "s"])
    encoded = flight_data(batch.serialize(), b"resume-here")
    message = flight_pb2.FlightData.FromString(encoded)
    assert message.app_metadata == b"resume-here"
    header, body = split_message(batch.serialize())
    assert message.data_header == bytes(header) and message.data_body == bytes(body)
    schema = flight_pb2.FlightData.FromString(flight_data(batch.schema.serialize()))
    assert schema.data_body == b"" and schema.app_metadata == b""
    # the parts, framed again as an IPC stream, are the batch
    frame = b"\xff\xff\xff\xff" + len(message.data_header).to_bytes(4, "little")
    stream = frame + message.data_header + message.data_body
    schema_frame = b"\xff\xff\xff\xff" + len(schema.data_header).to_bytes(4, "little") + schema.data_header
    table = pa.ipc.open_stream(schema_frame + stream + b"\xff\xff\xff\xff\x00\x00\x00\x00").read_all()
    assert table.to_batches()[0].equals(batch)


def test_tickets_bind_request_and_range() -> None:
    tickets = TicketCodec(TokenCodec(b"k" * 32))
    request = export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_ARROW, limit=5)
    state = ResumeState(b"e" * 16, 10, 20, 0)
    parsed = parse(tickets.ticket(request, b"f" * 16, state))
    assert tickets.state(parsed, b"f" * 16) == state
    with pytest.raises(InvalidArgument) as err:
        tickets.state(parsed, b"g" * 16)  # another request's fingerprint
    assert err.value.violations[0][0] == "ticket"
    export_token = export_pb2.ExportPropertiesRequest(resume_token=TokenCodec(b"k" * 32).encode(b"f" * 16, state))
    with pytest.raises(InvalidArgument):  # an ExportProperties resume token of the same request is no ticket
        tickets.state(export_token, b"f" * 16)
    for bad in (b"", b"\xff\x00", export_pb2.ExportPropertiesRequest(limit=1).SerializeToString()):
        with pytest.raises(InvalidArgument, match="ticket"):
            parse(bad)


def test_plan_ranges_tile_the_key_space() -> None:
    rows = [{"first_id": 1, "last_id": 10, "n": 10}, {"first_id": 11, "last_id": 30, "n": 10}]
    open_end = sqlgen.plan_ranges(rows, 1000)
    assert [(r.after_id, r.upper_id) for r in open_end] == [(None, 10), (10, None)]
    limited = sqlgen.plan_ranges(rows, 20)  # the limit ends the export at the 20th row's id
    assert [(r.after_id, r.upper_id) for r in limited] == [(None, 10), (10, 30)]


def test_codegen_compiles_flight_under_rentscout() -> None:
    path = Path(__file__).resolve().parents[3] / "scripts" / "codegen.py"
    spec = importlib.util.spec_from_file_location("codegen", path)
    assert spec is not None and spec.loader is not None
    codegen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codegen)
    assert codegen.import_path(Path("arrow/flight/protocol/flight.proto")) == "rentscout/arrow_flight/protocol/flight.proto"
    assert codegen.import_path(Path("rentscout/export/v1/export.proto")) == "rentscout/export/v1/export.proto"
    assert flight_pb2.DESCRIPTOR.package == "arrow.flight.protocol"
    assert importlib.util.find_spec("arrow") is None or "rentscout" not in str(importlib.util.find_spec("arrow"))
