"""The model card the status page shows, from a live model's parsed metadata contract.

The card only displays: it reads ``pipeline.model.contract`` (``agent.stream.contract``), which the
loader parsed, totally, when it accepted the model, and never the raw ``edge_agent.*`` strings. So the
page cannot show a value the loader would refuse, and a key the contract does not hold is ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only shown, never built here: the page starts without numpy (issue 17)
    import numpy as np

    from agent.stream.contract import Contract


def card(pipeline: Any) -> dict[str, Any]:
    """What a person should know about ``pipeline``'s live model: training, features, bands, thresholds."""
    model = pipeline.model
    terms: Contract = model.contract
    normal = terms.normal
    columns = {"center": normal.center, "scale": normal.scale, "low": normal.low, "high": normal.high}
    return {
        "pipeline": pipeline.name,
        "model": model.id,
        "file": model.path.name,
        "kind": terms.text.get("kind"),
        "trained": {"start": terms.trained[0], "end": terms.trained[1]} if terms.trained else None,
        "n_train": terms.n_train,
        "data_hash": terms.text.get("data_hash"),
        "threshold": pipeline.alert.threshold if pipeline.alert else None,
        "clear_threshold": pipeline.alert.clear_threshold if pipeline.alert else None,
        "threshold_rule": terms.text.get("threshold_rule"),
        # The share of normal windows the trained limits expect at or over the threshold (the card's).
        "false_alarm_rate": terms.false_alarm_rate,
        "features": [
            {"name": name, **{key: _at(values, i) for key, values in columns.items()}}
            for i, name in enumerate(pipeline.names)
        ],
    }


def _at(values: np.ndarray | None, i: int) -> float | None:
    return float(values[i]) if values is not None else None
