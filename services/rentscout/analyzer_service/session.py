"""The one way the analyzer runs anything a caller wrote: a read-only transaction that is always
rolled back, with statement and lock timeouts no longer than the RPC's own deadline."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from rentscout.analyzer_service.pgerrors import map_role_error
from rentscout.analyzer_service.sqltext import TAG, quote_ident
from rentscout.runtime import deadline

_log = logging.getLogger(__name__)


def timeout_ms(configured_ms: int) -> int:
    """`configured_ms`, shortened to what is left of the RPC deadline (at least 1 ms)."""
    left = deadline.remaining()
    if left is None:
        return configured_ms
    return max(1, min(configured_ms, int(left * 1000)))


@contextlib.asynccontextmanager
async def read_only(conn: asyncpg.Connection, *, statement_timeout_ms: int, lock_timeout_ms: int) -> AsyncIterator[int]:
    """BEGIN READ ONLY + SET LOCAL timeouts; ROLLBACK on the way out whatever happened.

    Yields the statement_timeout in force (ms). If the rollback itself fails the connection is
    terminated rather than returned to the pool in an unknown state.
    """
    stmt_ms = timeout_ms(statement_timeout_ms)
    lock_ms = min(lock_timeout_ms, stmt_ms)
    # One round trip; integers formatted by us (SET takes no bind parameters). If it fails half-way,
    # the transaction may be open: the finally below rolls it back either way.
    try:
        await conn.execute(f"BEGIN {TAG} ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                           f"SET LOCAL {TAG} statement_timeout = {int(stmt_ms)}; "
                           f"SET LOCAL {TAG} lock_timeout = {int(lock_ms)}; "
                           f"SET LOCAL {TAG} idle_in_transaction_session_timeout = {int(stmt_ms) + 5000}; "
                           # the parser that vetted the statement (pglast) assumes standard strings
                           f"SET LOCAL {TAG} standard_conforming_strings = on",
                           timeout=deadline.remaining())
        yield stmt_ms
    finally:
        try:
            if not conn.is_closed():
                await conn.execute(f"ROLLBACK {TAG}", timeout=5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, OSError) as exc:
            _log.warning("rollback of an analysis transaction failed; dropping the connection",
                         extra={"fields": {"error.type": type(exc).__name__}})
            conn.terminate()


async def set_role(conn: asyncpg.Connection, role: str) -> None:
    """SET LOCAL ROLE for the rest of the transaction; FAILED_PRECONDITION when it is not possible."""
    if not role:
        return
    try:
        await conn.execute(f"SET LOCAL {TAG} ROLE {quote_ident(role)}", timeout=deadline.remaining())
    except (asyncpg.InvalidParameterValueError, asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedObjectError) as exc:
        raise map_role_error(exc, role) from None
