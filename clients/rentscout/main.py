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
from typing import cast

# The composition root of the command line: operator commands (serve, db, stack) come from
# rentscout.ops, client commands (health, export, cache, analyze) from rentscout.cli. Nothing imports
# this module; it is the only one that sees both sides (docs/architecture.md).
from rentscout.cli import commands as client_commands
from rentscout.cli.usage import Parser
from rentscout.ops import register as register_operator_commands


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rentscout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # every subparser is a Parser too (argparse makes them of the parent's class): the commands see ArgumentParsers
    sub = cast("argparse._SubParsersAction[argparse.ArgumentParser]",
               parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    register_operator_commands(sub)
    client_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
