"""What the RPC benchmarks share: a private PostgreSQL and Redis, server subprocesses of the real
runtime, and client-side measurement (latency lists, fixed-count throughput, interleaved blocks).

Not a benchmark itself (`bench/run_all.py` runs `*_bench.py` only); the scripts import it from
their own folder, which Python puts first on `sys.path`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

CACHE_SERVICE = "rentscout.cache.v1.CacheQueryService"
Call = Callable[[], Awaitable[object]]


@dataclass
class Figures:
    """Client-observed latencies of one RPC, and the calls and wall seconds of its throughput runs."""

    latencies: list[float] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0  # CPU seconds the serving process used during the timed sequential calls
    busy_server_cpu: float = 0.0  # ... and during the throughput runs
    busy_client_cpu: float = 0.0  # CPU seconds this (the calling) process used during the throughput runs

    @property
    def cpu_per_call(self) -> float:
        return self.server_cpu / len(self.latencies) if self.latencies else 0.0

    @property
    def busy_cpu_per_call(self) -> tuple[float, float]:
        """(server, client) CPU seconds per call under concurrency: which side bounds the throughput."""
        return (self.busy_server_cpu / self.calls, self.busy_client_cpu / self.calls) if self.calls else (0.0, 0.0)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    @property
    def rps(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


async def latencies(call: Call, n: int) -> list[float]:
    """`n` sequential calls, each timed."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


async def throughput(call: Call, n: int, concurrency: int) -> tuple[int, float]:
    """`n` calls shared by `concurrency` callers; returns (calls, wall seconds)."""
    import asyncio

    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n, time.perf_counter() - t0


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def interleaved(
    calls: dict[str, Call],
    figures: dict[str, Figures],
    n: int,
    block: int,
    concurrency: int = 0,
    servers: dict[str, int] | None = None,
) -> None:
    """`n` calls of each RPC in blocks of `block`, the RPCs taking turns (rotating which goes first), so
    that drift and noise hit every RPC alike. concurrency 0: timed sequential calls (and the CPU time of
    the process serving each RPC, by pid in `servers`); else throughput."""
    names = list(calls)
    servers = servers or {}
    for b in range(max(1, n // block)):
        for name in names[b % len(names) :] + names[: b % len(names)]:
            pid = servers.get(name)
            cpu = process_cpu(pid) if pid else 0.0
            if concurrency:
                own = time.process_time()
                done, secs = await throughput(calls[name], block, concurrency)
                figures[name].calls += done
                figures[name].seconds += secs
                figures[name].busy_client_cpu += time.process_time() - own
                if pid:
                    figures[name].busy_server_cpu += process_cpu(pid) - cpu
            else:
                figures[name].latencies += await latencies(calls[name], block)
                if pid:
                    figures[name].server_cpu += process_cpu(pid) - cpu


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:9.0f} us" if seconds < 0.01 else f"{seconds * 1e3:9.1f} ms"


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


class Server:
    """A server subprocess: `script --serve --port P [args]` with `env`, output to a log file."""

    def __init__(self, script: str, name: str, env: dict[str, str], workdir: Path, args: Sequence[str] = ()) -> None:
        from rentscout.devstack.instances import free_port

        self.name, self.port = name, free_port()
        self.log = (workdir / f"server-{name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, script, "--serve", "--port", str(self.port), *args],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")

    async def wait_ready(self, service: str = CACHE_SERVICE, timeout: float = 60) -> None:
        import asyncio

        from grpc_health.v1 import health_pb2

        from rentscout.wire.health import health_stub

        stub = health_stub(self.channel)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"server {self.name} not serving")

    async def close(self) -> None:
        await self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@dataclass
class Stack:
    root: Path
    database_url: str
    redis_url: str
    servers: list[Server] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """A cache-query server's environment, as in production: access log at info (to the log file)."""
        import uuid

        return {
            "RENTSCOUT_DATABASE_URL": self.database_url,
            "RENTSCOUT_REDIS_URL": self.redis_url,
            "RENTSCOUT_LOG_LEVEL": "info",
            "RENTSCOUT_CACHE_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}",
            "OTEL_TRACES_EXPORTER": "none",
            **extra,
        }

    def server(self, script: str, name: str, env: dict[str, str], args: Sequence[str] = ()) -> Server:
        s = Server(script, name, env, self.root, args)
        self.servers.append(s)
        return s


@contextlib.asynccontextmanager
async def stack(rows: int, prefix: str) -> AsyncIterator[Stack]:
    """A private PostgreSQL seeded with `rows` listings and a Redis, removed afterwards with every server."""
    from rentscout.db.migrate import migrate
    from rentscout.db.seed import seed
    from rentscout.devstack.instances import PostgresInstance, RedisInstance

    root = Path(tempfile.mkdtemp(prefix=prefix))
    pg = PostgresInstance(root / "pg")
    redis = RedisInstance(root / "redis")
    st = Stack(root, pg.dsn, redis.url)
    try:
        t0 = time.perf_counter()
        pg.start()
        redis.start()
        await migrate(pg.dsn)
        print(f"seeding {rows:,} listings ...", flush=True)
        await seed(pg.dsn, rows)
        print(f"PostgreSQL and Redis ready in {time.perf_counter() - t0:.0f}s (data in {root})", flush=True)
        yield st
    finally:
        for s in st.servers:
            await s.close()
        redis.stop()
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)
