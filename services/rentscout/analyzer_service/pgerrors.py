"""Errors of a statement under analysis, mapped to statuses that carry no data from the database.

PostgreSQL messages can quote values the statement read: a failed cast to regclass or regtype names
the text it tried ("relation "<a password hash>" does not exist"), constraint details quote rows,
RAISE messages say anything. So no database message is ever echoed. The answer carries the
SQLSTATE, its condition name, the kind of object it concerns and the position in the caller's own
text, with the caller's own token found there. The full error goes to the server log at debug
level: its catalog names (schema, table, column, type, constraint), never its message or detail.
"""

from __future__ import annotations

import logging
import re

import asyncpg

from rentscout.runtime.classify import classify
from rentscout.runtime.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)

# The kind of object a SQLSTATE is about (class 42 and friends), for the answer.
OBJECT_KINDS = {
    "42P01": "relation",
    "42703": "column",
    "42883": "function",
    "42725": "function",
    "42P02": "parameter",
    "42702": "column",
    "42704": "object",
    "3F000": "schema",
    "42P09": "alias",
    "42P08": "parameter",
    "42P18": "parameter",
    "42804": "expression",
    "42846": "cast",
    "42803": "column",
    "42P10": "column",
    "42P13": "function",
    "42P07": "relation",
    "42P06": "schema",
    "42710": "object",
    "0A000": "feature",
    "42P19": "recursion",
}
# PostgreSQL's error context for a parameter it could not read at bind ("unnamed portal parameter $1 = '...'")
# (the outermost context line, so the last: lines before it may quote the value itself)
_BOUND_PARAMETER = re.compile(r'^(?:unnamed portal|portal "[^"]*") parameter \$([0-9]+)', re.MULTILINE)
_ARGUMENT = re.compile(r"^invalid input for query argument \$([0-9]+)")
_TOKEN = re.compile(r'"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$.]*|\$[0-9]+|[^\s]')
_log = logging.getLogger(__name__)


def condition_name(exc: asyncpg.PostgresError) -> str:
    """'InvalidTextRepresentationError' -> 'invalid text representation'."""
    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower() or "database error"


def bound_parameter(exc: asyncpg.PostgresError) -> int | None:
    """The placeholder ($n) PostgreSQL was reading when it failed at bind, from the error's context line."""
    context = getattr(exc, "context", None)
    found = _BOUND_PARAMETER.findall(context.splitlines()[-1]) if isinstance(context, str) and context else []
    return int(found[-1]) if found else None


def argument_number(exc: Exception) -> int | None:
    """The placeholder asyncpg's encoder refused (its own message about our value, never sent)."""
    match = _ARGUMENT.match(str(exc))
    return int(match.group(1)) if match else None


def map_statement_error(
    exc: asyncpg.PostgresError,
    field: str = "sql",
    statement_timeout_ms: int | None = None,
    offset: int = 0,
    sql: str | None = None,
) -> ServiceError:
    """The status for an error raised while planning or running the analyzed statement.

    `offset` is where the caller's text `sql` starts in what was sent (after `EXPLAIN (...) `), so
    that positions point into the caller's own statement.
    """
    state = exc.sqlstate or ""
    if state == "57014":  # query_canceled: our statement_timeout (the RPC deadline cancels differently)
        limit = f" of {statement_timeout_ms} ms" if statement_timeout_ms else ""
        return DeadlineExceeded(f"the statement ran longer than the analyzer's statement_timeout{limit} and was cancelled")
    if state == "55P03":
        return Unavailable("the statement waited longer than lock_timeout for a lock; retry later")
    if state == "25006":
        return InvalidArgument(
            field,
            "tried to write in the read-only analysis transaction (SQLSTATE 25006); only read-only statements can be analyzed",
        )
    if state == "42501":
        return InvalidArgument(field, "is not permitted for the analyzer's database role (SQLSTATE 42501)")
    if state.startswith("53"):
        return ResourceExhausted(f"the database ran out of resources running the statement (SQLSTATE {state})")
    if state in ("0A000", "55000") and "read-only" in str(exc):
        return InvalidArgument(field, f"needs a read-write transaction (SQLSTATE {state})")
    if (transport := classify(exc)) is not None:
        return transport
    log_withheld(exc)
    kind = OBJECT_KINDS.get(state)
    about = f" ({kind})" if kind else ""
    where = _where(exc, sql, offset)
    return InvalidArgument(
        field,
        f"failed with {condition_name(exc)}{about}{where} (SQLSTATE {state}); the database "
        f"message is not shown because it may quote data",
    )


def _where(exc: asyncpg.PostgresError, sql: str | None, offset: int) -> str:
    """' at position N near <the caller's own token there>', or '' (no position inside `sql`)."""
    raw = getattr(exc, "position", None)
    position = int(raw) - offset if raw and str(raw).isdigit() else 0
    if sql is None or not 0 < position <= len(sql):
        return ""
    match = _TOKEN.match(sql, position - 1)
    return f" at position {position}" + (f" near {match.group(0)[:64]}" if match else "")


def log_withheld(exc: asyncpg.PostgresError) -> None:
    """The error for the server log: what PostgreSQL named from the catalog, never its message."""
    _log.debug(
        "analyzed statement failed",
        extra={
            "fields": {
                "error.type": type(exc).__name__,
                "error.code": exc.sqlstate,
                "db.error.position": int(raw) if (raw := getattr(exc, "position", None)) and str(raw).isdigit() else None,
                **{
                    f"db.error.{name}": getattr(exc, name, None)
                    for name in ("schema_name", "table_name", "column_name", "data_type_name", "constraint_name")
                    if getattr(exc, name, None)
                },
            }
        },
    )


def map_role_error(exc: asyncpg.PostgresError, role: str) -> ServiceError:
    return FailedPrecondition(
        f"cannot switch to the analyzer role {role!r} (SQLSTATE {exc.sqlstate}): create it and grant it to the "
        f"service's user (migration 0004 does), or unset RENTSCOUT_ANALYZER_EXPLAIN_ROLE"
    )
