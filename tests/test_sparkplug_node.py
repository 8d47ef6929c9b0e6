"""The pure parts of the Sparkplug sink: counters, datatypes, births and data by exception.

Payloads are decoded with pysparkplug's protoc-built module, not the agent's, so an encoding mistake
(a wrong field number, a negative Int16) cannot hide behind a symmetric decoder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import FatalError
from agent.records import Envelope, Kind, Message, Quality
from plugins.sparkplug import sparkplug_b_pb2 as ours
from plugins.sparkplug.node import EdgeNode, Sample
from plugins.sparkplug.payload import coerce, datatype_for
from plugins.sparkplug.session import Aliases, BdSeq, Seq
from plugins.sparkplug.translate import translate

ref = pytest.importorskip("pysparkplug._protobuf.sparkplug_b_pb2")  # .ci/run installs pysparkplug


def decoded(raw: bytes):  # type: ignore[no-untyped-def]
    return ref.Payload.FromString(raw)


def test_seq_starts_at_zero_on_birth_and_wraps_after_255() -> None:
    seq = Seq()
    assert seq.birth() == 0
    got = [seq.next() for _ in range(256)]
    assert got[:3] == [1, 2, 3] and got[254] == 255 and got[255] == 0
    assert seq.birth() == 0 and seq.next() == 1


def test_bdseq_advances_only_on_commit_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "node.bdseq"
    bd = BdSeq(path)
    assert bd.pending() == 0
    assert bd.pending() == 0  # a failed attempt uses no number
    bd.commit(0)
    assert bd.pending() == 1
    bd.commit(255)
    again = BdSeq(path)  # a restart
    assert again.pending() == 0  # 255 wraps to 0


def test_a_corrupt_bdseq_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "node.bdseq"
    path.write_text("banana\n")
    with pytest.raises(FatalError, match=r"bdSeq file .* holds 'banana'"):
        BdSeq(path)


def test_aliases_are_unique_across_the_node_and_stable() -> None:
    aliases = Aliases()
    a, b, c = aliases.of("rec", "temp"), aliases.of("pump", "temp"), aliases.of(None, "Node Control/Rebirth")
    assert len({a, b, c}) == 3
    assert aliases.of("rec", "temp") == a
    assert aliases.name(b) == ("pump", "temp")


@pytest.mark.parametrize(
    ("tag_type", "value", "datatype"),
    [
        ("int16", 3, "Int16"),
        ("float32", 1.5, "Float"),
        (None, True, "Boolean"),
        (None, 7, "Int64"),
        (None, 2.5, "Double"),
        (None, "auto", "String"),
        ("bit", False, "Boolean"),
    ],
)
def test_datatype_comes_from_the_tag_type_else_the_first_value(tag_type, value, datatype) -> None:  # type: ignore[no-untyped-def]
    assert datatype_for(tag_type, value) == datatype


def test_a_value_that_does_not_fit_its_datatype_becomes_null() -> None:
    assert coerce("Double", 3) == 3.0
    assert coerce("Double", "text") is None
    assert coerce("Boolean", 1) is None
    assert coerce("Int16", 2.5) is None
    assert coerce("Int16", 40_000) is None
    assert coerce("UInt16", -1) is None
    assert coerce("Double", float("nan")) is None


def node(**tags) -> EdgeNode:  # type: ignore[no-untyped-def]
    return EdgeNode("plant", "gw1", tags=tags, info={"version": "1.2.3"})


def test_nbirth_has_seq_zero_bdseq_rebirth_metric_and_the_version() -> None:
    birth = node().birth(bdseq=7, now_ms=1000)
    assert [o.type for o in birth] == ["NBIRTH"]
    assert birth[0].topic == "spBv1.0/plant/NBIRTH/gw1"
    payload = decoded(birth[0].payload)
    assert payload.seq == 0
    metrics = {m.name: m for m in payload.metrics}
    assert metrics["bdSeq"].long_value == 7 and metrics["bdSeq"].datatype == ref.Int64
    assert metrics["Node Control/Rebirth"].boolean_value is False
    assert metrics["Properties/version"].string_value == "1.2.3"


def test_ndeath_carries_bdseq_and_no_seq() -> None:
    payload = decoded(node().death(bdseq=3, now_ms=5))
    assert not payload.HasField("seq")
    assert [(m.name, m.long_value) for m in payload.metrics] == [("bdSeq", 3)]


def test_first_data_of_a_device_is_a_dbirth_with_types_units_and_quality() -> None:
    n = node(press={"pressure": {"unit": "bar", "type": "int16"}})
    n.birth(0, 0)
    samples = [("pressure", Sample(-3, 1_000), None), ("pressure", Sample(-4, 2_000), None)]
    out = n.data("press", samples, now_ms=3_000)
    assert [o.type for o in out] == ["DBIRTH", "DDATA"]
    birth = decoded(out[0].payload)
    (metric,) = birth.metrics
    assert metric.name == "pressure" and metric.datatype == ref.Int16 and metric.alias > 0
    # Int16 in int_value as two's complement over 32 bits, as the specification says
    assert metric.int_value == (-3) % 2**32
    props = dict(zip(metric.properties.keys, metric.properties.values, strict=True))
    assert props["engUnit"].string_value == "bar" and props["Quality"].int_value == 192
    data = decoded(out[1].payload)
    assert [(m.alias, m.int_value, m.HasField("name")) for m in data.metrics] == [
        (metric.alias, (-4) % 2**32, False)
    ]  # by alias only after the birth
    assert (birth.seq, data.seq) == (1, 2)


def test_readings_go_out_by_exception() -> None:
    n = node()
    n.birth(0, 0)
    n.data("rec", [("t", Sample(1.0, 1), None)], 10)
    out = n.data("rec", [("t", Sample(1.0, 2), None), ("t", Sample(1.0, 3), None)], 20)
    assert out == []  # nothing changed
    out = n.data("rec", [("t", Sample(1.0, 4), None), ("t", Sample(None, 5, Quality.BAD), None)], 30)
    (ddata,) = out
    (metric,) = decoded(ddata.payload).metrics
    assert metric.is_null and metric.timestamp == 5
    assert dict(zip(metric.properties.keys, metric.properties.values, strict=True))["Quality"].int_value == 0


def test_a_metric_the_birth_did_not_have_makes_the_device_born_again() -> None:
    n = node()
    n.birth(0, 0)
    n.data("rec", [("a", Sample(1.0, 1), None)], 10)
    out = n.data("rec", [("a", Sample(2.0, 2), None), ("b", Sample(True, 2), None)], 20)
    assert [o.type for o in out] == ["DBIRTH", "DDATA"]
    assert {m.name for m in decoded(out[0].payload).metrics} == {"a", "b"}


def test_a_value_of_another_type_keeps_the_metric_type_and_is_null_and_bad() -> None:
    n = node()
    n.birth(0, 0)
    n.data("rec", [("a", Sample(1.5, 1), None)], 10)
    (ddata,) = n.data("rec", [("a", Sample("oops", 2), None)], 20)
    (metric,) = decoded(ddata.payload).metrics
    assert metric.is_null
    assert dict(zip(metric.properties.keys, metric.properties.values, strict=True))["Quality"].int_value == 0


def test_resent_messages_are_historical_and_features_alerts_status_map_to_the_pipeline_device() -> None:
    n = node()
    n.birth(0, 0)
    readings = Message(
        Kind.READINGS,
        "rec",
        1.0,
        {"source": "rec", "readings": [{"tag": "t", "ts_ms": 900, "value": 2.0, "quality": "good"}]},
    )
    out = translate(n, Envelope(1, 1, readings, replayed=True), now_ms=5_000)
    ddata = decoded(out[-1].payload)
    assert all(m.is_historical for m in ddata.metrics)
    features = Message(
        Kind.FEATURES,
        "pump",
        2.0,
        {
            "pipeline": "pump",
            "score": 0.5,
            "coverage": 1.0,
            "status": "scored",
            "model": "m1",
            "features": {"t.mean": 2.0},
        },
    )
    out = translate(n, Envelope(2, 1, features), now_ms=5_000)
    assert out[0].type == "DBIRTH" and out[0].topic == "spBv1.0/plant/DBIRTH/gw1/pipeline-pump"
    born = {m.name: m for m in decoded(out[0].payload).metrics}
    assert born["alert/active"].is_null and born["features/t.mean"].double_value == 2.0
    alert = Message(
        Kind.ALERT,
        "pump",
        3.0,
        {"pipeline": "pump", "state": "raised", "score": 9.0, "threshold": 4.0, "summary": "hot"},
    )
    out = translate(n, Envelope(3, 1, alert), now_ms=5_000)
    assert [o.type for o in out] == ["DBIRTH", "DDATA"]  # alert/score... are new metrics
    status = Message(
        Kind.STATUS,
        "agent",
        4.0,
        {"sources": {"rec": {"state": "down"}}, "pipelines": {"pump": {"alert_open": False}}},
    )
    out = translate(n, Envelope(4, 1, status), now_ms=5_000)
    assert [o.type for o in out] == ["DDEATH", "DDATA"]
    assert out[0].topic == "spBv1.0/plant/DDEATH/gw1/rec"
    (active,) = decoded(out[1].payload).metrics
    assert active.boolean_value is False


def test_our_protobuf_module_matches_an_independent_one_field_by_field() -> None:
    for name in (
        "Payload",
        "Payload.Metric",
        "Payload.PropertySet",
        "Payload.PropertyValue",
        "Payload.MetaData",
    ):
        mine = (
            ours.Payload.DESCRIPTOR
            if name == "Payload"
            else ours.Payload.DESCRIPTOR.nested_types_by_name[name.split(".")[1]]
        )
        theirs = (
            ref.Payload.DESCRIPTOR
            if name == "Payload"
            else ref.Payload.DESCRIPTOR.nested_types_by_name[name.split(".")[1]]
        )
        for field in mine.fields:
            other = theirs.fields_by_name[field.name]
            assert (field.number, field.type, field.is_repeated) == (
                other.number,
                other.type,
                other.is_repeated,
            ), (
                name,
                field.name,
            )
    assert ours.DataType == {v.name: v.number for v in ref.DataType.DESCRIPTOR.values}
