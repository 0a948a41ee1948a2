"""Versioned SQL migrations: files `NNNN_name.sql` applied in order, once each, under an advisory lock.

Idempotent: running it again applies nothing. A migration already applied whose file changed is
an error (edit by adding a new migration, never by rewriting an old one).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

_log = logging.getLogger(__name__)
LOCK_KEY = 0x7E17_5C0D  # pg_advisory_lock key shared by every migrator
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


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


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    conn = await asyncpg.connect(dsn, timeout=10)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        await conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    text PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
        for mig in available():
            if mig.version in done:
                if done[mig.version]["checksum"] != mig.checksum:
                    raise RuntimeError(f"migration {mig.name} changed after it was applied; add a new migration instead")
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                                   mig.version, mig.name, mig.checksum)
            _log.info("applied migration %s", mig.name)
            applied_now.append(mig.name)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        finally:
            await conn.close()
    return applied_now
