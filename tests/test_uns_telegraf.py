"""The Telegraf example (examples/telegraf-uns.conf) reads what the agent really publishes in UNS mode.

Telegraf itself is not installed here: the test parses its TOML and checks, against payloads a real
mosquitto delivered from the real sink, that every subscription and topic_parsing pattern matches the
topics, that the parsed levels name the right things, and that every json_v2 path exists with the type
the config expects.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.records import Envelope, Kind, Message
from tests.mosquitto import Mosquitto, running_mosquitto
from tests.test_uns import late_subscriber, make_sink, readings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "telegraf-uns.conf"
PYTHON_TYPE = {"bool": bool, "float": float, "string": str}


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from running_mosquitto(tmp_path)


def matches(pattern: str, topic: str) -> bool:
    want, got = pattern.split("/"), topic.split("/")
    return len(want) == len(got) and all(w in ("+", g) for w, g in zip(want, got, strict=True))


def parsed_levels(spec: str, topic: str) -> dict[str, str]:
    return {name: level for name, level in zip(spec.split("/"), topic.split("/"), strict=True) if name != "_"}


async def test_the_telegraf_example_parses_real_uns_payloads(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sink = make_sink(
        mosquitto.port, tmp_path, prefix="factory/gumi/line1", agent_id="press-7"
    )  # the example's
    async with sink:
        await sink.publish(
            [readings(1, [("running", True, 1000), ("temp", 21.5, 1000), ("recipe", "A", 1000)])]
        )
        alert = {"pipeline": "pump", "state": "raised", "score": 9.5, "threshold": 4.0, "summary": "hot"}
        await sink.publish([Envelope(2, 1, Message(Kind.ALERT, "pump", 5.0, alert))])
    got = late_subscriber(mosquitto.port, "factory/gumi/line1/#", expect=5)  # 3 tags, state, status
    inputs = tomllib.loads(EXAMPLE.read_text())["inputs"]["mqtt_consumer"]
    assert len(inputs) == 2
    tags_in, alerts_in = inputs

    tag_topics = {t: b for t, b in got.items() if "/press/" in t}
    assert len(tag_topics) == 3
    for topic, body in tag_topics.items():
        check_input(tags_in, topic, body)
        parsing = tags_in["topic_parsing"][0]
        levels = parsed_levels(parsing["tags"], topic) | parsed_levels(parsing["measurement"], topic)
        assert levels == {"agent": "press-7", "source": "press", "measurement": topic.rsplit("/", 1)[1]}
        assert levels["source"] not in tags_in["tagdrop"]["source"]
    (state_topic,) = [t for t in got if t.endswith("/state")]
    check_input(alerts_in, state_topic, got[state_topic])
    assert parsed_levels(alerts_in["topic_parsing"][0]["tags"], state_topic) == {"agent": "press-7"}
    assert not any(matches(tags_in["topics"][0], t) for t in [state_topic])  # each topic reaches one input


def check_input(cfg: dict[str, Any], topic: str, body: dict[str, Any]) -> None:
    assert any(matches(p, topic) for p in cfg["topics"]), (cfg["topics"], topic)
    assert all(matches(p["topic"], topic) for p in cfg["topic_parsing"])
    assert cfg["data_format"] == "json_v2"
    (parser,) = cfg["json_v2"]
    assert parser["timestamp_format"] == "unix_ms" and isinstance(body[parser["timestamp_path"]], int)
    for tag in parser.get("tag", []):
        assert tag["path"] in body, (topic, tag["path"])
    for field in parser["field"]:
        assert field["path"] in body, (topic, field["path"])
        if "type" in field:
            assert isinstance(body[field["path"]], PYTHON_TYPE[field["type"]]), (topic, field)
