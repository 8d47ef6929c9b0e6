"""Every file in examples/ passes ``check`` from a clean clone and says in its header what it needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import _snapshot

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.toml"))


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``git clone`` gives: the tracked and new files only (no state, no models made by tests)."""
    dest = tmp_path_factory.mktemp("clone")
    _snapshot(dest)
    return dest


def edge_agent(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "agent.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_there_are_examples() -> None:
    assert {"plant.toml", "replay.toml", "replay-nab.toml"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_passes_check_from_a_clean_clone(clone: Path, name: str) -> None:
    proc = edge_agent(clone, "check", "-c", f"examples/{name}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"examples/{name}: OK" in proc.stdout


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_says_in_its_header_what_it_needs(name: str) -> None:
    header = []
    for line in (ROOT / "examples" / name).read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert any(line.startswith("# Needs") for line in header), f"{name}: no '# Needs...' line in its header"


def test_plant_example_has_its_model_and_it_fits_the_pipeline(clone: Path) -> None:
    proc = edge_agent(clone, "check", "-c", "examples/plant.toml")
    assert "2 tags x 4 features = 8" in proc.stdout and "model sha256:" in proc.stdout, proc.stdout


def test_the_replay_example_runs_to_the_end_and_exits(clone: Path) -> None:
    proc = edge_agent(clone, "run", "-c", "examples/replay.toml")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = (clone / "state" / "replay" / "features.jsonl").read_text().splitlines()
    features = [json.loads(line) for line in lines if '"features"' in line]
    assert len(features) > 100, len(lines)
