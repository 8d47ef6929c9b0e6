"""The README's commands, run the way a new user runs them: a fresh clone, a fresh venv, nothing prepared.

The commands are read out of README.md (the fenced block after each ``<!-- readme-command: NAME -->``
marker), so the test and the README cannot drift; ``.ci/run`` must run the test command verbatim.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- readme-command: (\w+) -->\n```sh\n(.*?)\n```", re.S)


def readme_commands() -> dict[str, str]:
    return dict(MARKER.findall((ROOT / "README.md").read_text()))


def test_readme_names_the_three_commands_and_ci_runs_the_test_one_verbatim() -> None:
    commands = readme_commands()
    assert set(commands) == {"clone", "demo", "test"}
    assert all("\n" not in c for c in commands.values()), "each README command is one line"
    assert re.fullmatch(r"git clone \S+ edge-agent && cd edge-agent", commands["clone"])
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands["test"] in ci_lines, ".ci/run must run exactly the README's test command"


def _snapshot(dest: Path) -> Path:
    """A repository holding the working tree as it is (committed or not): what a clone would give."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
            (dest / name).chmod(src.stat().st_mode)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=dest, check=True)
    return dest


def _network_setup(name: str) -> bool:
    """Proxy and CA settings are the machine's way onto the package registries, not a prepared install:
    a user's shell has them too (without them npm here fails every fetch with SELF_SIGNED_CERT_IN_CHAIN)."""
    upper = name.upper()
    return "PROXY" in upper or upper.endswith(
        ("_CA_CERTS", "_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "PIP_CERT")
    )


def _fresh_env(home: Path) -> dict[str, str]:
    """A login-like environment: no venv active, no PYTHONPATH, the system python3 first on PATH."""
    keep = ("HOME", "LANG", "LC_ALL", "TERM", "CI", "TMPDIR", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k in keep or _network_setup(k)}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.setdefault("HOME", str(home))
    return env


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_commands_work_in_a_fresh_clone_with_a_fresh_venv(tmp_path: Path) -> None:
    commands = readme_commands()
    source = _snapshot(tmp_path / "source")
    clone = re.sub(r"git clone \S+", f"git clone {source}", commands["clone"])
    work = tmp_path / "work"
    work.mkdir()
    env = _fresh_env(tmp_path)
    # A free port where no broker answers, so the demo starts its own mosquitto instead of using the
    # machine's shared one on 1883.
    demo = f"{commands['demo']} --broker 127.0.0.1:{free_port()}"
    run = subprocess.run(
        ["bash", "-c", f"{clone} && {demo}"], cwd=work, env=env, capture_output=True, text=True, timeout=1500
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert (work / "edge-agent" / ".venv" / "bin" / "python").exists()
    assert re.search(r"ALERT RAISED .*(mean|spread) -?[\d.]+ .*(its normal |\(normal )", out), out[
        -4000:
    ]  # plant words
    assert re.search(r"# demo finished at .*[1-9]\d* alerts raised", out), out[-4000:]
    # the scenario restarts the PLC: the user sees the connection lost and then recovered
    assert "connection lost" in out and "recovered" in out, out[-4000:]

    # The test command runs in the same clone, as a user would after the demo; inside, pytest only
    # collects (PYTEST_ADDOPTS), or this test would run itself again.
    run = subprocess.run(
        ["bash", "-c", commands["test"]],
        cwd=work / "edge-agent", env={**env, "PYTEST_ADDOPTS": "--co"},
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert re.search(r"\d+ tests collected", out), out[-2000:]
    assert "test_readme_commands_work_in_a_fresh_clone_with_a_fresh_venv" in out
