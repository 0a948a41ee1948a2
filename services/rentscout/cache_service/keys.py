"""Redis key layout of the cache, compatible with Redis Cluster.

An entry key is `<ns>:v<format>.<query version>:<query type>:{<md5>}` where md5 is the MD5 of the
sorted JSON of the query's parameters. A deploy that changes a query's result shape bumps its
version, so it never reads entries written by the old code. The braces are a Cluster hash tag:
an entry's lease, access counter and churn counter carry the same tag, so the Lua scripts that
touch an entry and its companions run on one slot. Tag sets (a best-effort index for deleting
entries early, never needed for correctness: see changes.py), the stats hash and the channel are
single keys each; no operation spans two slots.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

FORMAT_VERSION = 2  # bump when the entry encoding (see entry.py) changes
_ENTRY_RE = r"v\d+\.\d+:[a-z0-9_]+:\{[0-9a-f]{32}\}"


def params_digest(params: dict[str, Any]) -> str:
    """MD5 of the canonical (sorted keys, compact) JSON of the parameters: a name, not a secret."""
    return hashlib.md5(orjson.dumps(params, option=orjson.OPT_SORT_KEYS), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class KeySpace:
    namespace: str

    def entry(self, query_type: str, version: int, params: dict[str, Any]) -> str:
        return f"{self.namespace}:v{FORMAT_VERSION}.{version}:{query_type}:{{{params_digest(params)}}}"

    def _companion(self, kind: str, entry_key: str) -> str:
        return f"{self.namespace}:{kind}:{entry_key[len(self.namespace) + 1 :]}"

    def lease(self, entry_key: str) -> str:
        """Held while one replica recomputes the entry; its token guards the write (no stale refill)."""
        return self._companion("lease", entry_key)

    def accesses(self, entry_key: str) -> str:
        """Reads of the entry in the current access window (drives the TTL tier)."""
        return self._companion("hits", entry_key)

    def churn(self, entry_key: str) -> str:
        """Invalidations of the entry in the current window (shortens its TTL)."""
        return self._companion("churn", entry_key)

    def entry_of_lease(self, lease_key: str) -> str | None:
        prefix = f"{self.namespace}:lease:"
        return f"{self.namespace}:{lease_key[len(prefix) :]}" if lease_key.startswith(prefix) else None

    def tag(self, tag: str) -> str:
        return f"{self.namespace}:tag:{tag}"

    @property
    def stats(self) -> str:
        return f"{self.namespace}:stats"

    @property
    def channel(self) -> str:
        return f"{self.namespace}:invalidations"

    @property
    def all_entries_pattern(self) -> str:
        return f"{glob_escape(self.namespace)}:v*"

    @property
    def all_leases_pattern(self) -> str:
        return f"{glob_escape(self.namespace)}:lease:*"

    def is_entry(self, key: str) -> bool:
        return _entry_re(self.namespace).fullmatch(key) is not None


@lru_cache(maxsize=64)
def _entry_re(namespace: str) -> re.Pattern[str]:
    return re.compile(re.escape(namespace) + ":" + _ENTRY_RE)


# -- tags ---------------------------------------------------------------------------------------

CITIES_TAG = "cities"
TYPES_TAG = "property_types"


def city_tag(city: str) -> str:
    """Everything cached about a city."""
    return f"city:{city}"


def popular_tag(city: str) -> str:
    """Only a city's popular lists (what a change of views alone affects)."""
    return f"popular:{city}"


# -- Redis glob patterns (SCAN MATCH syntax) ------------------------------------------------------


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class GlobError(ValueError):
    """A malformed glob; the message names the problem and its position (1-based)."""


