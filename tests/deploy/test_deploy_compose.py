"""docker-compose.yml: valid against the Compose specification's JSON schema, and wired so that
`docker compose up` works the first time (dependencies, health checks, ports, env, ELK profile).

The schema is the official compose-spec.json as shipped in the docker-compose 1.29.2 wheel on PyPI
(compose/config/compose_spec.json), vendored in tests/deploy/schemas/ (see the README there)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from harness.manifests import ROOT, dockerfile_stages
from rentscout.ops.serve import SERVICES
from rentscout.runtime.config import RuntimeSettings

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "compose_spec.json").read_text())
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROTO_SERVICES = {
    "export": "rentscout.export.v1.ExportService",
    "cache-query": "rentscout.cache.v1.CacheQueryService",
    "analyzer": "rentscout.analyzer.v1.AnalyzerService",
}
ELK = {"elasticsearch", "elasticsearch-setup", "kibana", "kibana-setup", "filebeat"}


def validator() -> jsonschema.protocols.Validator:
    # The file declares draft 2019-09 by an older URI spelling; select the draft explicitly.
    jsonschema.Draft201909Validator.check_schema(SCHEMA)
    return jsonschema.Draft201909Validator(SCHEMA, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER)


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_vendored_schema_is_the_one_its_readme_names() -> None:
    readme = (Path(__file__).parent / "schemas" / "README.md").read_text()
    digest = hashlib.sha256((Path(__file__).parent / "schemas" / "compose_spec.json").read_bytes()).hexdigest()
    assert f"sha256 `{digest}`" in readme
    assert SCHEMA["title"] == "Compose Specification"


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(COMPOSE)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("mutation", ["unknown key", "bad condition"])
def test_schema_catches_mistakes(mutation: str) -> None:
    broken = copy.deepcopy(COMPOSE)
    if mutation == "unknown key":
        broken["services"]["export"]["helthcheck"] = broken["services"]["export"].pop("healthcheck")
    else:
        broken["services"]["export"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert list(validator().iter_errors(broken))


@pytest.mark.parametrize("name", list(SERVICES))
def test_each_service_serves_on_its_port_with_a_grpc_healthcheck(name: str) -> None:
    svc, entry = COMPOSE["services"][name], SERVICES[name]
    assert svc["command"] == ["serve", name]
    assert svc["env_file"] == ".env.example"
    assert svc["environment"]["RENTSCOUT_PORT"] == str(entry.port)
    assert svc["environment"]["RENTSCOUT_METRICS_PORT"] == str(entry.metrics_port)
    assert f"127.0.0.1:{entry.port}:{entry.port}" in svc["ports"]
    assert f"127.0.0.1:{entry.metrics_port}:{entry.metrics_port}" in svc["ports"]
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "rentscout", "health"]
    assert test[test.index("--target") + 1] == f"127.0.0.1:{entry.port}"
    assert test[test.index("--service") + 1] == PROTO_SERVICES[name]
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert seconds(svc["stop_grace_period"]) > RuntimeSettings().shutdown_grace_seconds


@pytest.mark.parametrize("name", list(SERVICES))
def test_services_wait_for_healthy_datastores_and_a_finished_migration(name: str) -> None:
    depends = COMPOSE["services"][name]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    if name == "cache-query":
        assert depends["redis"]["condition"] == "service_healthy"


def test_every_dependency_exists_and_has_what_its_condition_needs() -> None:
    services = COMPOSE["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, but it has no healthcheck"
            if cond["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is a one-shot"
            if name not in ELK:
                assert dep not in ELK, f"{name} must not need the optional elk profile"


def test_migrate_is_a_one_shot_migrate_and_seed() -> None:
    migrate = COMPOSE["services"]["migrate"]
    assert migrate["entrypoint"][:2] == ["sh", "-c"]
    script = migrate["entrypoint"][2]
    assert re.fullmatch(r"rentscout db migrate && rentscout db seed --reset --rows \$\{SEED_ROWS:-\d+\}", script)
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["env_file"] == ".env.example"
    assert migrate["healthcheck"] == {"disable": True}, "the image HEALTHCHECK expects a server"


def test_postgres_preloads_pg_stat_statements_and_ships_hypopg() -> None:
    pg = COMPOSE["services"]["postgres"]
    assert pg["command"][0] == "postgres" and all(flag == "-c" for flag in pg["command"][1::2])
    settings = dict(v.split("=", 1) for v in pg["command"][2::2])
    assert "pg_stat_statements" in settings["shared_preload_libraries"].split(",")
    context = ROOT / pg["build"]["context"]
    _, stages = dockerfile_stages(context / "Dockerfile")
    assert stages[-1].base.startswith("postgres:15")
    assert any("postgresql-15-hypopg" in run for run in stages[-1].all("RUN"))
    initdb = "\n".join(p.read_text() for p in sorted((context / "initdb").glob("*.sql")))
    for extension in ("pg_stat_statements", "hypopg"):
        assert f"CREATE EXTENSION IF NOT EXISTS {extension}" in initdb
    assert "healthcheck" in pg and "redis" in COMPOSE["services"]


def test_elk_profile_adds_elasticsearch_kibana_and_filebeat_only_on_request() -> None:
    services = COMPOSE["services"]
    for name in ELK:
        assert services[name]["profiles"] == ["elk"], name
    for name in set(services) - ELK - {"postgres-standby"}:
        assert "profiles" not in services[name], f"{name} must start without a profile"
    filebeat = services["filebeat"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in filebeat["volumes"]}
    assert mounts["/usr/share/filebeat/filebeat.yml"] == "./deploy/filebeat/filebeat.yml"
    assert mounts["/usr/share/filebeat/rentscout-index-template.json"] == "./deploy/elasticsearch/index-template.json"
    assert "/var/lib/docker/containers" in mounts and "/var/run/docker.sock" in mounts
    versions = {services[n]["image"].rsplit(":", 1)[1] for n in ("elasticsearch", "kibana", "filebeat")}
    assert len(versions) == 1, f"the Elastic stack must share one version: {versions}"


def test_bind_mounts_and_build_contexts_exist() -> None:
    for name, svc in COMPOSE["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / "Dockerfile").is_file(), name
    for name in SERVICES:
        assert COMPOSE["services"][name]["image"] == COMPOSE["services"]["migrate"]["image"]


def test_every_rentscout_container_is_labelled_for_log_shipping() -> None:
    filebeat = yaml.safe_load((ROOT / "deploy" / "filebeat" / "filebeat.yml").read_text())
    condition = filebeat["filebeat.autodiscover"]["providers"][0]["templates"][0]["condition"]["equals"]
    ((field, value),) = condition.items()
    label = field.removeprefix("docker.container.labels.")
    for name in [*SERVICES, "migrate"]:
        assert COMPOSE["services"][name]["labels"][label] == value, name
        assert COMPOSE["services"][name]["logging"]["driver"] == "json-file"


def test_replica_profile_adds_a_streaming_standby_the_services_can_read_from() -> None:
    services = COMPOSE["services"]
    standby = services["postgres-standby"]
    assert standby["profiles"] == ["replica"]
    script = "\n".join(standby["command"])
    assert "pg_basebackup" in script and " -R " in script and "-h postgres" in script
    assert standby["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pgstandby" in COMPOSE["volumes"]
    for name in ("export", "cache-query", "analyzer"):  # off unless DATABASE_READ_URL names the standby
        assert services[name]["environment"]["RENTSCOUT_DATABASE_READ_URL"] == "${DATABASE_READ_URL:-}", name
    hba = (ROOT / "deploy/postgres/initdb/20-replication.sh").read_text()
    assert "host replication all all scram-sha-256" in hba
