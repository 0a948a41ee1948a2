"""Client commands of the `rentscout` command: health, export, cache, analyze.

They call the services through the SDK (rentscout.sdk) and never import server code; `rentscout.main`
puts them on the command line next to the operator commands (rentscout.ops).
"""

from __future__ import annotations

import argparse

from rentscout.cli import analyze, cache, export, health


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add health, export, cache and analyze to the `rentscout` subcommands (in this help order)."""
    health.register(sub)
    export.register(sub)
    cache.register(sub)
    analyze.register(sub)
