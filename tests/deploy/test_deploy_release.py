"""The release path and day-2 wiring of the rendered overlays: the image a release names is the image that
runs, the schema is applied before the Deployments change, pools fit the primary, exports scale on streams,
prod serves TLS from cert-manager and rolls on Secret changes, DSN examples verify the server."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.manifests import K8S, OVERLAYS, ROOT, by_kind, ensure_dev_secrets, kustomize, labels_match, render
from rentscout.export_service.settings import ExportSettings
from rentscout.export_service.telemetry import EXPORTS_IN_FLIGHT
from rentscout.ops.serve import SERVICES
from rentscout.runtime.config import RuntimeSettings

Obj = dict[str, Any]
IMAGE = "registry.example.com/rentscout/rentscout-dataplane"
DIGEST = "sha256:" + "ab" * 32
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
# connections a pod opens outside its pool: the readiness probe's own (all), the change listener's LISTEN
# (cache-query), SuggestIndexes' dedicated HypoPG connections (analyzer, two at once assumed)
EXTRA_CONNECTIONS = {"export": 1, "cache-query": 2, "analyzer": 3}


def workloads(objects: list[Obj]) -> list[Obj]:
    """The services' Deployments and the migration Job (not dev's PostgreSQL and Redis)."""
    return [o for o in objects if o["kind"] in ("Deployment", "Job") and o["metadata"]["name"].startswith("rentscout-")]


def images(objects: list[Obj]) -> set[str]:
    return {c["image"] for w in workloads(objects) for c in w["spec"]["template"]["spec"]["containers"]}


@pytest.fixture(scope="module")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_dev_secrets()
    target = tmp_path_factory.mktemp("release") / "k8s"
    shutil.copytree(K8S, target)
    return target


def release(k8s: Path, overlay: str, tag: str, digest: str | None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(ROOT / "scripts" / "release_image.py"), str(k8s / "overlays" / overlay), tag]
    return subprocess.run([*args, *([digest] if digest else [])], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_image_a_release_names_is_the_image_every_pod_runs(overlay: str, k8s_copy: Path) -> None:
    proc = release(k8s_copy, overlay, "9.9.9", DIGEST)
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(kustomize(k8s_copy / "overlays" / overlay)) if d]
    name = "rentscout-dataplane" if overlay == "dev" else IMAGE  # dev: the locally built image
    assert images(rendered) == {f"{name}:9.9.9@{DIGEST}"}
    assert len(workloads(rendered)) == 4  # three Deployments and the migration Job


def test_prod_is_pinned_by_digest_and_read_replicas_inherit_it() -> None:
    (prod,) = images(render("overlays/prod"))
    assert re.fullmatch(re.escape(IMAGE) + r":[\w.-]+@sha256:[0-9a-f]{64}", prod)
    assert images(render("overlays/read-replicas")) == {prod}
    assert images(render("overlays/dev")) == {"rentscout-dataplane:dev"}


def test_a_prod_release_without_a_digest_or_with_a_bad_one_is_refused(k8s_copy: Path) -> None:
    before = (k8s_copy / "overlays" / "prod" / "kustomization.yaml").read_text()
    assert release(k8s_copy, "prod", "1.0.0", "sha256:1234").returncode != 0
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "release_image.py"), "prod", "1.0.0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "digest" in proc.stderr
    assert (k8s_copy / "overlays" / "prod" / "kustomization.yaml").read_text() == before


# -- schema before traffic ---------------------------------------------------------------------------

STEP_1 = "-l 'app.kubernetes.io/component notin (export,cache-query,analyzer)'"
STEP_2 = "-l 'app.kubernetes.io/component!=migrate'"
SELECT_1 = {
    "matchExpressions": [
        {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["export", "cache-query", "analyzer"]}
    ]
}
SELECT_2 = {"matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["migrate"]}]}


def wave(obj: Obj) -> int:
    return int((obj["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_is_its_own_step_before_the_deployments(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    labels = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("labels", {}) for o in objects}
    first = {key for key, lab in labels.items() if labels_match(SELECT_1, lab)}
    second = {key for key, lab in labels.items() if labels_match(SELECT_2, lab)}
    assert ("Job", "rentscout-migrate") in first and ("Job", "rentscout-migrate") not in second
    assert {
        k
        for k in first
        if k[0] in ("Deployment", "HorizontalPodAutoscaler", "Service", "PodDisruptionBudget") and k[1].startswith("rentscout-")
    } == set(), "step 1 must not touch the services"
    # what the Job needs exists after step 1: its ConfigMap, Secret (dev), NetworkPolicies
    assert {k for k in labels if k[0] in ("ConfigMap", "NetworkPolicy", "Secret", "Namespace")} <= first
    assert {("Deployment", f"rentscout-{name}") for name in SERVICES} <= second
    assert first | second == set(labels)
    for step in (STEP_1, STEP_2):  # the runbook and the overlay say the same
        assert f"kubectl apply -k k8s/overlays/prod {step}" in OPERATIONS
        if overlay != "read-replicas":
            assert (
                f"kubectl apply -k k8s/overlays/{overlay} {step}"
                in (K8S / "overlays" / overlay / "kustomization.yaml").read_text()
            )
    # Argo CD: ConfigMap and policies, then the Job (a hook re-created each sync), then the Deployments
    job = by_kind(objects, "Job")["rentscout-migrate"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    for obj in objects:
        if obj["kind"] in ("ConfigMap", "Secret", "NetworkPolicy", "Certificate") or (
            obj["kind"] in ("Deployment", "Service") and not obj["metadata"]["name"].startswith("rentscout-")
        ):
            assert wave(obj) < wave(job), f"{obj['kind']}/{obj['metadata']['name']}"
        elif obj["kind"] == "Deployment" and obj["metadata"]["name"].startswith("rentscout-"):
            assert wave(obj) > wave(job), obj["metadata"]["name"]


# -- capacity -----------------------------------------------------------------------------------------


def _pool_max(objects: list[Obj], deployment: Obj) -> int:
    config = next(o["data"] for o in objects if o["kind"] == "ConfigMap")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    raw = env.get("RENTSCOUT_DB_POOL_MAX_SIZE") or config.get("RENTSCOUT_DB_POOL_MAX_SIZE")
    return int(raw) if raw else RuntimeSettings().db_pool_max_size


@pytest.mark.parametrize("target", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_pools_at_max_replicas_fit_the_stated_share_of_the_primary(target: str) -> None:
    objects = render(target)
    hpas, deployments = by_kind(objects, "HorizontalPodAutoscaler"), by_kind(objects, "Deployment")
    budgets = {h["metadata"]["annotations"]["rentscout.io/postgres-budget"] for h in hpas.values()}
    assert len(budgets) == 1, f"one budget per environment: {budgets}"
    total = 0
    for name, extra in EXTRA_CONNECTIONS.items():
        hpa = hpas[f"rentscout-{name}"]
        per_pod = int(hpa["metadata"]["annotations"]["rentscout.io/postgres-connections-per-pod"])
        needed = _pool_max(objects, deployments[f"rentscout-{name}"]) + extra
        assert per_pod >= needed, f"{name}: {per_pod} stated, pool + {extra} = {needed}"
        total += hpa["spec"]["maxReplicas"] * per_pod
    assert total <= int(budgets.pop()), f"{target}: {total} connections at maxReplicas"


def test_exports_scale_on_streams_in_flight_served_by_prometheus_adapter() -> None:
    hpa = by_kind(render("overlays/prod"), "HorizontalPodAutoscaler")["rentscout-export"]
    (pods,) = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods["metric"]["name"] == EXPORTS_IN_FLIGHT._name  # the gauge the export service sets
    assert 0 < float(pods["target"]["averageValue"]) < ExportSettings().max_concurrent  # before pods saturate
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-adapter" / "rules.yaml").read_text())["rules"]
    served = {r["name"]["as"] for r in rules if EXPORTS_IN_FLIGHT._name in r["seriesQuery"]}
    assert served == {pods["metric"]["name"]}


# -- TLS, secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["prod", "read-replicas"])
def test_prod_serves_tls_from_cert_manager_and_rolls_on_secret_changes(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    config = next(o["data"] for o in objects if o["kind"] == "ConfigMap")
    certificates = {c["spec"]["secretName"]: c for c in by_kind(objects, "Certificate").values()}
    for name in SERVICES:
        deployment = by_kind(objects, "Deployment")[f"rentscout-{name}"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for var in ("RENTSCOUT_TLS_CERT_FILE", "RENTSCOUT_TLS_KEY_FILE"):
            folder = str(Path(config[var]).parent)
            secret = volumes[mounts[folder]]["secret"]["secretName"]
            assert secret == f"rentscout-{name}-tls" and "optional" not in volumes[mounts[folder]]["secret"]
        names = set(certificates[f"rentscout-{name}-tls"]["spec"]["dnsNames"])
        ns = deployment["metadata"]["namespace"]
        for service in (f"rentscout-{name}", f"rentscout-{name}-headless"):
            assert {service, f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"} <= names
        assert "localhost" in names  # the TLS probe's server name
        assert deployment["metadata"]["annotations"]["reloader.stakater.com/auto"] == "true"
    assert not config.get("RENTSCOUT_TLS_CLIENT_CA_FILE"), "mTLS would need client certificates in every probe"


def test_dsn_examples_verify_the_server() -> None:
    """Every DSN example pointing at a real (non-local) PostgreSQL asks for sslmode=verify-full."""
    local = re.compile(r"@(postgres|postgres-standby|127\.0\.0\.1|localhost)[:/]")
    texts = {
        p: p.read_text()
        for p in (ROOT / "docs" / "operations.md", K8S / "README.md", K8S / "overlays" / "read-replicas" / "kustomization.yaml")
    }
    seen = 0
    for path, text in texts.items():
        for dsn in re.findall(r"postgres(?:ql)?://[^\s'\",]+", text):
            if "@" not in dsn or local.search(dsn):
                continue
            seen += 1
            assert "sslmode=verify-full" in dsn or "$TLS" in dsn, f"{path.name}: {dsn}"
    assert seen >= 3
