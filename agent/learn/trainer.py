"""Training as a whole: replay a recording through the pipeline, fit, export the ONNX model and its card.

``train_pipeline`` replays a CSV (written by ``agent.learn.record``) through the pipeline's own windower
and features, the code the runtime runs, so the model's feature vector is the runtime's; it keeps the
windows with enough coverage and fits them with ``agent.learn.fit``, then ``fit_and_export`` writes the
model (``agent.learn.export``) and its card (``agent.learn.modelcard``). Every file is written atomically.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.config.sections import PipelineConfig
from agent.errors import ModelError
from agent.learn import export as onnx_export
from agent.learn import modelcard, shape
from agent.learn.fit import MIN_ROWS, Array, FitOptions, RobustPCA, fit
from agent.learn.source import ReplaySettings, check_columns, file_hash, hash_training_data, last_timestamp

# --- train -----------------------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """Feature rows of the windows a recording yields, through the pipeline's own windower.

    Attributes:
        x: ``windows x features`` of the windows kept for fitting.
        names: feature names, the runtime's order.
        ends: end time of each kept window.
        total: windows closed, kept or not.
        skipped: why windows were left out, counted.
        first, last: first and last reading timestamps.
        picked_hop: the hop ``train`` chose for a short recording (None: the configured one).
    """

    x: np.ndarray
    names: list[str]
    ends: list[float]
    total: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None
    picked_hop: float | None = None


GAP = "gap longer than max_age"
LOW = "low coverage"


async def training_windows(
    pipe: PipelineConfig,
    data: Path,
    progress: Callable[[int], None] | None = None,
    settings: ReplaySettings | None = None,
    since: float | None = None,
) -> TrainingSet:
    """Replay ``data`` (a CSV with a timestamp and one column per pipeline tag) through ``pipe``.

    The CSV is read by the replay source and windowed and featurised by ``agent.stream.pipeline.Pipeline``, the
    objects ``edge-agent run`` uses, so the rows are the feature vectors the runtime will score. Windows
    with too little coverage, or with a gap longer than ``max_age`` (``agent.learn.shape``), are counted
    in ``skipped`` and left out. Readings before ``since`` (epoch seconds) are ignored.

    Columns are not checked here (see ``check_columns``): a missing one gives windows without that tag.
    """
    from agent.stream.pipeline import Pipeline

    opts = settings or ReplaySettings()
    pipeline = Pipeline(pipe, None)
    rows: list[np.ndarray] = []
    out = TrainingSet(np.empty((0, len(pipeline.names))), pipeline.names, [])
    replay = _replay(pipe, data, opts)
    readings_seen = 0
    max_age = pipe.window.max_age_s
    last_read: dict[str, float] = {}
    gaps: list[tuple[float, float]] = []  # (from, to): a tag unread for longer than max_age

    async def emit(readings: Any) -> None:
        nonlocal readings_seen
        kept = [r for r in readings if since is None or r.ts >= since]
        for r in kept:
            before = last_read.get(r.tag)
            if before is not None and r.ts - before > max_age:
                gaps.append((before, r.ts))
            last_read[r.tag] = r.ts
        pipeline.ingest(kept)  # the runtime's path, with each reading's own time as its arrival
        if kept:
            first, last = min(r.ts for r in kept), max(r.ts for r in kept)
            out.first = first if out.first is None else min(out.first, first)
            out.last = last if out.last is None else max(out.last, last)
        readings_seen += len(readings)
        windows = pipeline.windower.take()
        if windows:
            _keep(out, rows, windows, pipeline.featurize(windows), gaps)
        if progress is not None:
            progress(readings_seen // len(pipe.tags))

    await replay.run(emit)
    if rows:
        out.x = np.vstack(rows)
    return out


def _keep(out: TrainingSet, rows: list[np.ndarray], windows: list[Any], batch: Any, gaps: list[Any]) -> None:
    """Keep the windows fit to learn from; count the others by reason."""
    out.total += len(windows)
    for window, row, reason in zip(windows, batch.x, batch.reasons, strict=True):
        if reason is not None:
            out.skipped[LOW] += 1
        elif shape.has_gap(window, gaps):
            out.skipped[GAP] += 1
        else:
            rows.append(row)
            out.ends.append(window.end)


def _replay(pipe: PipelineConfig, data: Path, opts: ReplaySettings) -> Any:
    """The replay plugin, found through the registry like any source: agent/ never imports plugins/."""
    from agent.registry import build, registry

    spec = registry("source")["replay"]
    replay_cfg = spec.config.model_validate(
        {
            "type": "replay",
            "name": "train",
            "path": str(data),
            "timestamp_column": opts.timestamp_column,
            "delimiter": opts.delimiter,
            "tags": [{"name": t, "column": opts.column(t)} for t in pipe.tags],
        }
    )
    replay, _ = build("source", replay_cfg, "train", Path("."))
    return replay


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
    settings: ReplaySettings | None = None,
    last: float | None = None,
) -> tuple[Any, TrainingSet]:
    """Replay ``data`` through ``pipe``, fit the model of normal and export it (ONNX, card, PNG).

    ``last`` (seconds) trains on the last that long of the recording only (re-baselining after an
    operator says the new state is normal). A recording too short for the configured hop is cut with a
    shorter one (``agent.learn.shape.pick_hop``), recorded in ``TrainingSet.picked_hop``.

    Returns:
        ``(agent.learn.fit.FitResult, TrainingSet)``.

    Raises:
        ModelError: unreadable data, too few windows with enough coverage, or no ``onnx`` package.
    """
    onnx_export.require_onnx()  # fail before a long replay, not after
    check_columns(pipe, data, settings)
    since = None
    if last is not None:
        latest = last_timestamp(data, settings)
        since = latest - last if latest is not None else None
    found = asyncio.run(training_windows(pipe, data, progress, settings, since))
    if found.x.shape[0] < MIN_ROWS and found.first is not None and found.last is not None:
        hop = shape.pick_hop(pipe, found.last - found.first)
        if hop is not None:
            pipe = pipe.model_copy(update={"window": pipe.window.model_copy(update={"hop": hop})})
            found = asyncio.run(training_windows(pipe, data, None, settings, since))
            found.picked_hop = hop
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
        data_hash=file_hash(data),
        card_path=card,
        png_path=card.with_suffix(".png") if card is not None else None,
        excluded=dict(found.skipped),
    )
    return result, found


@dataclass(frozen=True)
class FitResult:
    """What ``fit_and_export`` produced.

    Attributes:
        model: the fitted model.
        train_scores: its score on each training window (in-sample).
        model_path, card_path, png_path: files written (``png_path`` is None without matplotlib).
        data_hash: sha256 recorded in the metadata.
    """

    model: RobustPCA
    train_scores: Array
    model_path: Path
    card_path: Path | None
    png_path: Path | None
    data_hash: str

    @property
    def alert_fraction(self) -> float:
        """Share of training windows at or above the threshold (expected well under 1%)."""
        return float(np.mean(self.train_scores >= self.model.threshold))


def fit_and_export(
    x: NDArray[np.floating],
    names: list[str] | tuple[str, ...],
    out_path: str | os.PathLike[str],
    *,
    window: Mapping[str, Any] | None = None,
    span: tuple[float, float] | None = None,
    data_hash: str | None = None,
    card_path: str | os.PathLike[str] | None = None,
    png_path: str | os.PathLike[str] | None = None,
    options: FitOptions | None = None,
    excluded: Mapping[str, int] | None = None,
) -> FitResult:
    """Fit a model of normal, export it to ONNX and write its card; every file is written atomically.

    Args:
        x: ``n_windows x F`` training feature vectors (NaN allowed).
        names: feature names in column order.
        out_path: the ``.onnx`` file to write.
        window: the pipeline's window config, stored in the metadata.
        span: first and last training timestamps (epoch seconds).
        data_hash: sha256 of the training data; computed from ``x`` when not given.
        card_path: markdown model card to write, if any.
        png_path: picture to write when matplotlib is installed (skipped silently otherwise; the card
            says how to get it).
        options: fit knobs.
        excluded: windows left out of fitting, by reason, for the card.

    Raises:
        ModelError: the data cannot be trained on, or ``onnx`` is not installed.
    """
    onnx_export.require_onnx()
    digest = data_hash or hash_training_data(x)
    model = fit(x, names, options)
    scores, _ = model.score(x)
    model_path = onnx_export.export(model, out_path, window=window, span=span, data_hash=digest)
    written_png: Path | None = None
    if png_path is not None:
        png = modelcard.render_png(model, scores, x)
        if png is not None:
            written_png = onnx_export.write_atomic(png_path, png)
    written_card: Path | None = None
    if card_path is not None:
        png_ref = None
        if written_png is not None:
            png_ref = os.path.relpath(written_png, Path(card_path).resolve().parent)
        text = modelcard.render_card(
            model,
            scores,
            window=window,
            span=span,
            data_hash=digest,
            model_file=Path(model_path).name,
            png_file=png_ref,
            excluded=excluded,
        )
        written_card = modelcard.write_text(card_path, text)
    return FitResult(model, scores, model_path, written_card, written_png, digest)
