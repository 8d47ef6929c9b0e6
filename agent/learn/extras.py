"""The command that adds an optional extra (``train``, ``plot``) to *this* installation.

A hint saying ``pip install 'edge-agent[train]'`` is wrong for most installs: the project was installed
from a checkout (the README's ``.ci/setup``, ``deploy/install.sh``) or a wheel file, not from an index,
and often into a venv whose ``pip`` is not the one on PATH. PEP 610's ``direct_url.json`` in the
installed distribution says where it came from; the interpreter running now says which pip to use.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import metadata
from urllib.parse import unquote, urlparse

from agent.registry import DIST


def _origin() -> tuple[str, bool] | None:
    """(the path or URL the distribution was installed from, editable), or None for an index install."""
    # The first with a direct_url.json: a checkout's own edge_agent.egg-info (found first when the
    # checkout is the current folder) has none, the installed dist-info has.
    texts = (d.read_text("direct_url.json") for d in metadata.distributions(name=DIST))
    text = next((t for t in texts if t), None)
    if text is None:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = str(info.get("url", ""))
    editable = bool(info.get("dir_info", {}).get("editable", False))
    if url.startswith("file://"):
        return unquote(urlparse(url).path), editable
    return (url, False) if url else None


def install_hint(extra: str) -> str:
    """E.g. ``/opt/edge-agent/venv/bin/python -m pip install '/src/edge-agent[train]'`` (as root)."""
    sudo = "" if os.access(sys.prefix, os.W_OK) else "sudo "  # a service venv belongs to root
    pip = f"{sudo}{shlex.quote(sys.executable)} -m pip install"
    origin = _origin()
    if origin is None:
        return f"{pip} '{DIST}[{extra}]'"
    where, editable = origin
    if where.startswith(("http://", "https://", "git+")):
        return f"{pip} '{DIST}[{extra}] @ {where}'"
    return f"{pip} {'-e ' if editable else ''}{shlex.quote(f'{where}[{extra}]')}"
