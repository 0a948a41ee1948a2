"""Redis key layout of the cache, compatible with Redis Cluster.

An entry key is `<ns>:v<format>.<query version>:<query type>:{<md5>}` where md5 is the MD5 of the
sorted JSON of the query's parameters. A deploy that changes a query's result shape bumps its
version, so it never reads entries written by the old code. The braces are a Cluster hash tag:
an entry's lease, access counter and churn counter carry the same tag, so the Lua scripts that
touch an entry and its companions run on one slot. Tag sets, the stats hash and the channel are
single keys each; no operation spans two slots.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

FORMAT_VERSION = 1  # bump when the entry encoding (see entry.py) changes
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
        return f"{self.namespace}:{kind}:{entry_key[len(self.namespace) + 1:]}"

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
        return f"{self.namespace}:{lease_key[len(prefix):]}" if lease_key.startswith(prefix) else None

    def tag(self, tag: str) -> str:
        return f"{self.namespace}:tag:{tag}"

    @property
    def tag_prefix(self) -> str:
        return f"{self.namespace}:tag:"

    @property
    def stats(self) -> str:
        return f"{self.namespace}:stats"

    @property
    def listener_heartbeat(self) -> str:
        """Exists while some replica LISTENs for property changes."""
        return f"{self.namespace}:listening"

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


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Redis' glob (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\\x`) as a regex, to test keys SCAN cannot reach."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                negate = body.startswith("^")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\")
                out.append(f"[{'^' if negate else ''}{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)
