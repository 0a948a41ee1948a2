"""Errors of a statement under analysis, mapped to statuses without leaking row data.

PostgreSQL messages can quote values from the rows a statement read (invalid input syntax for type
integer: "<a value from the table>", constraint details, RAISE messages of functions). Only
messages built from the statement text and the catalog (syntax errors and undefined or ambiguous
names) are echoed; every other error becomes a generic message naming its condition and SQLSTATE.
"""

from __future__ import annotations

import re

import asyncpg

from rentscout.runtime.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
    Unavailable,
    classify,
)

# SQLSTATEs whose message only quotes the statement's own text or catalog names.
ECHO_SAFE = frozenset({
    "42601",  # syntax_error
    "42P01",  # undefined_table
    "42703",  # undefined_column
    "42883",  # undefined_function
    "42P02",  # undefined_parameter
    "42702",  # ambiguous_column
    "42725",  # ambiguous_function
    "42803",  # grouping_error
    "42804",  # datatype_mismatch
    "42P18",  # indeterminate_datatype
    "42846",  # cannot_coerce
    "42P10",  # invalid_column_reference
    "42P09",  # ambiguous_alias
    "42P08",  # ambiguous_parameter
    "42704",  # undefined_object (type names)
    "3F000",  # invalid_schema_name
})


def condition_name(exc: asyncpg.PostgresError) -> str:
    """'InvalidTextRepresentationError' -> 'invalid text representation'."""
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower() or "database error"


def map_statement_error(exc: asyncpg.PostgresError, field: str = "sql", statement_timeout_ms: int | None = None,
                        offset: int = 0) -> ServiceError:
    """The status for an error raised while planning or running the analyzed statement.

    `offset` is where the caller's text starts in what was sent (after `EXPLAIN (...) `), so that
    positions point into the caller's own statement.
    """
    state = exc.sqlstate or ""
    if state == "57014":  # query_canceled: our statement_timeout (the RPC deadline cancels differently)
        limit = f" of {statement_timeout_ms} ms" if statement_timeout_ms else ""
        return DeadlineExceeded(f"the statement ran longer than the analyzer's statement_timeout{limit} and was cancelled")
    if state == "55P03":
        return Unavailable("the statement waited longer than lock_timeout for a lock; retry later")
    if state == "25006":
        return InvalidArgument(field, "tried to write in the read-only analysis transaction (SQLSTATE 25006); "
                                      "only read-only statements can be analyzed")
    if state == "42501":
        return InvalidArgument(field, "is not permitted for the analyzer's database role (SQLSTATE 42501)")
    if state.startswith("53"):
        return ResourceExhausted(f"the database ran out of resources running the statement (SQLSTATE {state})")
    if state in ("0A000", "55000") and "read-only" in str(exc):
        return InvalidArgument(field, f"needs a read-write transaction (SQLSTATE {state})")
    if (transport := classify(exc)) is not None:
        return transport
    if state in ECHO_SAFE:
        position = getattr(exc, "position", None)
        position = int(position) - offset if position and str(position).isdigit() else 0
        where = f" (position {position})" if position > 0 else ""
        return InvalidArgument(field, f"{getattr(exc, 'message', None) or condition_name(exc)}{where} (SQLSTATE {state})")
    return InvalidArgument(field, f"failed with {condition_name(exc)} (SQLSTATE {state}); the database message "
                                  f"is not shown because it may quote row data")


def map_role_error(exc: asyncpg.PostgresError, role: str) -> ServiceError:
    return FailedPrecondition(
        f"cannot switch to the analyzer role {role!r} (SQLSTATE {exc.sqlstate}): create it and grant it to the "
        f"service's user (migration 0004 does), or unset RENTSCOUT_ANALYZER_EXPLAIN_ROLE")
