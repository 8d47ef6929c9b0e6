"""Security against a real asyncua server with certificates generated in the test."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import FatalError
from agent.plugin import State
from plugins.opcua import security
from plugins.opcua.cli import add_commands
from tests.opcua_server import plant_server
from tests.test_opcua_source import Collector, make_source, plant_tags, running


@pytest.fixture(scope="module")
def server_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed server cert, a CA and a server cert it issued, and an unrelated cert."""
    pki = tmp_path_factory.mktemp("pki")
    security.generate(pki / "server.der", pki / "server.pem", "urn:edge-agent:test:server")
    security.generate(pki / "other.der", pki / "other.pem", "urn:edge-agent:test:other")
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test plant CA")])
    now = dt.datetime.now(dt.UTC)

    def build(subject: x509.Name, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
        )

    ca = build(ca_name, ca_key).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    (pki / "ca").mkdir()
    (pki / "ca" / "ca.pem").write_bytes(
        ca.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    )
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (
        build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc1")]), leaf_key)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier("urn:edge-agent:test:server"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(True, True, True, True, False, False, False, False, False), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (pki / "leaf.der").write_bytes(leaf.public_bytes(serialization.Encoding.DER))
    (pki / "leaf.pem").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


SECURE = {"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"}


@pytest.mark.parametrize(
    ("policy", "mode"),
    [
        ("Basic256Sha256", "SignAndEncrypt"),
        ("Aes128_Sha256_RsaOaep", "Sign"),
        ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
    ],
)
async def test_secure_session_with_a_pinned_server_certificate(
    server_pki: Path, port: int, tmp_path: Path, policy: str, mode: str
) -> None:
    async with plant_server(
        port, cert=server_pki / "server.der", key=server_pki / "server.pem", secure_only=True
    ) as plant:
        source = make_source(
            port, tmp_path, plant_tags("Line1.V0"), security_policy=policy, security_mode=mode,
            server_certificate=str(server_pki / "server.der"),
        )  # fmt: skip
        got = Collector()
        async with running(source.run(got)):
            await plant.set_all(3.5)
            await got.wait_for(lambda: (r := got.latest("v0")) is not None and r.value == 3.5)
        assert source.ctx.status.state is State.UP
    # the client certificate was generated once into the state directory
    assert (tmp_path / "opcua" / security.CERT_NAME).is_file()


async def test_server_certificate_issued_by_a_trusted_ca(server_pki: Path, port: int, tmp_path: Path) -> None:
    async with plant_server(
        port, cert=server_pki / "leaf.der", key=server_pki / "leaf.pem", secure_only=True
    ):
        source = make_source(
            port, tmp_path, plant_tags("Line1.V0"), trusted_ca_dir=str(server_pki / "ca"), **SECURE
        )
        readings = await source.read_once()
    assert [r.value for r in readings] == [0.0]


async def test_untrusted_server_is_refused_with_its_thumbprint(
    server_pki: Path, port: int, tmp_path: Path
) -> None:
    thumb = security.thumbprint(security.load_cert(server_pki / "server.der"))
    async with plant_server(port, cert=server_pki / "server.der", key=server_pki / "server.pem"):
        pinned_other = make_source(
            port, tmp_path, [], server_certificate=str(server_pki / "other.der"), **SECURE
        )
        with pytest.raises(
            FatalError, match=f"untrusted OPC UA server certificate.*{thumb}.*not in the trust list"
        ):
            await pinned_other.read_once()
        nothing = make_source(port, tmp_path, [], **SECURE)
        with pytest.raises(FatalError, match="no server_certificate or trusted_ca_dir set"):
            await nothing.read_once()
        anyone = make_source(port, tmp_path, plant_tags("Line1.V0"), trust_unknown_server=True, **SECURE)
        assert [r.value for r in await anyone.read_once()] == [0.0]


async def test_missing_endpoint_policy_is_fatal_and_lists_what_is_offered(port: int, tmp_path: Path) -> None:
    async with plant_server(port):
        source = make_source(port, tmp_path, [], trust_unknown_server=True, **SECURE)
        with pytest.raises(
            FatalError, match="offers no endpoint with Basic256Sha256/SignAndEncrypt; it offers None"
        ):
            await source.read_once()


def test_trust_list_from_a_directory_of_server_certificates(server_pki: Path, tmp_path: Path) -> None:
    shutil.copy(server_pki / "server.der", tmp_path / "plc1.der")
    trust = security.TrustList(ca_dir=tmp_path)
    trust.check(security.load_cert(server_pki / "server.der"), "opc.tcp://plc1:4840")
    with pytest.raises(FatalError, match="untrusted"):
        trust.check(security.load_cert(server_pki / "other.der"), "opc.tcp://plc1:4840")


def test_opcua_cert_prints_path_and_thumbprint_and_keeps_the_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["opcua-cert", "--state-dir", str(tmp_path)])
    assert args.func(args) == 0
    first = capsys.readouterr().out
    cert_path = tmp_path / "opcua" / security.CERT_NAME
    thumb = security.thumbprint(security.load_cert(cert_path))
    assert str(cert_path) in first and thumb in first
    assert (tmp_path / "opcua" / security.KEY_NAME).stat().st_mode & 0o077 == 0
    assert args.func(args) == 0
    assert capsys.readouterr().out == first  # generated once, then reused


class OneUser:
    """Accepts user ``edge`` with password ``s3cret`` only."""

    def get_user(self, iserver: object, username: str | None = None, password: str | None = None,
                 certificate: object = None) -> object:  # fmt: skip
        from asyncua.crypto.permission_rules import User, UserRole

        return User(role=UserRole.User) if (username, password) == ("edge", "s3cret") else None


async def test_user_and_password_file(port: int, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    async with plant_server(port, user_manager=OneUser()):
        good = make_source(
            port,
            tmp_path,
            plant_tags("Line1.V0"),
            username="edge",
            password_file=str(secret),
            allow_plaintext_password=True,
        )
        assert [r.value for r in await good.read_once()] == [0.0]
        bad = make_source(
            port, tmp_path, [], username="edge", password_file=str(wrong), allow_plaintext_password=True
        )
        with pytest.raises(FatalError, match="refused the user name or password"):
            await bad.read_once()
