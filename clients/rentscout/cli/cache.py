"""`rentscout cache popular|price-stats|cities|types|invalidate|stats`: the cached read queries.

    rentscout cache popular --city Moscow --limit 5
    rentscout cache price-stats --city Moscow --type apartment
    rentscout cache invalidate --tag city:Moscow          # admin token; or --pattern GLOB,
    rentscout cache invalidate --property 42 --previous-city Kazan   # or --city NAME
    rentscout cache stats --json

Every answer says where it came from (near cache, Redis, database, or a stale entry being
refreshed), the cache key, its age and TTL.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from rich.table import Table

from rentscout.cli.clientargs import (
    EXIT_OK,
    UsageError,
    add_client_flags,
    client_options,
    duration_text,
    print_json,
    run,
    size_text,
    stderr_console,
    stdout_console,
)
from rentscout.cli.hints import city_hint, known_cities, notice
from rentscout.sdk import CacheQueryClient
from rentscout.wire.enums import BREAKER_STATE, CACHE_SOURCE, PROPERTY_TYPE, name_of


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "cache",
        help="popular queries served from the cache, invalidation, cache statistics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")

    a = actions.add_parser("popular", help="most viewed active properties of a city")
    a.add_argument("--city", required=True)
    a.add_argument("--limit", type=int, default=10, help="1..100 (default: %(default)s)")
    a.set_defaults(call=_popular)

    a = actions.add_parser("price-stats", help="price distribution of a city's active properties")
    a.add_argument("--city", required=True)
    a.add_argument("--type", dest="property_type", help="property type, e.g. apartment (default: all)")
    a.set_defaults(call=_price_stats)

    actions.add_parser("cities", help="cities with their active-listing counts").set_defaults(call=_cities)
    actions.add_parser("types", help="property types with their active-listing counts").set_defaults(call=_types)

    a = actions.add_parser("invalidate", help="drop cached entries (admin): by pattern, tags or a changed entity")
    which = a.add_mutually_exclusive_group(required=True)
    which.add_argument("--pattern", help="glob over cache keys (Redis SCAN MATCH)")
    which.add_argument("--tag", dest="tags", action="append", help="tag such as city:Moscow, cities (repeatable)")
    which.add_argument("--property", metavar="ID", help="everything that depends on this property")
    which.add_argument("--city", help="everything that depends on this city")
    a.add_argument("--previous-city", default="", help="with --property: the city it moved from")
    a.set_defaults(call=_invalidate)

    actions.add_parser("stats", help="hit ratios, stampedes prevented, Redis usage, breaker state").set_defaults(call=_stats)
    for action in actions.choices.values():
        add_client_flags(action, "cache", timeout=10.0)
        action.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    async def work() -> int:
        async with CacheQueryClient(args.target, **client_options(args)) as client:
            reply = await args.call(client, args)
            if args.json:
                print_json(reply)
            else:
                _render(args, reply)
            if _empty(args, reply):
                what = "no active listings" if args.cache_command == "popular" else "no active listings to price"
                hint = city_hint([args.city], await known_cities(client, args, None))
                notice(args, stderr_console(), f"{what} in {args.city!r}", hint)
        return EXIT_OK

    return run(args, work)


def _empty(args: argparse.Namespace, reply: Any) -> bool:
    """A city query that matched nothing (it still exits 0: an empty answer is an answer)."""
    if args.cache_command == "popular":
        return len(reply.properties) == 0
    return args.cache_command == "price-stats" and int(reply.count) == 0


async def _popular(client: CacheQueryClient, args: argparse.Namespace) -> Any:
    return await client.popular_properties(args.city, args.limit)


async def _price_stats(client: CacheQueryClient, args: argparse.Namespace) -> Any:
    return await client.price_stats(args.city, args.property_type)


async def _cities(client: CacheQueryClient, args: argparse.Namespace) -> Any:
    return await client.cities()


async def _types(client: CacheQueryClient, args: argparse.Namespace) -> Any:
    return await client.property_types()


async def _invalidate(client: CacheQueryClient, args: argparse.Namespace) -> Any:
    if args.previous_city and not args.property:
        raise UsageError("--previous-city goes with --property")
    if args.property:
        return await client.invalidate_related("property", args.property, args.previous_city)
    if args.city:
        return await client.invalidate_related("city", args.city)
    return await client.invalidate(pattern=args.pattern or "", tags=args.tags or ())


def _render(args: argparse.Namespace, reply: Any) -> None:
    console = stdout_console()
    command = args.cache_command
    if command == "popular":
        table = Table(title=f"most viewed active listings in {args.city}")
        for name, justify in (
            ("id", "right"),
            ("views", "right"),
            ("price", "right"),
            ("type", "left"),
            ("rooms", "right"),
            ("m²", "right"),
            ("district", "left"),
            ("title", "left"),
        ):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for p in reply.properties:  # a NULL column (an absent field) is a blank cell, never 0 or ""
            table.add_row(
                str(p.id),
                f"{p.views:,}",
                f"{p.price:,} {p.currency}",
                name_of(PROPERTY_TYPE, p.property_type),
                present(p, "rooms", str),
                present(p, "area", _area),
                present(p, "district", str),
                p.title,
            )
        console.print(table)
    elif command == "price-stats":
        table = Table(
            title=f"prices in {args.city}" + (f" ({args.property_type})" if args.property_type else ""), show_header=False
        )
        table.add_column("", style="bold")
        table.add_column("", justify="right")
        table.add_row("active listings", f"{reply.count:,}")
        for label, name in (
            ("min", "min"),
            ("p25", "p25"),
            ("median", "median"),
            ("mean", "mean"),
            ("p75", "p75"),
            ("max", "max"),
            ("mean per m²", "mean_price_per_sqm"),
        ):
            table.add_row(label, present(reply, name, _amount))  # absent (no listings, no areas): blank
        console.print(table)
    elif command == "cities":
        _counts(console, "cities", "city", [(c.city, c.count) for c in reply.cities])
    elif command == "types":
        _counts(
            console, "property types", "type", [(name_of(PROPERTY_TYPE, t.property_type), t.count) for t in reply.property_types]
        )
    elif command == "invalidate":
        tags = f" (tags: {', '.join(reply.tags)})" if getattr(reply, "tags", None) else ""
        console.print(f"deleted {reply.keys_deleted} cache key(s){tags}", markup=False)
        return
    elif command == "stats":
        _stats_tables(console, reply)
        return
    _cache_line(console, reply.cache)


def present(message: Any, field: str, text: Callable[[Any], str]) -> str:
    """`text(value)` of an optional field, or "" when it is absent."""
    return text(getattr(message, field)) if message.HasField(field) else ""


def _amount(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else str(value)  # inf, -inf, nan as they are


def _area(value: float) -> str:
    return f"{value:.0f}" if math.isfinite(value) and value >= 1 else (str(value) if not math.isfinite(value) else f"{value:.3g}")


def _counts(console: Any, title: str, label: str, rows: list[tuple[str, int]]) -> None:
    """Active listings per name: the count says so (an export without --active-only also writes inactive ones)."""
    table = Table(title=title, caption="active listings only (`rentscout export --active-only` writes these)")
    table.add_column(label)
    table.add_column("active listings", justify="right")
    for name, count in rows:
        table.add_row(name, f"{count:,}")
    console.print(table)


def _cache_line(console: Any, cache: Any) -> None:
    state = "hit" if cache.hit else "miss"
    source = name_of(CACHE_SOURCE, cache.source)
    age = duration_text(cache.age.ToTimedelta().total_seconds())
    ttl = duration_text(cache.ttl.ToTimedelta().total_seconds())
    console.print(f"cache {state} ({source}), key {cache.key or '-'}, age {age}, ttl {ttl}", style="dim", markup=False)


async def _stats(client: CacheQueryClient, args: argparse.Namespace) -> Any:
    return await client.stats()


def _stats_tables(console: Any, reply: Any) -> None:
    table = Table(title="cache by query type")
    for name in ("query type", "hits", "misses", "hit ratio"):
        table.add_column(name, justify="left" if name == "query type" else "right")
    for q in reply.by_query_type:
        table.add_row(q.query_type, f"{q.hits:,}", f"{q.misses:,}", f"{q.hit_ratio:.1%}")
    table.add_section()
    table.add_row("all", f"{reply.hits:,}", f"{reply.misses:,}", f"{reply.hit_ratio:.1%}", style="bold")
    console.print(table)
    summary = Table(show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", justify="right")
    for label, value in (
        ("stampedes prevented", f"{reply.stampedes_prevented:,}"),
        ("invalidations", f"{reply.invalidations:,}"),
        ("redis keys", f"{reply.redis_keys:,}"),
        ("redis memory", size_text(reply.redis_memory_bytes)),
        ("near-cache entries", f"{reply.near_cache_entries:,}"),
        ("redis breaker", name_of(BREAKER_STATE, reply.breaker_state)),
    ):
        summary.add_row(label, value)
    console.print(summary)
