"""Refuse a model file before onnxruntime sees it: no external data, no custom-op domains.

An ONNX tensor may keep its bytes in another file (``data_location = EXTERNAL`` with a ``location``).
onnxruntime resolves that path against the working directory when a model is loaded from bytes, so a
crafted model could read any file the agent can (a systemd credential, say) into a tensor and from there
into a published alert (issue 10). The agent's models are small and self-contained, so every tensor that
uses external data is refused, wherever it sits: initializers, sparse initializers, ``Constant`` and other
node attributes, subgraphs, model-local functions and training graphs. Nodes must use the standard
domains (``ai.onnx``, ``ai.onnx.ml``); a custom-op domain would need a library the agent never loads.

The check reads the protobuf wire format directly (``onnx`` is a training-only dependency) and is total:
any malformed byte string is a ``ModelError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from agent.errors import ModelError

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_MAX_DEPTH = 64  # nested subgraphs; far beyond any real model, small enough to never hit the stack

# Field numbers from onnx.proto (ONNX IR version 10).
_MODEL_GRAPH, _MODEL_TRAINING, _MODEL_FUNCTIONS, _MODEL_OPSET = 7, 20, 25, 8
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 5, 15
_NODE_ATTR, _NODE_DOMAIN = 5, 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_FUNCTION_NODE, _FUNCTION_DOMAIN = 7, 10
_TRAINING_GRAPHS = (1, 3)  # initialization, algorithm
_OPSET_DOMAIN = 1
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class _Malformed(Exception):
    pass


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one protobuf message: an int for varints, a zero-copy view of the bytes
    for length-delimited fields (a model's weights are never copied)."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _Malformed("truncated field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    if pos != len(data):
        raise _Malformed("truncated fixed-width field")


def _subs(data: memoryview, *numbers: int) -> Iterator[memoryview]:
    for number, value in fields(data):
        if number in numbers and isinstance(value, memoryview):
            yield value


def _text(value: memoryview) -> str:
    return bytes(value[:200]).decode("utf-8", "replace")


class _Scan:
    """One walk over a model; raises ModelError at the first refused construct."""

    def __init__(self, where: str) -> None:
        self.where = where

    def tensor(self, data: memoryview) -> None:
        name = ""
        for number, value in fields(data):
            if number == _TENSOR_NAME and isinstance(value, memoryview):
                name = _text(value)
            external = (number == _TENSOR_LOCATION and value == _EXTERNAL) or number == _TENSOR_EXTERNAL
            if external:
                raise ModelError(
                    f"{self.where}: tensor {name or '<unnamed>'!r} keeps its data in an external file; "
                    "the agent refuses external data (a model could read other files through it). "
                    "Save the model with all tensors inside the .onnx file."
                )

    def sparse(self, data: memoryview) -> None:
        for sub in _subs(data, _SPARSE_VALUES, _SPARSE_INDICES):
            self.tensor(sub)

    def node(self, data: memoryview, depth: int) -> None:
        for number, value in fields(data):
            if number == _NODE_DOMAIN and isinstance(value, memoryview):
                self.domain(_text(value), "node")
            elif number == _NODE_ATTR and isinstance(value, memoryview):
                self.attribute(value, depth)

    def attribute(self, data: memoryview, depth: int) -> None:
        visit: dict[int, Callable[[memoryview], None]] = {
            _ATTR_T: self.tensor,
            _ATTR_TENSORS: self.tensor,
            _ATTR_SPARSE: self.sparse,
            _ATTR_SPARSES: self.sparse,
            _ATTR_G: lambda g: self.graph(g, depth + 1),
            _ATTR_GRAPHS: lambda g: self.graph(g, depth + 1),
        }
        for number, value in fields(data):
            if number in visit and isinstance(value, memoryview):
                visit[number](value)

    def graph(self, data: memoryview, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise ModelError(f"{self.where}: subgraphs nested deeper than {_MAX_DEPTH} levels")
        for number, value in fields(data):
            if not isinstance(value, memoryview):
                continue
            if number == _GRAPH_NODE:
                self.node(value, depth)
            elif number == _GRAPH_INIT:
                self.tensor(value)
            elif number == _GRAPH_SPARSE_INIT:
                self.sparse(value)

    def domain(self, domain: str, what: str) -> None:
        if domain not in STANDARD_DOMAINS:
            raise ModelError(
                f"{self.where}: {what} uses the operator domain {domain[:100]!r}; the agent runs only the "
                f"standard ONNX domains ({', '.join(repr(d) for d in sorted(STANDARD_DOMAINS))}), "
                "no custom operators"
            )

    def model(self, data: memoryview) -> None:
        for number, value in fields(data):
            if not isinstance(value, memoryview):
                continue
            if number == _MODEL_GRAPH:
                self.graph(value, 0)
            elif number == _MODEL_OPSET:
                for domain in _subs(value, _OPSET_DOMAIN):
                    self.domain(_text(domain), "opset_import")
            elif number == _MODEL_FUNCTIONS:
                for sub, inner in fields(value):
                    if sub == _FUNCTION_DOMAIN and isinstance(inner, memoryview):
                        self.domain(_text(inner), "a model-local function")
                    elif sub == _FUNCTION_NODE and isinstance(inner, memoryview):
                        self.node(inner, 0)
            elif number == _MODEL_TRAINING:
                for graph in _subs(value, *_TRAINING_GRAPHS):
                    self.graph(graph, 0)


def check_self_contained(data: bytes, where: str) -> None:
    """Raise ``ModelError`` unless ``data`` is an ONNX model with no external data and standard domains only.

    Args:
        data: the bytes of the .onnx file.
        where: the file's path, for the message.
    """
    try:
        _Scan(where).model(memoryview(data))
    except _Malformed as exc:
        raise ModelError(
            f"{where} is not a model onnxruntime can load: {exc} (damaged or truncated file?)"
        ) from None
