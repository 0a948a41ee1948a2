"""One source of truth for configuration: the variables the manifests set are exactly the ones the
services read (`rentscout.ops.settings.all_env_vars()`), and the generated files are current."""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from harness.manifests import OVERLAYS, RENTSCOUT_VAR, ROOT, by_kind, render
from rentscout.ops.settings import all_env_vars, all_settings
from rentscout.runtime import config
from rentscout.runtime.config import ConfigError, load


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_deploy_config", ROOT / "scripts" / "gen_deploy_config.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_deploy_config", module)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
DECLARED = {v.name: v for v in all_env_vars()}
SECRET = {name for name, v in DECLARED.items() if v.secret}
PLAIN = set(DECLARED) - SECRET


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {raw!r}"
        assert key not in values, f"{path.name}: {key} set twice"
        values[key] = value
    return values


def test_generated_files_are_current() -> None:
    diffs = GEN.stale()
    assert not diffs, "run `make deploy-config`:\n" + "\n".join(diffs)


def test_stale_check_notices_a_new_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """What happens when a helper adds a setting and nobody re-runs the generator."""

    @dataclasses.dataclass(frozen=True)
    class Extra:
        knob: int = config.setting(
            "DRIFT_PROBE_KNOB", 7, "A setting added after the files were generated.", config.int_range(0, 10)
        )

    monkeypatch.setattr(GEN, "all_settings", lambda: [*all_settings(), Extra])
    diffs = "\n".join(GEN.stale())
    assert "+RENTSCOUT_DRIFT_PROBE_KNOB=7" in diffs  # lands in .env.example and config.env
    assert "k8s/base/config.env" in diffs and ".env.example" in diffs
    assert "secret.yaml" not in diffs  # not a secret


def test_generator_rejects_overrides_of_undeclared_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GEN.K8S_CONFIG_VALUES, "RENTSCOUT_NO_SUCH_THING", "1")
    with pytest.raises(SystemExit, match="RENTSCOUT_NO_SUCH_THING"):
        GEN.outputs()


def test_generator_rejects_values_that_do_not_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GEN.K8S_CONFIG_VALUES, "RENTSCOUT_LOG_LEVEL", "chatty")
    with pytest.raises(SystemExit, match="RENTSCOUT_LOG_LEVEL"):
        GEN.outputs()


def _referenced_files() -> list[Path]:
    files = [ROOT / "docker-compose.yml", ROOT / ".env.example", ROOT / "Dockerfile"]
    files += [p for p in (ROOT / "k8s").rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".env")]
    files += [p for p in (ROOT / "deploy").rglob("*") if p.is_file()]
    return files


def test_every_referenced_variable_is_a_declared_setting() -> None:
    unknown: dict[str, set[str]] = {}
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in _referenced_files()}
    for overlay in OVERLAYS:
        texts[f"rendered overlays/{overlay}"] = "\n".join(str(o) for o in render(f"overlays/{overlay}"))
    for name, text in texts.items():
        for var in set(RENTSCOUT_VAR.findall(text)) - set(DECLARED):
            unknown.setdefault(var, set()).add(name)
    assert not unknown, f"variables no setting declares (typo, or a removed setting): {unknown}"
    assert "RENTSCOUT_DATABASE_URL" in texts["docker-compose.yml"] + texts[".env.example"]  # the scan sees them


def test_env_example_sets_exactly_the_declared_settings_and_they_load() -> None:
    env = parse_env_file(ROOT / ".env.example")
    assert set(env) == set(DECLARED)
    for cls in all_settings():
        load(cls, environ=env)  # raises ConfigError naming the variable on a bad value


