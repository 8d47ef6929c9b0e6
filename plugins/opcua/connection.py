"""Open and close one asyncua client, translating library errors at the boundary.

Each call to ``open_client`` builds a NEW ``Client``: a client that lived through a network
black-hole is never reused (asyncua #1660). asyncua's own ``auto_reconnect`` stays off: the agent's
supervisor is the one owner of reconnects (two owners flooded a server with sessions in
Telegraf #18787). asyncua's connection probe still runs, but with auto_reconnect off it only marks
the client disconnected, which the source turns into a ``TransientError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509

from agent.errors import FatalError, TransientError
from plugins.opcua import security
from plugins.opcua.config import OpcUaSourceConfig

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}

# Status codes that a retry in a few seconds will not fix: someone must change a setting.
_NEEDS_A_PERSON = {
    ua.StatusCodes.BadUserAccessDenied: "the server refused the user name or password",
    ua.StatusCodes.BadIdentityTokenInvalid: "the server refused the user name or password",
    ua.StatusCodes.BadIdentityTokenRejected: "the server refused this kind of login (user/anonymous)",
    ua.StatusCodes.BadCertificateUntrusted: "the server does not trust our client certificate yet: "
    "run 'edge-agent opcua-cert' and trust that certificate on the server",
    ua.StatusCodes.BadSecurityChecksFailed: "the server rejected our certificate or security settings: "
    "trust our client certificate on the server ('edge-agent opcua-cert' prints it)",
    ua.StatusCodes.BadCertificateInvalid: "the server rejected our client certificate as invalid",
    ua.StatusCodes.BadCertificateUriInvalid: "our certificate's URI does not match our ApplicationUri",
    ua.StatusCodes.BadSecurityPolicyRejected: "the server does not accept this security_policy",
    ua.StatusCodes.BadSecurityModeRejected: "the server does not accept this security_mode",
}


def translate(exc: BaseException, endpoint: str, doing: str) -> Exception:
    """The agent error for a library exception raised while ``doing`` something with ``endpoint``."""
    if isinstance(exc, FatalError | TransientError):
        return exc
    if isinstance(exc, ua.UaStatusCodeError):
        code = exc.code
        name = ua.status_codes.get_name_and_doc(code)[0]
        if code in _NEEDS_A_PERSON:
            return FatalError(f"{doing} {endpoint} failed: {_NEEDS_A_PERSON[code]} ({name})")
        return TransientError(f"{doing} {endpoint} failed: {name}")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return TransientError(f"{doing} {endpoint} timed out: the server or network does not answer")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return TransientError(f"{doing} {endpoint} failed: {reason}")
    if isinstance(exc, ConnectionError | ua.UaError):
        return TransientError(f"{doing} {endpoint} failed: {exc or type(exc).__name__}")
    return TransientError(f"{doing} {endpoint} failed: {type(exc).__name__}: {exc}")


async def _setup_security(client: Client, cfg: OpcUaSourceConfig, state_dir: Path, log: Any) -> None:
    if cfg.certificate is not None and cfg.private_key is not None:
        cert_path, key_path = cfg.certificate, cfg.private_key
    else:
        # first use generates an RSA key (hundreds of ms): off the loop (issue 11 item 5)
        cert_path, key_path = await asyncio.to_thread(
            security.ensure_client_cert, state_dir, cfg.application_uri
        )
    try:
        own = security.load_cert(cert_path)
    except (OSError, ValueError) as exc:
        raise FatalError(f"cannot read the client certificate {cert_path}: {exc}") from exc
    client.application_uri = security.application_uri_of(own) or client.application_uri
    endpoints = await client.connect_and_get_server_endpoints()
    policy = POLICIES[cfg.security_policy]
    mode = getattr(ua.MessageSecurityMode, cfg.security_mode)
    matching = [e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
    if not matching:
        offered = sorted(
            {f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints}
        )
        raise FatalError(
            f"{cfg.endpoint} offers no endpoint with {cfg.security_policy}/{cfg.security_mode}; "
            f"it offers {', '.join(offered)}"
        )
    server_der = bytes(matching[0].ServerCertificate or b"")
    try:
        server_cert = x509.load_der_x509_certificate(_first_der(server_der))
    except ValueError as exc:
        raise FatalError(f"{cfg.endpoint} sent no readable server certificate") from exc
    trust = security.TrustList(cfg.server_certificate, cfg.trusted_ca_dir, cfg.trust_unknown_server)
    described = matching[0].Server.ApplicationUri if matching[0].Server is not None else None
    trust.check(server_cert, cfg.endpoint, described or None, cfg.server_uri)
    if cfg.trust_unknown_server:
        log.warning("accepting any server certificate", thumbprint=security.thumbprint(server_cert))
    password = cfg.private_key_password.get_secret_value() if cfg.private_key_password else None
    try:
        await client.set_security(
            policy, str(cert_path), str(key_path), password, _first_der(server_der), mode
        )
    except (OSError, ValueError, TypeError) as exc:
        raise FatalError(
            f"cannot load the client certificate or key ({cert_path}, {key_path}): {exc}"
        ) from exc


def _first_der(chain: bytes) -> bytes:
    """The first certificate of a DER chain (servers may send their chain concatenated)."""
    if len(chain) < 4 or chain[0] != 0x30:
        return chain
    if chain[1] & 0x80:
        n = chain[1] & 0x7F
        length = int.from_bytes(chain[2 : 2 + n], "big") + 2 + n
    else:
        length = chain[1] + 2
    return chain[:length]


_REJECTED_US = {
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadCertificateInvalid,
}


def _rejected_us(exc: BaseException) -> bool:
    """The server refused our client certificate while we opened a secure channel or session.

    node-opcua answers an untrusted client certificate with a BadSecurityChecksFailed fault inside the
    OpenSecureChannel response, which asyncua 2.1 does not decode: it fails an internal ``assert``.
    """
    if isinstance(exc, AssertionError):
        return True
    return isinstance(exc, ua.UaStatusCodeError) and exc.code in _REJECTED_US


def trust_hint(cfg: OpcUaSourceConfig, state_dir: Path) -> str:
    """What the server's administrator must do: trust this file, with this thumbprint."""
    path = cfg.certificate or state_dir / "opcua" / security.CERT_NAME
    try:
        thumb = security.thumbprint(security.load_cert(path))
    except (OSError, ValueError):
        thumb = "unknown (the file is unreadable)"
    return (
        f"trust our client certificate: {path}, thumbprint {thumb} (on the server; node-opcua keeps it in "
        "pki/rejected until it is moved to pki/trusted/certs; 'edge-agent opcua-cert' prints both)"
    )


