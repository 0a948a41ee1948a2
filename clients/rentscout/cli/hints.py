"""Saying so when a command found nothing: one notice on stderr with a hint, exit code unchanged.

The usual cause is a city spelt differently from the data ("Moscw", "moscow"): city filters are
exact. The hint names the closest known cities (difflib over the Cities query of the cache-query
service), or says what else to check.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
from collections.abc import Sequence

import orjson
from rich.console import Console

from rentscout.sdk import CacheQueryClient, RetryPolicy, errors
from rentscout.wire.metadata import TARGET_ENV


def closest(name: str, known: Sequence[str], n: int = 3) -> list[str]:
    """Known names closest to `name`, best first (case and surrounding spaces ignored)."""
    by_folded = {k.casefold(): k for k in known}
    matches = difflib.get_close_matches(name.strip().casefold(), list(by_folded), n=n, cutoff=0.6)
    return [by_folded[m] for m in matches]


def city_hint(cities: Sequence[str], known: Sequence[str] | None) -> str:
    """The hint for an empty answer to a query filtered by `cities`; `known` is None when unknown."""
    listing = "`rentscout cache cities` lists the known ones"
    if known is None:
        return f"city names are exact and case-sensitive; {listing}"
    parts = []
    for city in cities:
        if city in known:
            continue
        near = closest(city, known)
        parts.append(f"no city {city!r}" + (f" (closest: {', '.join(near)})" if near else ""))
    if not parts:
        return "the cities exist but nothing else in the filter matched; widen the other conditions"
    return "; ".join(parts) + f"; city names are exact, {listing}"


async def known_cities(client: CacheQueryClient | None, args: argparse.Namespace, token: str | None) -> list[str] | None:
    """Best effort, in about 2 s: the cities the cache-query service knows, or None."""
    with contextlib.suppress(errors.RentScoutError, OSError, ValueError):
        if client is not None:
            reply = await client.cities(timeout=2.0)
        else:
            target = os.environ.get(TARGET_ENV["cache"]) or "127.0.0.1:50052"
            async with CacheQueryClient(target, token=token, timeout=2.0, retry=RetryPolicy(max_attempts=1)) as cache:
                reply = await cache.cities()
        return [c.city for c in reply.cities]
    return None


def notice(args: argparse.Namespace, console: Console, message: str, hint: str) -> None:
    """One notice on stderr: text, or a JSON object with --json (stdout stays the data)."""
    if getattr(args, "json", False):
        sys.stderr.write(orjson.dumps({"notice": {"message": message, "hint": hint}}).decode() + "\n")
        return
    console.print(f"[yellow]note[/]: {message}", markup=True, highlight=False)
    console.print(f"  hint: {hint}", markup=False)
