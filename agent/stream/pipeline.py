"""One pipeline: readings -> windows -> features -> (score) -> alert state -> messages.

Synchronous and clock-free: the runner passes wall time in, and does the scoring itself (in an executor)
between ``featurize`` and ``conclude``, so this class never blocks and is tested without a loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from agent.config.sections import PipelineConfig
from agent.records import Kind, Message, Reading
from agent.stream import features as feats
from agent.stream.adapt import Drift
from agent.stream.alerts import AlertState, Normal, Transition, alert_state, explain, headline
from agent.stream.explain import Language
from agent.stream.inference import Model, ModelSlot
from agent.stream.router import Router
from agent.stream.windows import CountWindower, TimeWindower, Window

__all__ = ["Batch", "Pipeline", "PipelineStats", "Router", "thresholds"]  # Router: its old home


@dataclass
class PipelineStats:
    windows: int = 0
    scored: int = 0
    skipped: int = 0
    alerts_raised: int = 0
    alerts_cleared: int = 0
    last_score: float | None = None


@dataclass
class Batch:
    """Windows closed together, with their feature rows and which of them may be scored."""

    windows: list[Window]
    x: np.ndarray  # (N, F)
    coverage: np.ndarray  # (N,) min coverage over tags
    reasons: list[str | None] = field(default_factory=list)  # None = scorable
    raw: np.ndarray | None = None  # (N, F) as computed, when ``x`` is shifted by adapt

    def row(self, i: int) -> np.ndarray:
        """Window i's features as computed (what is published), whatever the model is fed."""
        return (self.raw if self.raw is not None else self.x)[i]

    @property
    def scorable(self) -> np.ndarray:
        return np.array([r is None for r in self.reasons], dtype=bool)


