"""What a connection to the broker needs from paho, and paho's failures translated at the boundary.

Every failure becomes ``TransientError`` (worth retrying soon: refused, unreachable, DNS, timeout) or
``FatalError`` (a person must act: credentials, ACL, certificates), with a message that says what to do.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.errors import FatalError, PluginError, TransientError
from plugins.mqtt.config import MqttSinkConfig

# CONNACK reason codes a person must fix (MQTT 5 numbering; paho maps 3.1.1 codes onto it).
NEEDS_A_PERSON = {
    0x84: "the broker does not support this MQTT protocol version; set protocol",
    0x85: "the broker rejected the client id; set client_id",
    0x86: "bad user name or password; check username and password / password_file",
    # mosquitto answers a wrong password with "not authorized" under MQTT 3.1.1
    0x87: "check username and password / password_file, and the broker's ACL for this user and client id",
    0x8C: "bad authentication method",
}


def connack_error(code: ReasonCode, where: str) -> PluginError:
    """The error for a refused CONNACK."""
    text = f"broker {where} refused the connection: {code.getName()}"
    hint = NEEDS_A_PERSON.get(code.value)
    return FatalError(f"{text}; {hint}") if hint else TransientError(text)


def connect_error(exc: OSError, host: str, where: str) -> PluginError:
    """The error for a failed TCP / TLS connect (paho's ``connect`` raised ``exc``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FatalError(
            f"broker {where}: its TLS certificate is not trusted ({exc.verify_message}); set tls_ca_file to "
            "the CA that signed it (tls_insecure_skip_verify = true only for a lab)"
        )
    if isinstance(exc, ssl.SSLError):
        return FatalError(
            f"TLS handshake with broker {where} failed ({exc.reason or exc}); check tls_cert_file, "
            "tls_key_file and the broker's TLS listener"
        )
    if isinstance(exc, socket.gaierror):
        return TransientError(f"cannot resolve broker host {host!r}: {exc.strerror}")
    if isinstance(exc, ConnectionRefusedError):
        return TransientError(f"broker {where} refused the connection (not running, or wrong port?)")
    if isinstance(exc, TimeoutError):
        return TransientError(f"no answer from broker {where} within connect_timeout")
    return TransientError(f"cannot reach broker {where}: {exc.strerror or exc}")


def tls_context(cfg: MqttSinkConfig, sink: str) -> ssl.SSLContext:
    """Verification on (system CAs or ``tls_ca_file``) unless ``tls_insecure_skip_verify``; mTLS when set."""
    try:
        context = ssl.create_default_context(cafile=str(cfg.tls_ca_file) if cfg.tls_ca_file else None)
        if cfg.tls_cert_file is not None and cfg.tls_key_file is not None:
            context.load_cert_chain(str(cfg.tls_cert_file), str(cfg.tls_key_file))
    except (OSError, ssl.SSLError) as exc:
        raise FatalError(f"cannot load the TLS files of sink {sink!r}: {exc}") from exc
    if cfg.tls_insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect_options(cfg: MqttSinkConfig) -> dict[str, Any]:
    """Keyword arguments of paho's ``connect`` beyond host, port and keepalive (MQTT 5 only)."""
    if cfg.protocol != "5":
        return {}  # MQTT 3.1.1 takes clean session in the Client constructor
    options: dict[str, Any] = {"clean_start": cfg.clean_start}
    if cfg.session_expiry:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(cfg.session_expiry)
        options["properties"] = props
    return options
