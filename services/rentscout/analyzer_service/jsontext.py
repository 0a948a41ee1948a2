"""JSON decoding that never recurses: EXPLAIN (FORMAT JSON) of a deep plan nests thousands of levels.

orjson (C, fast) refuses documents nested deeper than 1024 levels, and Python's json module recurses
once per level. So documents orjson refuses are decoded again by `loads_iterative`, a loop with an
explicit stack whose only limit is the document's size.
"""

from __future__ import annotations

import json
import json.scanner
import re
from typing import Any

import orjson

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = json.scanner.NUMBER_RE
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_CONSTANTS = {"true": True, "false": False, "null": None}


def _string(text: str, pos: int) -> tuple[str, int]:
    """The JSON string starting at `pos` (its opening quote), decoded, and the position after it."""
    match = _STRING.match(text, pos)
    if match is None:
        raise ValueError(f"invalid JSON at offset {pos}: unterminated string")
    value: str = json.loads(match.group(0))
    return value, match.end()


def loads(text: str) -> Any:
    """Decode `text` at any nesting depth; ValueError when it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return loads_iterative(text)


def loads_iterative(text: str) -> Any:
    """A JSON decoder with an explicit stack (no recursion, so no depth limit)."""
    # stack entries: [container, pending key or None]
    stack: list[list[Any]] = []
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]  # matches the empty string at worst
    result: Any = None
    done = False
    while True:
        # -- one value at pos
        char = text[pos : pos + 1]
        value: Any
        opened = False
        if char == "{":
            value, opened = {}, True
            pos += 1
        elif char == "[":
            value, opened = [], True
            pos += 1
        elif char == '"':
            value, pos = _string(text, pos)
        else:
            number = _NUMBER.match(text, pos)
            if number is not None and number.group(0):
                integer, frac, exp = number.groups()
                value = float(integer + (frac or "") + (exp or "")) if frac or exp else int(integer)
                pos = number.end()
            else:
                for word, constant in _CONSTANTS.items():
                    if text.startswith(word, pos):
                        value, pos = constant, pos + len(word)
                        break
                else:
                    raise ValueError(f"invalid JSON at offset {pos}")
        if stack:
            container, key = stack[-1]
            if isinstance(container, dict):
                container[key] = value
            else:
                container.append(value)
        else:
            result = value
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if opened:
            stack.append([value, None])
            close = "}" if isinstance(value, dict) else "]"
            if text[pos : pos + 1] == close:  # empty container
                stack.pop()
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
            else:
                pos = _expect_key(text, pos, stack)
                continue
        # -- after a complete value: close containers, or move to the next member
        while True:
            if not stack:
                done = True
                break
            container = stack[-1][0]
            char = text[pos : pos + 1]
            close = "}" if isinstance(container, dict) else "]"
            if char == ",":
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
                pos = _expect_key(text, pos, stack)
                break
            if char == close:
                stack.pop()
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
                continue
            raise ValueError(f"invalid JSON at offset {pos}")
        if done:
            break
    if pos != len(text):
        raise ValueError(f"extra data after JSON at offset {pos}")
    return result


def _expect_key(text: str, pos: int, stack: list[list[Any]]) -> int:
    """In an object, read `"key":` into the stack's top entry; in an array, nothing. Returns the position
    of the member's value."""
    entry = stack[-1]
    if not isinstance(entry[0], dict):
        return pos
    if text[pos : pos + 1] != '"':
        raise ValueError(f"invalid JSON at offset {pos}: expected a key")
    entry[1], pos = _string(text, pos)
    pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
    if text[pos : pos + 1] != ":":
        raise ValueError(f"invalid JSON at offset {pos}: expected ':'")
    return _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
