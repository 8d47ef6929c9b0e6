"""OPC UA attacks and faults (issue 10, items 3-5) against real servers with real certificates.

3. a certificate from a trusted CA issued to another application URI or another host, and a leaf signed
   by a trusted certificate that is not a CA, are refused with a message naming what did not match;
4. a password over a None channel is refused unless allowed, and a None channel is warned about;
5. a node-opcua server that rejects our client certificate is "needs a person", with the trust hint.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from agent.errors import FatalError
from plugins.opcua import security
from plugins.opcua.config import OpcUaSourceConfig
from tests.conftest import free_port
from tests.opcua_server import plant_server
from tests.test_opcua_source import make_source, plant_tags

SECURE = {"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"}
SERVER_URI = "urn:edge-agent:test:server"
NOW = dt.datetime.now(dt.UTC)
KU_CA = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
KU_LEAF = x509.KeyUsage(True, True, True, True, False, False, False, False, False)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
    *,
    ca: bool,
    usage: x509.KeyUsage,
    uri: str | None = None,
    ip: str | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=False)
    )
    alt: list[x509.GeneralName] = []
    if uri:
        alt.append(x509.UniformResourceIdentifier(uri))
    if ip:
        alt.append(x509.IPAddress(ipaddress.ip_address(ip)))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> tuple[Path, Path]:
    der, pem = folder / f"{name}.der", folder / f"{name}.pem"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return der, pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plant CA (in ca/), leaves it issued, and a trusted non-CA certificate (in notca/) that signs one."""
    root = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("plant CA", ca_key, None, ca=True, usage=KU_CA)
    for folder in ("ca", "notca"):
        (root / folder).mkdir()
    (root / "ca" / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    leaves = {
        "good": (SERVER_URI, "127.0.0.1"),
        "other_uri": ("urn:someone:else", "127.0.0.1"),
        "other_host": (SERVER_URI, "10.9.8.7"),
    }
    for name, (uri, ip) in leaves.items():
        key = _key()
        _write(root, name, _cert(name, key, (ca, ca_key), ca=False, usage=KU_LEAF, uri=uri, ip=ip), key)
    plain_key = _key()
    plain = _cert("plain server", plain_key, (ca, ca_key), ca=False, usage=KU_LEAF, uri="urn:plain")
    (root / "notca" / "plain.der").write_bytes(plain.public_bytes(serialization.Encoding.DER))
    forged_key = _key()
    forged = _cert(
        "forged", forged_key, (plain, plain_key), ca=False, usage=KU_LEAF, uri=SERVER_URI, ip="127.0.0.1"
    )
    _write(root, "forged", forged, forged_key)
    return root


async def _connect(port: int, tmp_path: Path, **kw: object) -> None:
    source = make_source(port, tmp_path, plant_tags("Line1.V0"), **SECURE, **kw)
    await source.read_once()


async def test_a_ca_issued_certificate_for_this_server_is_accepted(
    pki: Path, port: int, tmp_path: Path
) -> None:
    async with plant_server(port, cert=pki / "good.der", key=pki / "good.pem", secure_only=True):
        await _connect(port, tmp_path, trusted_ca_dir=str(pki / "ca"), server_uri=SERVER_URI)


async def test_a_ca_issued_certificate_of_another_application_is_refused(
    pki: Path, port: int, tmp_path: Path
) -> None:
    async with plant_server(
        port,
        cert=pki / "other_uri.der",
        key=pki / "other_uri.pem",
        secure_only=True,
        application_uri=SERVER_URI,
    ):
        with pytest.raises(
            FatalError,
            match=f"issued to application URI 'urn:someone:else', but the server describes itself as '{SERVER_URI}'",
        ):
            await _connect(port, tmp_path, trusted_ca_dir=str(pki / "ca"))


async def test_a_pinned_server_uri_must_match(pki: Path, port: int, tmp_path: Path) -> None:
    async with plant_server(port, cert=pki / "good.der", key=pki / "good.pem", secure_only=True):
        with pytest.raises(FatalError, match="not the pinned server_uri 'urn:plc9'"):
            await _connect(port, tmp_path, trusted_ca_dir=str(pki / "ca"), server_uri="urn:plc9")


async def test_a_ca_issued_certificate_for_another_host_is_refused(
    pki: Path, port: int, tmp_path: Path
) -> None:
    async with plant_server(port, cert=pki / "other_host.der", key=pki / "other_host.pem", secure_only=True):
        with pytest.raises(FatalError, match=r"is issued for 10\.9\.8\.7, not for '127\.0\.0\.1'"):
            await _connect(port, tmp_path, trusted_ca_dir=str(pki / "ca"))


async def test_a_leaf_signed_by_a_trusted_non_ca_is_refused(pki: Path, port: int, tmp_path: Path) -> None:
    async with plant_server(port, cert=pki / "forged.der", key=pki / "forged.pem", secure_only=True):
        with pytest.raises(
            FatalError, match=r"signed by CN=plain server, but that certificate has basicConstraints CA:FALSE"
        ):
            await _connect(port, tmp_path, trusted_ca_dir=str(pki / "notca"))


def test_an_issuer_without_keycertsign_is_not_a_ca(pki: Path) -> None:
    key = _key()
    no_sign = _cert("no sign CA", key, None, ca=True, usage=KU_LEAF)
    leaf = _cert("leaf", _key(), (no_sign, key), ca=False, usage=KU_LEAF, uri=SERVER_URI, ip="127.0.0.1")
    folder = pki / "nosign"
    folder.mkdir(exist_ok=True)
    (folder / "ca.der").write_bytes(no_sign.public_bytes(serialization.Encoding.DER))
    with pytest.raises(FatalError, match="has no keyCertSign"):
        security.TrustList(ca_dir=folder).check(leaf, "opc.tcp://127.0.0.1:4840", SERVER_URI)


BASE = {"type": "opcua", "name": "plc", "endpoint": "opc.tcp://127.0.0.1:4840", "username": "edge"}


def test_a_password_over_a_none_channel_is_refused_unless_allowed() -> None:
    with pytest.raises(ValidationError, match="travels in clear text"):
        OpcUaSourceConfig.model_validate({**BASE, "password": "s3cret"})
    allowed = OpcUaSourceConfig.model_validate(
        {**BASE, "password": "s3cret", "allow_plaintext_password": True}
    )
    assert any("clear text" in w for w in allowed.security_warnings())
    secure = OpcUaSourceConfig.model_validate(
        {**BASE, "password": "s3cret", **SECURE, "trust_unknown_server": True}
    )
    assert not any("None" in w or "clear text" in w for w in secure.security_warnings())


def test_run_and_check_warn_about_a_none_channel_once(tmp_path: Path) -> None:
    (tmp_path / "edge.toml").write_text(
        f"""
[agent]
state_dir = "state"
[health]
port = {free_port()}
[[sources]]
type = "opcua"
name = "plc"
endpoint = "opc.tcp://127.0.0.1:{free_port()}"
request_timeout = "1s"
[[sources.tags]]
name = "v0"
node = "ns=2;s=Line1.V0"
[[sinks]]
type = "stdout"
"""
    )
    check = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "-c", str(tmp_path / "edge.toml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "security warnings (1):" in check.stdout and 'plc: security_policy = "None"' in check.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(tmp_path / "edge.toml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            # Not at "started": a SIGTERM while the first OPC UA connect is in flight hangs the agent
            # (seen on main too; reported, not fixed here).
            if "connection lost" in line:
                break
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=30)  # keep reading: a full pipe would block its loop
    seen += (rest or "").splitlines()
    warned = [line for line in seen if "insecure setting" in line]
    assert len(warned) == 1 and 'security_policy = \\"None\\"' in warned[0]


NODE_MODULES = Path(
    os.environ.get("EDGE_AGENT_NODE_MODULES", Path(__file__).parent / "node" / "node_modules")
)


@pytest.fixture
def node_opcua(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real node-opcua server (tests/node/opcua_server.js) on a free port; yields (port, its root)."""
    if shutil.which("node") is None or not (NODE_MODULES / "node-opcua").is_dir():
        pytest.skip("node-opcua is not installed (.ci/run installs it into tests/node/node_modules)")
    port, root = free_port(), tmp_path / "node-opcua"
    root.mkdir()
    proc = subprocess.Popen(
        ["node", str(Path(__file__).parent / "node" / "opcua_server.js"), str(port), str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY"):
                break
        else:
            raise AssertionError("node-opcua server did not start")
        yield port, root
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_a_server_that_rejects_our_certificate_needs_a_person(
    node_opcua: tuple[int, Path], tmp_path: Path
) -> None:
    port, root = node_opcua
    source = make_source(port, tmp_path, plant_tags("Line1.V0"), trust_unknown_server=True, **SECURE)
    with pytest.raises(FatalError) as caught:
        await source.read_once()
    cert = tmp_path / "opcua" / security.CERT_NAME
    thumb = security.thumbprint(security.load_cert(cert))
    assert f"trust our client certificate: {cert}, thumbprint {thumb}" in str(caught.value)
    assert "pki/rejected" in str(caught.value) and "AssertionError" not in str(caught.value)
    assert any((root / "pki" / "rejected").iterdir()), "node-opcua kept our certificate as rejected"
