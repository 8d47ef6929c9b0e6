"""Models and recordings an administrator writes are readable by the service (issue 10, item 10).

The rule (docs/security.md): ``train`` and ``record`` write 0640 files with the group of their folder,
whatever the umask; ``deploy/install.sh`` makes the model and recording folders group ``edge-agent`` and
setgid. Before, both came out 0600 and owned by root, and the service exited 2 on its own model.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.config.load import load_config
from agent.learn.record import record
from tests.pump import make_data, source_and_pipeline

GROUP = 65534  # nogroup: any group other than the writer's own shows the folder's group is taken


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A folder like install.sh's /var/lib/edge-agent/models: another group, setgid, 2750."""
    if os.geteuid() != 0:
        pytest.skip("chown to another group needs root")
    folder = tmp_path / "models"
    folder.mkdir()
    os.chown(folder, 0, GROUP)
    os.chmod(folder, 0o2750)
    return folder


def _config(tmp_path: Path, speed: float = 20.0) -> Path:
    make_data(tmp_path / "data.csv", seconds=600)
    path = tmp_path / "edge.toml"
    path.write_text('[agent]\nstate_dir = "state"\n' + source_and_pipeline(speed, "stop", model=False))
    return path


def _mode_and_group(path: Path) -> tuple[int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_gid


def test_train_writes_a_model_and_card_the_service_group_can_read(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    old = os.umask(0o077)  # an administrator's strict umask: what made the model 0600 before
    try:
        args = ["train", "-c", str(config), "--pipeline", "pump", "--data", str(tmp_path / "data.csv")]
        code = main([*args, "--out", str(shared / "pump.onnx")])
    finally:
        os.umask(old)
    assert code == 0, capsys.readouterr().out
    assert _mode_and_group(shared / "pump.onnx") == (0o640, GROUP)
    assert _mode_and_group(shared / "pump.md") == (0o640, GROUP)


async def test_record_writes_a_csv_the_service_group_can_read(tmp_path: Path, shared: Path) -> None:
    cfg = load_config(_config(tmp_path, speed=1000.0))
    old = os.umask(0o077)
    try:
        result = await record(cfg, cfg.pipelines[0], shared / "normal.csv", 60.0, asyncio.Event())
    finally:
        os.umask(old)
    assert result.rows > 0
    assert _mode_and_group(shared / "normal.csv") == (0o640, GROUP)


def test_install_sh_makes_the_model_and_recording_folders_group_readable_and_setgid() -> None:
    script = Path(__file__).resolve().parent.parent / "deploy" / "install.sh"
    proc = subprocess.run(
        ["bash", str(script), "--dry-run", "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    steps = proc.stdout.splitlines()
    assert "+ install -d -m 0700 -o edge-agent -g edge-agent /var/lib/edge-agent" in steps
    for sub in ("models", "recordings"):
        assert f"+ install -d -m 2750 -o root -g edge-agent /var/lib/edge-agent/{sub}" in steps
