"""Which domain error a driver or OS exception means, so one path maps any failure to a gRPC status.

Above both `errors` (the domain errors) and `deadline` (whose budget tells a caller's expired deadline
from the server's own bound ending a wait on a frozen dependency).
"""

from __future__ import annotations

import asyncio

from rentscout.runtime import deadline
from rentscout.runtime.errors import (
    LOCKED_RETRY_AFTER_SECONDS,
    DeadlineExceeded,
    ResourceExhausted,
    ServiceError,
    Unavailable,
    Unimplemented,
)


def classify(exc: BaseException) -> ServiceError | None:
    """Map driver and OS errors to domain errors; None for truly unexpected ones."""
    if isinstance(exc, ServiceError):
        return exc
    import asyncpg
    import redis.exceptions

    if isinstance(exc, NotImplementedError):
        return Unimplemented("this method is not implemented by this server")
    if isinstance(exc, asyncpg.LockNotAvailableError):  # lock_timeout: a table is locked (a migration's ALTER)
        return ResourceExhausted(
            "a table this call reads is locked by another session (RENTSCOUT_DB_LOCK_TIMEOUT_MS passed); retry shortly",
            retry_after=LOCKED_RETRY_AFTER_SECONDS,
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        return DeadlineExceeded("the database statement was cancelled (deadline or statement timeout)")
    if isinstance(
        exc,
        (
            asyncpg.CannotConnectNowError,
            asyncpg.ConnectionDoesNotExistError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CrashShutdownError,
            asyncpg.exceptions.ConnectionFailureError,
            asyncpg.TooManyConnectionsError,
        ),
    ):
        return Unavailable("the database is unavailable")
    if isinstance(exc, asyncpg.InterfaceError) and "connection" in str(exc).lower():
        return Unavailable("the database connection was lost")
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return Unavailable("redis is unavailable")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        if deadline.expired():
            return DeadlineExceeded("the deadline expired before the work finished")
        # the call still had time: the server's own bound on the wait ended it (a frozen dependency)
        return Unavailable(
            f"a dependency did not answer within the server's bound of {deadline.bound():g}s "
            "(RENTSCOUT_DEPENDENCY_TIMEOUT_SECONDS)"
        )
    if isinstance(exc, (ConnectionError, OSError)):
        return Unavailable(f"a dependency is unavailable ({type(exc).__name__})")
    return None
