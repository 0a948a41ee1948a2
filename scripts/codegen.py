"""Regenerate the Python gRPC stubs in gen/ from protos/ (or, with --check, fail when they are stale).

One command for both so that CI and developers cannot drift: `make codegen` / `make check-stubs`.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
# Proto folders compiled under another import path. Arrow Flight's package is `arrow.flight.protocol` (its
# clients call /arrow.flight.protocol.FlightService/...), and buf wants the file in the matching folder; compiled
# from there its Python modules would form a top-level `arrow` package, shadowing the PyPI package of that name.
# protoc's virtual=disk include mapping compiles it as rentscout/arrow_flight/protocol/flight.proto instead.
MAPPED = {"arrow/flight/protocol": "rentscout/arrow_flight/protocol"}


def import_path(proto: Path) -> str:
    """The path protoc compiles `proto` (relative to protos/) under: where its modules land in gen/."""
    rel = proto.as_posix()
    for disk, virtual in MAPPED.items():
        if rel.startswith(disk + "/"):
            return virtual + rel[len(disk) :]
    return rel


def generate(out: Path) -> None:
    protos = sorted(import_path(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    mappings = [f"-I{virtual}={PROTOS / disk}" for disk, virtual in MAPPED.items()]
    well_known = resources.files("grpc_tools") / "_proto"
    bindir = Path(sys.executable).parent
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *mappings,
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    done = subprocess.run(cmd, cwd=PROTOS, capture_output=True, text=True)
    # The mypy plugin says "Writing mypy to <file>" for every file, into a temporary directory: noise, even more
    # so under --check, which writes nothing. Anything else protoc says (a warning, an error) is shown.
    said = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("Writing mypy to ")]
    if said:
        print(*said, sep="\n", file=sys.stderr)
    if done.returncode:
        raise SystemExit(f"protoc failed with exit code {done.returncode}")


def generated_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when gen/ differs from protos/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        if args.check:
            fresh, committed = generated_files(out), generated_files(GEN)
            stale = sorted(str(p) for p in fresh ^ committed)
            stale += sorted(str(p) for p in fresh & committed if not filecmp.cmp(out / p, GEN / p, False))
            if stale:
                print("generated stubs are stale; run `make codegen`:", *stale, sep="\n  ")
                return 1
            print(f"stubs up to date ({len(fresh)} files)")
            return 0
        for old in generated_files(GEN):
            (GEN / old).unlink()
        for new in generated_files(out):
            (GEN / new).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / new, GEN / new)
        print(f"generated {len(generated_files(GEN))} files in {GEN.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