async def open_client(cfg: OpcUaSourceConfig, state_dir: Path, log: Any) -> Client:
    """A new, connected client for ``cfg``; raises TransientError or FatalError."""
    client = Client(cfg.endpoint, timeout=cfg.request_timeout, watchdog_intervall=cfg.request_timeout)
    client.name = client.description = "edge-agent"
    client.session_timeout = int(cfg.session_timeout * 1000)
    if cfg.username is not None:
        client.set_user(cfg.username)
    if cfg.password is not None:
        client.set_password(cfg.password.get_secret_value())
    try:
        if cfg.secure:
            await _setup_security(client, cfg, state_dir, log)
        await client.connect(auto_reconnect=False)
    except Exception as exc:
        client.disconnect_socket()
        if cfg.secure and _rejected_us(exc):
            raise FatalError(
                f"connecting to {cfg.endpoint} failed: the server rejected our client certificate; "
                f"{trust_hint(cfg, state_dir)}"
            ) from exc
        raise translate(exc, cfg.endpoint, "connecting to") from exc
    except BaseException:  # cancelled mid-connect: still release the socket
        client.disconnect_socket()
        raise
    return client


async def close_client(client: Client, grace_s: float) -> None:
    """Close the session if the server still answers; always release the socket and asyncua's tasks."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(grace_s):
            await client.disconnect()
    client.disconnect_socket()
