"""``edge-agent run`` starts without importing the offline commands (issue 17: start-up).

Building the whole command line imported the training and demo code (numpy, the trainer, the model
export) before the agent read its config; ``run``, ``check`` and the other core commands build only theirs.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
