"""`rentscout db migrate|seed|rotate-token-key`: apply migrations, load deterministic demo listings, rotate
the resume-token signing key stored in PostgreSQL (the previous key still verifies)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from rentscout.ops.failures import failed
from rentscout.ops.serve import add_settings_flags
from rentscout.runtime.config import ConfigError, RuntimeSettings, load


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="database schema and demo data")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    m = dbsub.add_parser("migrate", help="apply pending migrations (idempotent)")
    add_settings_flags(m)
    m.set_defaults(func=migrate)
    s = dbsub.add_parser("seed", help="append N deterministic demo listings (COPY)")
    s.add_argument("--rows", type=int, default=100_000)
    s.add_argument("--seed", type=int, default=42, help="random seed (same seed, same rows)")
    s.add_argument("--reset", action="store_true", help="truncate properties first")
    add_settings_flags(s)
    s.set_defaults(func=seed)
    r = dbsub.add_parser("rotate-token-key", help="store a new resume-token signing key; the previous one still verifies tokens")
    add_settings_flags(r)
    r.set_defaults(func=rotate_token_key)


def _dsn(args: argparse.Namespace) -> str:
    return load(RuntimeSettings, database_url=args.database_url).database_url


def migrate(args: argparse.Namespace) -> int:
    from rentscout.db.migrate import MigrationError
    from rentscout.db.migrate import migrate as run_migrations
    from rentscout.db.settings import MigrateSettings
    from rentscout.runtime import logs
    from rentscout.wire.version import VERSION

    try:
        settings = load(MigrateSettings)  # RENTSCOUT_MIGRATE_*: own DSN, lock_timeout and retries, the analyzer role
        runtime = load(RuntimeSettings)
        logs.configure("rentscout-migrate", VERSION, runtime.log_level)  # NOTICEs and retries as ECS lines
        dsn = args.database_url or settings.database_url or runtime.database_url
        applied = asyncio.run(run_migrations(dsn, settings))
    except MigrationError as exc:
        return failed("db migrate", exc)
    except (ConfigError, OSError) as exc:
        return failed("db migrate", exc, "database unavailable: ")
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else " (up to date)"))
    return 0


def seed(args: argparse.Namespace) -> int:
    from rentscout.db.seed import seed as run_seed

    if args.rows < 0:
        print("rentscout db seed: --rows must be >= 0", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        first, last = asyncio.run(run_seed(_dsn(args), args.rows, seed_value=args.seed, reset=args.reset))
    except (ConfigError, OSError) as exc:
        return failed("db seed", exc, "database unavailable: ")
    elapsed = time.perf_counter() - started
    print(f"seeded {args.rows} rows (ids {first}..{last}) in {elapsed:.1f}s ({args.rows / max(elapsed, 1e-9):,.0f} rows/s)")
    return 0


def rotate_token_key(args: argparse.Namespace) -> int:
    """Rotate the stored key (used when RENTSCOUT_EXPORT_TOKEN_SECRET is unset); prints its id, never the key."""
    import asyncpg

    from rentscout.export_service.tokens import KEPT_KEYS, KEY_REFRESH_SECONDS, rotate_stored_key

    async def run(dsn: str) -> int:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await rotate_stored_key(conn)
        finally:
            await conn.close()

    try:
        key_id = asyncio.run(run(_dsn(args)))
    except (ConfigError, OSError, asyncpg.PostgresError) as exc:  # e.g. the migrations were not applied
        return failed("db rotate-token-key", exc, "database unavailable: ")
    print(
        f"stored resume-token key {key_id}; replicas sign with it within {KEY_REFRESH_SECONDS:g}s, and the "
        f"{KEPT_KEYS - 1} key(s) before it still verify tokens"
    )
    return 0
