"""``deploy/install.sh --root``: a real service install into a temporary root, then record and train as
the service user, as a factory's maintenance engineer would on the gateway.

Needs root (useradd, chown); elsewhere it is skipped with the reason. The service user is created by
install.sh under a unique name and removed again by ``--uninstall --purge``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pump import make_data, source_and_pipeline

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "deploy" / "install.sh"


def system_python() -> str:
    """A python3 >= 3.11 the service user may execute (a pyenv under /root is not one)."""
    found = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    ok = (
        found
        and subprocess.run(
            [found, "-c", "import ensurepip, sys; sys.exit(sys.version_info < (3, 11))"], timeout=60
        ).returncode
        == 0
    )
    if not ok or found is None:
        pytest.skip("no system python3 >= 3.11 with venv support (apt-get install python3-venv)")
    return found


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip(
            "install.sh --root creates the service user and chowns its folders: run as root (CI does)"
        )
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("no useradd/userdel here: install.sh cannot create the service user")


@pytest.fixture
def image() -> Iterator[tuple[Path, str]]:
    """A world-traversable temporary root (the service user must reach into it) and a fresh user name."""
    needs_root()
    root = Path(tempfile.mkdtemp(prefix="edge-agent-root-", dir="/tmp"))
    root.chmod(0o755)
    user = f"ea-test-{secrets.token_hex(4)}"
    try:
        yield root, user
    finally:
        subprocess.run(
            ["bash", str(INSTALL), "--root", str(root), "--user", user, "--uninstall", "--purge"],
            capture_output=True, timeout=120,
        )  # fmt: skip
        if user in {p.pw_name for p in pwd.getpwall()}:
            subprocess.run(["userdel", user], timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def as_user(user: str, home: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(user)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    return subprocess.run(
        list(cmd), user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], env=env, cwd=home,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_service_install_records_and_trains_as_the_service_user(
    image: tuple[Path, str], tmp_path: Path
) -> None:
    root, user = image
    etc, state, venv = root / "etc/edge-agent", root / "var/lib/edge-agent", root / "opt/edge-agent/venv"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[agent]\nid = "gw"\nstate_dir = "{state}"\n[health]\nenabled = false\n'
        + source_and_pipeline(speed=0, model=False).replace('path = "data.csv"', f'path = "{etc}/data.csv"')
    )
    proc = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--user", user, "--config", str(config), "--python", system_python()],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "systemd is not running here" in proc.stdout or "unit installed" in proc.stdout
    assert (root / "etc/systemd/system/edge-agent.service").exists()
    make_data(etc / "data.csv")  # the administrator puts a recording source in place
    (etc / "data.csv").chmod(0o644)
    agent = str(venv / "bin" / "edge-agent")
    cfg = str(etc / "config.toml")

    # The service user learns normal on the device: record, then train (onnx came with the install).
    rec = as_user(
        user, state, agent, "record", "-c", cfg, "--duration", "5m", "--out", str(state / "normal.csv")
    )
    assert rec.returncode == 0, rec.stdout + rec.stderr
    trained = as_user(
        user,
        state,
        agent,
        "train",
        "-c",
        cfg,
        "--data",
        str(state / "normal.csv"),
        "--out",
        str(state / "pump.onnx"),
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (
        "exporting a model needs" not in trained.stderr
        and (state / "pump.onnx").stat().st_uid == pwd.getpwnam(user).pw_uid
    )
    assert f"{venv}/bin/python -m pip install" in trained.stdout or "picture:" in trained.stdout

    # An administrator (root) trains into the models folder; the service user can load that model.
    admin = subprocess.run(
        [agent, "train", "-c", cfg, "--data", str(state / "normal.csv"), "--out", str(etc / "models" / "pump.onnx")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert admin.returncode == 0, admin.stdout + admin.stderr
    model = etc / "models" / "pump.onnx"
    assert model.stat().st_gid == pwd.getpwnam(user).pw_gid, (
        "the models folder gives its files the service group"
    )
    assert model.stat().st_mode & 0o040, (
        f"{model} is mode {model.stat().st_mode & 0o777:o}: the service group must be able to read it (0640)"
    )
    with_model = etc / "with-model.toml"
    with_model.write_text(
        (etc / "config.toml")
        .read_text()
        .replace('features = ["mean", "std"]', 'features = ["mean", "std"]\nmodel = "models/pump.onnx"')
    )
    with_model.chmod(0o640)
    os.chown(with_model, 0, pwd.getpwnam(user).pw_gid)
    check = as_user(user, state, agent, "check", "-c", str(with_model))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "model " in check.stdout and "no model" not in check.stdout


def test_install_hint_names_the_pip_of_this_install_and_where_it_came_from() -> None:
    from agent.learn.extras import install_hint

    hint = install_hint("plot")
    assert hint.split()[:4] in (
        [sys.executable, "-m", "pip", "install"],
        ["sudo", sys.executable, "-m", "pip"],
    )
    # the tests run from a checkout installed editable (.ci/setup): the hint says that checkout
    assert f"{ROOT}[plot]" in hint and "-e" in hint.split()