@dataclass(frozen=True)
class Glob:
    """A Redis glob (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\\x`) matched in bounded time, without backtracking.

    The pattern is cut at its stars into segments of single-character atoms, each compiled to a
    regular expression with no quantifier at all, so a segment test costs at most (key length x
    segment length) steps. A key matches when the first segment matches at its start, the last one at
    its end, and every middle one leftmost in between: with fixed-width segments the leftmost place is
    always a right choice, so no position is ever revisited. The whole match is O(key x pattern),
    whatever the stars (the classic backtracking translation `.*a.*a.*...` is exponential).
    """

    pattern: str
    segments: tuple[re.Pattern[str], ...]
    widths: tuple[int, ...]
    starred: bool  # at least one `*`: segments[0] is anchored at the start, segments[-1] at the end
    literal_prefix: str  # the pattern's leading literal characters (what Redis' SCAN MATCH may narrow by)

    def matches(self, key: str) -> bool:
        segs, widths, n = self.segments, self.widths, len(key)
        if not self.starred:
            return n == widths[0] and segs[0].fullmatch(key) is not None
        first, last = widths[0], widths[-1]
        if first + last > n or segs[0].match(key) is None or segs[-1].fullmatch(key, n - last) is None:
            return False
        pos, end = first, n - last
        for seg, width in zip(segs[1:-1], widths[1:-1], strict=True):
            found = seg.search(key, pos, end)
            if found is None:
                return False
            pos = found.start() + width
        return True

    @property
    def scan_pattern(self) -> str:
        """What to hand SCAN MATCH: the literal prefix and a star, which Redis matches in linear time."""
        return glob_escape(self.literal_prefix) + "*"


def _class_atom(pattern: str, i: int) -> tuple[str, int]:
    """The regex of the `[...]` starting at pattern[i]; returns (regex, index after the `]`)."""
    start, n = i, len(pattern)
    i += 1
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    while True:
        if i >= n:
            raise GlobError(f"unterminated character class: '[' at position {start + 1} has no closing ']'")
        c = pattern[i]
        if c == "]":
            break
        if c == "\\":
            if i + 1 >= n:
                raise GlobError(f"dangling escape: '\\' at position {i + 1} ends the pattern")
            c = pattern[i + 1]
            i += 1
        if i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            hi_at = i + 2
            hi = pattern[hi_at]
            if hi == "\\":
                if hi_at + 1 >= n:
                    raise GlobError(f"dangling escape: '\\' at position {hi_at + 1} ends the pattern")
                hi_at += 1
                hi = pattern[hi_at]
            if hi < c:
                raise GlobError(f"reversed range '{c}-{hi}' in the character class at position {start + 1}")
            items.append(f"{re.escape(c)}-{re.escape(hi)}")
            i = hi_at + 1
            continue
        items.append(re.escape(c))
        i += 1
    if not items:
        raise GlobError(f"empty character class '[{'^' if negate else ''}]' at position {start + 1} matches nothing")
    return f"[{'^' if negate else ''}{''.join(items)}]", i + 1


@lru_cache(maxsize=256)
def parse_glob(pattern: str) -> Glob:
    """Parse a Redis glob strictly; raises GlobError naming the problem (Redis itself guesses instead)."""
    segments: list[list[str]] = [[]]
    prefix: list[str] = []
    literal_so_far = True
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise GlobError(f"dangling escape: '\\' at position {i + 1} ends the pattern")
            segments[-1].append(re.escape(pattern[i + 1]))
            if literal_so_far:
                prefix.append(pattern[i + 1])
            i += 2
            continue
        if c == "*":
            literal_so_far = False
            if segments[-1] or len(segments) == 1:
                segments.append([])
            i += 1
            continue
        if c == "?":
            literal_so_far = False
            segments[-1].append(".")
            i += 1
            continue
        if c == "[":
            literal_so_far = False
            atom, i = _class_atom(pattern, i)
            segments[-1].append(atom)
            continue
        if c == "]":
            raise GlobError(f"unmatched ']' at position {i + 1} (escape it as '\\]')")
        segments[-1].append(re.escape(c))
        if literal_so_far:
            prefix.append(c)
        i += 1
    starred = len(segments) > 1
    return Glob(
        pattern,
        tuple(re.compile("".join(seg), re.DOTALL) for seg in segments),
        tuple(len(seg) for seg in segments),
        starred,
        "".join(prefix),
    )
