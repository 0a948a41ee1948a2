"""What the client subcommands (export, cache, analyze) share: connection flags, running an SDK
coroutine, exit codes by failure, JSON or table output, readable errors."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.logging import RichHandler

from rentscout.resilience.retry import RetryPolicy
from rentscout.sdk import errors
from rentscout.sdk.channel import ChannelConfig, TlsConfig
from rentscout.wire import tracing
from rentscout.wire.correlation import correlation_id, new_correlation_id
from rentscout.wire.metadata import ADMIN_TOKEN_ENV, TARGET_ENV, TOKEN_ENV
from rentscout.wire.version import VERSION

DEFAULT_TARGETS = {"export": "127.0.0.1:50051", "cache": "127.0.0.1:50052", "analyzer": "127.0.0.1:50053"}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH, EXIT_DEADLINE, EXIT_PRECONDITION = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader went away

_EXIT_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_USAGE,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: EXIT_UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_DEADLINE,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED: EXIT_PRECONDITION,
}


def exit_code(exc: errors.RentScoutError) -> int:
    return _EXIT_BY_CODE.get(exc.code, EXIT_FAILED)


def add_client_flags(parser: argparse.ArgumentParser, service: str, timeout: float | None = 30.0) -> None:
    g = parser.add_argument_group("connection")
    g.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV[service]) or DEFAULT_TARGETS[service],
        help="host:port or dns:///host:port (round-robin over every address) "
        f"(default: ${TARGET_ENV[service]}, else {DEFAULT_TARGETS[service]})",
    )
    g.add_argument("--token", default=None, help=f"bearer token (default: ${TOKEN_ENV})")
    g.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="SECONDS",
        help="overall deadline of the call, retries included" + (" (default: %(default)s)" if timeout else " (default: none)"),
    )
    g.add_argument("--retries", type=int, default=3, metavar="N", help="retries of a failed call (default: %(default)s)")
    g.add_argument("--tls-ca", metavar="PEM", help="verify the server with this CA (enables TLS)")
    g.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS (with --tls-key)")
    g.add_argument("--tls-key", metavar="PEM", help="client private key for mutual TLS")
    g.add_argument("--tls-server-name", metavar="NAME", help="expected server name when it differs from the target host")
    g.add_argument("--correlation-id", help="correlation id for the server logs (default: a new UUID)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log retries, reconnects and warnings on stderr (default: errors only)"
    )


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """ClientConfig keyword arguments from the flags."""
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name:
        tls = TlsConfig(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key, server_name=args.tls_server_name)
    if args.retries < 0:
        raise UsageError("--retries must be >= 0")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    return {
        "token": args.token or os.environ.get(TOKEN_ENV) or None,
        "timeout": args.timeout,
        "retry": RetryPolicy(max_attempts=args.retries + 1, initial_delay=0.1, max_delay=2.0),
        "channel": ChannelConfig(tls=tls),
    }


class UsageError(Exception):
    """A flag combination the command cannot run with (exit code 2)."""


def stderr_console() -> Console:
    """Messages on stderr: wrapped to the terminal's width on a terminal, one line each otherwise
    (a log file or a CI job must not get a message folded at 80 columns mid-phrase)."""
    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


def stdout_console() -> Console:
    """Tables on stdout; when it is not a terminal, wide enough that lines are not folded."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(highlight=False, soft_wrap=False, width=width)


def _setup(args: argparse.Namespace, console: Console) -> str:
    """Logging on stderr: with -v, retries, reconnects and warnings; without it, nothing but errors
    (the command reports its own failure once, see `fail`)."""
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))  # the handler shows the level itself
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("rentscout: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, handlers=[handler], force=True)
    tracing.configure("rentscout-cli", VERSION)  # real spans, so a traceparent reaches the servers
    cid = args.correlation_id or new_correlation_id()
    correlation_id.set(cid)
    return cid


def run(args: argparse.Namespace, work: Callable[[], Coroutine[Any, Any, int | None]], console: Console | None = None) -> int:
    """Run one SDK coroutine; map failures to exit codes and print them (as JSON with --json)."""
    console = console or stderr_console()
    cid = _setup(args, console)
    try:
        return int(asyncio.run(work()) or EXIT_OK)
    except UsageError as exc:
        return fail(args, console, EXIT_USAGE, "USAGE", str(exc), None)
    except errors.RentScoutError as exc:
        if isinstance(exc, errors.CircuitOpenError):
            return fail(args, console, EXIT_UNAVAILABLE, "UNAVAILABLE", str(exc), cid, hint=hint_for(args, exc))
        return fail(
            args,
            console,
            exit_code(exc),
            exc.code.name,
            exc.details,
            exc.correlation_id or cid,
            violations=exc.violations,
            notes=getattr(exc, "__notes__", []),
            hint=hint_for(args, exc),
        )
    except (ValueError, TypeError) as exc:  # bad flag values caught by the SDK's request builders
        return fail(args, console, EXIT_USAGE, "USAGE", str(exc), None)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a local file: no server was involved, so no correlation id to quote
        return fail(
            args, console, EXIT_FAILED, "IO", f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), None, hint=io_hint(exc)
        )


