"""``edge-agent record`` refuses a recording that cannot teach anything: a tag with no good value."""

from __future__ import annotations

import os
from pathlib import Path

from pymodbus.simulator import DataType, SimData

from tests.conftest import free_port
from tests.test_cli_checks import TWO_TAGS, config, edge_agent, registers
from tests.test_modbus_source import plc, sim_device


async def test_record_against_a_dead_plc_is_refused_with_the_tag_and_why(tmp_path: Path) -> None:
    (tmp_path / "edge.toml").write_text(config(free_port(), TWO_TAGS))
    code, out, err = await edge_agent(
        tmp_path, "record", "-c", "edge.toml", "--duration", "3s", "--out", "n.csv"
    )
    assert code == 1, out + err
    assert "record: refused: no good value for temp (cannot connect to 127.0.0.1:" in err, err
    assert "recorded" not in out
    assert not [name for name in os.listdir(tmp_path) if "n.csv" in name]


async def test_record_with_one_refused_tag_names_that_tag(tmp_path: Path) -> None:
    port = free_port()
    tags = TWO_TAGS + '[[sources.tags]]\nname = "gone"\naddress = 50\n'
    (tmp_path / "edge.toml").write_text(
        config(port, tags).replace('tags = ["temp"]', 'tags = ["temp", "gone"]')
    )
    # registers 0..7 exist, 50 does not: the device answers "illegal data address" for it alone
    device = sim_device(
        holding=[SimData(0, values=[0x4226, 0, 1234, 0, 0, 0, 0, 0], datatype=DataType.REGISTERS)]
    )
    async with plc(port, device):
        code, out, err = await edge_agent(
            tmp_path, "record", "-c", "edge.toml", "--duration", "2s", "--out", "n.csv"
        )
    assert code == 1, out + err
    assert "refused: no good value for gone (illegal data address)" in err, err
    assert "temp" not in err.split("no good value for", 1)[1]


async def test_record_against_a_live_plc_writes_the_file(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "edge.toml").write_text(config(port, TWO_TAGS))
    async with plc(port, registers([0x4226, 0, 1234, 0, 0, 0, 0, 0])):
        code, out, err = await edge_agent(
            tmp_path, "record", "-c", "edge.toml", "--duration", "2s", "--out", "n.csv"
        )
    assert code == 0, out + err
    assert "recorded" in out and "41.5" in (tmp_path / "n.csv").read_text()
