"""The one way the analyzer runs anything a caller wrote: a transaction that is always rolled back,
as the low-privilege role, with statement and lock timeouts no longer than the RPC's own deadline.

The transaction starts READ WRITE only so that the catalog check (`catalog_policy.check`) can
create its probe function in pg_temp; nothing the caller wrote executes before that check has made
the transaction READ ONLY in the same round trip.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from rentscout.analyzer_service import limits
from rentscout.analyzer_service.pgerrors import map_role_error
from rentscout.analyzer_service.settings import AnalyzerSettings
from rentscout.analyzer_service.sqltext import TAG, quote_ident
from rentscout.runtime import deadline
from rentscout.runtime.errors import FailedPrecondition
from rentscout.wire.sql import literal

_log = logging.getLogger(__name__)

ROLE_ERRORS = (asyncpg.InvalidParameterValueError, asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedObjectError)


# The catalog check's recursive query is estimated at millions of rows (PostgreSQL guesses 10 per
# regexp match): with the session's settings it is JIT-compiled (~60 ms), sizes its hash tables
# to work_mem (~30 ms of zeroing) and hashes whole catalogs (a seq scan of pg_proc, ~0.5 ms) to join
# the dozen rows it really finds, for a query that runs in under 1 ms by index. So the transaction
# starts with `jit = off`, a small work_mem and nested loops only (index lookups), the session's own
# values stashed in `rentscout.*` placeholders, and the check itself restores them before the
# caller's statement is planned.
CHECK_SETTINGS = {"jit": "off", "work_mem": "64kB", "enable_hashjoin": "off", "enable_mergejoin": "off", "enable_hashagg": "off"}
STASH_SETTINGS_SQL = ", ".join(
    f"pg_catalog.set_config('rentscout.{name}', pg_catalog.current_setting('{name}'), true), "
    f"pg_catalog.set_config('{name}', '{value}', true)"
    for name, value in CHECK_SETTINGS.items()
)
RESTORE_SETTINGS_SQL = ", ".join(
    f"pg_catalog.set_config('{name}', pg_catalog.current_setting('rentscout.{name}'), true) AS restored_{name}"
    for name in CHECK_SETTINGS
)


def timeout_ms(configured_ms: int) -> int:
    """`configured_ms`, shortened to what is left of the call's budget (`limits.budget`), of the RPC deadline
    and of the server's bound on any one wait (at least 1 ms): PostgreSQL then cancels the statement itself
    before the server stops waiting."""
    return limits.statement_timeout_ms(configured_ms)


TEMP_FILE_LIMIT_FIX = (
    "the service's database user may not set temp_file_limit, which bounds the temporary files of analyzed "
    "statements: as a superuser, GRANT SET ON PARAMETER temp_file_limit TO <that user> (PostgreSQL 15+), or set "
    "RENTSCOUT_ANALYZER_TEMP_FILE_LIMIT_KB=-1 to leave the server's own temp_file_limit"
)


def memory_limits(settings: AnalyzerSettings) -> dict[str, str]:
    """SQL expressions for work_mem, hash_mem_multiplier and temp_file_limit: the session's values, lowered to
    the analyzer's ceilings (an analysis runs with the application's settings unless they exceed those)."""
    kb = int(settings.work_mem_kb)
    limits = {
        "work_mem": f"CASE WHEN pg_catalog.pg_size_bytes(pg_catalog.current_setting('work_mem')) > {kb * 1024} "
        f"THEN '{kb}kB' ELSE pg_catalog.current_setting('work_mem') END",
        "hash_mem_multiplier": f"LEAST(pg_catalog.current_setting('hash_mem_multiplier')::float8, "
        f"{float(settings.hash_mem_multiplier)!r}::float8)::text",
    }
    if settings.temp_file_limit_kb >= 0:
        temp = int(settings.temp_file_limit_kb)
        limits["temp_file_limit"] = (
            f"CASE WHEN pg_catalog.current_setting('temp_file_limit') = '-1' OR pg_catalog.pg_size_bytes("
            f"pg_catalog.current_setting('temp_file_limit')) > {temp * 1024} THEN '{temp}kB' "
            f"ELSE pg_catalog.current_setting('temp_file_limit') END"
        )
    return limits


def statement_role(settings: AnalyzerSettings) -> str | None:
    """The role caller-written statements run as; None only with the explicit opt-out."""
    if settings.unprivileged_opt_out:
        return None
    if not settings.explain_role:
        raise FailedPrecondition(
            "RENTSCOUT_ANALYZER_EXPLAIN_ROLE is empty: set it to the analyzer's low-privilege role (rentscout_explain, "
            "created by the migrations), or opt out explicitly with RENTSCOUT_ANALYZER_RUN_AS_SERVICE_USER=true"
        )
    return settings.explain_role


# Server pids of connections whose session already has its temporary schema (see below).
_TEMP_SCHEMA_READY: set[int] = set()


async def ensure_temp_schema(conn: asyncpg.Connection) -> None:
    """Give the session its pg_temp schema once, in a committed transaction of its own.

    The catalog check creates its probe in pg_temp inside a transaction that always rolls back; were the
    schema created there too, every request would create and drop a namespace, which resets all of
    the backend's cached plans (a pg_namespace change invalidates every plan) and doubles the cost of
    the check and of the caller's statement. An empty temporary schema is all that stays.
    """
    pid = conn.get_server_pid()
    if pid in _TEMP_SCHEMA_READY:
        return
    await conn.execute(
        f"BEGIN {TAG}; CREATE TEMP TABLE rentscout_temp_schema () ON COMMIT DROP; COMMIT", timeout=deadline.remaining()
    )
    _TEMP_SCHEMA_READY.add(pid)


async def prepare(conn: asyncpg.Connection, text: str) -> asyncpg.prepared_stmt.PreparedStatement:
    """Parse and describe `text` as the connection's unnamed statement (asyncpg's public `name=""`).

    A text holding anything a caller wrote must not outlive the request: a named statement stays in the
    session, where a later caller on the same pooled connection could read it (pg_prepared_statements).
    PostgreSQL keeps the unnamed statement only until the next one is prepared or a simple query runs
    (the release's reset is one), and lists it nowhere. So run it before preparing anything else.
    """
    stmt: asyncpg.prepared_stmt.PreparedStatement = await conn.prepare(text, name="", timeout=deadline.remaining())
    return stmt


def set_role_sql(role: str | None) -> str:
    return f"SET LOCAL {TAG} ROLE {quote_ident(role)}" if role else f"SET LOCAL {TAG} ROLE NONE"


@contextlib.asynccontextmanager
async def transaction(
    conn: asyncpg.Connection,
    settings: AnalyzerSettings,
    *,
    read_only: bool = False,
    as_role: bool = True,
    checking: bool = True,
    released: bool = False,
) -> AsyncIterator[int]:
    """BEGIN + SET LOCAL timeouts (+ SET LOCAL ROLE); ROLLBACK on the way out whatever happened.

    `checking=False` (a statement the primary already checked, run on a standby): no catalog check
    follows, so no temporary schema and none of its settings.

    `released=True`: `conn` is a pooled connection released right after this block, and the release
    (`Database.connection`) sends the ROLLBACK in the round trip of its reset; nothing is sent here.

    Yields the statement_timeout in force (ms). If the rollback itself fails the connection is
    terminated rather than returned to the pool in an unknown state.
    """
    role = statement_role(settings) if as_role else None
    stmt_ms = timeout_ms(settings.statement_timeout_ms)
    lock_ms = min(settings.lock_timeout_ms, stmt_ms)
    mode = " READ ONLY" if read_only else ""
    # One round trip: BEGIN and one SELECT of set_config(..., is_local => true), the same as SET LOCAL
    # (the values are ours: integers we format, names we quote). If it fails half-way, the transaction
    # may be open: the finally below rolls it back either way.
    local = {
        "statement_timeout": literal(str(int(stmt_ms))),
        "lock_timeout": literal(str(int(lock_ms))),
        "idle_in_transaction_session_timeout": literal(str(int(stmt_ms) + 5000)),
        # the parser that vetted the statement (pglast) assumes standard strings
        "standard_conforming_strings": "'on'",
        **memory_limits(settings),
    }
    if role:  # last: temp_file_limit is set with the service's privilege, not the role's
        local["role"] = literal(role)
    assignments = ", ".join(f"pg_catalog.set_config('{name}', {value}, true)" for name, value in local.items())
    stash = f", {STASH_SETTINGS_SQL}" if checking else ""
    setup = f"BEGIN {TAG} ISOLATION LEVEL REPEATABLE READ{mode}; SELECT {TAG} {assignments}{stash}"
    if checking:
        await ensure_temp_schema(conn)
    try:
        try:
            await conn.execute(setup, timeout=deadline.remaining())
        except asyncpg.InsufficientPrivilegeError as exc:
            if "temp_file_limit" in str(exc):  # PostgreSQL's message about our own setting, no data
                raise FailedPrecondition(TEMP_FILE_LIMIT_FIX) from None
            raise map_role_error(exc, role or "") from None
        except ROLE_ERRORS as exc:
            raise map_role_error(exc, role or "") from None
        yield stmt_ms
    finally:
        try:
            if not conn.is_closed() and not released:
                await conn.execute(f"ROLLBACK {TAG}", timeout=5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, OSError) as exc:
            _log.warning(
                "rollback of an analysis transaction failed; dropping the connection",
                extra={"fields": {"error.type": type(exc).__name__}},
            )
            conn.terminate()


async def switch_role(conn: asyncpg.Connection, role: str | None, before: str = "") -> None:
    """`before` (statements of ours) then SET LOCAL ROLE, in one round trip; FAILED_PRECONDITION
    with the fix when the service cannot switch to the role."""
    try:
        await conn.execute(before + set_role_sql(role), timeout=deadline.remaining())
    except ROLE_ERRORS as exc:
        raise map_role_error(exc, role or "") from None


@contextlib.asynccontextmanager
async def as_statement_role(conn: asyncpg.Connection, settings: AnalyzerSettings) -> AsyncIterator[None]:
    """Within a transaction opened with as_role=False: run a block as the statement role, then as the
    service again (for planning caller-written SQL between the service's own catalog and HypoPG work)."""
    role = statement_role(settings)
    if role is None:
        yield
        return
    await switch_role(conn, role)
    try:
        yield
    finally:
        with contextlib.suppress(asyncpg.InFailedSQLTransactionError):
            await conn.execute(set_role_sql(None), timeout=deadline.remaining())