def io_hint(exc: OSError) -> str | None:
    """What to do about a local file error, for the two a newcomer meets: a missing directory, no permission."""
    if not exc.filename:
        return None
    parent = Path(str(exc.filename)).parent
    if exc.errno == errno.ENOENT and not parent.is_dir():
        return f"the directory {parent} does not exist: create it (mkdir -p {parent}) or write elsewhere"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{exc.filename} cannot be written here: pick a path you can write to"
    return None


def hint_for(args: argparse.Namespace, exc: errors.RentScoutError) -> str | None:
    """What to try next, for the failures a newcomer meets first."""
    target = getattr(args, "target", "") or exc.target
    if exc.code is grpc.StatusCode.UNAVAILABLE:
        return f"is the service running at {target}? `make up` starts the local stack; --target picks another address"
    if exc.code is grpc.StatusCode.UNAUTHENTICATED:
        return f"pass --token or set {TOKEN_ENV} (`make up` prints the local stack's tokens, kept in .stack/tokens)"
    if exc.code is grpc.StatusCode.PERMISSION_DENIED:
        return f'this call needs a token with the admin role (the local stack prints it: --token="${ADMIN_TOKEN_ENV}")'
    return None


def fail(
    args: argparse.Namespace,
    console: Console,
    code: int,
    status: str,
    message: str,
    cid: str | None,
    violations: list[tuple[str, str]] | None = None,
    notes: list[str] | None = None,
    hint: str | None = None,
) -> int:
    """Report a failure once: one line (and its details below it), or one JSON object with --json."""
    if getattr(args, "json", False):
        doc = {
            "error": {
                "status": status,
                "message": message,
                "exit_code": code,
                "correlation_id": cid,
                "violations": [{"field": f, "description": d} for f, d in violations or []],
                "notes": list(notes or []),
                "hint": hint,
            }
        }
        sys.stderr.write(orjson.dumps(doc).decode() + "\n")
        return code
    console.print(f"[bold red]error[/]: {status}: {message}", markup=True, highlight=False)
    for field, description in violations or []:
        console.print(f"  - {field}: {description}", markup=False)
    for note in notes or []:
        console.print(f"  ({note})", markup=False)
    if hint:
        console.print(f"  hint: {hint}", markup=False)
    if cid:
        console.print(f"  correlation id: {cid}", style="dim", markup=False)
    return code


def _silence_stdout() -> None:
    """After EPIPE, stop Python from complaining again while flushing stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def message_json(message: Message) -> dict[str, Any]:
    """The message as proto3 JSON, except that an absent `optional` field is a null (not a missing key),
    so a NULL column reads as null next to its present neighbours."""
    doc = json_format.MessageToDict(message, preserving_proto_field_name=True)
    _absent_as_null(message, doc)
    return doc


def _absent_as_null(message: Message, doc: dict[str, Any]) -> None:
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None:
            value = getattr(message, field.name)
            if field.is_repeated:
                if field.message_type.GetOptions().map_entry:
                    continue
                for item, item_doc in zip(value, doc.get(field.name, []), strict=False):
                    _absent_as_null(item, item_doc)
            elif message.HasField(field.name) and isinstance(doc.get(field.name), dict):
                _absent_as_null(value, doc[field.name])
        elif (
            field.containing_oneof is not None
            and field.containing_oneof.name == f"_{field.name}"
            and not message.HasField(field.name)
        ):
            doc[field.name] = None  # a proto3 `optional` scalar that is absent


def print_json(value: Message | dict[str, Any] | list[Any], stream: Any = None) -> None:
    doc = message_json(value) if isinstance(value, Message) else value
    (stream or sys.stdout).write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def duration_text(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
