"""Metric names in the PromQL of the Grafana dashboard and the Prometheus rules shipped under deploy/.

Not a PromQL parser: it removes what cannot be a metric name (strings, label matchers, grouping
clauses, range and offset durations, numbers, Grafana variables), then keeps the identifiers that
are neither a keyword nor a function call. Good enough for the expressions we write, and tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
RULES = sorted((ROOT / "deploy" / "prometheus").glob("*.yml"))

# Series Prometheus itself makes (scrape health), not the services: alerts on them exist by design.
PROMETHEUS_SERIES = {"up"}
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_IDENT = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _VARIABLES.sub(" ", text)
    names = set()
    for name, call in _IDENT.findall(text):
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def _dashboard_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield _label_values(value["query"])
            else:
                yield from _dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_exprs(item)


def _label_values(query: str) -> str:
    """A templating query `label_values(metric, label)` as the metric it reads."""
    match = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*", query)
    return match.group(1) if match else query


def dashboard_exprs(path: Path) -> list[str]:
    return list(_dashboard_exprs(json.loads(path.read_text())))


def rule_exprs(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    return [str(rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


def deploy_metric_names() -> set[str]:
    """The services' metrics the dashboard and the alert rules query (Prometheus' own `up` left out)."""
    exprs = [e for p in DASHBOARDS for e in dashboard_exprs(p)] + [e for p in RULES for e in rule_exprs(p)]
    return {name for expr in exprs for name in metric_names(expr)} - PROMETHEUS_SERIES
