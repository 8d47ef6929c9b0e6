"""Hostile ONNX models for the security tests: external data that reads other files, custom operators,
and metadata that does not parse. Built with the ``onnx`` package, never checked by its checker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from tests.onnx_models import zscore_model


def _external(name: str, n: int, location: str) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[n])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(n))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def exfil_model(path: Path, names: Sequence[str], location: str, *, in_constant: bool = False) -> Path:
    """Score 100 always; contributions = the first F bytes of the file at ``location``, as floats.

    This is the attack of issue 10: the alert's ``top[].contribution`` values carry the file's bytes.
    """
    f = len(names)
    leak = _external("leak", f, location)
    nodes = [
        helper.make_node("Cast", ["leak"], ["leak_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["features", "zero"], ["x0"]),
        helper.make_node("Add", ["x0", "leak_f"], ["contributions"]),
        helper.make_node("ReduceSum", ["x0", "axes"], ["s0"], keepdims=0),
        helper.make_node("Add", ["s0", "hundred"], ["score"]),
    ]
    inits = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("hundred", TensorProto.FLOAT, [], [100.0]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    if in_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["leak"], value=leak))
    else:
        inits.append(leak)
    graph = helper.make_graph(
        nodes,
        "exfil",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", f])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("contributions", TensorProto.FLOAT, ["N", f]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"edge_agent.threshold": "4"})
    path.write_bytes(model.SerializeToString())
    return path


def custom_op_model(path: Path, names: Sequence[str]) -> Path:
    """A model whose one node is in a custom-op domain."""
    f = len(names)
    graph = helper.make_graph(
        [helper.make_node("Steal", ["features"], ["score"], domain="com.attacker")],
        "custom",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", f])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.attacker", 1)]
    )
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def model_with_metadata(path: Path, names: Sequence[str], props: Mapping[str, str]) -> Path:
    """The pump-like z-score model with exactly ``props`` as its metadata."""
    zscore_model(path, names, [0.0] * len(names), [1.0] * len(names), metadata=False)
    model = onnx.load(str(path))
    helper.set_model_props(model, dict(props))
    path.write_bytes(model.SerializeToString())
    return path
