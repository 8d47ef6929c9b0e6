"""Small real ONNX models built with the ``onnx`` helper API, for tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def zscore_model(
    path: Path,
    names: Sequence[str],
    center: Sequence[float],
    scale: Sequence[float],
    threshold: float | None = 1.0,
    *,
    metadata: bool = True,
    batch: int | str = "N",
) -> Path:
    """score = mean(z^2) with z = (x - center) / scale; contributions = z^2 / F."""
    f = len(names)
    c = helper.make_tensor("center", TensorProto.FLOAT, [f], np.asarray(center, np.float32))
    s = helper.make_tensor("scale", TensorProto.FLOAT, [f], np.asarray(scale, np.float32))
    nf = helper.make_tensor("nf", TensorProto.FLOAT, [], [float(f)])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Sub", ["features", "center"], ["d"]),
        helper.make_node("Div", ["d", "scale"], ["z"]),
        helper.make_node("Mul", ["z", "z"], ["z2"]),
        helper.make_node("Div", ["z2", "nf"], ["contributions"]),
        helper.make_node("ReduceSum", ["contributions", "axes"], ["score"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "zscore",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, f])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info("contributions", TensorProto.FLOAT, [batch, f]),
        ],
        initializer=[c, s, nf, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        props = {
            "edge_agent.feature_names": json.dumps(list(names)),
            "edge_agent.center": json.dumps([float(v) for v in center]),
            "edge_agent.scale": json.dumps([float(v) for v in scale]),
        }
        if threshold is not None:
            props["edge_agent.threshold"] = str(threshold)
        helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
