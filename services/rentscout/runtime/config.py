"""Configuration from `RENTSCOUT_*` environment variables (12-factor), overridable by CLI flags.

Every setting is declared once, as a dataclass field carrying its variable name, parser and help
text. `rentscout.ops.settings` gathers the declarations of the runtime and of every service (the
runtime names no service); the README's table and the deployment drift test are generated from them,
so the variables the services read and the ones the manifests set cannot silently diverge.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

PREFIX = "RENTSCOUT_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and the problem."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


def setting(name: str, default: Any, help: str, parse: Callable[[str], Any] = str, secret: bool = False) -> Any:
    """Declare one dataclass field read from `RENTSCOUT_<name>`."""
    return field(default=default, metadata={"env": EnvVar(PREFIX + name, parse, help, secret)})


# -- parsers: each raises ValueError with a message fit for `VAR: <message>` ---------------------


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}, got {value}")
        return value

    return parse


def float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected a number from {lo} to {hi}, got {value}")
        return value

    return parse


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def dsn(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in schemes:
            raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return value

    return parse


def dsn_list(*schemes: str) -> Callable[[str], str]:
    """Comma-separated DSNs, each checked like `dsn`; empty means none."""
    one = dsn(*schemes)

    def parse(raw: str) -> str:
        return ",".join(one(part) for part in raw.split(",") if part.strip())

    return parse


def optional_port(raw: str) -> int | None:
    return None if raw.strip() == "" else int_range(0, 65535)(raw)


# -- the runtime settings every service reads --------------------------------------------------


@dataclass(frozen=True)
class RuntimeSettings:
    database_url: str = setting(
        "DATABASE_URL",
        "postgresql://postgres@127.0.0.1:5432/rentscout",
        "PostgreSQL DSN (asyncpg/libpq URL).",
        dsn("postgresql", "postgres"),
        secret=True,
    )
    database_read_url: str = setting(
        "DATABASE_READ_URL",
        "",
        "Comma-separated DSNs of streaming standbys, used round-robin for reads that tolerate replication "
        "(export streams, PlanExport, cache fills); empty reads from DATABASE_URL.",
        dsn_list("postgresql", "postgres"),
        secret=True,
    )
    database_max_replica_lag: float = setting(
        "DATABASE_MAX_REPLICA_LAG", 10.0, "Seconds of replay lag beyond which a standby is not read from.", float_range(0, 86400)
    )
    database_replica_wait_ms: int = setting(
        "DATABASE_REPLICA_WAIT_MS",
        200,
        "How long a read that must see a given commit (a cache fill after an invalidation, a resumed export) "
        "waits for a standby to replay it before reading from the primary.",
        int_range(0, 60_000),
    )
    redis_url: str = setting(
        "REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "Redis URL (redis://, rediss:// or unix://).",
        dsn("redis", "rediss", "unix"),
        secret=True,
    )
    redis_cluster: bool = setting("REDIS_CLUSTER", False, "Treat REDIS_URL as a Redis Cluster seed node.", parse_bool)
    host: str = setting("HOST", "0.0.0.0", "Address the gRPC server binds (loopback is forced when no auth tokens are set).")
    port: int | None = setting("PORT", None, "gRPC port; unset means the service default (50051-50053).", optional_port)
    metrics_port: int | None = setting(
        "METRICS_PORT", None, "Prometheus /metrics HTTP port; unset means the default (9101-9103), 0 disables.", optional_port
    )
    metrics_host: str = setting("METRICS_HOST", "", "Address /metrics binds; unset means the address the gRPC server binds.")
    auth_tokens: str = setting("AUTH_TOKENS", "", "Comma-separated `token:role` pairs (roles: reader, admin).", secret=True)
    auth_tokens_file: str = setting("AUTH_TOKENS_FILE", "", "File with one `token:role` per line (# comments).")
    allow_insecure: bool = setting(
        "ALLOW_INSECURE", False, "Without tokens, listen on HOST anyway (no auth). Never in production.", parse_bool
    )
    tls_cert_file: str = setting("TLS_CERT_FILE", "", "PEM server certificate; enables TLS with TLS_KEY_FILE.")
    tls_key_file: str = setting("TLS_KEY_FILE", "", "PEM private key of TLS_CERT_FILE.")
    tls_client_ca_file: str = setting(
        "TLS_CLIENT_CA_FILE", "", "PEM CA bundle; when set, clients must present certificates (mTLS)."
    )
    log_level: str = setting("LOG_LEVEL", "info", "debug, info, warning or error.", one_of("debug", "info", "warning", "error"))
    shutdown_grace_seconds: float = setting(
        "SHUTDOWN_GRACE_SECONDS", 20.0, "Time in-flight RPCs get to finish after SIGTERM.", float_range(0, 3600)
    )
    db_pool_min_size: int = setting("DB_POOL_MIN_SIZE", 0, "Connections opened at start (0: lazily).", int_range(0, 100))
    db_pool_max_size: int = setting("DB_POOL_MAX_SIZE", 10, "Maximum PostgreSQL connections per process.", int_range(1, 500))
    db_connect_timeout_seconds: float = setting(
        "DB_CONNECT_TIMEOUT_SECONDS", 3.0, "Timeout to open a PostgreSQL connection.", float_range(0.1, 120)
    )
    db_statement_timeout_ms: int = setting(
        "DB_STATEMENT_TIMEOUT_MS", 30000, "Server-side statement_timeout for every connection.", int_range(0, 86_400_000)
    )
    db_lock_timeout_ms: int = setting(
        "DB_LOCK_TIMEOUT_MS",
        2000,
        "lock_timeout of every connection: a statement waits at most this for a lock another session holds (a "
        "migration's ALTER TABLE), then the call gets RESOURCE_EXHAUSTED with a retry pushback (0: wait forever).",
        int_range(0, 86_400_000),
    )
    dependency_timeout_seconds: float = setting(
        "DEPENDENCY_TIMEOUT_SECONDS",
        30.0,
        "Longest the server waits on PostgreSQL or Redis at any one step, whatever the client's deadline: a pooled "
        "connection, one statement's answer, the next block of an export's COPY, the change listener's LISTEN. "
        "A frozen dependency then gives UNAVAILABLE within it. Keep statement timeouts below it.",
        float_range(0.1, 300),
    )
    redis_timeout_seconds: float = setting(
        "REDIS_TIMEOUT_SECONDS", 0.25, "Connect and socket timeout for Redis commands.", float_range(0.01, 60)
    )
    max_receive_message_bytes: int = setting(
        "MAX_RECEIVE_MESSAGE_BYTES", 4 * 1024 * 1024, "Largest request message accepted.", int_range(1024, 64 * 1024 * 1024)
    )
    max_send_message_bytes: int = setting(
        "MAX_SEND_MESSAGE_BYTES", 4 * 1024 * 1024, "Largest response message sent.", int_range(1024, 64 * 1024 * 1024)
    )
    max_concurrent_rpcs: int = setting(
        "MAX_CONCURRENT_RPCS",
        1000,
        "RPCs served at once per process (health checks and reflection not counted); more get RESOURCE_EXHAUSTED, "
        "each logged and counted in rentscout_rpc_rejected_total.",
        int_range(1, 100_000),
    )
    request_timeout_seconds: float = setting(
        "REQUEST_TIMEOUT_SECONDS",
        10.0,
        "Longest a unary call may take to deliver its request message after it started; a call whose message never "
        "comes (closed without one, or cut short) then ends INVALID_ARGUMENT or DEADLINE_EXCEEDED, logged and counted "
        'in rentscout_rpc_rejected_total{reason="no_request"}.',
        float_range(0.1, 3600),
    )
    max_concurrent_streams: int = setting(
        "MAX_CONCURRENT_STREAMS",
        256,
        "HTTP/2 streams (calls) one client connection may have open at once; clients queue calls beyond it.",
        int_range(1, 100_000),
    )
    keepalive_time_seconds: float = setting(
        "KEEPALIVE_TIME_SECONDS", 30.0, "Server keepalive ping interval.", float_range(1, 86400)
    )
    keepalive_timeout_seconds: float = setting(
        "KEEPALIVE_TIMEOUT_SECONDS", 10.0, "Time to wait for a keepalive ack.", float_range(1, 3600)
    )
    max_connection_age_seconds: float = setting(
        "MAX_CONNECTION_AGE_SECONDS",
        300.0,
        "Connections are recycled after this age so clients rebalance over new pods (0: never).",
        float_range(0, 86400 * 30),
    )
    max_connection_age_grace_seconds: float = setting(
        "MAX_CONNECTION_AGE_GRACE_SECONDS", 600.0, "Time streams on a recycled connection get to finish.", float_range(0, 86400)
    )
    health_check_interval_seconds: float = setting(
        "HEALTH_CHECK_INTERVAL_SECONDS", 2.0, "How often dependency health is probed.", float_range(0.05, 600)
    )


T = TypeVar("T")


def env_vars(cls: type) -> Iterator[tuple[dataclasses.Field[Any], EnvVar]]:
    for f in dataclasses.fields(cls):
        if "env" in f.metadata:
            yield f, f.metadata["env"]


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build `cls` from the environment; keyword overrides (CLI flags) win when not None.

    Raises ConfigError naming the variable at the first bad value.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f, var in env_vars(cls):
        if overrides.get(f.name) is not None:
            values[f.name] = overrides[f.name]
        elif var.name in environ:
            try:
                values[f.name] = var.parse(environ[var.name])
            except ValueError as exc:
                raise ConfigError(f"{var.name}: {exc}") from None
    unknown = {k for k, v in overrides.items() if v is not None} - {f.name for f, _ in env_vars(cls)}
    if unknown:
        raise ConfigError(f"unknown setting override(s): {', '.join(sorted(unknown))}")
    return cls(**values)
