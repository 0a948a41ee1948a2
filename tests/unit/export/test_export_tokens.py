"""Resume tokens, request validation and the SQL built from filters (no database)."""

from __future__ import annotations

import base64

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from rentscout.common.v1 import common_pb2
from rentscout.export.v1 import export_pb2
from rentscout.export_service.filters import filter_sql
from rentscout.export_service.request import check_static, fingerprint, resolve_columns
from rentscout.export_service.settings import ExportSettings
from rentscout.export_service.tokens import ResumeState, TokenCodec, key_from_secret, signing_keys
from rentscout.runtime.errors import InvalidArgument, Violations
from rentscout.wire.formats.json import json_fields, markers_per_row
from rentscout.wire.schema import Column

FP = b"f" * 16
STATE = ResumeState(export_id=b"e" * 16, after_id=41, upper_id=None, rows_sent=7)


def test_token_round_trip_and_opacity() -> None:
    codec = TokenCodec(key_from_secret("s3cret"))
    token = codec.encode(FP, STATE)
    assert codec.decode(token, FP) == STATE
    assert "41" not in token and len(token) < 120  # 82 bytes: fits a header, a log line, a URL
    done = ResumeState(b"e" * 16, None, 99, 0, done=True)
    assert codec.decode(codec.encode(FP, done), FP) == done
    on_a_standby = ResumeState(b"e" * 16, 5, None, 3, lsn=0x16_B374D848)
    assert codec.decode(codec.encode(FP, on_a_standby), FP).lsn == 0x16_B374D848


def test_tokens_of_the_previous_version_still_resume() -> None:
    """Version 1 (before the WAL position) decodes with lsn 0: a rolling upgrade breaks no export."""
    import base64
    import hashlib
    import hmac
    import struct

    secret = key_from_secret("s3cret")
    payload = struct.pack(">BB16s16sqqq", 1, 1, FP, b"e" * 16, 41, 0, 7)
    tag = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    token = base64.urlsafe_b64encode(payload + tag).rstrip(b"=").decode()
    state = TokenCodec(secret).decode(token, FP)
    assert (state.after_id, state.rows_sent, state.lsn) == (41, 7, 0)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # tag changed
        lambda t: ("A" if t[0] != "A" else "B") + t[1:],  # payload changed
        lambda t: t[:20],  # truncated
        lambda t: t + "!!",  # not base64url
        lambda t: "x" * 300,  # too long
    ],
)
def test_tampered_tokens_are_rejected_naming_the_field(mutate) -> None:
    codec = TokenCodec(key_from_secret("s3cret"))
    with pytest.raises(InvalidArgument) as err:
        codec.decode(mutate(codec.encode(FP, STATE)), FP)
    assert err.value.violations[0][0] == "resume_token"


def test_a_forged_payload_with_the_wrong_key_or_request_is_rejected() -> None:
    mine, theirs = TokenCodec(key_from_secret("one")), TokenCodec(key_from_secret("two"))
    with pytest.raises(InvalidArgument, match="forged"):
        mine.decode(theirs.encode(FP, STATE), FP)
    with pytest.raises(InvalidArgument, match="does not match"):
        mine.decode(mine.encode(FP, STATE), b"g" * 16)
    raw = base64.urlsafe_b64decode(mine.encode(FP, STATE) + "==")
    assert len(raw) == 82  # compact: 66-byte payload (WAL position included) + 16-byte tag


def test_without_a_secret_each_process_signs_with_a_random_key() -> None:
    one, two = TokenCodec(*signing_keys("")), TokenCodec(*signing_keys(""))
    with pytest.raises(InvalidArgument, match="forged"):
        two.decode(one.encode(FP, STATE), FP)
    assert one.decode(one.encode(FP, STATE), FP) == STATE  # the same replica still resumes its own tokens


def test_rotation_verifies_the_previous_secret_and_signs_with_the_current() -> None:
    old = TokenCodec(*signing_keys("old"))
    rotated = TokenCodec(*signing_keys("new", "old"))
    assert rotated.decode(old.encode(FP, STATE), FP) == STATE  # tokens minted before the rotation still resume
    fresh = rotated.encode(FP, STATE)
    assert TokenCodec(*signing_keys("new")).decode(fresh, FP) == STATE  # new tokens need only the new secret
    with pytest.raises(InvalidArgument, match="forged"):
        old.decode(fresh, FP)
    with pytest.raises(InvalidArgument, match="forged"):  # once the previous secret is dropped, so are its tokens
        TokenCodec(*signing_keys("new")).decode(old.encode(FP, STATE), FP)


