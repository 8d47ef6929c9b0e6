"""Client certificates and the server trust list.

The client certificate is either given (``certificate`` + ``private_key``) or generated once into
``<state_dir>/opcua/`` and reused, so the PLC admin trusts it once; ``edge-agent opcua-cert`` prints
its path and SHA-1 thumbprint (the form OPC UA servers show in their trust dialogs).

The server certificate is checked against a trust list before any session is opened: a pinned
certificate, or a directory of trusted server or CA certificates (one issuing level is checked: the
issuer must be a CA with keyCertSign, and the certificate must name the endpoint's host). Its
application URI must be the one the server describes in its endpoints (and ``server_uri`` when pinned).
An unknown server is refused with a ``FatalError`` unless ``trust_unknown_server = true``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.config import statedir
from agent.errors import FatalError

CERT_NAME = "client_cert.der"
KEY_NAME = "client_key.pem"
VALID_DAYS = 5 * 365


def default_application_uri() -> str:
    return f"urn:{socket.gethostname()}:edge-agent"


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 thumbprint of the DER certificate, upper-case hex, as OPC UA servers display it."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def load_cert(path: Path) -> x509.Certificate:
    """A certificate from a DER or PEM file."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The URI in the certificate's subjectAltName; servers require it to equal the client's ApplicationUri."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def generate(cert_path: Path, key_path: Path, application_uri: str, days: int = VALID_DAYS) -> None:
    """Write a new RSA-2048 key (PEM, mode 0600) and a self-signed application certificate (DER)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"edge-agent@{host}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host)]
            ),
            critical=False,
        )
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=False
        )  # self-signed, as UA requires
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # 0600 and never through a symlink planted in the state directory (issue 10).
    statedir.write_private(key_path, key_bytes)
    statedir.write_private(cert_path, cert.public_bytes(serialization.Encoding.DER))


def ensure_client_cert(state_dir: Path, application_uri: str | None = None) -> tuple[Path, Path]:
    """The generated client certificate and key under ``<state_dir>/opcua/``, created on first use."""
    folder = state_dir / "opcua"
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    try:
        statedir.private_dir(folder)
        for path in (cert_path, key_path):
            if path.is_symlink():
                raise statedir.UnsafeFile(
                    0, f"{path} is a symbolic link; remove it (the agent never follows links there)"
                )
        if not (cert_path.is_file() and key_path.is_file()):
            generate(cert_path, key_path, application_uri or default_application_uri())
        statedir.prepare(cert_path, key_path)  # existing files: fix their mode, refuse a link
    except OSError as exc:
        raise FatalError(
            f"cannot keep the OPC UA client certificate in {folder}: {exc.strerror or exc}"
        ) from exc
    return cert_path, key_path


@dataclass(frozen=True)
class TrustList:
    """Which server certificates the client accepts.

    Attributes:
        pinned: a certificate file that must equal the server's certificate.
        ca_dir: a directory of trusted server certificates or CA certificates (*.der, *.pem, *.crt).
        trust_unknown: accept any server certificate (commissioning only).
    """

    pinned: Path | None = None
    ca_dir: Path | None = None
    trust_unknown: bool = False

    def _trusted(self) -> list[x509.Certificate]:
        certs: list[x509.Certificate] = []
        try:
            if self.pinned is not None:
                certs.append(load_cert(self.pinned))
            if self.ca_dir is not None:
                for path in sorted(self.ca_dir.iterdir()):
                    if path.suffix.lower() in (".der", ".pem", ".crt", ".cer"):
                        certs.append(load_cert(path))
        except (OSError, ValueError) as exc:
            raise FatalError(f"cannot read the OPC UA trust list: {exc}") from exc
        return certs

    def check(
        self,
        server_cert: x509.Certificate,
        endpoint: str,
        described_uri: str | None = None,
        pinned_uri: str | None = None,
    ) -> None:
        """Accept the server certificate or raise ``FatalError`` saying what did not match.

        A certificate is trusted when it is in the trust list (pinned: trusted as itself, whatever
        addresses it names) or issued by a trusted CA (then its subjectAltName must name the endpoint's
        host, and the issuer must be a CA: basicConstraints CA:TRUE and keyCertSign). Either way it must
        be within its validity, and its application URI must equal the one the server describes in its
        endpoints (and ``pinned_uri`` when set).
        """
        if self.trust_unknown:
            return
        how = self._anchor(server_cert, endpoint)
        now = dt.datetime.now(dt.UTC)
        if not server_cert.not_valid_before_utc <= now <= server_cert.not_valid_after_utc:
            raise FatalError(
                f"server certificate of {endpoint} is outside its validity "
                f"({server_cert.not_valid_before_utc:%Y-%m-%d} to {server_cert.not_valid_after_utc:%Y-%m-%d})"
            )
        check_uri(server_cert, endpoint, described_uri, pinned_uri)
        if how == "issued":
            check_host(server_cert, endpoint)

    def _anchor(self, server_cert: x509.Certificate, endpoint: str) -> str:
        """ "pinned" or "issued" (by a trusted CA); else FatalError naming the first reason found."""
        now = dt.datetime.now(dt.UTC)
        reasons: list[str] = []
        trusted = self._trusted()
        if any(t == server_cert for t in trusted):
            return "pinned"
        for ca in trusted:
            if not _issued_by(server_cert, ca):
                continue
            problem = _not_a_usable_ca(ca, now)
            if problem is None:
                return "issued"
            reasons.append(f"it is signed by {ca.subject.rfc4514_string()}, but that certificate {problem}")
        where = self.pinned or self.ca_dir
        raise FatalError(
            f"untrusted OPC UA server certificate at {endpoint} (SHA-1 thumbprint {thumbprint(server_cert)}, "
            f"subject {server_cert.subject.rfc4514_string()}): "
            + (f"{'; '.join(reasons)}; " if reasons else "")
            + (
                f"it is not in the trust list {where}; "
                if where
                else "no server_certificate or trusted_ca_dir set; "
            )
            + 'add it with server_certificate = "<file>" or put it in trusted_ca_dir '
            "(trust_unknown_server = true accepts any server, for commissioning only)"
        )


def _not_a_usable_ca(ca: x509.Certificate, now: dt.datetime) -> str | None:
    """Why ``ca`` may not issue server certificates, or None when it may."""
    if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
        return f"is outside its validity ({ca.not_valid_before_utc:%Y-%m-%d} to {ca.not_valid_after_utc:%Y-%m-%d})"
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "has no basicConstraints (it is not a CA)"
    if not constraints.ca:
        return "has basicConstraints CA:FALSE (it is not a CA)"
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return (
        None if usage.key_cert_sign else "has no keyCertSign in its keyUsage (it may not sign certificates)"
    )


def check_uri(cert: x509.Certificate, endpoint: str, described: str | None, pinned: str | None) -> None:
    """The certificate's application URI must be the server's (as described, and as pinned)."""
    uri = application_uri_of(cert)
    if described is not None and uri != described:
        raise FatalError(
            f"server certificate of {endpoint} is issued to application URI {uri!r}, but the server "
            f"describes itself as {described!r}: another application's certificate (or a misconfigured server)"
        )
    if pinned is not None and (uri != pinned or (described is not None and described != pinned)):
        raise FatalError(
            f"server at {endpoint} is application {described or uri!r} (certificate URI {uri!r}), "
            f"not the pinned server_uri {pinned!r}"
        )


def check_host(cert: x509.Certificate, endpoint: str) -> None:
    """The endpoint's host must be a DNS name or IP address in the certificate's subjectAltName."""
    host = (urlsplit(endpoint).hostname or "").lower()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    names = [n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    try:
        matches = str(ipaddress.ip_address(host)) in ips
    except ValueError:
        matches = host.rstrip(".") in names
    if not matches:
        named = ", ".join(names + ips) or "no host at all"
        raise FatalError(
            f"server certificate of {endpoint} is issued for {named}, not for {host!r}: connect by a name "
            "the certificate carries, or have the server's certificate reissued with this host in its "
            "subjectAltName"
        )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
