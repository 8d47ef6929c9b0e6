"""Turn a fitted ``RobustPCA`` into an ONNX model the agent (or anyone with onnxruntime) can run.

The graph has one input, ``features`` float32 ``[N, F]`` (dynamic batch, columns in the order of the
``edge_agent.feature_names`` metadata), and two outputs: ``score`` float32 ``[N]`` (alert at >= the
``edge_agent.threshold`` metadata, 1.0) and ``contributions`` float32 ``[N, F]`` (each feature's share of
the score, rows sum to 1). A NaN input is replaced by the feature's center inside the graph (``IsNaN`` +
``Where``), so a missing value counts as perfectly normal rather than poisoning the row.

Metadata properties are strings, JSON where structured; see ``metadata_props``. The graph uses opset 17
and IR version 8 so onnxruntime 1.17 and newer load it.

``onnx`` is the optional ``train`` extra; it is imported inside the functions that need it, and
``require_onnx`` tells the user how to install it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.config import statedir
from agent.errors import ModelError
from agent.learn.fit import KIND, RobustPCA

if TYPE_CHECKING:
    from types import ModuleType

    import onnx

OPSET = 17
IR_VERSION = 8
PREFIX = "edge_agent."
FORMAT_VERSION = "1"


def require_onnx() -> ModuleType:
    """Import ``onnx`` or fail with the command that installs it."""
    try:
        import onnx
    except ImportError as exc:
        from agent.learn.extras import install_hint

        raise ModelError(f"exporting a model needs the 'onnx' package: {install_hint('train')}") from exc
    return onnx


def metadata_props(
    model: RobustPCA,
    *,
    window: Mapping[str, Any] | None = None,
    span: tuple[float, float] | None = None,
    data_hash: str = "",
) -> dict[str, str]:
    """The ``edge_agent.*`` metadata of an exported model, as the strings ONNX stores.

    Args:
        model: the fitted model.
        window: the pipeline's window config (JSON-serialisable mapping), so a runtime can refuse a
            model trained on different windows.
        span: first and last training timestamp, epoch seconds.
        data_hash: sha256 (hex) of the training data.
    """

    def floats(values: np.ndarray) -> str:
        return json.dumps([float(v) for v in values])

    props = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "feature_names": json.dumps(list(model.names)),
        "threshold": repr(float(model.threshold)),
        "clear_threshold": repr(float(model.clear_threshold)),
        "center": floats(model.center),
        "scale": floats(model.scale),
        "normal_low": floats(model.normal_low),
        "normal_high": floats(model.normal_high),
        "window": json.dumps(dict(window or {}), sort_keys=True, default=str),
        "training_span": json.dumps({"start": span[0], "end": span[1]} if span else {}),
        "data_hash": data_hash,
        "n_components": str(model.n_components),
        "explained_variance": repr(round(model.explained, 6)),
        "t2_limit": repr(model.t2_limit),
        "r_limit": repr(model.r_limit),
        "n_train": str(model.n_train),
        "threshold_rule": (
            "score = max(T/T_lim, R/R_lim); T = the largest squared component score over its variance, "
            "R = the largest squared residual of one feature over its normal spread; each limit = the "
            "larger of an exponential tail fitted to the out-of-fold statistic read at "
            f"{model.options.false_alarm:.3g} and its {model.options.quantile:.3g} quantile; T's widened "
            "for the independent windows the recording holds"
        ),
        "false_alarm_rate": repr(model.expected_false_alarm),
    }
    return {PREFIX + key: value for key, value in props.items()}


def build_model(model: RobustPCA, props: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX graph computing ``model.score`` in float32, with ``props`` as metadata."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    n_features = len(model.names)
    consts: dict[str, np.ndarray] = {
        "center": model.center.astype(f32),
        "scale": model.scale.astype(f32),
        "loadings": model.components.astype(f32),
        "loadings_t": np.ascontiguousarray(model.components.T).astype(f32),
        "inv_eigvals": (1.0 / model.eigvals).astype(f32),
        "t2_weights": model.t2_weights.astype(f32),
        "resid_scale": model.resid_scale.astype(f32),
        "t2_limit": np.array(model.t2_limit, dtype=f32),
        "r_limit": np.array(model.r_limit, dtype=f32),
        "eps": np.array(1e-12, dtype=f32),
        "axis1": np.array([1], dtype=np.int64),
    }
    init = [numpy_helper.from_array(value, name) for name, value in consts.items()]
    graph = helper.make_graph(
        _score_nodes(helper.make_node),
        "edge_agent_robust_pca",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n_features])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("contributions", TensorProto.FLOAT, ["N", n_features]),
        ],
        initializer=init,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edge-agent",
        doc_string="Model of normal operation: robust-scaled PCA, its most unusual mode T and largest residual R.",
    )
    proto.ir_version = IR_VERSION
    helper.set_model_props(proto, dict(props or {}))
    onnx.checker.check_model(proto)
    return proto


def _score_nodes(node: Any) -> list[Any]:
    """The graph's nodes: NaN filled with the center, robust z, T and R over their limits, contributions."""
    return [
        node("IsNaN", ["features"], ["is_nan"]),
        node("Where", ["is_nan", "center", "features"], ["filled"]),
        node("Sub", ["filled", "center"], ["centered"]),
        node("Div", ["centered", "scale"], ["z"]),
        # T: scores on the kept components, each squared over its variance; the largest one.
        node("MatMul", ["z", "loadings"], ["t"]),
        node("Mul", ["t", "t"], ["t_sq"]),
        node("Mul", ["t_sq", "inv_eigvals"], ["t_sq_w"]),
        node("ReduceMax", ["t_sq_w"], ["t2"], axes=[1], keepdims=0),  # opset 17: axes is an attribute
        # R: the largest squared residual off the component plane, each over its normal spread.
        node("MatMul", ["t", "loadings_t"], ["recon"]),
        node("Sub", ["z", "recon"], ["resid"]),
        node("Div", ["resid", "resid_scale"], ["resid_std"]),
        node("Mul", ["resid_std", "resid_std"], ["resid_sq"]),
        node("ReduceMax", ["resid_sq"], ["r"], axes=[1], keepdims=0),  # opset 17: axes is an attribute
        node("Div", ["t2", "t2_limit"], ["t2_norm"]),
        node("Div", ["r", "r_limit"], ["r_norm"]),
        node("Max", ["t2_norm", "r_norm"], ["score"]),
        # Contributions: exact per-feature split of T² and R's parts, each over its limit, as shares.
        node("MatMul", ["z", "t2_weights"], ["zw"]),
        node("Mul", ["zw", "zw"], ["zw_sq"]),
        node("Div", ["zw_sq", "t2_limit"], ["t2_part"]),
        node("Div", ["resid_sq", "r_limit"], ["r_part"]),
        node("Add", ["t2_part", "r_part"], ["parts"]),
        node("ReduceSum", ["parts", "axis1"], ["parts_sum"], keepdims=1),
        node("Add", ["parts_sum", "eps"], ["parts_total"]),
        node("Div", ["parts", "parts_total"], ["contributions"]),
    ]


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same directory and ``os.replace``.

    An interrupt (Ctrl-C, power loss before the rename) leaves either the old file or none, never half
    of the new one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        statedir.share_with_folder_group(fd, target.parent)  # readable by the service (issue 10)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def export(
    model: RobustPCA,
    path: str | os.PathLike[str],
    *,
    window: Mapping[str, Any] | None = None,
    span: tuple[float, float] | None = None,
    data_hash: str = "",
) -> Path:
    """Build the graph with its metadata and write it atomically to ``path``."""
    proto = build_model(model, metadata_props(model, window=window, span=span, data_hash=data_hash))
    return write_atomic(path, proto.SerializeToString())


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``edge_agent.*`` metadata of a model file, JSON values decoded, prefix stripped.

    Uses onnxruntime (always installed) so the agent can read a model without the ``onnx`` extra.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: not a loadable ONNX model: {exc}") from exc
    raw = session.get_modelmeta().custom_metadata_map
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not key.startswith(PREFIX):
            continue
        try:
            out[key[len(PREFIX) :]] = json.loads(value)
        except ValueError:
            out[key[len(PREFIX) :]] = value
    return out
