"""The container image: hadolint-clean, multi-stage, non-root, the `rentscout` entrypoint, and a build
context (.dockerignore) from which the project's wheel really builds with everything it needs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from harness.manifests import ROOT, DockerIgnore, dockerfile_stages, tool
from rentscout.ops.serve import SERVICES

# The workspace members (core, clients, services: one distribution each) and the generated stubs the core
# wheel merges in: together the `rentscout` namespace.
MEMBERS = tuple(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"])
SOURCE_ROOTS = (*MEMBERS, "gen")
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "deploy" / "postgres" / "Dockerfile"]
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|make|build-essential|pip wheel|python3?-dev)\b")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_is_clean(dockerfile: Path) -> None:
    proc = subprocess.run(
        [tool("hadolint"), "--format", "json", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and not findings, json.dumps(findings, indent=1)


def test_hadolint_would_notice_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y gcc\nCMD rentscout serve export\n")
    proc = subprocess.run([tool("hadolint"), "--format", "json", str(bad)], capture_output=True, text=True, timeout=60)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3007", "DL3025"} <= codes


def test_multi_stage_non_root_with_the_rentscout_entrypoint() -> None:
    args, stages = dockerfile_stages(ROOT / "Dockerfile")
    builder, final = stages[0], stages[-1]
    assert len(stages) >= 2 and builder.name == "builder"
    assert builder.base == final.base, "the copied virtualenv needs the same interpreter path"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", final.base), f"pin a slim Python 3.11 tag: {final.base}"
    assert any("uv sync --frozen" in run for run in builder.all("RUN")), "the image installs exactly uv.lock"
    assert any("--from=builder" in copy for copy in final.all("COPY"))
    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run), f"no build tools in the final stage: {run}"
    stage_args = {**args, **dict(a.split("=", 1) for a in final.all("ARG") if "=" in a)}
    user = re.sub(r"\$\{(\w+)\}", lambda m: stage_args.get(m.group(1), "?"), final.all("USER")[-1])
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit(), f"a numeric non-root uid:gid (runAsNonRoot checks it): {user}"
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["rentscout"]
    assert json.loads(final.all("CMD")[-1]) == ["serve", "export"]
    health = final.all("HEALTHCHECK")[-1]
    assert "rentscout health" in health and f"RENTSCOUT_PORT:-{SERVICES['export'].port}" in health
    exposed = {int(p) for line in final.all("EXPOSE") for p in line.split()}
    assert exposed == {e.port for e in SERVICES.values()} | {e.metrics_port for e in SERVICES.values()}


def test_dockerignore_sends_the_sources_and_nothing_else() -> None:
    ignore = DockerIgnore.load(ROOT / ".dockerignore")
    files = ignore.context_files(ROOT)
    assert {"pyproject.toml", "uv.lock", "scripts/lock_pin.py"} <= set(files)
    for root in SOURCE_ROOTS:
        assert any(f.startswith(f"{root}/rentscout/") for f in files), root
    for f in files:
        assert f in {"pyproject.toml", "uv.lock", "scripts/lock_pin.py"} or f.split("/")[0] in SOURCE_ROOTS, f
    for path in (
        "tests/conftest.py",
        "scripts/bootstrap.sh",
        ".venv/bin/python",
        ".git/HEAD",
        "services/rentscout/__pycache__/x.pyc",
        ".env",
        "k8s/base/kustomization.yaml",
        "clients/rentscout/cli/x.pyc",
    ):
        assert ignore.excluded(path), path
    _, stages = dockerfile_stages(ROOT / "Dockerfile")
    for copy in stages[0].all("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert not ignore.excluded(source.rstrip("/")), f"COPY {source} is excluded by .dockerignore"


def test_the_build_context_builds_the_wheels_of_the_whole_namespace(tmp_path: Path) -> None:
    """What the builder stage does, offline: build each member's wheel from exactly the files Docker would send."""
    context = tmp_path / "context"
    for rel in DockerIgnore.load(ROOT / ".dockerignore").context_files(ROOT):
        target = context / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    out = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            "--wheel-dir",
            str(out),
            *(str(context / member) for member in MEMBERS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names: set[str] = set()
    entry_points: dict[str, str] = {}
    for wheel in out.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            names |= set(zf.namelist())
            entry_points[wheel.name.split("-")[0]] = "".join(
                zf.read(n).decode() for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")
            )
    assert set(entry_points) == {"rentscout_core", "rentscout_client", "rentscout_server"}
    assert re.search(r"^rentscout = rentscout\.main:main$", entry_points["rentscout_client"], re.M)
    assert re.search(r"^\[rentscout\.commands\]\noperator = rentscout\.ops:register$", entry_points["rentscout_server"], re.M)
    expected = {
        "rentscout/main.py",
        "rentscout/ops/serve.py",
        "rentscout/cli/health.py",
        "rentscout/runtime/server.py",
        "rentscout/wire/metadata.py",
        "rentscout/resilience/breaker.py",
        "rentscout/export/v1/export_pb2.py",
        "rentscout/cache/v1/cache_pb2_grpc.py",
        "rentscout/db/migrations/0001_properties.sql",
    }
    expected |= {e.load().__module__.replace(".", "/") + ".py" for e in SERVICES.values()}
    assert expected <= names, f"missing from the wheel: {expected - names}"
    migrations = {p.name for p in (ROOT / "services" / "rentscout" / "db" / "migrations").glob("*.sql")}
    assert {f"rentscout/db/migrations/{m}" for m in migrations} <= names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


def test_the_image_ships_the_otlp_exporter_from_the_lock() -> None:
    """OTLP export in the image: the server extra the image installs names it, the lock pins it, and the
    builder imports it (tracing stays off unless OTEL_EXPORTER_OTLP_ENDPOINT is set, tests/unit/wire)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "rentscout-core[otlp]" in project["optional-dependencies"]["server"]
    core = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("opentelemetry-exporter-otlp-proto-grpc") for r in core["optional-dependencies"]["otlp"])
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert "opentelemetry-exporter-otlp-proto-grpc" in {p["name"] for p in lock["package"]}
    _, stages = dockerfile_stages(ROOT / "Dockerfile")
    assert any("--extra server" in run and "opentelemetry.exporter.otlp.proto.grpc" in run for run in stages[0].all("RUN"))
