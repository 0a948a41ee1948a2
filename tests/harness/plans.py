"""Hand-made EXPLAIN (FORMAT JSON) documents for the plan and insight unit tests."""

from __future__ import annotations

import json
from typing import Any


def node(node_type: str, *children: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """One plan node: `time`, `loops`, `rows` and `plan_rows` set its figures, any other keyword (spread from a dict,
    EXPLAIN's keys have spaces) is copied as it is. One `**fields`, not typed keywords, because mypy checks a spread
    dict's values against every keyword parameter."""
    time: float | None = fields.pop("time", None)
    loops: int = fields.pop("loops", 1)
    rows: float = fields.pop("rows", 1)
    plan_rows: float = fields.pop("plan_rows", 1)
    extra = fields
    out: dict[str, Any] = {
        "Node Type": node_type,
        "Startup Cost": 0.0,
        "Total Cost": 100.0,
        "Plan Rows": plan_rows,
        "Plan Width": 8,
    }
    if time is not None:
        out.update({"Actual Startup Time": 0.0, "Actual Total Time": time, "Actual Rows": rows, "Actual Loops": loops})
    out.update(extra)
    if children:
        out["Plans"] = list(children)
    return out


def doc(plan: dict[str, Any], execution: float | None = None, planning: float = 0.1, **extra: Any) -> str:
    top: dict[str, Any] = {"Plan": plan, "Planning Time": planning}
    if execution is not None:
        top["Execution Time"] = execution
    top.update(extra)
    return json.dumps([top])
