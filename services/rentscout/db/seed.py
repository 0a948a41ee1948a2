"""Deterministic generator of realistic demo listings, loaded with COPY.

The same (seed, first id) always yields the same rows. Cities are weighted by size, prices are
log-normal and scale with city, type and area, and views follow a Pareto law, so a few listings
are very popular (what the popular-properties cache is for).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg

from rentscout.wire.schema import COLUMN_NAMES

# (city, weight, lat, lon, price per m2 multiplier, districts)
CITIES: list[tuple[str, float, float, float, float, tuple[str, ...]]] = [
    (
        "Moscow",
        30,
        55.7558,
        37.6173,
        2.6,
        (
            "Arbat",
            "Tverskoy",
            "Khamovniki",
            "Presnensky",
            "Basmanny",
            "Zamoskvorechye",
            "Sokolniki",
            "Khoroshevo-Mnevniki",
            "Maryino",
        ),
    ),
    (
        "Saint Petersburg",
        16,
        59.9343,
        30.3351,
        1.8,
        ("Admiralteysky", "Vasileostrovsky", "Petrogradsky", "Tsentralny", "Primorsky", "Moskovsky", "Nevsky"),
    ),
    ("Novosibirsk", 6, 55.0084, 82.9357, 0.9, ("Tsentralny", "Zheleznodorozhny", "Oktyabrsky", "Leninsky")),
    ("Yekaterinburg", 6, 56.8389, 60.6057, 1.0, ("Verkh-Isetsky", "Leninsky", "Oktyabrsky", "Kirovsky")),
    ("Kazan", 5, 55.7963, 49.1088, 1.0, ("Vakhitovsky", "Sovetsky", "Privolzhsky", "Novo-Savinovsky")),
    ("Nizhny Novgorod", 4, 56.2965, 43.9361, 0.85, ("Nizhegorodsky", "Sovetsky", "Avtozavodsky")),
    ("Chelyabinsk", 3.5, 55.1644, 61.4368, 0.7, ("Tsentralny", "Kalininsky", "Kurchatovsky")),
    ("Samara", 3.5, 53.1959, 50.1002, 0.75, ("Samarsky", "Leninsky", "Oktyabrsky", "Promyshlenny")),
    ("Omsk", 3, 54.9885, 73.3242, 0.65, ("Tsentralny", "Leninsky", "Oktyabrsky")),
    ("Rostov-on-Don", 3.5, 47.2357, 39.7015, 0.9, ("Kirovsky", "Leninsky", "Pervomaysky", "Voroshilovsky")),
    ("Ufa", 3, 54.7388, 55.9721, 0.75, ("Kirovsky", "Leninsky", "Sovetsky")),
    ("Krasnoyarsk", 3, 56.0153, 92.8932, 0.8, ("Tsentralny", "Zheleznodorozhny", "Sovetsky")),
    ("Voronezh", 2.5, 51.6608, 39.2003, 0.7, ("Tsentralny", "Leninsky", "Kominternovsky")),
    ("Perm", 2.5, 58.0105, 56.2502, 0.7, ("Leninsky", "Dzerzhinsky", "Motovilikhinsky")),
    ("Volgograd", 2.5, 48.7080, 44.5133, 0.6, ("Tsentralny", "Dzerzhinsky", "Krasnooktyabrsky")),
    ("Krasnodar", 3, 45.0355, 38.9753, 1.0, ("Tsentralny", "Prikubansky", "Karasunsky", "Zapadny")),
    ("Sochi", 2, 43.5855, 39.7231, 2.0, ("Tsentralny", "Khostinsky", "Adlersky", "Lazarevsky")),
    ("Kaliningrad", 1.5, 54.7104, 20.4522, 1.0, ("Tsentralny", "Leningradsky", "Moskovsky")),
    ("Tyumen", 1.5, 57.1553, 65.5619, 0.9, ("Tsentralny", "Leninsky", "Kalininsky")),
    ("Vladivostok", 1.5, 43.1155, 131.8855, 1.2, ("Frunzensky", "Leninsky", "Pervorechensky")),
]
# (type, weight, base price per m2 in RUB/month)
TYPES = [
    ("apartment", 55, 650.0),
    ("room", 10, 900.0),
    ("studio", 15, 800.0),
    ("house", 9, 450.0),
    ("townhouse", 4, 520.0),
    ("commercial", 7, 1100.0),
]
SOURCES = [
    ("avito", 45, "https://www.avito.ru/item/"),
    ("cian", 30, "https://www.cian.ru/rent/flat/"),
    ("domclick", 15, "https://domclick.ru/card/rent__"),
    ("yandex", 10, "https://realty.ya.ru/offer/"),
]
STREETS = (
    "Lenina",
    "Mira",
    "Sovetskaya",
    "Gagarina",
    "Pushkina",
    "Tsentralnaya",
    "Molodezhnaya",
    "Shkolnaya",
    "Lesnaya",
    "Sadovaya",
    "Naberezhnaya",
    "Kirova",
    "Pobedy",
    "Oktyabrskaya",
    "Zelenaya",
)
COLUMNS = COLUMN_NAMES
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
BLOCK = 10_000  # rows per independently seeded block: the output does not depend on batching


def _rooms(rng: random.Random, kind: str) -> int:
    if kind == "apartment":
        return rng.choices((1, 2, 3, 4, 5), (35, 35, 20, 8, 2))[0]
    if kind in ("house", "townhouse"):
        return rng.randint(3, 6)
    return 1 if kind == "room" else 0


def block_lines(seed: int, block: int) -> Iterator[str]:
    """CSV lines of the BLOCK rows with ids block*BLOCK+1 .., generated lazily from one seeded stream."""
    rng = random.Random(seed * 1_000_003 + block)
    cities = rng.choices(CITIES, weights=[c[1] for c in CITIES], k=BLOCK)
    types = rng.choices(TYPES, weights=[t[1] for t in TYPES], k=BLOCK)
    sources = rng.choices(SOURCES, weights=[s[1] for s in SOURCES], k=BLOCK)
    first_id = block * BLOCK + 1
    for i in range(BLOCK):
        pid = first_id + i
        city, _, lat0, lon0, mult, districts = cities[i]
        kind, _, per_m2 = types[i]
        source, _, url = sources[i]
        rooms = _rooms(rng, kind)
        area = round((14 + 19 * max(rooms, 0.6)) * rng.lognormvariate(0, 0.18) * (1.6 if kind == "house" else 1), 1)
        if kind == "commercial":
            area = round(30 * rng.lognormvariate(0.6, 0.6), 1)
        price = max(3000, int(per_m2 * mult * area * rng.lognormvariate(0, 0.3) / 500) * 500)
        floor = rng.randint(1, 3) if kind in ("house", "townhouse") else rng.randint(1, 25)
        district = rng.choice(districts)
        views = min(2_000_000, int(rng.paretovariate(1.1) * 8))
        created = EPOCH + timedelta(seconds=rng.randint(0, 300 * 86400))
        updated = created + timedelta(seconds=rng.randint(0, 30 * 86400))
        label = {
            "studio": "Studio",
            "room": "Room",
            "commercial": "Commercial space",
            "house": f"{rooms}-room house",
            "townhouse": f"{rooms}-room townhouse",
        }.get(kind, f"{rooms}-room apartment")
        ext = f"{source[:2]}{pid:09d}"
        yield (
            f'{pid},{source},{ext},"{label}, {area:g} m², {district}",{city},{district},'
            f'"{rng.choice(STREETS)} st., {rng.randint(1, 180)}",{kind},{price},RUB,{rooms},{area:g},{floor},'
            f"{lat0 + rng.gauss(0, 0.06):.6f},{lon0 + rng.gauss(0, 0.09):.6f},{url}{ext},{views},"
            f"{'t' if rng.random() < 0.9 else 'f'},{created.isoformat()},{updated.isoformat()}\n"
        )


def lines(seed: int, first_id: int, rows: int) -> Iterator[str]:
    """All CSV lines for `rows` rows starting at `first_id` (ids are 1-based and block-aligned)."""
    pid, end = first_id, first_id + rows
    while pid < end:
        block = (pid - 1) // BLOCK
        start = block * BLOCK + 1
        block_end = min(end, start + BLOCK)
        # a row's values depend only on (seed, id): skip to pid within its block's stream
        yield from itertools.islice(block_lines(seed, block), pid - start, block_end - start)
        pid = block_end


async def _chunks(
    seed: int, first_id: int, rows: int, size: int = 1 << 20, progress: Callable[[int], object] | None = None
) -> AsyncIterator[bytes]:
    buf: list[str] = []
    length = done = 0
    for line in lines(seed, first_id, rows):
        buf.append(line)
        length += len(line)
        if length >= size:
            yield "".join(buf).encode()
            done += len(buf)
            if progress is not None:
                progress(done)
            buf, length = [], 0
    if buf:
        yield "".join(buf).encode()
        if progress is not None:
            progress(done + len(buf))


async def seed(
    dsn: str, rows: int, *, seed_value: int = 42, reset: bool = False, progress: Callable[[int], object] | None = None
) -> tuple[int, int]:
    """Append `rows` demo listings (after the highest id), or replace all with `reset`. Returns (first, last) id.

    `progress(rows_sent)` is called after each block handed to COPY (about 1 MiB)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            if reset:
                await conn.execute("TRUNCATE properties RESTART IDENTITY")
            first = (await conn.fetchval("SELECT coalesce(max(id), 0) FROM properties")) + 1
            if rows > 0:
                await conn.copy_to_table(
                    "properties", source=_chunks(seed_value, first, rows, progress=progress), columns=list(COLUMNS), format="csv"
                )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('properties', 'id'), greatest(1, (SELECT max(id) FROM properties)))"
            )
        await conn.execute("ANALYZE properties")
        return first, first + rows - 1
    finally:
        await conn.close()
