"""Settings of `rentscout db migrate` (the migration Job), read only by the migrator."""

from __future__ import annotations

from dataclasses import dataclass

from rentscout.runtime.config import dsn, int_range, parse_bool, setting


@dataclass(frozen=True)
class MigrateSettings:
    database_url: str = setting(
        "MIGRATE_DATABASE_URL",
        "",
        "PostgreSQL DSN the migrator uses instead of DATABASE_URL: a direct connection to the primary (never through "
        "a transaction-mode pooler), with credentials only the migration Job gets. Empty: DATABASE_URL.",
        lambda raw: dsn("postgresql", "postgres")(raw) if raw.strip() else "",
        secret=True,
    )
    lock_timeout_ms: int = setting(
        "MIGRATE_LOCK_TIMEOUT_MS",
        3000,
        "lock_timeout of each migration: DDL waiting behind a long transaction gives up after it (instead of queueing "
        "every reader of the table behind itself) and is retried.",
        int_range(1, 600_000),
    )
    lock_retries: int = setting(
        "MIGRATE_LOCK_RETRIES",
        20,
        "Attempts per migration (and for the migrators' advisory lock) when a lock is not granted within "
        "MIGRATE_LOCK_TIMEOUT_MS; then the migration fails.",
        int_range(1, 1000),
    )
    allow_missing_analyzer_role: bool = setting(
        "MIGRATE_ALLOW_MISSING_ANALYZER_ROLE",
        False,
        "Succeed although the analyzer's role rentscout_explain could not be created or granted to the migrating user "
        "(databases where no role can be created; the analyzer then needs ANALYZER_RUN_AS_SERVICE_USER=true). "
        "Default: the migration fails.",
        parse_bool,
    )
