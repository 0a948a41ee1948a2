"""Log shipping (compose profile elk): Filebeat decodes the services' ECS JSON lines with their
fields intact, and the lines the runtime writes are what that configuration expects."""

from __future__ import annotations

import ast
import fnmatch
import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import yaml
from opentelemetry.sdk.trace import TracerProvider

from harness import ecs
from harness.manifests import ROOT
from rentscout.runtime import context
from rentscout.runtime.logs import EcsJsonFormatter

FILEBEAT = yaml.safe_load((ROOT / "deploy" / "filebeat" / "filebeat.yml").read_text())
# Beats parse a JSON "@timestamp" with this layout (Go: 2006-01-02T15:04:05.000Z); anything else
# is an error on the event instead of its time.
BEATS_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# Fields Filebeat itself puts on every event of a container input (objects and leaves).
FILEBEAT_FIELDS = {
    "log.offset",
    "log.file.path",
    "input.type",
    "agent.name",
    "agent.type",
    "agent.version",
    "ecs.version",
    "host.name",
    "container.id",
    "container.name",
    "container.image.name",
    "stream",
}


def template_config() -> dict[str, Any]:
    provider = FILEBEAT["filebeat.autodiscover"]["providers"][0]
    assert provider["type"] == "docker"
    (template,) = provider["templates"]
    config: dict[str, Any]
    (config,) = template["config"]
    return config


def test_filebeat_reads_container_stdout_and_decodes_json_into_the_event_root() -> None:
    config = template_config()
    assert config["type"] == "filestream" and "${data.docker.container.id}" in config["id"]
    assert config["paths"] == ["/var/lib/docker/containers/${data.docker.container.id}/*-json.log"]
    container, ndjson = (next(iter(p.items())) for p in config["parsers"])
    assert container[0] == "container" and container[1]["format"] == "docker" and container[1]["stream"] == "all"
    assert ndjson[0] == "ndjson"
    options = ndjson[1]
    assert options["target"] == ""  # fields at the root: correlation.id, not json.correlation.id
    assert options["overwrite_keys"] is True  # our @timestamp and message win over Filebeat's
    assert options["expand_keys"] is True  # "log.level" -> log: {level}, merging with Filebeat's log.*
    assert options["add_error_key"] is True  # a non-JSON line is kept and flagged, not dropped
    assert FILEBEAT["output.elasticsearch"]["hosts"]


def test_filebeat_loads_the_shipped_index_template_for_its_data_stream() -> None:
    index = FILEBEAT["output.elasticsearch"]["index"]
    assert FILEBEAT["setup.template.json.enabled"] is True and FILEBEAT["setup.template.json.data_stream"] is True
    assert FILEBEAT["setup.template.json.path"] == "/usr/share/filebeat/rentscout-index-template.json"  # compose mount
    assert FILEBEAT["setup.template.json.name"] == FILEBEAT["setup.template.name"] == index
    assert FILEBEAT["setup.ilm.enabled"] is False  # a data stream with our template, not Filebeat's ILM alias
    template = ecs.template()
    assert "data_stream" in template and any(fnmatch.fnmatch(index, p) for p in template["index_patterns"])
    assert template["priority"] > 100  # above the built-in logs-*-* templates
    assert ecs.mapped_fields()["correlation.id"] == "keyword"
    assert fnmatch.fnmatch(index, FILEBEAT["setup.template.pattern"])


def test_kibana_data_view_covers_the_data_stream_by_timestamp() -> None:
    view = json.loads((ROOT / "deploy" / "kibana" / "data-view.json").read_text())["data_view"]
    assert fnmatch.fnmatch(FILEBEAT["output.elasticsearch"]["index"], view["title"])
    assert view["timeFieldName"] == "@timestamp"


