"""Operator commands of the `rentscout` command: serve, db, stack (and the demo job `stack demo` runs).

They live with the services because they run them: they import the runtime and the services, never
the SDK or the client CLI (see docs/architecture.md). `rentscout.main` puts them on the command line.
"""

from __future__ import annotations

import argparse

from rentscout.ops import db, serve, stack


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add serve, db and stack to the `rentscout` subcommands (in this help order)."""
    serve.register(sub)
    db.register(sub)
    stack.register(sub)
