"""Dependency-aware health: each service's entry follows its dependencies (readiness), while the
server-wide entry "" stays SERVING until shutdown (liveness)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from grpc_health.v1 import health_pb2

from rentscout.runtime import logs, metrics, redis_client, schema_gate
from rentscout.runtime.resources import Resources

_log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthStatuses(Protocol):
    """What the monitor needs of grpc_health.v1.health.aio.HealthServicer."""

    async def set(self, service: str, status: int) -> None: ...


class DependencyMonitor:
    """Probes PostgreSQL (and Redis where a service needs it) and sets each service's health."""

    def __init__(
        self, health: HealthStatuses, resources: Resources, services: Sequence[tuple[str, bool]], interval: float
    ) -> None:
        self._health = health
        self._resources = resources
        self._services = list(services)  # (service name, needs redis)
        self._interval = interval
        self._last: dict[str, bool] = {}

    async def probe_once(self) -> None:
        timeout = max(0.2, min(self._interval, self._resources.settings.db_connect_timeout_seconds))
        db_ok = await self._resources.db.ping(timeout)
        schema_ok = db_ok and await schema_gate.ready(self._resources.db, timeout)  # schema before traffic
        states = {"postgresql": db_ok}
        if any(needs for _, needs in self._services):
            states["redis"] = await redis_client.ping(self._resources.redis, timeout)
        for dep, ok in states.items():
            metrics.DEPENDENCY_UP.labels(dep).set(1 if ok else 0)
            if self._last.get(dep) != ok:
                level = logging.INFO if ok else logging.WARNING
                _log.log(
                    level,
                    "%s is %s",
                    dep,
                    "up" if ok else "down",
                    extra={
                        "fields": {
                            **logs.ecs_event("database", "info" if ok else "error"),
                            "dependency.name": dep,
                            "dependency.up": ok,
                        }
                    },
                )
            self._last[dep] = ok
        for name, needs_redis in self._services:
            ok = schema_ok and (states.get("redis", True) or not needs_redis)
            await self._health.set(name, SERVING if ok else NOT_SERVING)

    async def run(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:  # a probe bug must not kill readiness reporting
                _log.exception("health probe failed")
            await asyncio.sleep(self._interval)
