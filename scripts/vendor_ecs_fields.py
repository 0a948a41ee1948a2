"""Write tests/deploy/schemas/ecs_fields.json from the ECS repository's generated/ecs/ecs_flat.yml.

Run once per ECS version (the services log `ecs.version`, rentscout/runtime/logs.py):

    git clone --branch v8.11.0 --depth 1 https://github.com/elastic/ecs /tmp/ecs
    .venv/bin/python scripts/vendor_ecs_fields.py /tmp/ecs/generated/ecs/ecs_flat.yml 8.11.0

Kept per field: its Elasticsearch type, whether ECS says it holds an array (`normalize`), and the
allowed values (event.kind, event.category with the event types each expects, event.type,
event.outcome). Descriptions are dropped: the tests need names and types only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent.parent / "tests" / "deploy" / "schemas" / "ecs_fields.json"


def main(flat_yml: str, version: str) -> int:
    flat = yaml.safe_load(Path(flat_yml).read_text())
    fields: dict[str, dict[str, object]] = {}
    for name, spec in sorted(flat.items()):
        entry: dict[str, object] = {"type": spec["type"]}
        if "array" in (spec.get("normalize") or []):
            entry["array"] = True
        if spec.get("allowed_values"):
            entry["allowed_values"] = {v["name"]: v.get("expected_event_types", []) for v in spec["allowed_values"]}
        fields[name] = entry
    source = f"https://github.com/elastic/ecs/blob/v{version}/generated/ecs/ecs_flat.yml"
    body = ",\n".join(f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in fields.items())  # one per line
    OUT.write_text(f'{{"ecs_version": {json.dumps(version)}, "source": {json.dumps(source)}, "fields": {{\n{body}\n}}}}\n')
    print(f"wrote {len(fields)} ECS {version} fields to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
