"""Print one locked package as a hash-checked pip requirement line, read from uv.lock.

scripts/bootstrap.sh and the Dockerfile install uv this way before `uv sync --frozen`, so the uv that
installs the lock is the one the lock names (stdlib only: it runs before anything is installed).
Usage: python scripts/lock_pin.py uv [path/to/uv.lock]
"""

from __future__ import annotations

import sys
import tomllib


def pin(name: str, lock_path: str = "uv.lock") -> str:
    with open(lock_path, "rb") as f:
        lock = tomllib.load(f)
    matches = [p for p in lock["package"] if p["name"] == name]
    if len(matches) != 1:
        raise SystemExit(f"lock_pin: {lock_path} locks {len(matches)} versions of {name!r}, expected one (run `make lock`)")
    (package,) = matches
    hashes = " ".join(f"--hash={w['hash']}" for w in package.get("wheels", []))
    return f"{name}=={package['version']} {hashes}".strip()


if __name__ == "__main__":
    print(pin(*sys.argv[1:3]))
