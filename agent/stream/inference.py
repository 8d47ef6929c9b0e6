"""ONNX models: load, check against the pipeline, score, and swap atomically when the file changes.

A model takes one float32 input of shape [N, F] (F = the pipeline's feature count; N may be dynamic or 1)
and gives the anomaly score as its first output ([N] or [N, 1]). An output named ``contributions`` of
shape [N, F] gives per-feature contributions. Optional metadata (``edge_agent.*`` keys, written by
``edge-agent train``) names the features in order, the thresholds and the normal band of each feature;
``agent.stream.contract`` reads it once at load, and a model whose metadata breaks the contract is refused.

onnxruntime runs with one intra-op thread and spinning off (a gateway has few cores and other work); the
runner calls ``score`` in an executor thread (onnxruntime releases the GIL).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.stream.contract import META, Contract
from agent.stream.contract import read as read_contract
from agent.stream.explain import Normal
from agent.stream.onnx_guard import check_self_contained


@dataclass
class Model:
    """A loaded, validated model."""

    path: Path
    id: str  # "sha256:<first 16 hex>" of the file bytes
    session: Any
    input_name: str
    n_features: int
    batchable: bool
    has_contributions: bool
    contract: Contract = field(default_factory=Contract)  # the metadata, read once at load

    @property
    def normal(self) -> Normal:
        return self.contract.normal

    def meta_float(self, key: str) -> float | None:
        """A numeric ``edge_agent.<key>`` value checked at load (finite), or None when absent."""
        return self.contract.numbers.get(key)

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores ([N]) and contributions ([N, F] or None) for feature rows ``x`` ([N, F])."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.batchable or len(x) == 1:
            outs = self.session.run(None, {self.input_name: x})
        else:
            rows = [self.session.run(None, {self.input_name: x[i : i + 1]}) for i in range(len(x))]
            outs = [np.concatenate([r[j] for r in rows]) for j in range(len(rows[0]))]
        scores = np.asarray(outs[0], dtype=np.float64).reshape(len(x), -1)[:, 0]
        contrib = (
            np.asarray(outs[1], dtype=np.float64).reshape(len(x), -1) if self.has_contributions else None
        )
        return scores, contrib


def _session(data: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    # Small per-window models: an arena per session costs megabytes and buys nothing measurable here.
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {str(path)!r}: {exc.strerror}") from None


def _open(data: bytes, path: Path) -> Any:
    check_self_contained(data, str(path))
    try:
        return _session(data)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} is not a model onnxruntime can load: {first[:300]}") from None


def _input(session: Any, path: Path, want: int) -> tuple[Any, list[Any]]:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{path}: a model takes exactly one input [N, F]; this one takes {len(inputs)}")
    inp = inputs[0]
    shape = list(inp.shape)
    if inp.type != "tensor(float)" or len(shape) != 2:
        raise ModelError(
            f"{path}: input {inp.name!r} must be float32 of shape [N, F], not {inp.type} {shape}"
        )
    if shape[1] != want:
        raise ModelError(
            f"{path}: model expects {shape[1]} features but the pipeline produces {want} "
            f"({want} = tags x features); retrain it on this pipeline or change the pipeline"
        )
    return inp, shape


def _metadata(session: Any, path: Path) -> dict[str, str]:
    try:
        meta = dict(session.get_modelmeta().custom_metadata_map)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: unreadable model metadata: {str(exc)[:200]}") from None
    return {str(k): str(v) for k, v in meta.items()}


def load(path: Path, names: Sequence[str], required: Sequence[str] = ()) -> Model:
    """Load ``path`` and check it fits a pipeline whose feature vector is ``names``.

    Args:
        path: the .onnx file.
        names: the pipeline's feature names, in order.
        required: ``edge_agent.*`` numeric metadata keys (without the prefix) that must be present,
            such as ``"threshold"`` when the config sets none.

    Raises:
        ModelError: unreadable file, not ONNX, external data or custom operators, wrong input shape or
            type, feature names that differ, metadata that breaks ``agent.stream.contract`` (with the key
            and value).
    """
    path = Path(path)
    data = _read(path)
    session = _open(data, path)
    want = len(names)
    inp, shape = _input(session, path, want)
    terms = read_contract(_metadata(session, path), names, path)
    for key in required:
        if terms.numbers.get(key) is None:
            raise ModelError(
                f"{path}: the model has no {META}{key} metadata and the config sets none; "
                "set it in the config (alert.threshold) or use a model from `edge-agent train`"
            )
    outputs = session.get_outputs()
    model = Model(
        path=path,
        id="sha256:" + hashlib.sha256(data).hexdigest()[:16],
        session=session,
        input_name=inp.name,
        n_features=want,
        batchable=not isinstance(shape[0], int) or shape[0] != 1,
        has_contributions=any(o.name == "contributions" for o in outputs[1:2]),
        contract=terms,
    )
    try:
        model.score(np.zeros((1, want), dtype=np.float32))
    except Exception as exc:
        raise ModelError(f"{path}: the model fails on a zero input: {str(exc)[:300]}") from None
    return model


class ModelSlot:
    """The live model of one pipeline; ``refresh()`` swaps in a changed file only if it validates.

    ``refresh`` loads and test-runs the file, so the runner calls it in an executor thread; it never
    raises: whatever a new file does, the last good model stays.
    """

    def __init__(self, path: Path, names: Sequence[str], required: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.names = list(names)
        # The first load is checked against the config by its caller (which names the config key);
        # a replacement must carry ``required`` itself, since nobody else looks at it before it scores.
        self.required = tuple(required)
        self.model = load(self.path, self.names)
        self._stamp = self._file_stamp()
        self.rejected: str | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> tuple[str, str] | None:
        """Reload when the file changed on disk.

        Returns:
            ("swapped", model id) or ("rejected", reason) when something happened, else None.
            A rejected file leaves the last good model in place.
        """
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            new = load(self.path, self.names, self.required)
        except ModelError as exc:
            self.rejected = str(exc)
            return ("rejected", str(exc))
        except Exception as exc:  # a model file must never stop the agent (issue 10)
            self.rejected = f"{self.path}: unexpected {type(exc).__name__} while loading: {str(exc)[:200]}"
            return ("rejected", self.rejected)
        if new.id == self.model.id:
            return None
        self.model, self.rejected = new, None
        return ("swapped", new.id)
