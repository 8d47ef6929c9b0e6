"""``edge-agent browse`` against a real server: its TOML pasted into a config validates and reads."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest

from plugins.opcua.cli import _browse, add_commands
from plugins.opcua.config import OpcUaSourceConfig
from plugins.opcua.source import OpcUaSource
from tests.opcua_server import NS_URI, plant_server
from tests.test_opcua_source import make_source


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    return parser.parse_args(list(argv))


async def test_browse_output_pasted_into_a_config_validates_and_reads(
    port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with plant_server(port, n_vars=2, extra_namespace=True) as plant:
        await plant.set_all(1.25)
        url = f"opc.tcp://127.0.0.1:{port}/"
        toml_text = await _browse(parse("browse", url, "--depth", "2", "--state-dir", str(tmp_path)))
        listing = capsys.readouterr().err
        config_text = f'[[sources]]\ntype = "opcua"\nname = "plc"\nendpoint = "{url}"\n\n{toml_text}'
        cfg = OpcUaSourceConfig.model_validate(tomllib.loads(config_text)["sources"][0])
        names = [t.name for t in cfg.tags]
        assert names == ["Line1.V0", "Line1.V1", "Line1.Running", "Line1.Mode"]
        assert cfg.tags[0].node == f"nsu={NS_URI};s=Line1.V0"
        assert "Line1/V0" in listing and "Double" in listing and "Boolean" in listing
        assert "# Line1/Array (Double[]): type not supported, skipped" in toml_text
        source = OpcUaSource(cfg, make_source(port, tmp_path, []).ctx)
        readings = {r.tag: r.value for r in await source.read_once()}
    assert readings == {"Line1.V0": 1.25, "Line1.V1": 1.25, "Line1.Running": True, "Line1.Mode": "auto"}

    # the same text in a whole agent config passes the loader `edge-agent check` uses
    from agent.config.load import load_config

    config_file = tmp_path / "agent.toml"
    config_file.write_text(f'[agent]\nstate_dir = "state"\n\n{config_text}', encoding="utf-8")
    loaded = load_config(config_file, environ={})
    assert [t.name for t in loaded.sources[0].tags] == names
    # and opcua-cert -c finds the state directory from it
    args = parse("opcua-cert", "-c", str(config_file))
    assert args.func(args) == 0
    assert str(tmp_path / "state" / "opcua" / "client_cert.der") in capsys.readouterr().out


async def test_browse_from_a_root_node_and_depth(port: int, tmp_path: Path) -> None:
    async with plant_server(port, n_vars=1):
        url = f"opc.tcp://127.0.0.1:{port}/"
        shallow = await _browse(parse("browse", url, "--depth", "1", "--state-dir", str(tmp_path)))
        rooted = await _browse(
            parse(
                "browse", url, "--root", f"nsu={NS_URI};s=Line1", "--depth", "1", "--state-dir", str(tmp_path)
            )
        )
    assert "[[sources.tags]]" not in shallow  # depth 1 reaches the Line1 folder, not its variables
    assert 'name = "V0"' in rooted


def test_browse_unreachable_server_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port

    args = parse(
        "browse", f"opc.tcp://127.0.0.1:{free_port()}", "--state-dir", str(tmp_path), "--timeout", "1"
    )
    assert args.func(args) == 1
    assert "connecting to" in capsys.readouterr().err
