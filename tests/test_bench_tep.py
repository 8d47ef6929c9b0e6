"""The TEP benchmark's bookkeeping, and one fault through it when the data is on this machine."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_tep

DATA = next(
    (
        p
        for p in (Path("/work/shared/data/tep"), Path(__file__).resolve().parents[2] / "shared/data/tep")
        if p.exists()
    ),
    None,
)


def test_open_alert_rows_and_the_summary_per_fault() -> None:
    def at(row: int) -> float:
        return (bench_tep.T0 + bench_tep.PERIOD * row) * 1000

    alerts = [
        {"ts_ms": at(100), "state": "raised"},
        {"ts_ms": at(120), "state": "cleared"},
        {"ts_ms": at(170), "state": "raised"},
    ]
    mask = bench_tep.open_rows(alerts)
    assert mask[100:120].all() and not mask[120:170].any() and mask[170:].all()
    row = bench_tep.summarise(1, mask)
    assert row.false_alarm == pytest.approx(20 / 160)
    assert row.detection == pytest.approx(791 / 800)
    assert row.delay_min == pytest.approx(10 * 3.0)


@pytest.mark.skipif(DATA is None, reason="TEP data not on this machine")
def test_fault_1_is_detected_and_normal_operation_is_quiet() -> None:
    assert DATA is not None
    normal, step = bench_tep.agent_rows(DATA, [0, 1])
    assert normal.false_alarm < 0.05
    assert step.detection > 0.9 and step.false_alarm < 0.05
    assert np.isfinite(step.delay_min or np.nan)