def test_every_field_the_code_logs_is_mapped_by_the_template_with_ecs_types() -> None:
    """By name, over the code (lines the e2e run never emits included); the e2e check adds values."""
    names = (
        set(_logged_field_names())
        | set(_line(exc_info=None))
        | FILEBEAT_FIELDS
        | {
            "correlation.id",
            "trace.id",
            "span.id",
            "error.message",
            "error.stack_trace",
            "client.ip",
            "client.port",
            "client.address",
        }
    )
    unmapped = sorted(n for n in names if n not in ecs.mapped_fields())
    assert not unmapped, f"logged but not in deploy/elasticsearch/index-template.json: {unmapped}"
    for name, mapped in ecs.mapped_fields().items():
        spec = ecs.ecs().get(name)
        assert spec is None or spec["type"] == mapped, f"{name}: template {mapped}, ECS {spec and spec['type']}"
    custom_in_ecs_sets = sorted(
        n for n in names - FILEBEAT_FIELDS if n not in ecs.ecs() and n.split(".")[0] in ecs.ecs_field_sets()
    )
    assert not custom_in_ecs_sets, f"not ECS fields, but in ECS field sets: {custom_in_ecs_sets}"


def _line(**record_kwargs: object) -> dict[str, Any]:
    record = logging.LogRecord("rentscout.test", logging.ERROR, __file__, 1, "export failed: %s", ("boom",), None)
    for key, value in record_kwargs.items():
        setattr(record, key, value)
    line: dict[str, Any] = json.loads(EcsJsonFormatter().format(record))
    return line


def test_runtime_log_lines_carry_what_kibana_searches_on() -> None:
    tracer = TracerProvider().get_tracer("deploy-test")
    token = context.correlation_id.set("corr-123")
    try:
        with tracer.start_as_current_span("rpc"):
            try:
                raise ValueError("bad")
            except ValueError:
                doc = _line(exc_info=sys.exc_info(), fields={"export.rows": 3})
    finally:
        context.correlation_id.reset(token)
    assert BEATS_TIMESTAMP.match(doc["@timestamp"]), doc["@timestamp"]
    assert doc["correlation.id"] == "corr-123"
    assert re.fullmatch(r"[0-9a-f]{32}", doc["trace.id"]) and re.fullmatch(r"[0-9a-f]{16}", doc["span.id"])
    assert doc["log.level"] == "error" and doc["message"] == "export failed: boom"
    assert doc["error.type"] == "ValueError" and doc["export.rows"] == 3


def _logged_field_names() -> dict[str, set[str]]:
    """Field names the code logs: `extra={"fields": {...}}` and `annotate(**{...})` literals."""
    found: dict[str, set[str]] = {}

    def add(keys: list[ast.expr | None], where: str) -> None:
        for key in keys:
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.setdefault(key.value, set()).add(where)

    for path in [p for root in ("core", "services", "clients") for p in (ROOT / root).rglob("*.py")]:
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                    for k, v in zip(kw.value.keys, kw.value.values, strict=True):
                        if isinstance(k, ast.Constant) and k.value == "fields" and isinstance(v, ast.Dict):
                            add(v.keys, where)
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "annotate":
                for kw in node.keywords:
                    if kw.arg is None and isinstance(kw.value, ast.Dict):
                        add(kw.value.keys, where)
                    elif kw.arg:
                        found.setdefault(kw.arg, set()).add(where)
    return found


def test_log_field_names_form_one_tree_elasticsearch_can_map() -> None:
    """A key that is both a value and a parent ("dependency" and "dependency.up") cannot be mapped:
    Elasticsearch rejects the line, and Filebeat's expand_keys flags it. Checked over every field
    the code logs, the formatter's own fields and Filebeat's."""
    names = _logged_field_names()
    assert "event.duration" in names and "error.type" in names  # the scan finds the runtime's fields
    base = _line(exc_info=None)
    for key in [*base, "correlation.id", "trace.id", "span.id", "error.message", "error.stack_trace", *FILEBEAT_FIELDS]:
        names.setdefault(key, set()).add("formatter/filebeat")
    clashes = [f"{a} ({', '.join(sorted(names[a]))}) vs {b} ({', '.join(sorted(names[b]))})" for a, b in conflicts(names)]
    assert not clashes, "field names that are both a value and an object:\n" + "\n".join(clashes)


