"""``edge-agent record`` and ``edge-agent train``: the offline commands that turn a machine into a model."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.config.base import parse_duration
from agent.config.sections import PipelineConfig
from agent.errors import ModelError
from agent.learn.extras import install_hint
from agent.learn.progress import ProgressBar
from agent.learn.record import cmd_record
from agent.learn.source import ReplaySettings, assemble_recording, count_rows
from agent.learn.trainer import TrainingSet, train_pipeline
from agent.ops import logs


def cmd_train(args: argparse.Namespace) -> int:
    from agent.config.load import load_config
    from agent.learn.record import find_pipeline

    cfg = load_config(args.config)
    logs.configure(cfg.agent.log_level, cfg.agent.log_format)
    pipe = find_pipeline(cfg, args.pipeline, args.config)
    out = Path(args.out)
    card = Path(args.card) if args.card else out.with_suffix(".md")
    if args.data:
        return _train(cfg, pipe, Path(args.data), out, card, args.last)
    # No --data: the running agent's own recording ([recording], agent.runtime.recording).
    where = cfg.agent.state_dir / "recording" / pipe.name
    if not where.is_dir():
        return _no_recording(pipe, where)
    fd, tmp = tempfile.mkstemp(prefix=".train-", suffix=".csv", dir=cfg.agent.state_dir)
    os.close(fd)
    try:
        data = assemble_recording(cfg.agent.state_dir, pipe, Path(tmp), args.last)
        return _no_recording(pipe, where) if data is None else _train(cfg, pipe, data, out, card, args.last)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _no_recording(pipe: PipelineConfig, where: Path) -> int:
    print(
        f"train: no recording of pipeline {pipe.name!r} with its current tags in {where}: the running "
        "agent records itself while [recording] enabled = true (the default); or pass --data with a CSV "
        "from `edge-agent record`",
        file=sys.stderr,
    )
    return 1


def _train(cfg: Any, pipe: PipelineConfig, data: Path, out: Path, card: Path, last: float | None) -> int:
    total = count_rows(data) if data.exists() else 0
    bar = ProgressBar("replaying", total)
    try:
        result, found = train_pipeline(
            pipe,
            data,
            out,
            card,
            lambda rows: bar.update(rows, f"{rows}/{total} rows"),
            replay_settings(cfg, data),
            last,
        )
    except ModelError as exc:
        bar.close()
        print(f"train: {exc}", file=sys.stderr)
        return 1
    bar.close()
    print(summary(pipe, result, found))
    return 0


def replay_settings(cfg: Any, data: Path) -> ReplaySettings | None:
    """How the config's replay source of ``data`` reads it (timestamp column, columns, delimiter), if any."""
    for source in cfg.sources:
        if getattr(source, "type", None) == "replay" and Path(source.path).resolve() == data.resolve():
            return ReplaySettings(
                timestamp_column=source.timestamp_column,
                columns={t.name: t.column for t in source.tags if t.column},
                delimiter=getattr(source, "delimiter", ","),
            )
    return None


def summary(pipe: PipelineConfig, result: Any, found: TrainingSet) -> str:
    """What ``train`` prints: windows used, the model, its threshold and the files written."""
    model = result.model
    skipped = ", ".join(f"{n} {why}" for why, n in found.skipped.items() if n)
    lines = [
        f"trained pipeline {pipe.name!r}: {model.n_train} windows used"
        + (f" (of {found.total}; left out: {skipped})" if skipped else ""),
        f"  {len(model.names)} features, {model.n_components} components explaining {model.explained:.0%}",
        f"  threshold {model.threshold:g} (clears below {model.clear_threshold:g}); "
        f"{result.alert_fraction:.1%} of training windows reach it",
        f"  expected false alarms: {model.expected_false_alarm:.2g} of normal windows",
        f"  model:   {result.model_path}",
    ]
    if found.picked_hop is not None:
        lines.insert(
            1,
            f"  the recording is short for hop = {pipe.window.hop_s:g}s: trained with hop = "
            f'{found.picked_hop:g}s instead; set hop = "{found.picked_hop:g}s" in [pipelines.window] '
            "to score at that rate",
        )
    if result.card_path is not None:
        lines.append(f"  card:    {result.card_path}")
        lines.append(
            f"  picture: {result.png_path}"
            if result.png_path
            else f"  picture: not drawn (for matplotlib: {install_hint('plot')})"
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
    train.add_argument(
        "--data",
        help="CSV written by `edge-agent record`; default: the running agent's own recording of the "
        "pipeline in its state directory ([recording])",
    )
    train.add_argument("--out", required=True, help="ONNX model to write")
    train.add_argument("--card", help="model card to write (default: the model path with .md)")
    train.add_argument(
        "--last",
        type=parse_duration,
        help="train on the last DURATION of the recording only (e.g. 6h): re-baseline once an operator "
        "says the machine's new state is normal; without --data, from the agent's own recording",
    )
    train.set_defaults(func=cmd_train)
