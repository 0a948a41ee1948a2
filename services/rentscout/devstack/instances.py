"""Start and stop private PostgreSQL and Redis servers on free loopback ports in a directory.

PostgreSQL refuses to run as root, so as root the cluster is created and run as the `postgres`
user (runuser). pg_stat_statements is preloaded; HypoPG is created when the extension is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rentscout.devstack.binaries import postgres_bindir, redis_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _as_postgres_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresInstance:
    root: Path
    port: int = field(default_factory=free_port)
    database: str = "rentscout"
    user: str = "postgres"
    preload: tuple[str, ...] = ("pg_stat_statements",)
    bindir: Path = field(default_factory=postgres_bindir)

    @property
    def datadir(self) -> Path:
        """<root>/pgdata, or (as root, when the postgres user cannot reach <root>) a postgres-owned
        directory elsewhere whose path is remembered in <root>/pgdata.path."""
        pointer = self.root / "pgdata.path"
        if pointer.exists():
            return Path(pointer.read_text().strip())
        return self.root / "pgdata"

    def _place_datadir(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or (self.root / "pgdata.path").exists():
            return
        reachable = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(self.root)]).returncode == 0
        if reachable:
            shutil.chown(self.root, "postgres", "postgres")
            return
        outside = Path(tempfile.mkdtemp(prefix="rentscout-pg-"))
        shutil.chown(outside, "postgres", "postgres")
        (self.root / "pgdata.path").write_text(str(outside / "pgdata"))

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*_as_postgres_user(), *args], check=check, capture_output=True, timeout=120)

    def init(self) -> None:
        self._place_datadir()
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
            conf = self.datadir / "postgresql.conf"
            # pg_qualstats (where installed) records the predicates SuggestIndexes' table mode reads;
            # every statement is sampled, as the analyzer's tests expect
            qualstats = ("pg_qualstats",) if self.has_extension("pg_qualstats") else ()
            with conf.open("a") as f:
                f.write(
                    "\n# rentscout private instance\n"
                    "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                    f"shared_preload_libraries = '{','.join(self.preload + qualstats)}'\n"
                    + ("pg_qualstats.sample_rate = 1\n" if qualstats else "")
                    + "pg_stat_statements.track = all\ncompute_query_id = on\ntrack_io_timing = on\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 256MB\nwork_mem = 16MB\n"
                    "logging_collector = off\nlog_min_messages = warning\n"
                )

    def start(self, timeout: float = 30.0) -> PostgresInstance:
        self.init()
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-o",
            f"-p {self.port}",
            "-l",
            str(self.datadir / "server.log"),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )
        _wait_port(self.port, timeout)
        if self.is_standby:  # read-only: everything below came with the base backup
            return self
        self._psql_admin(
            f"SELECT 'CREATE DATABASE {self.database}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{self.database}')\\gexec"
        )
        self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
        for extension in ("hypopg", "pg_qualstats"):
            if self.has_extension(extension):
                self.psql(f"CREATE EXTENSION IF NOT EXISTS {extension};")
        return self

    @property
    def is_standby(self) -> bool:
        return (self.datadir / "standby.signal").exists()

    def standby(self, root: Path) -> PostgresInstance:
        """A streaming standby of this running instance, on its own port: `pg_basebackup -R` copies the
        cluster and writes the replication settings (primary_conninfo, standby.signal). Not started."""
        replica = PostgresInstance(root, database=self.database, user=self.user, preload=self.preload, bindir=self.bindir)
        replica._place_datadir()
        self._run(
            str(self.bindir / "pg_basebackup"),
            "-D",
            str(replica.datadir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "-c",
            "fast",
        )
        return replica

    def pause_replay(self) -> None:
        self._psql(self.dsn, "SELECT pg_wal_replay_pause();")

    def resume_replay(self) -> None:
        self._psql(self.dsn, "SELECT pg_wal_replay_resume();")

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        """Stop and delete the cluster (including a relocated data directory)."""
        self.stop("immediate")
        outside = self.root / "pgdata.path"
        if outside.exists():
            shutil.rmtree(Path(outside.read_text().strip()).parent, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def kill(self) -> None:
        """Stop abruptly (immediate shutdown), as a crash would."""
        self.stop("immediate")

    def has_extension(self, name: str) -> bool:
        share = subprocess.run([str(self.bindir / "pg_config"), "--sharedir"], capture_output=True, text=True)
        sharedir = Path(share.stdout.strip()) if share.returncode == 0 else self.bindir.parent / "share"
        return (sharedir / "extension" / f"{name}.control").exists()

    def _psql_admin(self, sql: str) -> str:
        return self._psql(self.admin_dsn, sql)

    def psql(self, sql: str) -> str:
        return self._psql(self.dsn, sql)

    def _psql(self, dsn: str, sql: str) -> str:
        psql = self.bindir / "psql"
        exe = str(psql) if psql.exists() else (shutil.which("psql") or "psql")
        out = subprocess.run(
            [exe, dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"], input=sql, text=True, capture_output=True, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout


@dataclass
class RedisInstance:
    root: Path
    port: int = field(default_factory=free_port)
    binary: str = field(default_factory=redis_server)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisInstance:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--protected-mode",
                "yes",
                "--maxmemory",
                "256mb",
                "--maxmemory-policy",
                "allkeys-lru",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port, timeout, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
