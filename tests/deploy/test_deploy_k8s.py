"""The kustomize overlays render, validate against the Kubernetes schemas, and say what operations
needs: gRPC probes, limits, hardened pods, graceful shutdown, Services, HPA, PDB, NetworkPolicies."""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from harness.manifests import (
    CRD_SCHEMAS,
    KUBERNETES_VERSION,
    OVERLAYS,
    ROOT,
    by_kind,
    dockerfile_stages,
    labels_match,
    render,
    render_text,
    tool,
)
from rentscout.ops.serve import SERVICES
from rentscout.runtime.config import RuntimeSettings

# CLI service name -> the proto service its readiness follows (checked against the stubs below).
PROTO_SERVICES = {
    "export": "rentscout.export.v1.ExportService",
    "cache-query": "rentscout.cache.v1.CacheQueryService",
    "analyzer": "rentscout.analyzer.v1.AnalyzerService",
}
NAMESPACES = {"dev": "rentscout-dev", "prod": "rentscout", "read-replicas": "rentscout"}
Obj = dict[str, Any]


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def service_deployments(objects: list[Obj]) -> dict[str, Obj]:
    """CLI service name -> its Deployment."""
    deployments = by_kind(objects, "Deployment")
    return {name: deployments[f"rentscout-{name}"] for name in SERVICES}


def probe_target(probe: Obj) -> tuple[int, str]:
    """(port, health service) a native gRPC probe or an exec of `python -m rentscout.runtime.probe` checks."""
    if "grpc" in probe:
        return probe["grpc"]["port"], probe["grpc"].get("service", "")
    command = probe["exec"]["command"]
    assert command[:3] == ["python", "-m", "rentscout.runtime.probe"], command
    options = dict(zip(command[3::2], command[4::2], strict=True))
    return int(options["--port"]), options.get("--service", "")


def only_container(deployment: Obj) -> Obj:
    containers = pod_spec(deployment)["containers"]
    assert len(containers) == 1
    container: Obj = containers[0]
    return container


def test_proto_service_names_match_the_generated_stubs() -> None:
    from rentscout.analyzer.v1 import analyzer_pb2
    from rentscout.cache.v1 import cache_pb2
    from rentscout.export.v1 import export_pb2

    names = {s.full_name for m in (export_pb2, cache_pb2, analyzer_pb2) for s in m.DESCRIPTOR.services_by_name.values()}
    assert set(PROTO_SERVICES.values()) <= names
    assert set(PROTO_SERVICES) == set(SERVICES)


@pytest.mark.parametrize("target", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_renders_and_validates_against_kubernetes_schemas(target: str) -> None:
    objects = render(target)
    assert objects
    failures = []
    for obj in objects:
        try:
            if obj["apiVersion"] in CRD_SCHEMAS:  # cert-manager: not in the Kubernetes schemas
                jsonschema.validate(obj, CRD_SCHEMAS[obj["apiVersion"]][obj["kind"]])
            else:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)


