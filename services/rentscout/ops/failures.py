"""How the operator commands (serve, db, stack) fail: one line on stderr and a distinct exit code.

    2  configuration error (a bad RENTSCOUT_* value or flag)      ConfigError
    3  a dependency is unavailable (PostgreSQL, Redis, a binary)  OSError, anything else expected
    7  a port is already in use                                   PortInUse
    8  a stack is already running in the state directory          AlreadyRunning

No traceback: these are situations an operator fixes, not bugs. The codes do not overlap the client
commands' (1-6, see `rentscout --help`).
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from rentscout.runtime.config import ConfigError

EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_PORT_IN_USE, EXIT_ALREADY_RUNNING = 2, 3, 7, 8


class PortInUse(OSError):
    """Another process listens on a port this command wants."""

    def __init__(self, port: int, host: str, what: str) -> None:
        self.port, self.host, self.what = port, host, what
        super().__init__(
            errno.EADDRINUSE,
            f"port {port} ({what}) on {host} is already in use by another process (`ss -ltnp 'sport = :{port}'` shows which)",
        )

    def __str__(self) -> str:
        return str(self.strerror)


class AlreadyRunning(Exception):
    """A `rentscout stack` holds the lock of this state directory."""

    def __init__(self, directory: Path, pid: int | None) -> None:
        self.directory, self.pid = directory, pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"a stack is already running in {directory} ({who}); stop it (Ctrl-C, or kill {pid or 'it'}) or pass another --dir"
        )


def ensure_ports_free(host: str, ports: Iterable[tuple[int | None, str]]) -> None:
    """Raise PortInUse for the first (port, what) that cannot be bound on `host` (0/None: skipped).

    SO_REUSEADDR, as gRPC and the metrics server set it, so a port in TIME_WAIT counts as free.
    """
    for port, what in ports:
        if not port:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(port, host, what) from None
                raise


def describe(exc: BaseException) -> str:
    """One line for an expected failure (a failed helper command: its name and last stderr line)."""
    if isinstance(exc, subprocess.CalledProcessError):
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
        cmd = (
            exc.cmd
            if isinstance(exc.cmd, str)
            else next((Path(str(part)).name for part in exc.cmd if not str(part).startswith("-") and str(part) != "runuser"), "")
        )
        return f"{cmd} failed with exit code {exc.returncode}" + (f": {last}" if last else "")
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def failed(command: str, exc: BaseException, unavailable: str = "") -> int:
    """Report a command's failure on stderr in one line; returns its exit code (module docstring)."""
    if isinstance(exc, ConfigError):
        print(f"rentscout {command}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(exc, PortInUse):
        print(f"rentscout {command}: {exc}", file=sys.stderr)
        return EXIT_PORT_IN_USE
    if isinstance(exc, AlreadyRunning):
        print(f"rentscout {command}: {exc}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    print(f"rentscout {command}: {unavailable}{describe(exc)}", file=sys.stderr)
    return EXIT_UNAVAILABLE


def grpc_bind_failure(exc: RuntimeError, host: str, port: int) -> PortInUse | None:
    """gRPC's RuntimeError for a port taken between our check and its bind, as PortInUse."""
    return PortInUse(port, host, "gRPC") if "Failed to bind" in str(exc) else None
