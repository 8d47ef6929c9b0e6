"""Plugins from entry points, two instances of one plugin, secrets kept out of logs, docs kept fresh."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from agent.config.load import config_model, load_config
from agent.runtime.core import Runtime
from tests.conftest import free_port

PLUGIN = '''
"""A third-party source: counts up, one reading per tag per tick."""
import asyncio
import time
from typing import Literal

from agent.config.base import SourceConfig
from agent.plugin import Source
from agent.registry import PluginSpec
from agent.records import Reading


class CounterConfig(SourceConfig):
    type: Literal["counter"] = "counter"
    step: float = 1.0
    ticks: int = 30


class CounterSource(Source):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.value = 0.0  # instance state only: two instances must not share it

    async def run(self, emit):
        self.ctx.mark_up()
        for _ in range(self.config.ticks):
            self.value += self.config.step
            await emit([Reading(t.name, time.time(), self.value) for t in self.config.tags])
            await asyncio.sleep(0)

    async def read_once(self):
        return [Reading(t.name, time.time(), self.value) for t in self.config.tags]


SPEC = PluginSpec("counter", "source", CounterConfig, "third_party_counter:CounterSource", "counts up")
'''


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[None]:
    """Installs a real distribution (dist-info with entry_points.txt) on sys.path."""
    site = tmp_path / "site"
    (site / "third_party_counter-1.0.dist-info").mkdir(parents=True)
    (site / "third_party_counter.py").write_text(PLUGIN)
    info = site / "third_party_counter-1.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-counter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[edge_agent.plugins]\ncounter = third_party_counter:SPEC\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    config_model.cache_clear()
    yield
    sys.path.remove(str(site))
    sys.modules.pop("third_party_counter", None)
    config_model.cache_clear()


def test_entry_point_plugin_is_listed_and_two_instances_coexist(
    third_party: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins"]) == 0
    assert "counter    counts up  [entry point]" in capsys.readouterr().out
    config = tmp_path / "edge.toml"
    config.write_text(
        textwrap.dedent(
            """
            [agent]
            state_dir = "state"
            [[sources]]
            type = "counter"
            name = "a"
            step = 1.0
            [[sources.tags]]
            name = "a1"
            [[sources]]
            type = "counter"
            name = "b"
            step = 10.0
            [[sources.tags]]
            name = "b1"
            [[sinks]]
            type = "jsonl"
            path = "out.jsonl"
            kinds = ["readings"]
            [health]
            enabled = false
            """
        )
    )
    runtime = Runtime(load_config(config, {}), str(config))
    asyncio.run(runtime.run(asyncio.Event()))  # both finish after 30 ticks: the agent stops by itself
    readings = [
        r for line in (tmp_path / "out.jsonl").read_text().splitlines() for r in json.loads(line)["readings"]
    ]
    assert max(r["value"] for r in readings if r["tag"] == "a1") == 30.0
    assert max(r["value"] for r in readings if r["tag"] == "b1") == 300.0


def test_secrets_never_reach_logs_or_error_messages(tmp_path: Path) -> None:
    secret = "hunter2-do-not-log"
    (tmp_path / "pw").write_text(secret + "\n")
    config = tmp_path / "edge.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [agent]
            state_dir = "state"
            log_level = "debug"
            [health]
            enabled = false
            [[sinks]]
            type = "mqtt"
            host = "127.0.0.1"
            port = {free_port()}
            username = "agent"
            password_file = "{tmp_path / "pw"}"
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=3)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "connection lost" in err  # the broker is down: it retried and logged why
    assert secret not in out + err
    bad = config.read_text().replace("keepalive", "x") + "\nkeepalive = 'often'\n"
    (tmp_path / "bad.toml").write_text(
        bad.replace(f'password_file = "{tmp_path / "pw"}"', f'password = "{secret}"')
    )
    check = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "-c", str(tmp_path / "bad.toml")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 2 and secret not in check.stdout + check.stderr


def test_config_reference_is_generated_from_the_models() -> None:
    from agent.config.reference import render

    path = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"
    assert path.read_text() == render(), (
        "stale: run `python -m agent.config.reference > docs/config-reference.md`"
    )


def test_every_plugin_sample_config_is_valid(tmp_path: Path) -> None:
    from agent.registry import registry

    for kind in ("source", "sink"):
        specs = registry(kind)  # type: ignore[arg-type]
        for spec in specs.values():
            text = spec.sample_text()
            assert text, f"{spec.type} has no sample"
            section = __import__("tomllib").loads(text).get(f"{kind}s")
            assert section, f"{spec.type}'s sample has no [[{kind}s]]"
            assert spec.type in {item["type"] for item in section}
            for item in section:
                # *_file keys point at deployment paths (systemd credentials) that do not exist here.
                item = {k: v for k, v in item.items() if not k.endswith("_file")}
                specs[item["type"]].config.model_validate(item)


def test_readme_and_example_configs_validate(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    secret = tmp_path / "pw"
    secret.write_text("x")
    for path in sorted((root / "examples").glob("*.toml")):
        text = path.read_text().replace("/run/credentials/edge-agent.service/mqtt-password", str(secret))
        copy = path.parent / f".check-{path.name}"
        copy.write_text(text)
        try:
            load_config(copy, {})
        finally:
            copy.unlink()
    readme = (root / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    assert block.strip() in (root / "examples" / "plant.toml").read_text(), (
        "README and examples/plant.toml differ"
    )
