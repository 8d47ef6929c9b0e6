"""``edge-agent record``, ``train`` and ``demo``: from a running machine to a model of its normal.

``record`` writes a pipeline's input as a wide CSV (``agent.record``). ``train`` replays such a CSV through
the pipeline's own windower and features, the code the runtime runs, so the model's feature vector is the
runtime's; it keeps the windows with enough coverage and fits them with ``agent.train``. ``demo`` chains
the simulator, ``record``, ``train`` and the runtime (``agent.demo``).

Progress goes to standard error: a bar redrawn in place on a terminal, a log line every 30 seconds
otherwise. Interrupting either command never leaves a half-written file at its output path.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent import logs
from agent.configbase import parse_duration
from agent.errors import ModelError
from agent.pipeconfig import PipelineConfig
from agent.record import ProgressBar, cmd_record

# --- train -----------------------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """Feature rows of the windows a recording yields, through the pipeline's own windower.

    Attributes:
        x: ``windows x features`` of the windows with enough coverage.
        names: feature names, the runtime's order.
        ends: end time of each kept window.
        total: windows closed, kept or not.
        skipped: why windows were left out, counted.
        first, last: first and last reading timestamps.
    """

    x: np.ndarray
    names: list[str]
    ends: list[float]
    total: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None


def _count_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)


async def training_windows(
    pipe: PipelineConfig, data: Path, progress: Callable[[int], None] | None = None
) -> TrainingSet:
    """Replay ``data`` (a CSV with ``timestamp`` and one column per pipeline tag) through ``pipe``.

    The CSV is read by the replay source and windowed and featurised by ``agent.pipeline.Pipeline``, the
    objects ``edge-agent run`` uses, so the rows are the feature vectors the runtime will score.

    Columns are not checked here (see ``check_columns``): a missing one gives windows without that tag.
    """
    from agent.pipeline import Pipeline
    from agent.plugin import ComponentStatus, PluginContext
    from agent.records import numeric
    from plugins.replay.config import ReplayConfig, ReplayTag
    from plugins.replay.source import ReplaySource

    pipeline = Pipeline(pipe, None)
    index = {tag: i for i, tag in enumerate(pipe.tags)}
    rows: list[np.ndarray] = []
    out = TrainingSet(np.empty((0, len(pipeline.names))), pipeline.names, [])
    ctx = PluginContext(
        "train", "train", Path("."), ComponentStatus("train", "source"), log=logs.get("train")
    )
    replay = ReplaySource(
        ReplayConfig(type="replay", name="train", path=data, tags=[ReplayTag(name=t) for t in pipe.tags]),
        ctx,
    )
    readings_seen = 0

    async def emit(readings: Any) -> None:
        nonlocal readings_seen
        windower = pipeline.windower
        for r in readings:
            value = numeric(r)
            windower.add(index[r.tag], r.ts, np.nan if value is None else value, r.ts)
            out.first = r.ts if out.first is None else min(out.first, r.ts)
            out.last = r.ts if out.last is None else max(out.last, r.ts)
        readings_seen += len(readings)
        windows = windower.take()
        if windows:
            batch = pipeline.featurize(windows)
            out.total += len(windows)
            for window, row, reason in zip(windows, batch.x, batch.reasons, strict=True):
                if reason is None:
                    rows.append(row)
                    out.ends.append(window.end)
                else:
                    out.skipped["low coverage"] += 1
        if progress is not None:
            progress(readings_seen // len(pipe.tags))

    await replay.run(emit)
    if rows:
        out.x = np.vstack(rows)
    return out


def check_columns(pipe: PipelineConfig, data: Path) -> None:
    """Raise ModelError unless ``data`` is a readable CSV with ``timestamp`` and a column per pipeline tag."""
    import csv

    try:
        with open(data, encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    except OSError as exc:
        raise ModelError(f"cannot read training data {str(data)!r}: {exc.strerror}") from exc
    missing = [t for t in ["timestamp", *pipe.tags] if t not in header]
    if missing:
        raise ModelError(
            f"{data}: no column for {', '.join(missing)} (columns: {', '.join(header)}); "
            f"record it with `edge-agent record --pipeline {pipe.name}`"
        )


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def window_meta(pipe: PipelineConfig) -> dict[str, Any]:
    """The window settings stored in the model's metadata and card."""
    w = pipe.window
    if w.kind == "time":
        shape: dict[str, Any] = {"length_s": w.length, "hop_s": w.hop_s, "period_s": w.period}
    else:
        shape = {"size": w.size, "step": w.step or w.size}
    return {"kind": w.kind, **shape, "min_coverage": w.min_coverage, "features": list(pipe.features)}


