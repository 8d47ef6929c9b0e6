"""The status page's API on a running agent (the shared recorded pump and its model), checked against the
published JSON Schema; slow clients against it; the buffers and the model card on their own."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import socket
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from agent.config.load import load_config
from agent.errors import ModelError
from agent.ops.status_api import API_PATHS, StatusFeed
from agent.ops.status_card import card
from agent.records import Kind, Message, Reading
from agent.runtime.core import Runtime
from agent.stream import inference
from tests.conftest import free_port
from tests.hostile_models import model_with_metadata
from tests.mosquitto import eventually
from tests.pump import make_data, make_model, source_and_pipeline
from tests.test_health_slowloris import Slowloris, many_files  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "agent" / "schemas" / "status-api.schema.json").read_text())
WEB = REPO / "agent" / "ops" / "web"
TOKEN = "page-token-0123456789"


def validate(body: dict[str, Any], which: str) -> None:
    """Check ``body`` against one of the schema's bodies (status, series or models)."""
    schema = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{which}"}
    jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
    jsonschema.validate(body, SCHEMA)  # and the published schema as a whole


def fetch(port: int, path: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def get(port: int, path: str, token: str | None = TOKEN) -> Any:
    status, body = await asyncio.to_thread(fetch, port, path, token)
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


def write_config(tmp_path: Path, port: int, speed: float, at_end: str, language: str = "en") -> Path:
    make_data(tmp_path / "data.csv")
    make_model(tmp_path / "model.onnx")
    pump = source_and_pipeline(speed, at_end).replace(
        'name = "bearing_temp"\n', 'name = "bearing_temp"\nunit = "degC"\n', 1
    )
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[agent]\nid = "line1"\nstate_dir = "state"\nlanguage = "{language}"\n'
        f'[health]\nport = {port}\ntoken = "{TOKEN}"\n{pump}\n'
        '[[sinks]]\ntype = "jsonl"\nname = "file"\npath = "out.jsonl"\nkinds = ["alert", "features", "status"]\n'
    )
    return path


@contextlib.asynccontextmanager
async def running(config: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime(load_config(config, {}), str(config))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop), name="agent")
    try:
        await eventually(
            lambda: runtime.observer.server is not None and runtime.ready.is_set(), what="agent up"
        )
        yield runtime
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_the_api_matches_its_published_schema(tmp_path: Path) -> None:
    port = free_port()
    async with running(write_config(tmp_path, port, 0, "idle")) as runtime:
        await eventually(
            lambda: runtime.pipelines[0].stats.alerts_cleared > 0, what="an alert raised and cleared"
        )
        status = await get(port, "/api/status")
        series = await get(port, "/api/series")
        after = await get(port, "/api/status")  # the replay may still be windowing between the two reads
        models = await get(port, "/api/models")
        index = await get(port, "/api")
        assert (await asyncio.to_thread(fetch, port, "/api/status", None))[0] == 401
    validate(status, "status")
    validate(series, "series")
    validate(models, "models")
    assert set(index["paths"]) == set(API_PATHS)

    tags = {t["name"]: t for t in status["tags"]}
    assert tags["bearing_temp"]["unit"] == "degC" and tags["bearing_temp"]["quality"] == "good"
    assert isinstance(tags["vibration"]["value"], float) and tags["vibration"]["source"] == "rec"
    [pipe] = status["pipelines"]
    assert pipe["threshold"] == 4.0 and pipe["alerts_raised"] >= 1 and pipe["last_coverage"] == 1.0
    raised = [a for a in status["alerts"] if a["state"] == "raised"]
    assert raised and "bearing_temp" in raised[0]["summary"] and raised[0]["top"][0]["tag"] == "bearing_temp"
    assert status["alerts"][0]["state"] == "cleared"  # newest first
    [scores] = series["pipelines"]
    windows_after = after["pipelines"][0]["windows"]
    assert pipe["windows"] <= len(scores["points"]) <= windows_after
    assert max(p[1] for p in scores["points"]) > 4.0
    [model] = models["models"]
    assert model["features"][0]["name"] == "bearing_temp.mean" and model["features"][0]["center"] == 45
    assert {s["name"]: s["state"] for s in status["sources"]} == {"rec": "up"}
    assert status["sinks"][0]["outbox"]["max_bytes"] > 0