class Pipeline:
    """The stream stages of one ``[[pipelines]]`` entry."""

    def __init__(
        self,
        cfg: PipelineConfig,
        slot: ModelSlot | None,
        units: dict[str, str] | None = None,
        language: Language = "en",
    ) -> None:
        self.cfg = cfg
        self.units = units or {}
        self.language: Language = language
        self.name = cfg.name
        self.tags = list(cfg.tags)
        self.names = feats.feature_names(cfg.tags, cfg.features)
        self.slot = slot
        w = cfg.window
        self.windower: TimeWindower | CountWindower
        if w.kind == "time":
            self.windower = TimeWindower(len(self.tags), w.length, w.hop_s, w.period, w.max_age_s)
        else:
            self.windower = CountWindower(len(self.tags), w.size, w.step or w.size, w.max_age_s)
        self.alert: AlertState | None = None
        if slot is not None:
            threshold, clear = thresholds(cfg, slot.model)
            self.alert = alert_state(cfg, threshold, clear)
        self.drift = self._drift()
        self.stats = PipelineStats()
        self._router: Router | None = None

    def _drift(self) -> Drift | None:
        model = self.model
        if not self.cfg.adapt or model is None or model.normal is None:
            return None
        drift = Drift(model.normal, self.cfg.window.hop_s, self.cfg.adapt_time)
        return drift if drift.active else None

    @property
    def model(self) -> Model | None:
        return self.slot.model if self.slot else None

    def ingest(self, readings: Iterable[Reading], now: float | None = None) -> None:
        """Window the readings of this pipeline's tags (see ``Router.ingest``; others are ignored)."""
        if self._router is None:
            self._router = Router([self])
        self._router.ingest(readings, now)

    def model_swapped(self) -> None:
        """Take thresholds from the new model unless the config fixes them; the alert state carries over."""
        if self.alert is not None and self.model is not None:
            self.alert.threshold, self.alert.clear_threshold = thresholds(self.cfg, self.model)
        self.drift = self._drift()  # a new model has its own normal: start following drift afresh

    def featurize(self, windows: list[Window]) -> Batch:
        rows = [feats.compute(w.values, w.times, self.cfg.features) for w in windows]
        per_tag = [w.coverage() for w in windows]
        coverage = np.array([float(c.min()) for c in per_tag])
        least = self.cfg.window.min_coverage
        reasons: list[str | None] = []
        for tags_cov, cov in zip(per_tag, coverage, strict=True):
            if cov < least:
                low = [t for t, c in zip(self.tags, tags_cov, strict=True) if c < least]
                reasons.append(f"low coverage {cov:.2f} < {least:.2f} ({', '.join(low[:5])})")
            else:
                reasons.append(None)
        raw = np.vstack(rows)
        if self.drift is None:
            return Batch(windows, raw, coverage, reasons)
        return Batch(windows, self.drift.apply(raw), coverage, reasons, raw)

    def conclude(self, batch: Batch, scores: np.ndarray | None, contrib: np.ndarray | None) -> list[Message]:
        """Messages for the batch: one features message per window, plus alert transitions.

        ``scores`` / ``contrib`` hold one row per *scorable* window, in order (None without a model).
        """
        out: list[Message] = []
        model = self.model
        k = 0
        for i, window in enumerate(batch.windows):
            self.stats.windows += 1
            reason = batch.reasons[i]
            score = None
            row_contrib = None
            if reason is None and scores is not None:
                score = float(scores[k])
                row_contrib = contrib[k] if contrib is not None else None
                k += 1
                self.stats.scored += 1
                self.stats.last_score = score
            elif reason is not None:
                self.stats.skipped += 1
            status = "skipped" if reason else ("scored" if score is not None else "unscored")
            span = {"start_ms": round(window.start * 1000), "end_ms": round(window.end * 1000)}
            out.append(
                Message(
                    Kind.FEATURES,
                    self.name,
                    window.end,
                    {
                        "pipeline": self.name,
                        "window": span,
                        "coverage": round(float(batch.coverage[i]), 4),
                        "status": status,
                        "reason": reason,
                        "features": {n: _num(v) for n, v in zip(self.names, batch.row(i), strict=True)},
                        "score": _num(score) if score is not None else None,
                        "model": model.id if model else None,
                    },
                )
            )
            if score is not None and self.alert is not None and model is not None and math.isfinite(score):
                transition = self.alert.update(score, window.end)
                if transition is not None:
                    out.append(self._alert(transition, score, span, batch.row(i), row_contrib, model))
                if self.drift is not None:
                    a = self.alert
                    self.drift.learn(batch.row(i), score, a.threshold, float(batch.coverage[i]), a.open)
        return out

    def _alert(
        self,
        transition: Transition,
        score: float,
        span: dict[str, int],
        x: np.ndarray,
        contrib: np.ndarray | None,
        model: Model,
    ) -> Message:
        assert self.alert is not None
        if transition is Transition.RAISED:
            self.stats.alerts_raised += 1
        elif transition is Transition.CLEARED:
            self.stats.alerts_cleared += 1
        normal = model.normal or Normal()
        if self.drift is not None:
            normal = self.drift.shifted(normal)
        top, summary = explain(self.names, x, contrib, normal, self.cfg.alert.top, self.units, self.language)
        a = self.alert
        head = headline(self.language, transition, self.name, score, a.threshold, a.clear_threshold)
        return Message(
            Kind.ALERT,
            self.name,
            span["end_ms"] / 1000,
            {
                "pipeline": self.name,
                "state": transition.value,
                "score": round(score, 6),
                "threshold": self.alert.threshold,
                "clear_threshold": self.alert.clear_threshold,
                "window": span,
                "model": model.id,
                "top": top,
                "summary": f"{head}: {summary}" if summary and transition is not Transition.CLEARED else head,
            },
        )


def thresholds(cfg: PipelineConfig, model: Model) -> tuple[float, float]:
    """(threshold, clear_threshold) from the config, else the model's metadata, else a clear error."""
    threshold = cfg.alert.threshold if cfg.alert.threshold is not None else model.meta_float("threshold")
    if threshold is None:
        raise ValueError(
            "no alert threshold: set alert.threshold, or use a model with edge_agent.threshold metadata "
            "(models from `edge-agent train` have it)"
        )
    clear = cfg.alert.clear_threshold
    if clear is None:
        clear = model.meta_float("clear_threshold")
    if clear is None or clear > threshold:
        clear = threshold * 0.8 if threshold > 0 else threshold
    return float(threshold), float(clear)


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
