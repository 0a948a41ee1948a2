"""The prod overlay's probes work against a server that serves TLS: the exact exec commands of the rendered
Deployments, run against a real export server configured as prod configures it (RENTSCOUT_TLS_* from a
certificate for `localhost` signed by a CA, as cert-manager's Secret holds them)."""

from __future__ import annotations

import asyncio
import datetime
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.manifests import by_kind, render
from harness.servers import in_process
from rentscout.export_service import service as export_service


def _issue(name: str, issuer: tuple[Any, x509.Certificate] | None = None) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .issuer_name(issuer[1].subject if issuer else subject)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer:  # what certificates.yaml asks for (the Service names, and localhost for the probes)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("rentscout-export"), x509.DNSName("localhost")]), critical=False
        )
    return key, builder.sign(issuer[0] if issuer else key, hashes.SHA256())


def _write(folder: Path, key: Any, cert: x509.Certificate, ca: x509.Certificate) -> None:
    """The layout of a cert-manager Secret mounted as a volume: tls.key, tls.crt, ca.crt."""
    folder.mkdir()
    (folder / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def _probe_commands() -> dict[str, list[str]]:
    deployment = by_kind(render("overlays/prod"), "Deployment")["rentscout-export"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {kind: container[kind]["exec"]["command"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}


async def _run(command: list[str], ca: Path, port: int) -> int:
    """The probe as the kubelet runs it, with the test's CA and port in place of the pod's."""
    assert command[0] == "python"
    args = [sys.executable, *command[1:]]
    args[args.index("--port") + 1] = str(port)
    proc = await asyncio.create_subprocess_exec(
        *args, "--ca", str(ca), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode


async def test_the_rendered_prod_probes_pass_over_tls_and_verify_the_certificate(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    ca_key, ca = _issue("rentscout-internal-ca")
    key, cert = _issue("rentscout-export", (ca_key, ca))
    _write(tmp_path / "tls", key, cert, ca)
    other_key, other_ca = _issue("someone-else")
    _write(tmp_path / "other", *_issue("x", (other_key, other_ca)), other_ca)
    config = next(o["data"] for o in render("overlays/prod") if o["kind"] == "ConfigMap")
    env = {
        **service_env,  # the prod file names, in the test's folder
        "RENTSCOUT_TLS_CERT_FILE": str(tmp_path / "tls" / Path(config["RENTSCOUT_TLS_CERT_FILE"]).name),
        "RENTSCOUT_TLS_KEY_FILE": str(tmp_path / "tls" / Path(config["RENTSCOUT_TLS_KEY_FILE"]).name),
    }
    commands = _probe_commands()
    async with in_process([export_service.create], env) as host:
        for kind, command in commands.items():
            assert await _run(command, tmp_path / "tls" / "ca.crt", host.port) == 0, kind
            # a certificate the CA did not sign fails the probe: it verifies, not just connects
            assert await _run(command, tmp_path / "other" / "ca.crt", host.port) == 1, kind
    async with in_process([export_service.create], service_env) as plaintext:
        assert await _run(commands["readinessProbe"], tmp_path / "tls" / "ca.crt", plaintext.port) == 1


@pytest.mark.parametrize("kind", ["readinessProbe"])
def test_readiness_asks_for_the_service_entry(kind: str) -> None:
    command = _probe_commands()[kind]
    assert command[command.index("--service") + 1] == "rentscout.export.v1.ExportService"
