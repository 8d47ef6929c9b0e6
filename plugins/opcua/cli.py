"""``edge-agent browse`` and ``edge-agent opcua-cert``; ``agent.cli`` adds them through ``add_commands``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from agent.errors import EdgeAgentError

_POLICIES = ("None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``browse`` and ``opcua-cert`` to the agent's subcommands; each sets ``func(args) -> int``."""
    browse = sub.add_parser(
        "browse",
        help="list an OPC UA server's variables and print [[sources.tags]] to paste into the config",
        description="Variables with their data types go to stderr; the TOML tags go to stdout.",
    )
    browse.add_argument("url", help="server endpoint, e.g. opc.tcp://plc1:4840")
    browse.add_argument("--depth", type=int, default=3, help="levels below the root to walk (default 3)")
    browse.add_argument(
        "--root", default="i=85", help="node id to start from (default i=85, the Objects folder)"
    )
    browse.add_argument(
        "--security",
        default="None",
        metavar="POLICY[,MODE]",
        help=f"one of {', '.join(_POLICIES)}; mode Sign or SignAndEncrypt (default)",
    )
    browse.add_argument("--certificate", type=Path, help="client certificate (default: the generated one)")
    browse.add_argument("--private-key", type=Path, help="client private key")
    browse.add_argument("--server-certificate", type=Path, help="pinned server certificate")
    browse.add_argument("--trusted-ca-dir", type=Path, help="directory of trusted server/CA certificates")
    browse.add_argument("--trust-unknown-server", action="store_true", help="accept any server certificate")
    browse.add_argument("--username", help="user name (default: anonymous)")
    browse.add_argument("--password-file", type=Path, help="file holding the password")
    browse.add_argument(
        "--state-dir", type=Path, default=Path("./state"), help="where the generated cert lives"
    )
    browse.add_argument("--timeout", type=float, default=10.0, help="request timeout in seconds")
    browse.set_defaults(func=run_browse)

    cert = sub.add_parser(
        "opcua-cert",
        help="print the OPC UA client certificate path and SHA-1 thumbprint (generated if absent)",
        description="Print where the agent's OPC UA client certificate is, its SHA-1 thumbprint, application "
        "URI and expiry, creating the certificate and key under the state directory the first time. Copy "
        "the certificate into the server's trusted folder (or trust it in the PLC's web page) before "
        "connecting with Sign or SignAndEncrypt. With -c, every certificate the config's OPC UA sources use.",
    )
    where = cert.add_mutually_exclusive_group(required=True)
    where.add_argument("-c", "--config", type=Path, help="agent config file; uses its [agent] state_dir")
    where.add_argument("--state-dir", type=Path, help="state directory")
    cert.set_defaults(func=run_cert)


def _browse_config(args: argparse.Namespace) -> Any:
    from plugins.opcua.config import OpcUaSourceConfig

    policy, _, mode = args.security.partition(",")
    data: dict[str, Any] = {
        "type": "opcua", "name": "browse", "endpoint": args.url, "request_timeout": args.timeout,
        "security_policy": policy, "security_mode": "None" if policy == "None" else (mode or "SignAndEncrypt"),
        "trust_unknown_server": args.trust_unknown_server,
    }  # fmt: skip
    for key in ("certificate", "private_key", "server_certificate", "trusted_ca_dir", "username"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.password_file is not None:
        data["password_file"] = str(args.password_file)
    return OpcUaSourceConfig.model_validate(data)


async def _browse(args: argparse.Namespace) -> str:
    import structlog

    from plugins.opcua.browse import browse, to_toml
    from plugins.opcua.connection import close_client, open_client, translate

    cfg = _browse_config(args)
    client = await open_client(cfg, args.state_dir, structlog.get_logger().bind(component="browse"))
    try:
        found = await browse(client, args.root, args.depth)
    except EdgeAgentError:
        raise
    except Exception as exc:
        raise translate(exc, cfg.endpoint, "browsing") from exc
    finally:
        await close_client(client, cfg.request_timeout)
    for var in found:
        kind = f"{var.data_type}[]" if var.array else var.data_type
        print(f"{var.path:<40} {kind:<16} {var.node}", file=sys.stderr)
    print(f"{len(found)} variables", file=sys.stderr)
    return to_toml(found)


def run_browse(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        print(asyncio.run(_browse(args)))
    except ValidationError as exc:
        print(f"browse: bad option: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    except EdgeAgentError as exc:
        print(f"browse: {exc}", file=sys.stderr)
        return 1
    return 0


def cert_report(state_dir: Path, certificate: Path | None = None) -> str:
    """Path and thumbprint of the client certificate, generating it under ``state_dir`` when needed."""
    from plugins.opcua import security

    path = certificate or security.ensure_client_cert(state_dir)[0]
    cert = security.load_cert(path)
    return "\n".join([
        f"certificate: {path.resolve()}",
        f"thumbprint (SHA-1): {security.thumbprint(cert)}",
        f"application uri: {security.application_uri_of(cert)}",
        f"valid until: {cert.not_valid_after_utc:%Y-%m-%d}",
        "Trust this certificate on the OPC UA server (copy the file into its trusted folder).",
    ])  # fmt: skip


def run_cert(args: argparse.Namespace) -> int:
    try:
        if args.config is not None:
            from agent.config.load import load_config
            from plugins.opcua.config import OpcUaSourceConfig

            cfg = load_config(args.config)
            state_dir = cfg.agent.state_dir
            opcua = [s for s in cfg.sources if isinstance(s, OpcUaSourceConfig)]
            own = [s.certificate for s in opcua if s.certificate is not None]
            reports = [cert_report(state_dir, path) for path in dict.fromkeys(own)]
            if any(s.certificate is None for s in opcua) or not reports:
                reports.append(cert_report(state_dir))
            print("\n\n".join(reports))
        else:
            print(cert_report(args.state_dir))
    except EdgeAgentError as exc:
        print(f"opcua-cert: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"opcua-cert: {exc}", file=sys.stderr)
        return 1
    return 0
