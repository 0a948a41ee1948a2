"""`rentscout`: run services, manage the database, bring up a local stack, call the services.

Exit codes: 0 success, 1 failure of the requested work, 2 usage or configuration error,
3 a service or dependency unavailable (see each subcommand's help for more).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module registers its own subcommands (register(subparsers)); order is the help order.
COMMAND_MODULES = (
    "rentscout.cli.serve",
    "rentscout.cli.db",
    "rentscout.cli.stack",
    "rentscout.cli.health",
)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rentscout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
