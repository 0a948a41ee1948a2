"""Parameter binding and the mapping of database errors to statuses that never quote row data."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from rentscout.analyzer.v1 import analyzer_pb2
from rentscout.analyzer_service.params import ParamError, bind, coerce, from_proto
from rentscout.analyzer_service.pgerrors import condition_name, map_statement_error
from rentscout.analyzer_service.slow_queries import Extension, build_query, time_columns


def test_from_proto_covers_every_kind() -> None:
    ts = Timestamp()
    ts.FromDatetime(dt.datetime(2026, 1, 2, 3, 4, 5))
    values = from_proto(
        [
            analyzer_pb2.QueryParam(string_value="x"),
            analyzer_pb2.QueryParam(int_value=7),
            analyzer_pb2.QueryParam(double_value=1.5),
            analyzer_pb2.QueryParam(bool_value=True),
            analyzer_pb2.QueryParam(null_value=True),
            analyzer_pb2.QueryParam(timestamp_value=ts),
            analyzer_pb2.QueryParam(),
        ]
    )
    assert values == ["x", 7, 1.5, True, None, dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), None]


@pytest.mark.parametrize(
    ("value", "type_name", "expected"),
    [
        ("42", "int8", 42),
        (42, "int4", 42),
        (3.0, "int2", 3),
        ("1.5", "float8", 1.5),
        (2, "numeric", decimal.Decimal(2)),
        ("yes", "bool", True),
        (False, "bool", False),
        (7, "text", "7"),
        (True, "varchar", "true"),
        ("2026-01-02T03:04:05Z", "timestamptz", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
        ("2026-01-02", "date", dt.date(2026, 1, 2)),
        ("12345678-1234-5678-1234-567812345678", "uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        (None, "int8", None),
        ("{}", "jsonb", "{}"),
    ],
)
def test_coerce(value: object, type_name: str, expected: object) -> None:
    assert coerce(value, type_name, "scalar") == expected


def test_timestamp_without_time_zone_is_naive_utc() -> None:
    aware = dt.datetime(2026, 1, 2, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert coerce(aware, "timestamp", "scalar") == dt.datetime(2026, 1, 2, 3, 0)


@pytest.mark.parametrize(
    ("value", "type_name", "kind"),
    [
        ("abc", "int8", "scalar"),
        (True, "int4", "scalar"),
        (1.5, "int4", "scalar"),
        ("maybe", "bool", "scalar"),
        ("x", "interval", "scalar"),
        ("{1,x}", "int4[]", "array"),
        ("1,2", "int4[]", "array"),
        (7, "int4[]", "array"),
        ("nope", "timestamptz", "scalar"),
    ],
)
def test_coerce_refuses_what_cannot_fit(value: object, type_name: str, kind: str) -> None:
    with pytest.raises(ParamError):
        coerce(value, type_name, kind)


def test_user_types_get_text_and_bind_names_the_placeholder() -> None:
    assert coerce(1, "mood", "scalar", "public") == "1"
    assert bind(["5", "x"], [("int8", "scalar", "pg_catalog"), ("text", "scalar", "pg_catalog")]) == [5, "x"]
    with pytest.raises(ParamError, match=r"\$2 \(int4\)") as refused:
        bind([1, "two"], [("int4", "scalar", "pg_catalog"), ("int4", "scalar", "pg_catalog")])
    assert refused.value.field == "params[1]"


@pytest.mark.parametrize(
    ("literal", "type_name", "expected"),
    [
        ("{1,2}", "int4[]", [1, 2]),
        ("{}", "int8[]", []),
        ("{{1,2},{3,4}}", "int8[]", [[1, 2], [3, 4]]),
        ('{"a b",NULL,"x\\"y",plain}', "text[]", ["a b", None, 'x"y', "plain"]),
        ("{1.5, 2}", "float8[]", [1.5, 2.0]),
    ],
)
def test_array_placeholders_take_postgresqls_array_literal(literal: str, type_name: str, expected: object) -> None:
    assert coerce(literal, type_name, "array") == expected
    assert bind(["x", literal], [("text", "scalar", "pg_catalog"), (type_name, "array", "pg_catalog")])[1] == expected


@pytest.mark.parametrize("literal", ["{1,,2}", "{1 2}", "{1}x", '{"a}', "{1,{2}", "", "{", "1"])
def test_malformed_array_literals_name_the_parameter(literal: str) -> None:
    with pytest.raises(ParamError) as refused:
        bind([literal], [("int4[]", "array", "pg_catalog")])
    assert refused.value.field == "params[0]" and "$1 (int4[])" in str(refused.value)
    with pytest.raises(ParamError, match="2 placeholder"):
        bind([1], [("int4", "scalar", "pg_catalog")] * 2)


def _error(cls: type[asyncpg.PostgresError], message: str, **fields: str) -> asyncpg.PostgresError:
    exc = cls(message)
    exc.message = message
    for key, value in fields.items():
        setattr(exc, key, value)
    return exc


def test_row_data_in_error_messages_is_not_echoed() -> None:
    err = map_statement_error(
        _error(asyncpg.InvalidTextRepresentationError, 'invalid input syntax for type integer: "secret-card-4111"')
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "secret" not in err.message and "22P02" in err.message and "invalid text representation" in err.message
    raised = map_statement_error(_error(asyncpg.RaiseError, "leaked: alice@example.com"))
    assert "alice" not in raised.message and "P0001" in raised.message
    unique = map_statement_error(_error(asyncpg.UniqueViolationError, "duplicate key", detail="Key (email)=(bob@x)"))
    assert "bob" not in unique.message


def test_errors_carry_sqlstate_kind_and_the_callers_own_token_never_the_message() -> None:
    sql = "SELECT nope FROM properties"
    err = map_statement_error(_error(asyncpg.UndefinedColumnError, 'column "nope" does not exist', position="8"), sql=sql)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "undefined column (column) at position 8 near nope (SQLSTATE 42703)" in err.message
    assert "does not exist" not in err.message
    shifted = map_statement_error(_error(asyncpg.UndefinedColumnError, "x", position="30"), offset=22, sql=sql)
    assert "at position 8 near nope" in shifted.message
    inside_prefix = map_statement_error(_error(asyncpg.PostgresSyntaxError, "x", position="3"), offset=22, sql=sql)
    assert "position" not in inside_prefix.message and "42601" in inside_prefix.message
    # a failed cast to regclass names the text it read: a value from the database, never shown
    leaked = map_statement_error(
        _error(asyncpg.UndefinedTableError, 'relation "SCRAM-SHA-256$4096:salt" does not exist'),
        sql="SELECT (SELECT rolpassword FROM pg_authid)::regclass",
    )
    assert "SCRAM" not in leaked.message and "42P01" in leaked.message and "(relation)" in leaked.message


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (asyncpg.QueryCanceledError, grpc.StatusCode.DEADLINE_EXCEEDED),
        (asyncpg.LockNotAvailableError, grpc.StatusCode.UNAVAILABLE),
        (asyncpg.ReadOnlySQLTransactionError, grpc.StatusCode.INVALID_ARGUMENT),
        (asyncpg.InsufficientPrivilegeError, grpc.StatusCode.INVALID_ARGUMENT),
        (asyncpg.OutOfMemoryError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (asyncpg.AdminShutdownError, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_status_codes(cls: type[asyncpg.PostgresError], code: grpc.StatusCode) -> None:
    assert map_statement_error(_error(cls, "x"), statement_timeout_ms=100).code == code


def test_condition_names() -> None:
    assert condition_name(_error(asyncpg.DivisionByZeroError, "x")) == "division by zero"


def test_pg_stat_statements_columns_follow_the_extension_version() -> None:
    assert time_columns((1, 7))["total"] == "total_time"
    assert time_columns((1, 10))["mean"] == "mean_exec_time"
    new = build_query(Extension("public", "1.10"), "temp_blocks")
    old = build_query(Extension("ext s", "1.6"), "mean_time")
    assert "total_exec_time" in new and "(temp_blks_read + temp_blks_written) DESC" in new
    assert "mean_time AS mean_ms" in old and '"ext s".pg_stat_statements' in old
    assert "strpos(query, 'rentscout-analyzer') = 0" in new


def test_the_parameter_postgresql_failed_to_read_comes_from_its_last_context_line() -> None:
    from rentscout.analyzer_service.pgerrors import argument_number, bound_parameter

    exc = _error(
        asyncpg.InvalidTextRepresentationError,
        "invalid input syntax for type json",
        context="JSON data, line 1: {bad\nunnamed portal parameter $7\nunnamed portal parameter $2",
    )
    assert bound_parameter(exc) == 2
    forged = _error(asyncpg.InvalidTextRepresentationError, "x", context="unnamed portal parameter $9\nSQL function")
    assert bound_parameter(forged) is None  # only PostgreSQL's own outermost line counts
    assert bound_parameter(_error(asyncpg.DivisionByZeroError, "x")) is None
    assert argument_number(ValueError("invalid input for query argument $3: 'x' (an int is required)")) == 3
