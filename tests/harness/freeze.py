"""Freezing a dependency: SIGSTOP its processes (their TCP connections stay open, nothing answers),
then SIGCONT. What a hung VM, a stop-the-world pause or a stuck disk looks like from the services."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import psutil

from rentscout.devstack.instances import PostgresInstance, RedisInstance


def postgres_processes(pg: PostgresInstance) -> list[psutil.Process]:
    """The postmaster and every backend and auxiliary process it forked."""
    pid = int((pg.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


def redis_processes(redis: RedisInstance) -> list[psutil.Process]:
    assert redis.proc is not None
    return [psutil.Process(redis.proc.pid)]


@contextlib.contextmanager
def frozen(processes: list[psutil.Process]) -> Iterator[None]:
    """SIGSTOP the processes for the block, SIGCONT them afterwards whatever happens."""
    stopped: list[psutil.Process] = []
    try:
        for proc in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGSTOP)
                stopped.append(proc)
        yield
    finally:
        for proc in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)