async def test_series_since_returns_only_newer_windows(tmp_path: Path) -> None:
    port = free_port()
    async with running(write_config(tmp_path, port, 0, "idle")) as runtime:
        await eventually(lambda: runtime.pipelines[0].stats.windows > 50, what="windows")
        points = (await get(port, "/api/series"))["pipelines"][0]["points"]
        cut = points[len(points) // 2][0]
        newer = (await get(port, f"/api/series?since={cut}&pipeline=pump"))["pipelines"][0]["points"]
        # Windows keep closing between the two requests: the second answer may hold newer ones too.
        expected = [p for p in points if p[0] > cut]
        assert newer[: len(expected)] == expected and all(p[0] > cut for p in newer)
        assert (await get(port, "/api/series?pipeline=nope"))["pipelines"] == []
        assert (await asyncio.to_thread(fetch, port, "/api/series?since=yesterday"))[0] == 400


def with_many_tags(config: Path, n: int) -> None:
    """Add ``n`` constant tags to the recorded pump, so that ``/api/status`` is larger than socket buffers."""
    data = config.parent / "data.csv"
    lines = data.read_text().splitlines()
    extra = [f"x{i:03d}" for i in range(n)]
    data.write_text(
        "\n".join([lines[0] + "," + ",".join(extra)] + [ln + ",1.5" * n for ln in lines[1:]]) + "\n"
    )
    tags = "".join(f'[[sources.tags]]\nname = "{name}"\n' for name in extra)
    text = config.read_text()
    config.write_text(text.replace("[[pipelines]]", tags + "\n[[pipelines]]", 1))


@pytest.mark.usefixtures("many_files")
async def test_slow_clients_do_not_hold_the_agent(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, 20, "loop")
    with_many_tags(config, 600)
    async with running(config) as runtime:
        stats = runtime.pipelines[0].stats
        await eventually(lambda: stats.windows > 2, what="first windows")
        stuck = []
        stack = contextlib.AsyncExitStack()
        # Each asks for the whole status (60 kB) and never reads it; the server that holds them past
        # the kernel's buffers is tested in test_health_slowloris.py.
        for _ in range(40):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", port))
            stuck.append(sock)
        try:
            await eventually(lambda: all(_connected(s) for s in stuck), what="slow clients connected")
            await stack.enter_async_context(Slowloris(port, 200))  # and 200 that never finish asking
            request = f"GET /api/status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
            for sock in stuck:
                sock.send(request)
            for _ in range(3):
                before = stats.windows
                await eventually(lambda b=before: stats.windows > b, what="windows to keep closing")
                assert (await get(port, "/healthz", None))["status"] == "ok"
                assert len((await get(port, "/api/status"))["tags"]) == 602
        finally:
            await stack.aclose()
            for sock in stuck:
                sock.close()


def _connected(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and _peer(sock)


def _peer(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


# ---- the buffers and the card, on their own ----------------------------------------------------------


def features(pipeline: str, end: float, score: float | None, status: str = "scored") -> Message:
    payload = {
        "pipeline": pipeline,
        "window": {"start_ms": round((end - 10) * 1000), "end_ms": round(end * 1000)},
        "coverage": 1.0,
        "status": status,
        "score": score,
    }
    return Message(Kind.FEATURES, pipeline, end, payload)


def test_the_feed_is_bounded() -> None:
    feed = StatusFeed(clock=lambda: 100.0, points=10, alerts=3)
    feed.messages([features("p", float(i), 0.5) for i in range(25)])
    assert [p[0] for p in feed.series["p"]] == [float(i) for i in range(15, 25)]
    feed.messages([Message(Kind.ALERT, "p", float(i), {"pipeline": "p", "n": i}) for i in range(5)])
    assert [a["n"] for a in feed.alerts] == [4, 3, 2]  # newest first, three kept
    feed.messages([features("p", 30.0, None, "skipped")])
    assert feed.series["p"][-1] == (30.0, None, 1.0, 1)
    feed.readings([Reading("t1", 1.0, 3.5), Reading("t1", 2.0, 4.5)])
    assert feed.tags["t1"][0].value == 4.5 and feed.tags["t1"][1] == 100.0


NAMES = ["a.mean", "b.mean"]


class LivePipeline:
    """What the card reads of a pipeline: its name, feature names, alert state and live model."""

    name = "p"
    names = NAMES
    alert = None

    def __init__(self, model: inference.Model) -> None:
        self.model = model


def live(tmp_path: Path, metadata: dict[str, str]) -> LivePipeline:
    """A pipeline holding a real model with ``metadata``, loaded by the agent's own loader."""
    return LivePipeline(inference.load(model_with_metadata(tmp_path / "m.onnx", NAMES, metadata), NAMES))


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"edge_agent.center": "[1,", "edge_agent.n_train": "120"}, "center"),
        ({"edge_agent.center": "[" * 100_000 + "]" * 100_000}, "center"),
        ({"edge_agent.training_span": '{"start": "x", "end": 1}'}, "training_span"),
        ({"edge_agent.training_span": "abc"}, "training_span"),
        ({"edge_agent.n_train": "many"}, "n_train"),
        ({"edge_agent.n_train": "-3"}, "n_train"),
        ({"edge_agent.false_alarm_rate": "inf"}, "false_alarm_rate"),
        ({"edge_agent.false_alarm_rate": "2.5"}, "false_alarm_rate"),
    ],
)
def test_odd_metadata_is_refused_by_the_loader_so_no_card_shows_it(
    tmp_path: Path, metadata: dict[str, str], key: str
) -> None:
    """One reading of the contract (issue 18): the card used to parse the raw strings leniently and
    show a model the loader had accepted with a broken n_train or false_alarm_rate as "not recorded"."""
    with pytest.raises(ModelError, match=f"edge_agent.{key}"):
        live(tmp_path, metadata)


