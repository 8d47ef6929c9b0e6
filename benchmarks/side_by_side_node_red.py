"""Node-RED as a gateway of ``bench_side_by_side.py``: installed on demand, its flows made from the shipped ones.

``benchmarks/node_red/`` holds what is committed: ``package.json`` (the pinned versions), ``settings.js``
(no editor, no HTTP server) and two flow templates. ``flow_modbus.json`` has one ``modbus-client`` and one
``modbus-read`` node with ``$DEVICE``/``$PORT``/``$ADR``/... placeholders, copied once per device and per
read of at most 125 registers; a function node turns each answer into one QoS 1 JSON message of the form
the subscriber checks. ``flow_opcua.json`` subscribes to every item with node-red-contrib-opcua's
``multiple`` group and sends the changes of one publish response as one message. ``--write-flows DIR``
writes the flows of a run, to import them into an editor.

The install (``npm install`` into ``benchmarks/node_red/``, git-ignored) runs when ``node`` and ``npm`` are
on the PATH and Node-RED is not there yet; without them the harness prints a skipped row saying why.
node-red-contrib-modbus is pinned to 5.23.3, the newest release whose dependencies all come from the npm
registry: 5.45 and later fetch ``@openp4nr/modbus-serial`` from dl.cloudsmith.io.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.side_by_side_configs import OPC_PUBLISH_S, Workload

HERE = Path(__file__).resolve().parent / "node_red"
RED_JS = HERE / "node_modules" / "node-red" / "red.js"
MODULES = ("node-red", "node-red-contrib-modbus", "node-red-contrib-opcua")


def installed() -> str | None:
    """``None`` once Node-RED and its nodes are installed (installing them if needed), else why not."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not on the PATH"
    wanted = json.loads((HERE / "package.json").read_text())["dependencies"]
    if all(_version(name) == wanted[name] for name in MODULES):
        return None
    command = ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--prefix", str(HERE)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=HERE)
    except subprocess.TimeoutExpired:
        return "npm install took more than 15 minutes"
    missing = [name for name in MODULES if _version(name) != wanted[name]]
    if done.returncode or missing:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        return f"npm install failed (exit {done.returncode}, missing {missing}): {tail}"
    return None


def _version(module: str) -> str | None:
    package = HERE / "node_modules" / module / "package.json"
    return json.loads(package.read_text())["version"] if package.exists() else None


def _fill(node: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    text = json.dumps(node)
    for key in sorted(values, key=len, reverse=True):  # $ADR before $A...: longest placeholder first
        text = text.replace(f"${key}", values[key])
    return dict(json.loads(text))


def flows(w: Workload, ports: list[int], broker: int, ns: int) -> list[dict[str, Any]]:
    """The flow of one run: the template of ``w``'s protocol with the ports (and W3's namespace) filled in."""
    if w.opcua:
        items = json.dumps([{"nodeId": f"ns={ns};s=Line1.V{i}"} for i in range(w.tags)])
        values = {
            "BROKER": str(broker),
            "ENDPOINT": f"opc.tcp://127.0.0.1:{ports[0]}/",
            "ITEMS": items.replace('"', '\\"'),  # the inject node's payload is JSON in a JSON string
            "INTERVAL_MS": str(int(OPC_PUBLISH_S * 1000)),
        }
        return [_fill(node, values) for node in json.loads((HERE / "flow_opcua.json").read_text())]
    template = json.loads((HERE / "flow_modbus.json").read_text())
    shared = [node for node in template if node["type"] not in ("modbus-client", "modbus-read")]
    client = next(node for node in template if node["type"] == "modbus-client")
    read = next(node for node in template if node["type"] == "modbus-read")
    out = [_fill(node, {"BROKER": str(broker)}) for node in shared]
    for i, port in enumerate(ports):
        out.append(_fill(client, {"DEVICE": str(i), "PORT": str(port)}))
        for adr in range(0, w.registers, 125):
            out.append(
                _fill(
                    read,
                    {
                        "DEVICE": str(i),
                        "ADR": str(adr),
                        "QUANTITY": str(min(125, w.registers - adr)),
                        "RATE_MS": str(int(w.interval * 1000)),
                        "KIND": "f32" if w.float32 else "u16",
                    },
                )
            )
    return out


def command(w: Workload, ports: list[int], broker: int, ns: int, folder: Path) -> list[str]:
    """``node red.js`` with this run's flows, a fresh user directory and the shipped settings."""
    flow_file = folder / "flows.json"
    flow_file.write_text(json.dumps(flows(w, ports, broker, ns)))
    user = folder / "node-red"
    user.mkdir(exist_ok=True)
    return [
        "node",
        str(RED_JS),
        "--settings",
        str(HERE / "settings.js"),
        "--userDir",
        str(user),
        str(flow_file),
    ]
