"""``edge-agent run`` starts without what it does not run (issue 17: start-up under 1 s).

Building the whole command line imported the training and demo code (numpy, the trainer, the model
export) before the agent read its config; ``run``, ``check`` and the other core commands build only theirs.
And an agent that only forwards starts without numpy or onnxruntime: numpy alone takes about 0.15 s to
import here, a fifth of the start-up, and only the stream stages (windows, features, models) need it.
Checked in a fresh interpreter: the config loaded, the runtime and every source and sink built as
``edge-agent run`` builds them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OFFLINE = ("agent.learn.commands", "agent.learn.trainer", "agent.demo.command")


def imported_after(argv: list[str]) -> dict[str, bool]:
    code = (
        "import json, sys\n"
        "from agent.cli import main\n"
        f"main({argv!r})\n"
        f"print(json.dumps({{m: m in sys.modules for m in {OFFLINE!r}}}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_run_does_not_import_the_offline_commands() -> None:
    assert imported_after(["run", "-c", "/nonexistent/edge.toml"]) == dict.fromkeys(OFFLINE, False)


def test_the_offline_commands_are_still_there() -> None:
    assert imported_after(["plugins"])["agent.learn.commands"] is False  # a core command too
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert "train" in done.stdout and "demo" in done.stdout


HEAVY = ("numpy", "onnxruntime")

CONFIG = """
[agent]
id = "line1"
state_dir = "{state}"
[health]
enabled = false
[[sources]]
type = "modbus"
name = "press"
host = "127.0.0.1"
port = 1
[[sources.devices]]
name = "plc"
[[sources.tags]]
name = "temp"
address = 0
[[sources]]
type = "opcua"
name = "oven"
endpoint = "opc.tcp://127.0.0.1:1/"
[[sources.tags]]
name = "v0"
node = "ns=2;s=Line1.V0"
[[sinks]]
type = "mqtt"
host = "127.0.0.1"
port = 1
prefix = "plant"
"""

PIPELINE = """
[[pipelines]]
name = "p"
tags = ["temp"]
features = ["mean"]
[pipelines.window]
length = "10s"
"""

PROBE = """
import json, sys
from agent.config.load import load_config
from agent.registry import build
from agent.runtime.core import Runtime

path = sys.argv[1]
cfg = load_config(path)
runtime = Runtime(cfg, path)
for source in cfg.sources:
    build("source", source, cfg.agent.id, cfg.agent.state_dir)
for sink in cfg.sinks:
    build("sink", sink, cfg.agent.id, cfg.agent.state_dir)
print(json.dumps([m for m in HEAVY if m in sys.modules]))
""".replace("HEAVY", repr(HEAVY))


def loaded(tmp_path: Path, text: str) -> list[str]:
    config = tmp_path / "agent.toml"
    config.write_text(text.format(state=tmp_path / "state"), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_forwarding_agent_imports_no_numpy_or_onnxruntime(tmp_path: Path) -> None:
    assert loaded(tmp_path, CONFIG) == []


def test_a_pipeline_still_brings_numpy(tmp_path: Path) -> None:
    """The probe sees imports at all: with a pipeline, numpy is there."""
    assert "numpy" in loaded(tmp_path, CONFIG + PIPELINE)
