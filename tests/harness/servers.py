"""Servers for tests: in-process hosts on ephemeral ports, and real `rentscout serve` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson

from harness import ecs
from rentscout.devstack.instances import free_port
from rentscout.runtime.config import RuntimeSettings, load
from rentscout.runtime.server import ServiceFactory, ServiceHost


def settings_for(env: dict[str, str], **overrides: Any) -> RuntimeSettings:
    return load(RuntimeSettings, env, **overrides)


@contextlib.asynccontextmanager
async def in_process(
    factories: Sequence[ServiceFactory],
    env: dict[str, str],
    *,
    label: str = "test",
    port: int = 0,
    grace: float = 1.0,
    **overrides: Any,
) -> AsyncIterator[ServiceHost]:
    """A ServiceHost on 127.0.0.1 in this event loop; `host.port` is the bound port.

    `port=0` (the default) binds an ephemeral port; a chosen port restarts a server where clients
    expect it. `grace` is the shutdown grace for RPCs still running when the block ends.
    """
    overrides.setdefault("health_check_interval_seconds", 0.2)
    settings = settings_for(env, **overrides)
    host = ServiceHost(factories, settings, label=label, host="127.0.0.1", port=port, metrics_port=None)
    await host.start()
    try:
        yield host
    finally:
        await host.stop(grace=grace)


@dataclass
class ServerProcess:
    """A real `rentscout serve <service>` process with its JSON log captured to a file."""

    service: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The process `start()` launched (`proc` is None before)."""
        assert self.proc is not None, f"{self.service} server not started"
        return self.proc

    @property
    def log_path(self) -> Path:
        """The process's stdout: ECS JSON lines and nothing else (checked by `log_records` and the e2e session)."""
        return self.workdir / f"{self.service}-{self.port}.log"

    @property
    def stderr_path(self) -> Path:
        """The process's stderr (gRPC C-core messages), kept apart so stdout is checked line by line."""
        return self.workdir / f"{self.service}-{self.port}.stderr"

    def start(self, wait: bool = True, timeout: float = 30.0) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ecs.register(self.log_path)  # the e2e session checks every line against the index template
        with self.log_path.open("ab") as log, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rentscout.main",
                    "serve",
                    self.service,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--metrics-port",
                    str(self.metrics_port),
                    *self.extra_args,
                ],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=err,
            )
        if wait:
            self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 30.0, service: str = "") -> None:
        from grpc_health.v1 import health_pb2

        from rentscout.wire.health import health_stub

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log_text()[-3000:]}")
            with contextlib.suppress(grpc.RpcError), grpc.insecure_channel(self.target) as ch:
                reply = health_stub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.service} not SERVING after {timeout}s:\n{self.log_text()[-3000:]}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        """stdout, then stderr: everything the process wrote."""
        return "".join(path.read_text(errors="replace") for path in (self.log_path, self.stderr_path) if path.exists())

    def log_records(self) -> list[dict[str, Any]]:
        """Every complete line of stdout as a JSON object; a line that is not one fails the test."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return json_lines(text, str(self.log_path))


def json_lines(text: str, where: str) -> list[dict[str, Any]]:
    """The complete lines of `text` (a line still being written is left out) as JSON objects; any other line,
    a raw traceback or a print(), is an AssertionError naming it."""
    records = []
    lines = text.split("\n")[:-1]  # the part after the last newline is incomplete (or empty)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        assert isinstance(doc, dict), f"{where}:{n}: not an ECS JSON line: {line[:200]!r}"
        records.append(doc)
    return records
