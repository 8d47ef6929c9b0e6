"""Bounded fuzzing (hypothesis) of everything that arrives from outside (issue 10): model metadata,
config files, Modbus registers and OPC UA values. The property is the same everywhere: the input is
accepted, or refused with one of the agent's own errors; nothing else ever escapes. Each test is kept
to a few seconds (max_examples, no deadline: a busy CI machine must not turn slowness into failure).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.load import load_config
from agent.errors import ConfigError, ModelError
from agent.ops.status_card import card
from agent.records import Quality, Reading
from agent.stream import contract, inference
from agent.stream.onnx_guard import check_self_contained
from plugins.modbus.config import ModbusSourceConfig
from plugins.modbus.decode import registers_to_bytes
from plugins.modbus.poller import DevicePoller, compile_tags
from plugins.opcua.status import reading
from tests.hostile_models import model_with_metadata
from tests.onnx_models import zscore_model

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["a.mean", "a.std", "b.mean"]
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------------------------------- model metadata

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=30,
)
meta_text = st.one_of(
    st.text(max_size=50),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.just("[" * 100_000 + "]" * 100_000),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=6).map(json.dumps),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", " 4 ", "", "4,5", "True", "[]", "null"]),
)
META_KEYS = [
    "threshold",
    "clear_threshold",
    "feature_names",
    "center",
    "scale",
    "normal_low",
    "normal_high",
    "training_span",
    "n_train",
    "false_alarm_rate",
    "kind",
    "threshold_rule",
]
metadata = st.dictionaries(st.sampled_from(META_KEYS).map(lambda k: "edge_agent." + k), meta_text, max_size=7)


def _parse_all(meta: dict[str, str]) -> None:
    contract.read(meta, NAMES, Path("fuzz.onnx"))


@settings(FUZZ, max_examples=300)
@given(metadata)
def test_metadata_parsing_is_total(meta: dict[str, str]) -> None:
    try:
        _parse_all(meta)
    except ModelError as exc:
        assert "edge_agent." in str(exc)


_DIR = Path(tempfile.mkdtemp(prefix="fuzz-models-"))


@settings(FUZZ, max_examples=40)
@given(metadata)
def test_loading_a_model_with_any_metadata_is_total(meta: dict[str, str]) -> None:
    path = model_with_metadata(_DIR / "m.onnx", NAMES, meta)
    try:
        model = inference.load(path, NAMES, required=("threshold",))
    except ModelError:
        return
    threshold = model.meta_float("threshold")
    assert threshold is not None and math.isfinite(threshold)
    # What the loader accepted, the status card shows as plain JSON: it reads the same parsed contract.
    json.dumps(card(SimpleNamespace(name="p", names=NAMES, alert=None, model=model)), allow_nan=False)


_GOOD = zscore_model(_DIR / "good.onnx", NAMES, [0, 0, 0], [1, 1, 1]).read_bytes()


@settings(FUZZ, max_examples=300)
@given(st.data())
def test_the_onnx_guard_is_total_on_damaged_files(data: st.DataObject) -> None:
    raw = bytearray(_GOOD)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(ModelError):
        check_self_contained(bytes(raw[:cut]), "fuzz.onnx")


# ------------------------------------------------------------------------------------------ config files

SAMPLES = [ROOT / "deploy" / "config.toml", *sorted((ROOT / "plugins").glob("*/sample.toml"))]
TOKENS = ["=", "[", "]", "[[sources]]", "[[sinks]]", '"', "'", "\n", "..", "-1", "1e999", "nan", "true",
          "{", "}", ",", "#", "\\", "\x00", "é", "name = \"../x\"", "model = \"/etc/passwd\"", "999999999999"]  # fmt: skip


@settings(FUZZ, max_examples=150)
@given(st.sampled_from(SAMPLES), st.data())
def test_loading_a_mangled_config_raises_only_config_error(sample: Path, data: st.DataObject) -> None:
    text = sample.read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 30))
        text = text[:at] + data.draw(st.sampled_from(TOKENS) | st.text(max_size=8)) + text[at + cut :]
    path = _DIR / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    env = data.draw(
        st.dictionaries(
            st.sampled_from(["EDGE_AGENT__AGENT__ID", "EDGE_AGENT__SINKS__0__PORT", "EDGE_AGENT__SOURCES__X__NAME",
                             "EDGE_AGENT__BUS__CAPACITY", "EDGE_AGENT__", "EDGE_AGENT__AGENT__ID__X"]),
            st.text(max_size=10) | st.sampled_from(["[1,2]", "{a=1}", "-5", "1e999", "../.."]),
            max_size=2,
        )
    )  # fmt: skip
    try:
        load_config(path, environ=env)
    except ConfigError as exc:
        assert exc.issues


# -------------------------------------------------------------------------------------- Modbus registers

TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bit", "string"]
ORDERS = {
    2: ["AB", "BA"],
    4: ["ABCD", "BADC", "CDAB", "DCBA"],
    8: ["ABCDEFGH", "BADCFEHG", "GHEFCDAB", "HGFEDCBA"],
}
WIDTH = {"int16": 2, "uint16": 2, "bit": 2, "string": 2, "int32": 4, "uint32": 4, "float32": 4}


@st.composite
def modbus_tags(draw: st.DrawFn) -> list[dict[str, object]]:
    tags: list[dict[str, object]] = []
    address = 0
    for i in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from([*TYPES, "bool"]))
        tag: dict[str, object] = {"name": f"t{i}", "type": kind, "address": address}
        if kind == "bool":
            tag["table"] = draw(st.sampled_from(["coil", "discrete_input"]))
        else:
            tag["table"] = draw(st.sampled_from(["holding_register", "input_register"]))
            tag["order"] = draw(st.sampled_from(ORDERS[WIDTH.get(kind, 8)]))
        if kind == "bit":
            tag["bit"] = draw(st.integers(0, 15))
        if kind == "string":
            tag["length"] = draw(st.integers(1, 20))
        if kind not in ("bool", "bit", "string"):
            tag["scale"] = draw(st.floats(allow_nan=False, allow_infinity=False, width=32))
            tag["offset"] = draw(st.floats(allow_nan=False, allow_infinity=False, width=32))
        tags.append(tag)
        address += draw(st.integers(0, 6))
    return tags


@settings(FUZZ, max_examples=200)
@given(modbus_tags(), st.data())
def test_any_register_contents_decode_to_readings(tags: list[dict[str, object]], data: st.DataObject) -> None:
    cfg = ModbusSourceConfig.model_validate(
        {"type": "modbus", "name": "m", "host": "127.0.0.1", "devices": [{"name": "d"}], "tags": tags}
    )
    poller = DevicePoller(cfg.devices[0], compile_tags(cfg, cfg.devices[0]), connection=None, log=None)  # type: ignore[arg-type]
    for request in poller.plan:
        if request.is_bits:
            values: list[int] | list[bool] = data.draw(
                st.lists(st.booleans(), min_size=request.count, max_size=request.count)
            )
            out = poller.decode(request, values, 0.0)
        else:
            regs = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=request.count, max_size=request.count))
            out = poller.decode(request, registers_to_bytes(regs), 0.0)
        assert len(out) == len(request.slots) and all(isinstance(r, Reading) for r in out)
        for r in out:
            if r.quality is Quality.GOOD and isinstance(r.value, float) and not math.isfinite(r.value):
                raise AssertionError(f"{r.tag}: a GOOD reading with value {r.value}")


# -------------------------------------------------------------------------------------- OPC UA values

variants = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: ua.Variant(v, ua.VariantType.Double)),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: ua.Variant(v, ua.VariantType.Int64)),
    st.integers(0, 2**32 - 1).map(lambda v: ua.Variant(v, ua.VariantType.UInt32)),
    st.booleans().map(lambda v: ua.Variant(v, ua.VariantType.Boolean)),
    st.text(max_size=30).map(lambda v: ua.Variant(v, ua.VariantType.String)),
    st.binary(max_size=30).map(lambda v: ua.Variant(v, ua.VariantType.ByteString)),
    st.lists(st.floats(width=32), max_size=4).map(lambda v: ua.Variant(v, ua.VariantType.Float)),
    st.text(max_size=10).map(lambda v: ua.Variant(ua.LocalizedText(v), ua.VariantType.LocalizedText)),
    st.just(ua.Variant()),
)
stamps = st.none() | st.datetimes(min_value=dt.datetime(1601, 1, 1), max_value=dt.datetime(9999, 12, 31))


@settings(FUZZ, max_examples=300)
@given(variants, st.integers(0, 2**32 - 1), stamps, stamps)
def test_any_data_value_off_the_wire_becomes_a_reading(
    variant: ua.Variant, code: int, source: dt.datetime | None, server: dt.datetime | None
) -> None:
    value = ua.DataValue(
        variant, StatusCode=ua.StatusCode(code), SourceTimestamp=source, ServerTimestamp=server
    )
    try:  # through asyncua's own binary codec, as a notification arrives
        wire = struct_to_binary(value)
        decoded = struct_from_binary(ua.DataValue, Buffer(wire))
    except Exception:
        return  # the library refuses to encode or decode it: it never reaches the agent
    got = reading("t", decoded, now=1.0)
    assert isinstance(got, Reading) and math.isfinite(got.ts)
    assert got.quality is Quality.BAD or got.value is not None


@settings(FUZZ, max_examples=300)
@given(st.binary(min_size=1, max_size=64))
def test_any_bytes_decoded_as_a_data_value_become_a_reading_or_nothing(raw: bytes) -> None:
    try:
        decoded = struct_from_binary(ua.DataValue, Buffer(raw))
    except Exception:
        return
    got = reading("t", decoded, now=1.0)
    assert isinstance(got, Reading) and (isinstance(got.ts, float) and not np.isnan(got.ts))
