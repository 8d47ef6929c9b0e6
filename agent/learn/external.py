"""Models from elsewhere: make an ONNX model trained off the gateway meet the agent's model contract.

The contract (``agent.stream.inference``, ``docs/models.md``): one float32 input ``[N, F]`` in the
pipeline's feature order; the anomaly score as the first output (``[N]`` or ``[N, 1]``, >= 0, higher
is more anomalous); ``edge_agent.*`` metadata naming the features, the threshold and clear threshold,
and the normal band of each feature, so ``check`` can refuse a model of other features and alerts can
say what left its band.

A detector from scikit-learn converted by skl2onnx (``pip install 'edge-agent[dev]'``) usually has
other outputs first and a score where higher is *normal* (``decision_function`` of IsolationForest,
OneClassSVM, LocalOutlierFactor(novelty=True)). ``from_sklearn`` converts such an estimator and
``calibrate`` puts its score on the agent's scale: ``score = max(0, (median - s) / (median - s_q))``
where ``s`` is the estimator's output and ``median``, ``s_q`` its median and ``false_alarm`` quantile
on the training windows, so the threshold is 1.0 as for a model from ``edge-agent train``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.errors import ModelError
from agent.learn.export import PREFIX, require_onnx
from agent.learn.fit import robust_scale


def calibrate(
    proto: Any, output: str, training_output: NDArray[np.floating], false_alarm: float = 1e-3
) -> Any:
    """Replace the graph's outputs by one ``score`` computed from ``output`` (higher = normal)."""
    onnx = require_onnx()
    from onnx import helper, numpy_helper

    s = np.asarray(training_output, dtype=np.float64).ravel()
    median, low = float(np.median(s)), float(np.quantile(s, false_alarm))
    spread = median - low
    if not np.isfinite(spread) or spread <= 0:
        raise ModelError(f"output {output!r} does not vary on the training data: it cannot be calibrated")
    graph = proto.graph
    if output not in [o.name for o in graph.output]:
        raise ModelError(f"the model has no output {output!r} (outputs: {[o.name for o in graph.output]})")
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(median, dtype=np.float32), "ea_median"),
            numpy_helper.from_array(np.array(spread, dtype=np.float32), "ea_spread"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "ea_flat"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Sub", ["ea_median", output], ["ea_below"]),
            helper.make_node("Div", ["ea_below", "ea_spread"], ["ea_ratio"]),
            helper.make_node("Relu", ["ea_ratio"], ["ea_score_2d"]),
            helper.make_node("Reshape", ["ea_score_2d", "ea_flat"], ["score"]),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, [None]))
    return proto


def stamp(
    proto: Any,
    names: Sequence[str],
    x: NDArray[np.floating],
    threshold: float = 1.0,
    clear_threshold: float = 0.8,
    normal_sigmas: float = 3.0,
) -> Any:
    """Write the contract's metadata: feature names, thresholds, and the normal band learned from ``x``."""
    from onnx import helper

    center, scale = robust_scale(np.asarray(x, dtype=np.float64))

    def floats(values: np.ndarray) -> str:
        return json.dumps([float(v) for v in values])

    props = {
        "kind": "external",
        "feature_names": json.dumps(list(names)),
        "threshold": repr(float(threshold)),
        "clear_threshold": repr(float(clear_threshold)),
        "center": floats(center),
        "scale": floats(scale),
        "normal_low": floats(center - normal_sigmas * scale),
        "normal_high": floats(center + normal_sigmas * scale),
    }
    kept = {p.key: p.value for p in proto.metadata_props if not p.key.startswith(PREFIX)}
    helper.set_model_props(proto, {**kept, **{PREFIX + k: v for k, v in props.items()}})
    return proto


def from_sklearn(
    estimator: Any, x: NDArray[np.floating], names: Sequence[str], output: str = "scores"
) -> bytes:
    """An ONNX model meeting the contract from a fitted scikit-learn outlier detector.

    Args:
        estimator: fitted, with ``decision_function`` (higher = more normal), e.g. IsolationForest.
        x: the training feature rows (``windows x features``, the pipeline's order).
        names: the pipeline's feature names.
        output: the skl2onnx output holding ``decision_function``.
    """
    try:
        from skl2onnx import to_onnx
    except ImportError as exc:
        raise ModelError("skl2onnx is not installed: pip install 'edge-agent[dev]'") from exc
    rows = np.asarray(x, dtype=np.float32)
    proto = to_onnx(estimator, rows[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    proto = calibrate(proto, output, estimator.decision_function(rows))
    return bytes(stamp(proto, names, rows).SerializeToString())
