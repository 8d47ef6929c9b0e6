"""Pure parts of the OPC UA plugin: node ids, status codes, values, config validation, the sample."""

from __future__ import annotations

import datetime as dt
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from asyncua import ua
from pydantic import ValidationError

from agent.records import Quality
from plugins.opcua import nodeid, status
from plugins.opcua.browse import Variable, tag_name, to_toml
from plugins.opcua.config import OpcUaSourceConfig

NS = ["http://opcfoundation.org/UA/", "urn:extra", "urn:plc:line1"]


@pytest.mark.parametrize(
    ("text", "resolved"),
    [
        ("i=85", "i=85"),
        ("ns=2;i=1001", "ns=2;i=1001"),
        ("ns=2;s=Line1.Speed", "ns=2;s=Line1.Speed"),
        ("ns=2;s=a;b=c", "ns=2;s=a;b=c"),  # strings may hold ; and = (OPC 10000-3 §8.2.4)
        ("ns=3;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63", "ns=3;g=72962b91-fa75-4ae6-8d28-b404dc7daf63"),
        ("ns=2;b=M/RbKBsRVkePCePcx24oRA==", "ns=2;b=M/RbKBsRVkePCePcx24oRA=="),
        ("nsu=urn:plc:line1;s=Speed", "ns=2;s=Speed"),
        ("nsu=urn:extra;i=7", "ns=1;i=7"),
    ],
)
def test_every_node_id_form_resolves_to_what_asyncua_parses(text: str, resolved: str) -> None:
    out = nodeid.parse(text).resolve(NS)
    assert out == resolved
    ua.NodeId.from_string(out)  # asyncua accepts what we hand it


def test_namespace_uri_follows_the_index_when_it_changes() -> None:
    ref = nodeid.parse("nsu=urn:plc:line1;s=Speed")
    assert ref.resolve(NS) == "ns=2;s=Speed"
    assert ref.resolve([*NS[:1], "urn:new", *NS[1:]]) == "ns=3;s=Speed"
    with pytest.raises(LookupError, match="urn:plc:line1"):
        ref.resolve(NS[:2])


@pytest.mark.parametrize(
    "text", ["", "ns=2", "ns=x;i=1", "ns=2;q=1", "ns=2;i=abc", "ns=2;g=nope", "nsu=;s=a", "s="]
)
def test_bad_node_ids_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="bad node id"):
        nodeid.parse(text)


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (ua.StatusCodes.Good, Quality.GOOD),
        (ua.StatusCodes.GoodClamped, Quality.GOOD),
        (ua.StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (ua.StatusCodes.BadNodeIdUnknown, Quality.BAD),
        (ua.StatusCodes.BadCommunicationError, Quality.BAD),
    ],
)
def test_status_severity_maps_to_quality(code: int, quality: Quality) -> None:
    assert status.quality_of(code) is quality


def test_readings_carry_status_names_and_source_time() -> None:
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    good = status.reading("t", ua.DataValue(ua.Variant(3, ua.VariantType.Int32), SourceTimestamp=stamp))
    assert (good.value, good.quality, good.ts) == (3.0, Quality.GOOD, stamp.timestamp())
    unc = status.reading(
        "t", ua.DataValue(ua.Variant(1.5), StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue))
    )
    assert (unc.value, unc.quality, unc.reason) == (1.5, Quality.UNCERTAIN, "UncertainLastUsableValue")
    bad = status.reading(
        "t", ua.DataValue(ua.Variant(1.5), StatusCode=ua.StatusCode(ua.StatusCodes.BadOutOfService))
    )
    assert (bad.value, bad.quality, bad.reason) == (None, Quality.BAD, "BadOutOfService")
    arr = status.reading("t", ua.DataValue(ua.Variant([1.0, 2.0])), now=5.0)
    assert (arr.quality, arr.reason, arr.ts) == (Quality.BAD, "unsupported type array", 5.0)


@pytest.mark.parametrize(
    ("raw", "value"),
    [(True, True), (7, 7.0), (2.5, 2.5), ("auto", "auto"), (ua.LocalizedText("hi"), "hi")],
)
def test_scalar_values_become_float_bool_or_str(raw: object, value: object) -> None:
    out = status.convert(raw)
    assert out == value and type(out) is type(value)


def _cfg(**kw: object) -> OpcUaSourceConfig:
    base: dict[str, object] = {"type": "opcua", "name": "plc", "endpoint": "opc.tcp://h:4840"}
    return OpcUaSourceConfig.model_validate(base | kw)


def test_config_refuses_inconsistent_security_and_bad_nodes() -> None:
    with pytest.raises(ValidationError, match="go together"):
        _cfg(security_policy="Basic256Sha256")
    with pytest.raises(ValidationError, match="both certificate and private_key"):
        _cfg(certificate="c.der")
    with pytest.raises(ValidationError, match="bad node id"):
        _cfg(tags=[{"name": "a", "node": "ns=2;x=1"}])
    with pytest.raises(ValidationError, match="used twice"):
        _cfg(tags=[{"name": "a", "node": "i=1"}, {"name": "a", "node": "i=2"}])
    with pytest.raises(ValidationError, match="Extra inputs"):
        _cfg(auto_reconnect=True)
    assert _cfg(security_policy="Aes256_Sha256_RsaPss", security_mode="Sign").secure


SECURE_TRUSTING = {
    "security_policy": "Basic256Sha256",
    "security_mode": "SignAndEncrypt",
    "trust_unknown_server": True,
}


def test_password_file_reads_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    cfg = _cfg(username="edge", password_file=str(secret), **SECURE_TRUSTING)
    assert cfg.password is not None and cfg.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg)


def test_sample_config_is_valid() -> None:
    text = resources.files("plugins.opcua").joinpath("sample.toml").read_text(encoding="utf-8")
    cfg = OpcUaSourceConfig.model_validate(tomllib.loads(text)["sources"][0])
    assert cfg.secure and len(cfg.tags) == 3


def test_browse_toml_names_are_valid_and_unique() -> None:
    found = [
        Variable("Line 1/Speed", "nsu=urn:p;s=Line 1.Speed", "Double", False),
        Variable("Line 1.Speed", "nsu=urn:p;s=x", "Float", False),
        Variable("Line 1/Trend", "nsu=urn:p;s=t", "Double", True),
        Variable("Line 1/When", "nsu=urn:p;s=w", "DateTime", False),
    ]
    assert tag_name("9 Ä/b") == "9__.b"
    data = tomllib.loads("[[sources]]\n" + to_toml(found))
    tags = data["sources"][0]["tags"]
    assert [t["name"] for t in tags] == ["Line_1.Speed", "Line_1.Speed_2"]
    _cfg(tags=tags)
