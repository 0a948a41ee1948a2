"""Versioned SQL migrations: files `NNNN_name.sql` applied in order, once each, under an advisory lock.

Idempotent: running it again applies nothing. A migration already applied whose file changed is
an error (edit by adding a new migration, never by rewriting an old one).

Safe next to live traffic: every lock wait is bounded by `lock_timeout` (a migration queued behind a long
export would otherwise block every reader of the table behind itself) and retried; every NOTICE PostgreSQL
raises is logged (the migrations report what they could not do, e.g. on managed databases, as NOTICEs); and
the run fails when the analyzer's role is missing, unless the operator said it may be.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import asyncpg

from rentscout.db.settings import MigrateSettings

_log = logging.getLogger(__name__)
LOCK_KEY = 0x7E17_5C0D  # pg_advisory_lock key shared by every migrator
EXPLAIN_ROLE = "rentscout_explain"  # created by migrations 0004/0005; the analyzer switches to it
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
T = TypeVar("T")


class MigrationError(RuntimeError):
    """A migration could not be applied, or left the database without what the services need."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("rentscout.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        if m := _NAME.match(entry.name):
            found.append(Migration(m.group(1), entry.name, entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {versions}")
    return found


def required_version() -> str:
    """The newest schema version this build ships (and needs before it serves)."""
    return available()[-1].version


class _Notices:
    """Logs every NOTICE (info) and WARNING the server sends, naming the migration that raised it."""

    def __init__(self) -> None:
        self.current = "the migrator"

    def __call__(self, _conn: object, message: Any) -> None:
        severity = str(getattr(message, "severity", "NOTICE"))
        sqlstate = str(getattr(message, "sqlstate", "") or "")
        level = logging.WARNING if severity in ("WARNING", "ERROR") else logging.INFO
        _log.log(
            level,
            "PostgreSQL %s during %s: %s",
            severity,
            self.current,
            message.message,
            extra={"fields": {"event.action": "migration_notice", "error.code": sqlstate}},
        )


async def _bounded(what: str, attempt: Callable[[], Awaitable[T]], s: MigrateSettings) -> T:
    """`attempt()`, again after a backoff whenever a lock was not granted within lock_timeout."""
    for n in range(1, s.lock_retries + 1):
        try:
            return await attempt()
        except asyncpg.exceptions.LockNotAvailableError:
            if n == s.lock_retries:
                break
            pause = min(30.0, 0.5 * 2 ** (n - 1))
            _log.warning(
                "%s: a lock was not granted within %d ms (attempt %d of %d); retrying in %.1fs",
                what,
                s.lock_timeout_ms,
                n,
                s.lock_retries,
                pause,
                extra={"fields": {"event.action": "migration_lock_retry"}},
            )
            await asyncio.sleep(pause)
    raise MigrationError(
        f"{what}: a lock was not granted within {s.lock_timeout_ms} ms in {s.lock_retries} attempts; "
        "a long transaction holds it (see pg_locks / pg_stat_activity), retry later"
    )


async def analyzer_role_usable(conn: asyncpg.Connection) -> bool:
    """Whether rentscout_explain exists and the connected user may switch to it."""
    return bool(
        await conn.fetchval(
            "SELECT coalesce((SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_catalog.pg_roles WHERE rolname = $1),"
            " false)",
            EXPLAIN_ROLE,
        )
    )


async def _check_analyzer_role(conn: asyncpg.Connection) -> None:
    if not await analyzer_role_usable(conn):
        raise MigrationError(
            f"the analyzer's role {EXPLAIN_ROLE} is missing or not granted to the migrating user (see the NOTICEs "
            'above): create it as an administrator (docs/operations.md, "The analyzer\'s database role"), or set '
            "RENTSCOUT_MIGRATE_ALLOW_MISSING_ANALYZER_ROLE=true and RENTSCOUT_ANALYZER_RUN_AS_SERVICE_USER=true"
        )


async def migrate(dsn: str, settings: MigrateSettings | None = None, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Apply pending migrations (`migrations`: the packaged ones by default); returns the names applied."""
    s = settings or MigrateSettings()
    conn = await asyncpg.connect(dsn, timeout=10)
    notices = _Notices()
    conn.add_log_listener(notices)
    applied_now: list[str] = []
    locked = False
    try:
        await conn.execute(f"SET lock_timeout = {int(s.lock_timeout_ms)}")
        await _bounded("the migration lock", lambda: conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY), s)
        locked = True
        await conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    text PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
        for mig in available() if migrations is None else migrations:
            if mig.version in done:
                if done[mig.version]["checksum"] != mig.checksum:
                    raise RuntimeError(f"migration {mig.name} changed after it was applied; add a new migration instead")
                continue
            notices.current = mig.name

            async def apply(mig: Migration = mig) -> None:
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        mig.version,
                        mig.name,
                        mig.checksum,
                    )

            await _bounded(f"migration {mig.name}", apply, s)
            _log.info("applied migration %s", mig.name)
            applied_now.append(mig.name)
        notices.current = "the migrator"
        if migrations is None:  # the packaged migrations create the role
            if s.allow_missing_analyzer_role:
                if not await analyzer_role_usable(conn):
                    _log.warning(
                        "the analyzer's role %s is missing or not granted; allowed by "
                        "RENTSCOUT_MIGRATE_ALLOW_MISSING_ANALYZER_ROLE",
                        EXPLAIN_ROLE,
                    )
            else:
                await _check_analyzer_role(conn)
    finally:
        try:
            if locked:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        finally:
            await conn.close()
    return applied_now
