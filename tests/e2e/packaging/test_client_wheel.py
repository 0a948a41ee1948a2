"""The client distribution on its own: each wheel is built from this workspace, the client wheel is installed
alone into an empty venv (exact versions from uv.lock: its pins are the constraints; the index only fetches
what the cache lacks, as `uv sync --frozen` fetches by URL and leaves no index data), and the README's SDK example
runs with that venv's Python against real export and cache-query server processes.

This is what a calling service gets from `pip install rentscout-client`: no database or Redis driver, no
server module, and an SDK that exports and reads through the cache.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from harness.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[3]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
SERVER_ONLY = ("asyncpg", "redis", "pglast", "grpcio-reflection", "grpcio-status", "rentscout-server")


def _run(
    *args: str, timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def readme_sdk_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Client SDK\n", 1)[1].split("\n## ", 1)[0]
    (first_pip,) = re.findall(r"```sh\n(.*?)```", section, re.S)[:1]
    assert first_pip.strip() == "pip install rentscout-client", "the section starts with the one pip install"
    example: str = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    return example


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert UV is not None, "uv is locked in the dev extra: run scripts/bootstrap.sh"
    out = tmp_path_factory.mktemp("wheels")
    _run(UV, "build", "--all-packages", "--wheel", "--offline", "-o", str(out), cwd=ROOT)
    assert {w.name.split("-")[0] for w in out.glob("*.whl")} == {"rentscout_core", "rentscout_client", "rentscout_server"}
    return out


@pytest.fixture(scope="module")
def client_venv(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty venv holding the client wheel and what it requires, at the versions uv.lock pins."""
    assert UV is not None
    base = tmp_path_factory.mktemp("client")
    pins = _run(
        UV,
        "export",
        "--frozen",
        "--package",
        "rentscout-client",
        "--no-emit-workspace",
        "--no-dev",
        "--no-hashes",
        "--no-header",
        cwd=ROOT,
    ).stdout
    (base / "pins.txt").write_text(pins)
    venv = base / "venv"
    _run(UV, "venv", "-q", "--python", sys.executable, str(venv))
    (client_wheel,) = wheels.glob("rentscout_client-*.whl")
    _run(
        UV,
        "pip",
        "install",
        "-q",
        "--python",
        str(venv / "bin" / "python"),
        "--find-links",
        str(wheels),
        "-c",
        str(base / "pins.txt"),
        str(client_wheel),
    )
    yield venv


def _installed(venv: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m;"
        " print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    )
    return dict(json.loads(_run(str(venv / "bin" / "python"), "-c", code).stdout))


def test_the_client_wheel_alone_pulls_no_server_dependency(client_venv: Path) -> None:
    installed = _installed(client_venv)
    assert {"rentscout-client", "rentscout-core", "grpcio", "protobuf"} <= set(installed)
    assert not set(SERVER_ONLY) & set(installed), sorted(set(SERVER_ONLY) & set(installed))
    # the server's modules are not there either: the namespace holds the client and the shared layer only
    probe = (
        "import importlib.util as u; print([n for n in ('rentscout.runtime', 'rentscout.ops', 'rentscout.cache_service')"
        " if u.find_spec(n) is not None])"
    )
    assert _run(str(client_venv / "bin" / "python"), "-c", probe).stdout.strip() == "[]"
    # the `rentscout` command is there, and without the `cli` extra it says what to install
    command = subprocess.run([str(client_venv / "bin" / "rentscout"), "health"], capture_output=True, text=True, timeout=60)
    assert command.returncode == 2 and "pip install 'rentscout-client[cli]'" in command.stderr, command.stderr


async def test_the_readme_sdk_example_exports_and_reads_through_the_cache(
    client_venv: Path, service_env: dict[str, str], database: str, tmp_path: Path
) -> None:
    example = tmp_path / "example.py"
    example.write_text(readme_sdk_example())
    env = {**service_env, "RENTSCOUT_CACHE_NAMESPACE": f"wheel{uuid.uuid4().hex[:10]}"}
    export = ServerProcess("export", env, tmp_path / "export").start()
    cache = ServerProcess("cache-query", env, tmp_path / "cache").start()
    try:
        client_env = {"PATH": "/usr/bin:/bin", "RENTSCOUT_EXPORT_TARGET": export.target, "RENTSCOUT_CACHE_TARGET": cache.target}
        outputs = [_run(str(client_venv / "bin" / "python"), str(example), env=client_env, timeout=120).stdout for _ in range(2)]
    finally:
        export.stop()
        cache.stop()
    conn = await asyncpg.connect(database)
    try:
        moscow = await conn.fetchval("SELECT count(*) FROM properties WHERE city = 'Moscow'")
    finally:
        await conn.close()
    first, second = outputs
    assert re.search(r"cache hit: False$", first.splitlines()[0]), first
    assert re.search(r"cache hit: True$", second.splitlines()[0]), second  # the second process reads the cache
    assert first.splitlines()[0].split(" apartments")[0] == second.splitlines()[0].split(" apartments")[0]
    assert int(first.split(" apartments")[0]) > 0
    assert all(out.splitlines()[1] == f"exported {moscow} listings in Moscow" for out in outputs), outputs


def test_the_rentscout_command_of_a_client_install_names_what_serve_needs(
    client_venv: Path, wheels: Path, service_env: dict[str, str], tmp_path: Path
) -> None:
    """With the `cli` extra, `rentscout` runs the client commands; operator commands say which distribution has them."""
    assert UV is not None
    (client_wheel,) = wheels.glob("rentscout_client-*.whl")
    cli_venv = tmp_path / "cli"
    _run(UV, "venv", "-q", "--python", sys.executable, str(cli_venv))
    pins = tmp_path / "pins.txt"
    pins.write_text(
        _run(
            UV,
            "export",
            "--frozen",
            "--package",
            "rentscout-client",
            "--extra",
            "cli",
            "--no-emit-workspace",
            "--no-dev",
            "--no-hashes",
            "--no-header",
            cwd=ROOT,
        ).stdout
    )
    _run(
        UV,
        "pip",
        "install",
        "-q",
        "--python",
        str(cli_venv / "bin" / "python"),
        "--find-links",
        str(wheels),
        "-c",
        str(pins),
        f"{client_wheel}[cli]",
    )
    assert not set(SERVER_ONLY) & set(_installed(cli_venv))
    rentscout = str(cli_venv / "bin" / "rentscout")
    serve = subprocess.run([rentscout, "serve", "export"], capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2 and "pip install rentscout-server" in serve.stderr, serve.stderr
    server = ServerProcess("cache-query", service_env, tmp_path / "cache").start()
    try:
        health = subprocess.run(
            [rentscout, "health", "--target", server.target, "--timeout", "5"], capture_output=True, text=True, timeout=60
        )
    finally:
        server.stop()
    assert health.returncode == 0, health.stdout + health.stderr