def test_schema_validation_is_strict_enough_to_catch_a_typo() -> None:
    deployment = copy.deepcopy(service_deployments(render("overlays/prod"))["export"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50051}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_yamllint_sources_and_rendered_output(tmp_path) -> None:
    config = ROOT / "deploy" / "yamllint.yaml"
    sources = [str(ROOT / "k8s"), str(ROOT / "deploy"), str(ROOT / "docker-compose.yml")]
    for overlay in OVERLAYS:
        rendered = tmp_path / f"{overlay}.yaml"
        rendered.write_text(render_text(f"overlays/{overlay}"))
        sources.append(str(rendered))
    proc = subprocess.run(
        [tool("yamllint"), "-f", "parsable", "-c", str(config), *sources], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_probes_limits_and_a_hardened_security_context(overlay: str) -> None:
    deployments = by_kind(render(f"overlays/{overlay}"), "Deployment")
    assert set(service_deployments(render(f"overlays/{overlay}"))) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = pod_spec(deployment)
        pod_sc = pod.get("securityContext", {})
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{where}: no {probe}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: requests need cpu and memory"
            assert "memory" in resources.get("limits", {}), f"{where}: a memory limit"
            # cache-query is the latency path: CFS throttling of a CPU limit would show as p99 spikes
            assert ("cpu" in resources["limits"]) == (name != "rentscout-cache-query"), f"{where}: CPU limit"
            sc = container.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert "add" not in sc.get("capabilities", {}), where
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            assert pod_sc.get("runAsUser", sc.get("runAsUser", 0)) != 0, where
        assert pod.get("automountServiceAccountToken") is False, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_deployments_probe_grpc_health_and_shut_down_gracefully(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    config_data = next(o["data"] for o in objects if o["kind"] == "ConfigMap")
    for name, deployment in service_deployments(objects).items():
        entry = SERVICES[name]
        container = only_container(deployment)
        env = {**config_data, **{e["name"]: e.get("value") for e in container.get("env", [])}}
        assert container["args"] == ["serve", name]
        assert env["RENTSCOUT_PORT"] == str(entry.port) and env["RENTSCOUT_METRICS_PORT"] == str(entry.metrics_port)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": entry.port, "metrics": entry.metrics_port}
        ready, live, start = container["readinessProbe"], container["livenessProbe"], container["startupProbe"]
        # plaintext: native gRPC probes; TLS (prod): the TLS probe in the container, as kubelet cannot speak TLS
        kind = "exec" if env.get("RENTSCOUT_TLS_CERT_FILE") else "grpc"
        for probe in (ready, live, start):
            assert set(probe) & {"grpc", "exec", "httpGet", "tcpSocket"} == {kind}, f"{name}: {kind} probes"
        assert [probe_target(p) for p in (ready, live, start)] == [
            (entry.port, PROTO_SERVICES[name]),
            (entry.port, ""),
            (entry.port, ""),
        ]  # readiness: the service entry
        # preStop pause, then SIGTERM; the pod must outlive the server's own grace period.
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        grace = float(env.get("RENTSCOUT_SHUTDOWN_GRACE_SECONDS") or RuntimeSettings().shutdown_grace_seconds)
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] > pre_stop + grace
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(entry.metrics_port)
        assert annotations["prometheus.io/path"] == "/metrics"
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        assert re.fullmatch(r"[\w./-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?", container["image"]) and re.search(
            r"[:@]", container["image"]
        ), container["image"]  # a tag or a digest, never an implicit :latest
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels_match(deployment["spec"]["selector"], pod_labels)
        spread = pod_spec(deployment)["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        assert all(labels_match(c["labelSelector"], pod_labels) for c in spread)
        refs = {e.get("configMapRef", {}).get("name") or e.get("secretRef", {}).get("name") for e in container["envFrom"]}
        config_maps, secrets = set(by_kind(objects, "ConfigMap")), set(by_kind(objects, "Secret")) | {"rentscout-secrets"}
        assert refs & secrets and refs <= config_maps | secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_hpa_and_pdb_select_each_deployment(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    services, hpas = by_kind(objects, "Service"), by_kind(objects, "HorizontalPodAutoscaler")
    pdbs = by_kind(objects, "PodDisruptionBudget")
    for name, deployment in service_deployments(objects).items():
        dname = deployment["metadata"]["name"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        cluster_ip, headless = services[dname], services[f"{dname}-headless"]
        assert cluster_ip["spec"].get("type", "ClusterIP") == "ClusterIP" and "clusterIP" not in cluster_ip["spec"]
        assert headless["spec"]["clusterIP"] == "None"
        for svc in (cluster_ip, headless):
            assert labels_match({"matchLabels": svc["spec"]["selector"]}, pod_labels)
            grpc = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
            assert grpc["port"] == SERVICES[name].port and grpc["targetPort"] == "grpc" and grpc["appProtocol"] == "grpc"
        hpa = hpas[dname]
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dname}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert labels_match(pdbs[dname]["spec"]["selector"], pod_labels)


def test_prod_runs_more_replicas_with_a_hard_node_spread() -> None:
    objects = render("overlays/prod")
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpas["rentscout-export"]["spec"]["minReplicas"] >= 3
    for name in ("export", "cache-query"):
        constraints = pod_spec(service_deployments(objects)[name])["topologySpreadConstraints"]
        spread = {c["topologyKey"]: c["whenUnsatisfiable"] for c in constraints}
        assert spread == {"kubernetes.io/hostname": "DoNotSchedule", "topology.kubernetes.io/zone": "ScheduleAnyway"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_job_runs_db_migrate_hardened(overlay: str) -> None:
    jobs = by_kind(render(f"overlays/{overlay}"), "Job")
    job = jobs["rentscout-migrate"]
    container = only_container(job)
    assert container["args"] == ["db", "migrate"]
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_the_overlay_namespace(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    namespaces = by_kind(objects, "Namespace")
    assert set(namespaces) == {NAMESPACES[overlay]}
    assert namespaces[NAMESPACES[overlay]]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACES[overlay], f"{obj['kind']}/{obj['metadata']['name']}"


def test_secrets_are_generated_in_dev_and_absent_from_prod() -> None:
    """Dev generates its Secret (random tokens, no placeholder) under a hash-suffixed name every pod refers to,
    so new values roll the pods; prod renders none (created out of band, never overwritten by an apply)."""
    dev_objects = render("overlays/dev")
    (name,) = by_kind(dev_objects, "Secret")
    assert re.fullmatch(r"rentscout-secrets-[a-z0-9]{10}", name)
    values = {k: base64.b64decode(v).decode() for k, v in by_kind(dev_objects, "Secret")[name]["data"].items()}
    assert "CHANGE_ME" not in "".join(values.values())
    assert len(values["RENTSCOUT_EXPORT_TOKEN_SECRET"]) >= 32
    assert all(len(pair.split(":")[0]) >= 24 for pair in values["RENTSCOUT_AUTH_TOKENS"].split(","))
    for workload in [*service_deployments(dev_objects).values(), by_kind(dev_objects, "Job")["rentscout-migrate"]]:
        refs = {e["secretRef"]["name"] for e in only_container(workload)["envFrom"] if "secretRef" in e}
        assert name in refs and "rentscout-secrets" not in refs, workload["metadata"]["name"]
    prod_text = render_text("overlays/prod")
    assert not by_kind(render("overlays/prod"), "Secret")
    assert "CHANGE_ME" not in prod_text


# -- NetworkPolicies: a small evaluator of "may pod A reach pod B on port P" ---------------------


def _pod(labels: dict[str, str], namespace: str) -> Obj:
    return {"labels": labels, "namespace": namespace, "namespace_labels": {"kubernetes.io/metadata.name": namespace}}


def _address(ip: str) -> Obj:
    """An endpoint outside the cluster (a managed database): only ipBlock peers (or no peers) match it."""
    return {"ip": ip, "labels": {}, "namespace": None, "namespace_labels": {}}


def _peer_matches(peer: Obj, other: Obj, policy_namespace: str) -> bool:
    if "ipBlock" in peer or "ip" in other:
        if "ipBlock" not in peer or "ip" not in other:
            return False
        ip, block = ipaddress.ip_address(other["ip"]), peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None and other["namespace"] != policy_namespace:
        return False
    if ns_sel is not None and not labels_match(ns_sel, other["namespace_labels"]):
        return False
    return pod_sel is None or labels_match(pod_sel, other["labels"])


def _port_matches(rule: Obj, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports)


def allowed(policies: list[Obj], src: Obj, dst: Obj, port: int, protocol: str = "TCP") -> bool:
    """Egress of src and ingress of dst must both allow the flow (a pod no policy selects is open)."""

    def side(pod: Obj, other: Obj, direction: str, rules_key: str, peers_key: str) -> bool:
        selecting = [
            p
            for p in policies
            if p["metadata"]["namespace"] == pod["namespace"]
            and labels_match(p["spec"]["podSelector"], pod["labels"])
            and direction in p["spec"]["policyTypes"]
        ]
        if not selecting:
            return True
        for policy in selecting:
            for rule in policy["spec"].get(rules_key) or []:
                peers = rule.get(peers_key)
                if _port_matches(rule, port, protocol) and (
                    not peers or any(_peer_matches(peer, other, policy["metadata"]["namespace"]) for peer in peers)
                ):
                    return True
        return False

    return side(src, dst, "Egress", "egress", "to") and side(dst, src, "Ingress", "ingress", "from")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_named_callers_and_monitoring_only(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    policies = list(by_kind(objects, "NetworkPolicy").values())
    ns = NAMESPACES[overlay]
    pods = {name: _pod(d["spec"]["template"]["metadata"]["labels"], ns) for name, d in service_deployments(objects).items()}
    outsider = _pod({"app": "billing"}, "billing")
    named_client = _pod({"app": "listings-api"}, "rentscout-clients")  # a namespace the policies name
    analyzer_client = _pod({"app": "dba-console", "rentscout.io/analyzer-client": "true"}, "rentscout-ops")
    unnamed_analyzer_client = _pod({"app": "dba-console", "rentscout.io/analyzer-client": "true"}, "billing")
    in_ns_client = _pod({"rentscout.io/client": "true"}, ns)
    in_ns_other = _pod({"app": "debug"}, ns)
    in_ns_analyzer_client = _pod({"rentscout.io/client": "true", "rentscout.io/analyzer-client": "true"}, ns)
    prometheus = _pod({"app.kubernetes.io/name": "prometheus"}, "monitoring")
    rogue_scraper = _pod({"app.kubernetes.io/name": "prometheus"}, "billing")

    analyzer, port = pods["analyzer"], SERVICES["analyzer"].port
    assert not allowed(policies, outsider, analyzer, port)
    assert not allowed(policies, in_ns_client, analyzer, port)
    assert not allowed(policies, pods["export"], analyzer, port)
    assert allowed(policies, analyzer_client, analyzer, port)
    assert not allowed(policies, unnamed_analyzer_client, analyzer, port), "the label alone, from any namespace"
    assert not allowed(policies, _pod({"app": "x"}, "rentscout-ops"), analyzer, port), "a named namespace alone"
    assert allowed(policies, in_ns_analyzer_client, analyzer, port)
    assert not allowed(policies, analyzer_client, analyzer, 5432)  # only the gRPC and metrics ports
    for name in ("export", "cache-query"):
        grpc_port = SERVICES[name].port
        assert allowed(policies, named_client, pods[name], grpc_port), name
        assert allowed(policies, in_ns_client, pods[name], grpc_port), name
        assert not allowed(policies, outsider, pods[name], grpc_port), f"{name}: gRPC only from named namespaces"
        assert not allowed(policies, in_ns_other, pods[name], grpc_port), f"{name}: in-namespace callers opt in"
        assert not allowed(policies, prometheus, pods[name], grpc_port), name
    for name, pod in pods.items():
        assert allowed(policies, prometheus, pod, SERVICES[name].metrics_port)
        assert not allowed(policies, rogue_scraper, pod, SERVICES[name].metrics_port), f"{name}: metrics: monitoring only"
        assert not allowed(policies, named_client, pod, SERVICES[name].metrics_port), name
        assert not allowed(policies, pod, outsider, 443), f"{name}: egress is closed by default"
        assert not allowed(policies, pod, _address("203.0.113.7"), 443), name


# prod's managed datastores (the CIDRs set in overlays/prod/kustomization.yaml)
PROD_POSTGRES, PROD_REDIS = _address("10.20.0.10"), _address("10.20.1.10")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_dns_and_the_datastores(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    policies = list(by_kind(objects, "NetworkPolicy").values())
    ns = NAMESPACES[overlay]
    kube_dns = _pod({"k8s-app": "kube-dns"}, "kube-system")
    collector = _pod({"app.kubernetes.io/name": "otel-collector"}, "observability")
    pods = {name: _pod(d["spec"]["template"]["metadata"]["labels"], ns) for name, d in service_deployments(objects).items()}
    pods["migrate"] = _pod(by_kind(objects, "Job")["rentscout-migrate"]["spec"]["template"]["metadata"]["labels"], ns)
    if overlay == "dev":  # its own PostgreSQL and Redis in the namespace
        database = _pod({"app.kubernetes.io/name": "postgres", "app.kubernetes.io/component": "database"}, ns)
        cache = _pod({"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "cache"}, ns)
    else:  # managed ones, reached by address, and nothing else
        database, cache = PROD_POSTGRES, PROD_REDIS
        for name, pod in pods.items():
            assert not allowed(policies, pod, _address("192.0.2.10"), 5432), f"{name}: PostgreSQL outside its CIDR"
            assert not allowed(policies, pod, database, 6380), f"{name}: Redis ports only to Redis"
            assert not allowed(policies, pod, cache, 5432), f"{name}: PostgreSQL port only to PostgreSQL"
    for name, pod in pods.items():
        assert allowed(policies, pod, kube_dns, 53, "UDP") and allowed(policies, pod, kube_dns, 53, "TCP"), name
        assert allowed(policies, pod, database, 5432), name
    for port in (6379,) if overlay == "dev" else (6379, 6380):  # 6380: TLS on managed Redis
        assert allowed(policies, pods["cache-query"], cache, port), port
    for name in SERVICES:
        assert allowed(policies, pods[name], collector, 4317), f"{name}: OTLP to the collector"
        assert not allowed(policies, pods[name], _pod({}, "billing"), 4317), name
    if overlay == "dev":  # the in-cluster datastores accept only RentScout pods
        assert not allowed(policies, _pod({"app": "x", "rentscout.io/client": "true"}, ns), database, 5432)


def test_network_policy_evaluator_sees_a_missing_rule() -> None:
    """The evaluator itself: dropping the analyzer's ingress policy opens nothing (default deny)."""
    objects = render("overlays/prod")
    policies = [p for p in by_kind(objects, "NetworkPolicy").values() if p["metadata"]["name"] != "rentscout-analyzer-ingress"]
    analyzer = _pod(service_deployments(objects)["analyzer"]["spec"]["template"]["metadata"]["labels"], "rentscout")
    client = _pod({"rentscout.io/analyzer-client": "true"}, "rentscout-ops")
    assert not allowed(policies, client, analyzer, SERVICES["analyzer"].port)


def test_kustomizations_only_use_the_documented_feature_set() -> None:
    """k8s/README.md lists the kustomize features in use; keep the two in step."""
    used: set[str] = set()
    for path in (ROOT / "k8s").rglob("kustomization.yaml"):
        used |= set(yaml.safe_load(path.read_text())) - {"apiVersion", "kind"}
    readme = (ROOT / "k8s" / "README.md").read_text()
    for feature in used:
        assert f"`{feature}`" in readme, f"k8s/README.md does not mention the kustomize feature `{feature}`"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_the_image_user(overlay: str) -> None:
    """runAsNonRoot needs a numeric uid; it must be the one the image owns its files as."""
    _, stages = dockerfile_stages(ROOT / "Dockerfile")
    uid = int(next(a.split("=", 1)[1] for a in stages[-1].all("ARG") if a.startswith("UID=")))
    objects = render(f"overlays/{overlay}")
    workloads = [*service_deployments(objects).values(), by_kind(objects, "Job")["rentscout-migrate"]]
    for workload in workloads:
        assert pod_spec(workload)["securityContext"]["runAsUser"] == uid, workload["metadata"]["name"]


def test_read_replicas_overlay_reads_standbys_from_a_secret_of_their_own() -> None:
    deployments = service_deployments(render("overlays/read-replicas"))
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        ref = env["RENTSCOUT_DATABASE_READ_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "rentscout-read-replicas", "key": "url"}, name
    config = next(o for o in render("overlays/read-replicas") if o["kind"] == "ConfigMap")
    assert config["data"]["RENTSCOUT_DATABASE_MAX_REPLICA_LAG"] == "5"
