"""`rentscout serve export|cache-query|analyzer|all`: run gRPC services in this process."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from rentscout.ops.failures import ensure_ports_free, failed, grpc_bind_failure
from rentscout.ops.settings import unknown_env_vars
from rentscout.runtime import __version__, logs
from rentscout.runtime.config import ConfigError, RuntimeSettings, load
from rentscout.runtime.server import ServiceFactory, ServiceHost

# Each service is imported only when it is served: `rentscout serve export` never loads the analyzer.


def _export() -> ServiceFactory:
    from rentscout.export_service.service import create

    return create


def _cache_query() -> ServiceFactory:
    from rentscout.cache_service.service import create

    return create


def _analyzer() -> ServiceFactory:
    from rentscout.analyzer_service.service import create

    return create


@dataclass(frozen=True)
class ServiceEntry:
    load: Callable[[], ServiceFactory]  # returns the service's create(resources) -> ServiceSpec
    port: int
    metrics_port: int


SERVICES = {
    "export": ServiceEntry(_export, 50051, 9101),
    "cache-query": ServiceEntry(_cache_query, 50052, 9102),
    "analyzer": ServiceEntry(_analyzer, 50053, 9103),
}
ALL_PORT, ALL_METRICS_PORT = 50050, 9100


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="overrides RENTSCOUT_DATABASE_URL")
    parser.add_argument("--redis-url", help="overrides RENTSCOUT_REDIS_URL")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run a gRPC service (or all three) in this process")
    p.add_argument("service", choices=[*SERVICES, "all"])
    p.add_argument("--host", help="bind address (overrides RENTSCOUT_HOST)")
    p.add_argument("--port", type=int, help="gRPC port (overrides RENTSCOUT_PORT)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port, 0 disables (overrides RENTSCOUT_METRICS_PORT)")
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="without auth tokens, still listen on --host (overrides RENTSCOUT_ALLOW_INSECURE)",
    )
    add_settings_flags(p)
    p.set_defaults(func=run)


def build_host(args: argparse.Namespace) -> ServiceHost:
    settings = load(
        RuntimeSettings,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        allow_insecure=args.insecure,
        database_url=args.database_url,
        redis_url=args.redis_url,
    )
    names = list(SERVICES) if args.service == "all" else [args.service]
    label = "all" if args.service == "all" else args.service
    entries = [SERVICES[n] for n in names]
    default_port = ALL_PORT if len(entries) > 1 else entries[0].port
    default_metrics = ALL_METRICS_PORT if len(entries) > 1 else entries[0].metrics_port
    logs.configure(f"rentscout-{label}", __version__, settings.log_level)
    for var in unknown_env_vars():
        logs.get_logger(__name__).warning("ignoring unknown setting %s (typo?)", var)
    factories = [e.load() for e in entries]
    metrics_port = default_metrics if settings.metrics_port is None else settings.metrics_port
    return ServiceHost(
        factories,
        settings,
        label=label,
        host=settings.host,
        port=default_port if settings.port is None else settings.port,
        metrics_port=metrics_port or None,
        version=__version__,
    )


def run(args: argparse.Namespace) -> int:
    try:
        host = build_host(args)
        # before anything starts (pools, a C-core bind error on stderr): a busy port is one line, exit 7
        ensure_ports_free(host.host, [(host.port, "gRPC"), (host.metrics_port, "metrics")])
    except (ConfigError, OSError) as exc:
        return failed("serve", exc)
    try:
        asyncio.run(host.run_until_signal())
    except RuntimeError as exc:  # gRPC could not bind after all (the port was taken meanwhile)
        busy = grpc_bind_failure(exc, host.host, host.port)
        if busy is None:
            raise
        return failed("serve", busy)
    except (ConfigError, OSError) as exc:
        return failed("serve", exc)
    return 0