def _rendered_env(overlay: str) -> tuple[dict[str, str], dict[str, str]]:
    objects = render(f"overlays/{overlay}")
    config_maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("rentscout-config")]
    assert len(config_maps) == 1
    # dev generates rentscout-secrets-<hash> (scripts/dev_secrets.py); prod renders none
    secrets = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].startswith("rentscout-secrets")]
    secret = {k: base64.b64decode(v).decode() for s in secrets for k, v in s.get("data", {}).items()}
    return config_maps[0]["data"], secret


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_carries_every_non_secret_setting_and_no_secret(overlay: str) -> None:
    data, _ = _rendered_env(overlay)
    assert set(data) == PLAIN, f"missing: {PLAIN - set(data)}, extra: {set(data) - PLAIN}"


def test_secret_template_carries_every_secret_setting_as_a_placeholder() -> None:
    secret = yaml.safe_load(GEN.SECRET_YAML.read_text())["stringData"]
    assert set(secret) == SECRET
    _, dev = _rendered_env("dev")  # dev generates its values: every key, no placeholder
    assert set(dev) == SECRET and not any(GEN.PLACEHOLDER in value for value in dev.values())
    assert any(GEN.PLACEHOLDER in value for value in secret.values())
    for key in ("RENTSCOUT_AUTH_TOKENS", "RENTSCOUT_EXPORT_TOKEN_SECRET"):
        assert GEN.PLACEHOLDER in secret[key], f"{key} must be a placeholder, never a usable token"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_resume_token_secret_comes_from_the_secret_only(overlay: str) -> None:
    """Every export replica reads RENTSCOUT_EXPORT_TOKEN_SECRET from the Secret (envFrom secretRef), never
    from the ConfigMap or an inline value, so replicas share one key and no manifest holds it."""
    data, _ = _rendered_env(overlay)
    assert "RENTSCOUT_EXPORT_TOKEN_SECRET" not in data and "RENTSCOUT_EXPORT_TOKEN_SECRET_PREVIOUS" not in data
    exports = [d for d in by_kind(render(f"overlays/{overlay}"), "Deployment").values() if "export" in d["metadata"]["name"]]
    assert exports, "no export Deployment rendered"
    for deployment in exports:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            refs = {e.get("secretRef", {}).get("name") or "" for e in container.get("envFrom", [])}
            assert any(ref.startswith("rentscout-secrets") for ref in refs), refs
            inline = {e["name"] for e in container.get("env", [])}
            assert not inline & {"RENTSCOUT_EXPORT_TOKEN_SECRET", "RENTSCOUT_EXPORT_TOKEN_SECRET_PREVIOUS"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_container_loads_its_settings(overlay: str) -> None:
    """ConfigMap + Secret template + the container's own env: what a pod actually sees parses."""
    data, secret = _rendered_env(overlay)
    if not secret:  # prod: the Secret is created out of band; use the template's keys
        _, secret = _rendered_env("dev")
    seen = []
    for deployment in by_kind(render(f"overlays/{overlay}"), "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if not any("configMapRef" in e for e in container.get("envFrom", [])):
                continue
            seen.append(f"{deployment['metadata']['name']}/{container['name']}")
            env = {**data, **secret, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}}
            try:
                for cls in all_settings():
                    load(cls, environ=env)
            except ConfigError as exc:
                pytest.fail(f"{deployment['metadata']['name']}/{container['name']}: {exc}")
    # the three services' containers were checked (a rename of the ConfigMap ref must not skip them all)
    assert len(seen) >= 3, seen


def test_every_documented_setting_is_a_declared_one() -> None:
    """A `RENTSCOUT_*` name in the docs is a setting some service reads (or a client's variable): a renamed or
    removed setting cannot linger in a runbook."""
    from rentscout.wire.metadata import CLIENT_ENV_VARS

    docs = [ROOT / "README.md", ROOT / "k8s" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    unknown = {
        f"{path.relative_to(ROOT)}: {var}"
        for path in docs
        for var in set(RENTSCOUT_VAR.findall(path.read_text())) - set(DECLARED) - set(CLIENT_ENV_VARS)
    }
    assert not unknown, sorted(unknown)
    assert "RENTSCOUT_MIGRATE_DATABASE_URL" in (ROOT / "docs" / "operations.md").read_text()
