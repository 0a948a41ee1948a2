"""A real Prometheus (Debian's `prometheus` package) scraping test servers, and its query API.

It runs on a free loopback port with a throwaway TSDB, scrapes every second, and is stopped by the
context manager. `query` returns the result vector of an instant query."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.deps import require
from rentscout.devstack.instances import free_port

INSTALL = "Prometheus (apt-get install prometheus; `sudo bash scripts/bootstrap.sh` does)"


def prometheus_path() -> str | None:
    return shutil.which("prometheus") or (str(Path("/usr/bin/prometheus")) if Path("/usr/bin/prometheus").exists() else None)


class Prometheus:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query (a vector: one dict per series); an error in the query raises."""
        with urllib.request.urlopen(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10) as reply:
            doc = json.loads(reply.read())
        assert doc["status"] == "success", doc
        return list(doc["data"]["result"])

    def targets_up(self) -> int:
        return sum(1 for series in self.query("up == 1"))


@contextlib.contextmanager
def running_prometheus(workdir: Path, targets: list[str], timeout: float = 60.0) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` (host:port of /metrics) every second, until the block ends."""
    exe = prometheus_path()
    require(exe is not None, INSTALL)
    assert exe is not None
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(
        json.dumps(
            {  # YAML is a superset of JSON
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "rentscout", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        end = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"prometheus exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(OSError, ValueError, AssertionError):
                if prom.targets_up() == len(targets):
                    break
            assert time.monotonic() < end, f"prometheus did not scrape {targets} within {timeout}s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
