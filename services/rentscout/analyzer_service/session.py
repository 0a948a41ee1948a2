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
CHECK_SETTINGS = {"jit": "off", "work_mem": "64kB", "enable_hashjoin": "off", "enable_mergejoin": "off",
                  "enable_hashagg": "off"}
STASH_SETTINGS_SQL = ", ".join(
    f"pg_catalog.set_config('rentscout.{name}', pg_catalog.current_setting('{name}'), true), "
    f"pg_catalog.set_config('{name}', '{value}', true)" for name, value in CHECK_SETTINGS.items())
RESTORE_SETTINGS_SQL = ", ".join(
    f"pg_catalog.set_config('{name}', pg_catalog.current_setting('rentscout.{name}'), true) AS restored_{name}"
    for name in CHECK_SETTINGS)


def timeout_ms(configured_ms: int) -> int:
    """`configured_ms`, shortened to what is left of the RPC deadline and to the server's bound on any one
    wait (at least 1 ms): PostgreSQL then cancels the statement itself before the server stops waiting."""
    return max(1, min(configured_ms, int(deadline.remaining() * 1000)))


def statement_role(settings: AnalyzerSettings) -> str | None:
    """The role caller-written statements run as; None only with the explicit opt-out."""
    if settings.unprivileged_opt_out:
        return None
    if not settings.explain_role:
        raise FailedPrecondition(
            "RENTSCOUT_ANALYZER_EXPLAIN_ROLE is empty: set it to the analyzer's low-privilege role (rentscout_explain, "
            "created by the migrations), or opt out explicitly with RENTSCOUT_ANALYZER_RUN_AS_SERVICE_USER=true")
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
    await conn.execute(f"BEGIN {TAG}; CREATE TEMP TABLE rentscout_temp_schema () ON COMMIT DROP; COMMIT",
                       timeout=deadline.remaining())
    _TEMP_SCHEMA_READY.add(pid)


async def prepare(conn: asyncpg.Connection, text: str) -> asyncpg.prepared_stmt.PreparedStatement:
    """Parse and describe `text` once per connection (asyncpg's statement cache: LRU, bounded by the pool's
    `statement_cache_size` and `max_cacheable_statement_size`), so a statement analyzed again costs no
    round trip to prepare, as it costs none to a client of asyncpg running it bare.

    Still one command per text (the extended protocol). What is cached is PostgreSQL's own prepared
    statement, with its rules: it is parsed again when a relation or function it uses changes or the
    search_path differs, and its parameter types stay those inferred the first time. asyncpg exposes
    its cache only through `_prepare(use_cache=True)` (what `Connection.fetch` uses).
    """
    cached_prepare = conn._prepare  # type: ignore[attr-defined]  # (not in asyncpg's stubs)
    stmt: asyncpg.prepared_stmt.PreparedStatement = await cached_prepare(text, use_cache=True,
                                                                         timeout=deadline.remaining())
    return stmt


def set_role_sql(role: str | None) -> str:
    return f"SET LOCAL {TAG} ROLE {quote_ident(role)}" if role else f"SET LOCAL {TAG} ROLE NONE"


@contextlib.asynccontextmanager
async def transaction(conn: asyncpg.Connection, settings: AnalyzerSettings, *, read_only: bool = False,
                      as_role: bool = True, checking: bool = True, released: bool = False) -> AsyncIterator[int]:
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
    local = {"statement_timeout": str(int(stmt_ms)), "lock_timeout": str(int(lock_ms)),
             "idle_in_transaction_session_timeout": str(int(stmt_ms) + 5000),
             # the parser that vetted the statement (pglast) assumes standard strings
             "standard_conforming_strings": "on"}
    if role:
        local["role"] = role
    assignments = ", ".join(f"pg_catalog.set_config('{name}', {literal(value)}, true)" for name, value in local.items())
    stash = f", {STASH_SETTINGS_SQL}" if checking else ""
    setup = f"BEGIN {TAG} ISOLATION LEVEL REPEATABLE READ{mode}; SELECT {TAG} {assignments}{stash}"
    if checking:
        await ensure_temp_schema(conn)
    try:
        try:
            await conn.execute(setup, timeout=deadline.remaining())
        except ROLE_ERRORS as exc:
            raise map_role_error(exc, role or "") from None
        yield stmt_ms
    finally:
        try:
            if not conn.is_closed() and not released:
                await conn.execute(f"ROLLBACK {TAG}", timeout=5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, OSError) as exc:
            _log.warning("rollback of an analysis transaction failed; dropping the connection",
                         extra={"fields": {"error.type": type(exc).__name__}})
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