def train_pipeline(
    pipe: PipelineConfig,
    data: Path,
    out: Path,
    card: Path | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Any, TrainingSet]:
    """Replay ``data`` through ``pipe``, fit the model of normal and export it (ONNX, card, PNG).

    Returns:
        ``(agent.train.FitResult, TrainingSet)``.

    Raises:
        ModelError: unreadable data, too few windows with enough coverage, or no ``onnx`` package.
    """
    from agent.onnx_export import require_onnx
    from agent.train import MIN_ROWS, fit_and_export

    require_onnx()  # fail before a long replay, not after
    check_columns(pipe, data)
    found = asyncio.run(training_windows(pipe, data, progress))
    if found.x.shape[0] < MIN_ROWS:
        why = ", ".join(f"{n} {k}" for k, n in found.skipped.items()) or "none skipped"
        raise ModelError(
            f"{data}: {found.x.shape[0]} usable windows of {found.total} ({why}); need at least {MIN_ROWS}: "
            "record for longer, or check the tags that lack coverage"
        )
    span = (found.ends[0], found.ends[-1])
    result = fit_and_export(
        found.x,
        found.names,
        out,
        window=window_meta(pipe),
        span=span,
        data_hash=_file_hash(data),
        card_path=card,
        png_path=card.with_suffix(".png") if card is not None else None,
    )
    return result, found


def cmd_train(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.record import find_pipeline

    cfg = load_config(args.config)
    logs.configure(cfg.agent.log_level, cfg.agent.log_format)
    pipe = find_pipeline(cfg, args.pipeline, args.config)
    data, out = Path(args.data), Path(args.out)
    card = Path(args.card) if args.card else out.with_suffix(".md")
    total = _count_rows(data) if data.exists() else 0
    bar = ProgressBar("replaying", total)
    try:
        result, found = train_pipeline(
            pipe, data, out, card, lambda rows: bar.update(rows, f"{rows}/{total} rows")
        )
    except ModelError as exc:
        bar.close()
        print(f"train: {exc}", file=sys.stderr)
        return 1
    bar.close()
    print(summary(pipe, result, found))
    return 0


def summary(pipe: PipelineConfig, result: Any, found: TrainingSet) -> str:
    """What ``train`` prints: windows used, the model, its threshold and the files written."""
    model = result.model
    skipped = sum(found.skipped.values())
    lines = [
        f"trained pipeline {pipe.name!r}: {model.n_train} windows used"
        + (f" ({skipped} of {found.total} left out for low coverage)" if skipped else ""),
        f"  {len(model.names)} features, {model.n_components} components explaining {model.explained:.0%}",
        f"  threshold {model.threshold:g} (clears below {model.clear_threshold:g}); "
        f"{result.alert_fraction:.1%} of training windows reach it",
        f"  model:   {result.model_path}",
    ]
    if result.card_path is not None:
        lines.append(f"  card:    {result.card_path}")
        lines.append(
            f"  picture: {result.png_path}"
            if result.png_path
            else "  picture: not drawn (pip install 'edge-agent[plot]' for matplotlib)"
        )
    lines.append(f"point the pipeline's `model` at {result.model_path.name} and run `edge-agent check`")
    return "\n".join(lines)


# --- commands --------------------------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Add ``record``, ``train`` and ``demo`` to the ``edge-agent`` sub-command parser."""
    rec = sub.add_parser(
        "record",
        help="record a pipeline's input (raw readings) to a CSV for training",
        description="Run the config's sources and write the pipeline's tags as a wide CSV (timestamp + one "
        "column per tag; an empty cell is a BAD reading). Stops when the data spans --duration, when every "
        "source ends, or on Ctrl-C/SIGTERM, keeping what was recorded; the file appears complete or not at all.",
    )
    rec.add_argument("-c", "--config", required=True, help="the TOML config file")
    rec.add_argument("--pipeline", help="pipeline whose tags to record (optional with one pipeline)")
    rec.add_argument("--duration", type=parse_duration, required=True, help="span of data to record, e.g. 2h")
    rec.add_argument("--out", required=True, help="CSV file to write")
    rec.set_defaults(func=cmd_record)

    train = sub.add_parser(
        "train",
        help="learn a pipeline's normal from a recorded CSV; write an ONNX model and its card",
        description="Replay a recorded CSV through the pipeline's windows and features, fit a robust PCA "
        "model of normal on the windows with enough coverage, and write the ONNX model, a markdown model "
        "card and (with matplotlib) a PNG, each atomically.",
    )
    train.add_argument("-c", "--config", required=True, help="the TOML config file")
    train.add_argument("--pipeline", help="pipeline to train (optional with one pipeline)")
    train.add_argument("--data", required=True, help="CSV written by `edge-agent record`")
    train.add_argument("--out", required=True, help="ONNX model to write")
    train.add_argument("--card", help="model card to write (default: the model path with .md)")
    train.set_defaults(func=cmd_train)

    from agent.demo import add_demo_command

    add_demo_command(sub)
