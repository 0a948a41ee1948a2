"""`rentscout`: run services, manage the database, bring up a local stack, call the services.

Client commands (export, cache, analyze) take --target (default $RENTSCOUT_EXPORT_TARGET,
$RENTSCOUT_CACHE_TARGET, $RENTSCOUT_ANALYZER_TARGET), --token (default $RENTSCOUT_TOKEN),
--timeout, --json (machine-readable output; errors as JSON on stderr) and TLS flags; they retry
and resume through the SDK (rentscout.sdk).

Exit codes:
  0    success
  1    the requested work failed (server error, broken data, local I/O error)
  2    usage or configuration error, or the server rejected the input (INVALID_ARGUMENT)
  3    a service or dependency is unavailable or overloaded (UNAVAILABLE, RESOURCE_EXHAUSTED,
       the client's circuit breaker is open)
  4    authentication or authorization failed (UNAUTHENTICATED, PERMISSION_DENIED)
  5    the deadline (--timeout) expired (DEADLINE_EXCEEDED)
  6    the server cannot do this in its current state (FAILED_PRECONDITION, e.g. an extension is
       missing; UNIMPLEMENTED)
  7    serve/stack: a port is already in use
  8    stack: a stack is already running in the state directory (--dir)
  130  interrupted (Ctrl-C);  141  stdout closed by its reader (e.g. `| head`)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import cast

from rentscout.cli.usage import Parser  # stdlib only: works without the `cli` extra

# The composition root of the command line. Client commands (health, export, cache, analyze) come from
# rentscout.cli, in this distribution (rentscout-client, `cli` extra). Operator commands (serve, db, stack)
# come from every installed distribution that registers a `register(sub)` function under the
# `rentscout.commands` entry-point group: rentscout-server registers rentscout.ops:register. So this
# module imports no server code, and with only the client installed `rentscout serve` says what to install.
ENTRY_POINT_GROUP = "rentscout.commands"
OPERATOR_COMMANDS = {"serve": "rentscout-server", "db": "rentscout-server", "stack": "rentscout-server"}
CLI_EXTRA_MODULES = {"rich", "orjson"}  # what the `cli` extra adds (clients/pyproject.toml)

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def installed_registrars() -> list[Register]:
    """The `register` functions other distributions contribute, in the order of their entry-point names."""
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    return [e.load() for e in found]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: installed operator commands, then the client commands."""
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, set[str]]:
    from rentscout.cli import commands as client_commands

    parser = Parser(prog="rentscout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # every subparser is a Parser too (argparse makes them of the parent's class): the commands see ArgumentParsers
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    for register in installed_registrars():
        register(sub)
    client_commands.register(sub)
    return parser, set(sub.choices or ())


def missing_command(argv: list[str], commands: set[str]) -> str | None:
    """Why the command word cannot run here, when it belongs to a distribution that is not installed."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in OPERATOR_COMMANDS and command not in commands:
        dist = OPERATOR_COMMANDS[command]
        return f"rentscout: `{command}` is an operator command of {dist}, which is not installed here (pip install {dist})"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser, commands = _build()
    except ModuleNotFoundError as e:
        if e.name not in CLI_EXTRA_MODULES:
            raise
        print("rentscout: the command needs the client's `cli` extra: pip install 'rentscout-client[cli]'", file=sys.stderr)
        return 2
    if (why := missing_command(argv, commands)) is not None:
        print(why, file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
