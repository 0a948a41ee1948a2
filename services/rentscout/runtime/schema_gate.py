"""Schema before traffic: a service is not ready until the schema version its build needs is present.

The build's need is the newest migration it ships (`rentscout.db/migrations/NNNN_*.sql`); the database's
state is `max(version)` of `schema_migrations`, a table only the migrator writes. New pods of a release thus
stay out of the Service's endpoints until the migration Job has applied that release's migrations, while the
old pods (needing an older version) keep serving. Schema versions only grow (migrations are forward-only), so
once a process has seen its version it never asks again.
"""

from __future__ import annotations

import logging
import re
import weakref
from functools import cache
from importlib import resources

import asyncpg

from rentscout.runtime import logs, metrics
from rentscout.runtime.database import Database

_log = logging.getLogger(__name__)
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_ready: weakref.WeakSet[Database] = weakref.WeakSet()
_blocked_logged: weakref.WeakSet[Database] = weakref.WeakSet()


@cache
def required_version() -> str:
    """The newest migration version packaged with this build ("" when it ships none)."""
    folder = resources.files("rentscout.db") / "migrations"
    return max((m.group(1) for e in folder.iterdir() if (m := _MIGRATION.match(e.name))), default="")


async def present_version(db: Database, timeout: float) -> str | None:
    """The newest applied migration (None: never migrated). Raises when PostgreSQL does not answer."""
    try:
        version = await db.fetchval("SELECT max(version) FROM schema_migrations", timeout=timeout)
    except asyncpg.UndefinedTableError:
        return None
    return None if version is None else str(version)


async def ready(db: Database, timeout: float) -> bool:
    """True once `db` holds at least the schema this build needs; False while it does not (or does not answer)."""
    if db in _ready:
        return True
    needed = required_version()
    try:
        present = await present_version(db, timeout)
    except Exception:  # PostgreSQL down or frozen: its own probe reports that
        return False
    ok = present is not None and present >= needed
    metrics.DEPENDENCY_UP.labels("schema").set(1 if ok else 0)
    if ok:
        _ready.add(db)
        if db in _blocked_logged:
            _log.info("schema version %s present (this build needs %s): ready", present, needed)
    elif db not in _blocked_logged:
        _blocked_logged.add(db)
        _log.warning(
            "schema version %s present, this build needs %s: not ready until `rentscout db migrate` has run",
            present or "(none)",
            needed,
            extra={"fields": {**logs.ecs_event("database", "error"), "dependency.name": "schema", "dependency.up": False}},
        )
    return ok