def conflicts(names: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs (leaf, deeper) where `leaf` is a dotted prefix of `deeper`."""
    ordered = sorted(set(names))
    return [(a, b) for a in ordered for b in ordered if b.startswith(a + ".")]


def test_conflict_check_catches_a_value_that_is_also_a_parent() -> None:
    assert conflicts(["dependency", "dependency.up", "db.rows", "db.statement.fingerprint"]) == [("dependency", "dependency.up")]
    assert conflicts(["log.level", "log.file.path", "dbx", "db.rows"]) == []


# -- Kubernetes log shipping (deploy/kustomization.yaml: Filebeat DaemonSet, ILM retention) ------------------

FILEBEAT_K8S = yaml.safe_load((ROOT / "deploy" / "filebeat" / "filebeat-kubernetes.yml").read_text())
TEMPLATE = json.loads((ROOT / "deploy" / "elasticsearch" / "index-template.json").read_text())
ILM = json.loads((ROOT / "deploy" / "elasticsearch" / "ilm-policy.json").read_text())


def _logging_objects() -> list[dict[str, Any]]:
    from harness.manifests import kustomize

    return [d for d in yaml.safe_load_all(kustomize(ROOT / "deploy")) if d]


def test_kubernetes_filebeat_ships_rentscout_pods_with_the_compose_parsers() -> None:
    provider = FILEBEAT_K8S["filebeat.autodiscover"]["providers"][0]
    assert provider["type"] == "kubernetes" and provider["node"] == "${NODE_NAME}"
    (template,) = provider["templates"]
    assert template["condition"] == {"equals": {"kubernetes.labels.app_kubernetes_io/part-of": "rentscout"}}
    (config,) = template["config"]
    assert config["paths"] == ["/var/log/containers/*${data.kubernetes.container.id}.log"]
    compose_parsers = template_config()["parsers"]
    assert config["parsers"][1] == compose_parsers[1]  # the same ndjson decoding into the event root
    assert config["parsers"][0]["container"]["format"] == "auto"  # CRI or docker, whatever the nodes run
    for key in ("setup.template.name", "setup.template.json.name", "setup.template.json.data_stream", "setup.ilm.enabled"):
        assert FILEBEAT_K8S[key] == FILEBEAT[key], key
    assert FILEBEAT_K8S["output.elasticsearch"]["index"] == FILEBEAT["output.elasticsearch"]["index"]


def test_the_data_stream_keeps_logs_for_a_bounded_time() -> None:
    policy_name = TEMPLATE["template"]["settings"]["index"]["lifecycle"]["name"]
    phases = ILM["policy"]["phases"]
    assert phases["hot"]["actions"]["rollover"] and "delete" in phases["delete"]["actions"]
    assert re.fullmatch(r"\d+d", phases["delete"]["min_age"])
    objects = _logging_objects()
    (job,) = [o for o in objects if o["kind"] == "Job"]
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert f"/_ilm/policy/{policy_name}" in script and "rentscout-ilm-policy.json" in script
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["elasticsearch-setup"]
    assert f"/_ilm/policy/{policy_name}" in " ".join(compose["command"])


def test_the_daemonset_validates_reads_logs_read_only_and_has_read_only_rbac() -> None:
    import kubernetes_validate

    from harness.manifests import KUBERNETES_VERSION

    objects = _logging_objects()
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    kinds = {o["kind"]: o for o in objects}
    daemonset = kinds["DaemonSet"]
    assert daemonset["metadata"]["namespace"] == "logging"
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in ("/var/log/containers", "/var/log/pods"):
        assert mounts[path]["readOnly"] is True
    config = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"]
    generated = next(o for o in objects if o["kind"] == "ConfigMap")
    assert config == generated["metadata"]["name"] and re.search(r"-[a-z0-9]{10}$", config)  # rolls on change
    assert set(generated["data"]) == {"filebeat.yml", "rentscout-index-template.json", "rentscout-ilm-policy.json"}
    config_dir = mounts["/usr/share/filebeat/rentscout"]
    assert FILEBEAT_K8S["setup.template.json.path"] == f"{config_dir['mountPath']}/rentscout-index-template.json"
    for rule in kinds["ClusterRole"]["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