def test_fingerprint_binds_format_filter_columns_and_limit() -> None:
    cols = (Column("id", "int"), Column("city", "text"))
    base = export_pb2.ExportPropertiesRequest(format=export_pb2.EXPORT_FORMAT_CSV, limit=5)
    base.filter.cities.append("Omsk")
    variants = [export_pb2.ExportPropertiesRequest() for _ in range(3)]
    for v in variants:
        v.CopyFrom(base)
    variants[0].format = export_pb2.EXPORT_FORMAT_JSON
    variants[1].limit = 6
    variants[2].filter.cities.append("Kazan")
    prints = {fingerprint(r, cols) for r in (base, *variants)} | {fingerprint(base, cols[:1])}
    assert len(prints) == 5
    same = export_pb2.ExportPropertiesRequest()
    same.CopyFrom(base)
    same.rows_per_chunk, same.bytes_per_chunk = 10, 4096  # chunking may change on resume
    assert fingerprint(same, cols) == fingerprint(base, cols)


def violations_of(req: export_pb2.ExportPropertiesRequest) -> dict[str, str]:
    v = Violations()
    check_static(req, ExportSettings(), v)
    return dict(v.items)


def test_every_bad_field_is_reported_at_once() -> None:
    req = export_pb2.ExportPropertiesRequest(
        format=7,  # type: ignore[arg-type]  # unknown format, on purpose
        limit=-1,
        rows_per_chunk=-3,
        bytes_per_chunk=10,
    )
    f = req.filter
    f.min_price, f.max_price, f.min_rooms, f.max_rooms = 500, 100, -1, 2
    f.property_types.append(common_pb2.PROPERTY_TYPE_UNSPECIFIED)
    f.sources.append(42)  # type: ignore[arg-type]  # an unknown source number, on purpose
    f.cities.extend(["ok", ""])
    f.updated_since.CopyFrom(Timestamp(seconds=1, nanos=-5))
    got = violations_of(req)
    assert set(got) == {
        "format",
        "limit",
        "rows_per_chunk",
        "bytes_per_chunk",
        "filter.min_price",
        "filter.min_rooms",
        "filter.property_types[0]",
        "filter.sources[0]",
        "filter.cities[1]",
        "filter.updated_since",
    }
    assert "max_price" in got["filter.min_price"]


def test_limits_above_the_maximum_and_oversized_chunks_are_rejected() -> None:
    s = ExportSettings()
    req = export_pb2.ExportPropertiesRequest(
        format=export_pb2.EXPORT_FORMAT_CSV,
        limit=s.max_limit + 1,
        rows_per_chunk=s.max_rows_per_chunk + 1,
        bytes_per_chunk=s.max_bytes_per_chunk + 1,
    )
    assert set(violations_of(req)) == {"limit", "rows_per_chunk", "bytes_per_chunk"}
    ok = export_pb2.ExportPropertiesRequest(
        format=export_pb2.EXPORT_FORMAT_JSONL, limit=s.max_limit, rows_per_chunk=1, bytes_per_chunk=1024
    )
    assert violations_of(ok) == {}


def test_unknown_and_duplicate_columns_are_named_by_index() -> None:
    table = (Column("id", "int"), Column("city", "text"))
    v = Violations()
    assert resolve_columns(["city", "nope", "city"], table, v) == (table[1],)
    assert [f for f, _ in v.items] == ["columns[1]", "columns[2]"]
    assert resolve_columns([], table, Violations()) == table


def test_filter_values_become_safe_literals() -> None:
    f = common_pb2.PropertyFilter(
        cities=["O'Brien\\", "Omsk"],
        property_types=[common_pb2.PROPERTY_TYPE_ROOM],
        sources=[common_pb2.LISTING_SOURCE_CIAN],
        active_only=True,
        min_price=0,
    )
    f.updated_since.CopyFrom(Timestamp(seconds=0, nanos=1))
    v = Violations()
    sql = filter_sql(f, v)
    assert v.items == []
    assert "\"city\" IN ('O''Brien\\', 'Omsk')" in sql
    assert "\"property_type\" IN ('room')" in sql and "\"source\" IN ('cian')" in sql
    assert '"price" >= 0' in sql and '"is_active"' in sql
    assert "'1970-01-01T00:00:00.000001+00:00'::timestamptz" in sql  # 1 ns rounds up, keeping >= exact
    assert filter_sql(common_pb2.PropertyFilter(), Violations()) == ""


def test_json_select_alternates_constant_and_string_columns() -> None:
    cols = [Column("id", "int", True), Column("title", "text"), Column("area", "float"), Column("at", "time")]
    fields = json_fields(cols)
    # {Mid M:<n>,Mtitle M:  "  <title>  "  ,Marea M:<n>,Mat M:  "  <at>  "  }   (M: the key-quote marker)
    assert fields[0] == "('{\x1eid\x1e:' || \"id\"::text || ',\x1etitle\x1e:')"
    assert fields[1] == '"title"' and fields[3] == "(to_json(\"at\") #>> '{}')" and fields[4] == "'}'"
    assert len(fields) == 5 and markers_per_row(cols) == 8
