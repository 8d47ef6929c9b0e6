"""A recorded pump shared by the end-to-end tests: its data, its model of normal, its source and pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.onnx_models import zscore_model

FEATURE_NAMES = ["bearing_temp.mean", "bearing_temp.std", "vibration.mean", "vibration.std"]


def make_data(path: Path, seconds: int = 600, anomaly: tuple[int, int] = (300, 400)) -> None:
    """One row a second; bearing temperature 12 degrees high during ``anomaly``; one empty cell at t=200."""
    rng = np.random.default_rng(7)
    lines = ["timestamp,bearing_temp,vibration"]
    t0 = 1_700_000_000
    for t in range(seconds):
        temp = 45 + rng.normal(0, 0.5) + (12 if anomaly[0] <= t < anomaly[1] else 0)
        vib = 1.0 + rng.normal(0, 0.05)
        if t == 200:
            lines.append(f"{t0 + t},,{vib:.4f}")  # a gap: a BAD reading, never a zero
        else:
            lines.append(f"{t0 + t},{temp:.4f},{vib:.4f}")
    path.write_text("\n".join(lines) + "\n")


def make_model(path: Path) -> Path:
    """A model of the pump's normal: mean squared z-score, alert threshold 4."""
    return zscore_model(path, FEATURE_NAMES, [45, 0.5, 1.0, 0.05], [1.0, 0.3, 0.05, 0.03], threshold=4.0)


def source_and_pipeline(speed: float, at_end: str = "stop", model: bool = True) -> str:
    """TOML for the replay source of ``data.csv`` and the ``pump`` pipeline (10 s windows every 5 s)."""
    scoring = 'model = "model.onnx"\n' if model else ""
    alert = "[pipelines.alert]\nraise_after = 2\nclear_after = 2\ntop = 2\n" if model else ""
    return f"""
[[sources]]
type = "replay"
name = "rec"
path = "data.csv"
speed = {speed}
at_end = "{at_end}"
[[sources.tags]]
name = "bearing_temp"
[[sources.tags]]
name = "vibration"

[[pipelines]]
name = "pump"
tags = ["bearing_temp", "vibration"]
features = ["mean", "std"]
{scoring}[pipelines.window]
length = "10s"
hop = "5s"
{alert}"""
