"""Log lines against the Elasticsearch index template (deploy/elasticsearch/index-template.json) and the
ECS field definitions (tests/deploy/schemas/ecs_fields.json, generated from ECS by scripts/vendor_ecs_fields.py).

A line passes when Elasticsearch would index it as is into the template's data stream, with the
meaning ECS gives its fields:
- every field is mapped by the template, and its value (or each element of an array) fits the
  mapped type (a string for keyword, an integer for long, an address for ip, ...);
- a field ECS defines has ECS's type in the template and, where ECS lists allowed values
  (event.kind, event.category, event.type, event.outcome), one of them;
- a field ECS does not define lives outside ECS's field sets (no `event.cache`, `client.peer`);
- across all lines, a field has one JSON type (a mapping conflict otherwise).

Real `rentscout serve` processes register their log files here (`register`), so the e2e session
checks every line they wrote (tests/e2e/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "elasticsearch" / "index-template.json"
ECS_FIELDS = ROOT / "tests" / "deploy" / "schemas" / "ecs_fields.json"

_LOGS: list[tuple[str, Path]] = []  # (test node id, log file) of every server process started


def register(path: Path) -> None:
    """Remember a log file written by a server process of the current test."""
    _LOGS.append((os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], path))


def registered(prefix: str) -> list[Path]:
    return [path for nodeid, path in _LOGS if nodeid.startswith(prefix) and path.exists()]


@cache
def template() -> dict[str, Any]:
    return dict(json.loads(TEMPLATE.read_text()))


@cache
def mapped_fields() -> dict[str, str]:
    """Flat field name -> mapped type, from the template's (nested) properties."""
    out: dict[str, str] = {}

    def walk(props: dict[str, Any], prefix: str) -> None:
        for name, spec in props.items():
            full = prefix + name
            if "properties" in spec:
                out[full] = spec.get("type", "object")
                walk(spec["properties"], full + ".")
            else:
                out[full] = spec["type"]

    walk(template()["template"]["mappings"]["properties"], "")
    return out


@cache
def ecs() -> dict[str, dict[str, Any]]:
    return dict(json.loads(ECS_FIELDS.read_text())["fields"])


@cache
def ecs_field_sets() -> frozenset[str]:
    return frozenset(name.split(".")[0] for name in ecs())


def _fits(value: Any, es_type: str) -> bool:
    if value is None:
        return True
    if es_type in ("keyword", "constant_keyword", "wildcard", "match_only_text", "text"):
        return isinstance(value, str)
    if es_type in ("long", "integer", "short", "byte", "unsigned_long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if es_type in ("float", "double", "half_float", "scaled_float"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if es_type == "boolean":
        return isinstance(value, bool)
    if es_type == "ip":
        try:
            ipaddress.ip_address(value)
        except (TypeError, ValueError):
            return False
        return True
    if es_type == "date":
        try:
            dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    if es_type in ("object", "flattened"):
        return isinstance(value, dict)
    return False


def json_kind(value: Any) -> str:
    """The JSON type a field's value has, arrays by their elements (["a"] and "a" agree)."""
    if isinstance(value, list):
        kinds = {json_kind(v) for v in value if v is not None}
        return kinds.pop() if len(kinds) == 1 else ("empty" if not kinds else "mixed")
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "number"
    return type(value).__name__


def field_problems(name: str, value: Any) -> list[str]:
    problems = []
    mapped = mapped_fields().get(name)
    spec = ecs().get(name)
    if spec is None and name.split(".")[0] in ecs_field_sets():
        problems.append(f"{name}: not an ECS field, but in ECS's field set {name.split('.')[0]!r}")
    if mapped is None:
        return [*problems, f"{name}: not in the index template"]
    if spec is not None and spec["type"] != mapped:
        problems.append(f"{name}: the template maps {mapped}, ECS says {spec['type']}")
    values = value if isinstance(value, list) else [value]
    if isinstance(value, dict):
        problems.append(f"{name}: an object value; lines use flat dotted keys")
    for item in values:
        if not _fits(item, mapped):
            problems.append(f"{name}: {item!r} does not fit the mapped type {mapped}")
        allowed = (spec or {}).get("allowed_values")
        if allowed and item not in allowed:
            problems.append(f"{name}: {item!r} is not an ECS allowed value ({', '.join(sorted(allowed))})")
    return problems


def line_problems(doc: dict[str, Any]) -> list[str]:
    problems = [p for name, value in doc.items() for p in field_problems(name, value)]
    categories = doc.get("event.category") or []
    types = doc.get("event.type") or []
    expected = ecs()["event.category"]["allowed_values"]
    for category in categories if isinstance(categories, list) else [categories]:
        unexpected = [t for t in (types if isinstance(types, list) else [types]) if t not in expected.get(category, [])]
        if unexpected:
            problems.append(
                f"event.type {unexpected} is not expected with event.category {category!r} "
                f"({', '.join(expected.get(category, []))})"
            )
    return problems


def check_lines(lines: Iterable[tuple[str, str]]) -> list[str]:
    """Problems over (where, line) pairs of a server's stdout: every line must be one JSON object (a raw
    traceback or a print() on stdout is a problem, not something to skip)."""
    problems: list[str] = []
    kinds: dict[str, dict[str, str]] = {}
    for at, line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            problems.append(f"{at}: not a JSON object: {line[:200]!r}")
            continue
        problems += [f"{at}: {p}" for p in line_problems(doc)]
        for name, value in doc.items():
            kind = json_kind(value)
            if kind in ("NoneType", "empty"):
                continue
            kinds.setdefault(name, {}).setdefault(kind, at)
    for name, seen in kinds.items():
        if len(seen) > 1:
            problems.append(f"{name}: one field, several types: " + ", ".join(f"{k} at {at}" for k, at in seen.items()))
    return problems


def file_lines(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """(path:line number, line) of every non-blank line of the files (a server's stdout)."""
    return [
        (f"{path}:{n}", line)
        for path in paths
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if line.strip()
    ]