def test_the_card_reads_what_training_writes(tmp_path: Path) -> None:
    meta = {
        "edge_agent.center": "[1.5, 2.0]",
        "edge_agent.scale": "[0.1, 0.2]",
        "edge_agent.normal_low": "[1.2, 1.4]",
        "edge_agent.normal_high": "[1.8, 2.6]",
        "edge_agent.training_span": '{"start": 1700000000, "end": 1700003600}',
        "edge_agent.n_train": "120",
        "edge_agent.kind": "robust-pca-tr",
        "edge_agent.threshold_rule": "score = max(T/T_lim, R/R_lim)",
        "edge_agent.false_alarm_rate": "0.0002",
    }
    got = card(live(tmp_path, meta))
    assert got["trained"] == {"start": 1700000000.0, "end": 1700003600.0} and got["n_train"] == 120
    assert got["features"][1] == {"name": "b.mean", "center": 2.0, "scale": 0.2, "low": 1.4, "high": 2.6}
    assert np.isclose(got["features"][0]["low"], 1.2) and got["false_alarm_rate"] == 0.0002
    assert got["kind"] == "robust-pca-tr"
    validate({"schema": "edge-agent/status-api/1", "models": [got]}, "models")
    bare = card(live(tmp_path, {"edge_agent.training_span": "{}", "edge_agent.data_hash": ""}))
    assert bare["trained"] is None and bare["data_hash"] is None and bare["false_alarm_rate"] is None
    assert all(f["center"] is None and f["low"] is None for f in bare["features"])
    validate({"schema": "edge-agent/status-api/1", "models": [bare]}, "models")


# ---- offline, packaged, documented -------------------------------------------------------------------


def test_the_page_loads_nothing_from_anywhere_else() -> None:
    files = {p.name: p.read_text() for p in WEB.iterdir() if p.suffix in (".html", ".js", ".css")}
    assert set(files) == {"index.html", "app.js", "app.css"}
    for name, text in files.items():
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (
            name,
            urls,
        )  # the SVG namespace is a name, not a fetch
        assert "@import" not in text and "@font-face" not in text, name
    linked = re.findall(r'(?:src|href)="/static/([^"]+)"', files["index.html"])
    assert sorted(linked) == ["app.css", "app.js"]
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"*.html", "*.js", "*.css"} <= set(package_data["agent.ops.web"])


def test_every_api_path_and_field_is_documented() -> None:
    doc = (REPO / "docs" / "status-page.md").read_text()
    for path in API_PATHS:
        assert path.split("?")[0] in doc, path
    for field in SCHEMA["$defs"]["status"]["properties"]:
        assert f"`{field}`" in doc, field
    assert "status-api.schema.json" in doc
