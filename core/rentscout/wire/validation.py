"""Input rules every service applies the same way (limits and character checks of request strings)."""

from __future__ import annotations

import unicodedata

# One limit for a city name everywhere (export filters, cache queries and invalidation): city tags
# (`city:<name>`) must stay within the cache's tag length.
MAX_CITY_LENGTH = 100
# Control, format, surrogate, private-use and unassigned code points.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in _CONTROL_CATEGORIES for ch in text)


def city_problem(city: str) -> str | None:
    """What is wrong with a city name (callers decide about trimming), or None. Unknown cities are fine."""
    if not city:
        return "must not be empty"
    if len(city) > MAX_CITY_LENGTH:
        return f"must be at most {MAX_CITY_LENGTH} characters (got {len(city)})"
    if has_control_chars(city):
        return "must not contain control or unassigned characters"
    return None
