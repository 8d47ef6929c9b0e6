"""The model card: what a trained model learned, for the people who will act on its alerts.

``render_card`` writes markdown (feature table with the normal band, the threshold rule, training span,
data hash, components kept, how the training windows scored). ``render_png`` draws the training score
histogram with the threshold and each feature's normal band, and only when matplotlib is installed
(``pip install 'edge-agent[plot]'``); without it the card says so and training goes on.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.learn.extras import install_hint
from agent.learn.fit import KIND, RobustPCA


def _threshold_rule(model: RobustPCA) -> list[str]:
    opts = model.options
    cal = model.calibration
    return [
        "## Threshold rule",
        "",
        "`score = max(T / T_lim, R / R_lim)`. T is the most unusual learned mode (the largest squared "
        "component score over its variance): the machine moved further along one of its usual patterns "
        "than in training (everything high together). R is the largest residual of any one feature, in "
        "units of its normal residual spread: one signal moving without the others. Each statistic is "
        "scored on the training windows by a model fitted without them (5 contiguous folds); its limit is "
        "the larger of an exponential tail fitted to the top 10% of those values, read where it leaves "
        f"{opts.false_alarm:.3g} of windows above, and their {opts.quantile:.0%} quantile, so one or two "
        "odd windows cannot move it far. Neighbouring windows overlap and the modes are slow, so the "
        f"training windows are worth about {cal.windows:.0f} independent ones for T, and T's limit is "
        f"widened x{cal.widening:.3g} for what so few cannot tell (1.0 on a long recording). A score >= "
        f"**{model.threshold:g}** counts as evidence of an anomaly; the alert rule (`[pipelines.alert]`) "
        f"decides when it is raised; it clears below **{model.clear_threshold:g}**.",
        "",
        f"**Expected false alarms:** the fitted tails put {model.expected_false_alarm:.2g} of normal "
        f"windows (about 1 in {_one_in(model.expected_false_alarm)}) at or above the threshold "
        "(`edge_agent.false_alarm_rate`; it assumes the recording showed all of normal).",
        "",
    ]


def _excluded(excluded: Mapping[str, int] | None) -> str:
    if not excluded or not sum(excluded.values()):
        return "none"
    return ", ".join(f"{n} ({why})" for why, n in excluded.items() if n)


def _one_in(rate: float) -> str:
    return f"{1 / rate:,.0f}" if rate > 0 else "never"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float) -> str:
    return f"{value:.6g}"


def render_card(
    model: RobustPCA,
    train_scores: NDArray[np.floating],
    *,
    title: str = "edge-agent model of normal",
    window: Mapping[str, Any] | None = None,
    span: tuple[float, float] | None = None,
    data_hash: str = "",
    model_file: str | None = None,
    png_file: str | None = None,
    excluded: Mapping[str, int] | None = None,
) -> str:
    """Markdown describing ``model``; ``train_scores`` are its scores on the training windows.

    ``excluded`` counts the windows left out of fitting and limit setting, by reason.
    """
    opts = model.options
    scores = np.asarray(train_scores, dtype=np.float64)
    over = float(np.mean(scores >= model.threshold)) if scores.size else 0.0
    p50, p99, pmax = (float(v) for v in np.quantile(scores, [0.5, 0.99, 1.0])) if scores.size else (0, 0, 0)
    lines = [f"# {title}", ""]
    if model_file:
        lines += [f"Model file: `{model_file}` (ONNX, kind `{KIND}`)", ""]
    lines += [
        "## Training",
        "",
        "| item | value |",
        "|---|---|",
        f"| training windows | {model.n_train} |",
        f"| windows left out | {_excluded(excluded)} |",
        f"| training span | {f'{_when(span[0])} to {_when(span[1])}' if span else 'not recorded'} |",
        f"| data hash (sha256) | `{data_hash or 'not recorded'}` |",
        f"| window | `{dict(window or {})}` |",
        f"| features | {len(model.names)} |",
        f"| principal components kept | {model.n_components} ({model.explained:.1%} of the variance) |",
        f"| T limit / R limit | {_num(model.t2_limit)} / {_num(model.r_limit)} |",
        "",
        *_threshold_rule(model),
        f"On its own training windows the score has median {p50:.3f}, 99th percentile {p99:.3f} and "
        f"maximum {pmax:.3f}; {over:.2%} of them reach the threshold.",
        "",
        "## Normal range of each feature",
        "",
        f"Center is the training median; scale is a robust sigma (IQR / 1.349). The normal band is "
        f"center ± {opts.normal_sigmas:g} x scale; alerts say how many sigmas outside it a feature is.",
        "",
        "| feature | center | scale | normal low | normal high |",
        "|---|---:|---:|---:|---:|",
    ]
    for i, name in enumerate(model.names):
        lines.append(
            f"| `{name}` | {_num(model.center[i])} | {_num(model.scale[i])} | "
            f"{_num(model.normal_low[i])} | {_num(model.normal_high[i])} |"
        )
    lines.append("")
    if png_file:
        lines += [f"![training scores and normal bands]({png_file})", ""]
    else:
        lines += [f"(No picture: install the plotting extra, `{install_hint('plot')}`.)", ""]
    return "\n".join(lines)


def plotting_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        return False
    return True


def render_png(
    model: RobustPCA, train_scores: NDArray[np.floating], train_x: NDArray[np.floating]
) -> bytes | None:
    """PNG bytes: score histogram with the threshold, and each feature's training values in its normal band.

    Returns ``None`` when matplotlib is not installed.
    """
    if not plotting_available():
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on a gateway; must precede pyplot
    import matplotlib.pyplot as plt

    x = np.asarray(train_x, dtype=np.float64)
    n_feat = len(model.names)
    fig, axes = plt.subplots(
        2, 1, figsize=(9, 3.5 + 0.32 * n_feat), gridspec_kw={"height_ratios": [3, max(3, 0.32 * n_feat)]}
    )
    hist, bands = axes
    scores = np.asarray(train_scores, dtype=np.float64)
    hist.hist(scores, bins=60, color="#4c72b0")
    hist.axvline(model.threshold, color="#c44e52", label=f"alert threshold {model.threshold:g}")
    hist.axvline(model.clear_threshold, color="#dd8452", linestyle="--", label="clear threshold")
    hist.set_xlabel("anomaly score on training windows")
    hist.set_ylabel("windows")
    hist.legend()
    # Every feature on one axis in robust sigmas, so bands of different units compare.
    z = (x - model.center) / model.scale
    sig = model.options.normal_sigmas
    for i in range(n_feat):
        col = z[:, i][np.isfinite(z[:, i])]
        lo, hi = np.quantile(col, [0.005, 0.995]) if col.size else (0.0, 0.0)
        bands.plot([lo, hi], [i, i], color="#4c72b0", linewidth=4, solid_capstyle="butt")
    bands.axvspan(-sig, sig, color="#55a868", alpha=0.2, label=f"normal band (±{sig:g} sigma)")
    bands.set_yticks(range(n_feat), list(model.names), fontsize=8)
    bands.invert_yaxis()
    bands.set_xlabel("training values, 0.5-99.5% range, in robust sigmas from the center")
    bands.legend(loc="upper right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write the card atomically (same rule as the model file)."""
    from agent.learn.export import write_atomic

    return write_atomic(path, text.encode("utf-8"))
