"""The exportable columns of `properties`, read from the catalog (so a new migration's column is exportable
without a code change), each with the kind (rentscout.wire.schema) that decides how formats render it."""

from __future__ import annotations

import asyncio
import time

from rentscout.runtime.database import Database
from rentscout.wire.schema import TABLE, Column, kind_of

CATALOG_TTL_SECONDS = 60.0

_SQL = """
SELECT a.attname AS name, t.typname AS typname, a.attnotnull AS not_null
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"""


class Catalog:
    """Columns of the exported table, cached for a minute per process."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._columns: tuple[Column, ...] = ()
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def columns(self) -> tuple[Column, ...]:
        if self._columns and time.monotonic() - self._loaded_at < CATALOG_TTL_SECONDS:
            return self._columns
        async with self._lock:
            if not self._columns or time.monotonic() - self._loaded_at >= CATALOG_TTL_SECONDS:
                rows = await self._db.fetch(_SQL, TABLE)
                self._columns = tuple(Column(r["name"], kind_of(r["typname"]), r["not_null"], r["typname"]) for r in rows)
                self._loaded_at = time.monotonic()
        return self._columns
