"""The config reference in ``docs/config-reference.md``, generated from the config models themselves.

``python -m agent.config.reference > docs/config-reference.md`` rewrites it; a test fails when it is stale, so the
reference and the code never drift.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from agent.config.recording import RecordingConfig
from agent.config.sections import (
    AgentSection,
    AlertConfig,
    BusConfig,
    HealthConfig,
    PipelineConfig,
    WindowConfig,
)
from agent.registry import registry

HEADER = """# Configuration reference

Generated from the config models by `python -m agent.config.reference`; do not edit by hand.
Durations accept seconds or strings like `500ms`, `10s`, `5m`, `1h30m`; sizes accept bytes or `64MB`, `1GiB`.
Every key can be overridden with `EDGE_AGENT__<SECTION>__<KEY>` (list items by index or name), and every
secret also accepts `<key>_file` with a path to a file holding it.
"""


def _type(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is list or origin is tuple:
        return f"list of {_type(get_args(annotation)[0])}"
    if origin in (Union, types.UnionType):
        return " or ".join(_type(a) for a in get_args(annotation) if a is not type(None))
    if str(origin) == "typing.Literal" or repr(annotation).startswith("typing.Literal"):
        return " / ".join(f"`{a}`" for a in get_args(annotation))
    name = getattr(annotation, "__name__", repr(annotation))
    return {
        "SecretStr": "secret",
        "float": "number",
        "int": "integer",
        "str": "string",
        "bool": "boolean",
    }.get(name, name.replace("typing.", ""))


def _kind(info: Any) -> str:
    funcs = {getattr(getattr(m, "func", None), "__name__", "") for m in info.metadata}
    for arg in get_args(info.annotation):
        funcs |= {getattr(getattr(m, "func", None), "__name__", "") for m in getattr(arg, "__metadata__", ())}
    if "parse_duration" in funcs:
        return "duration" + (" or none" if type(None) in get_args(info.annotation) else "")
    if "parse_size" in funcs:
        return "size"
    return _type(info.annotation)


def _default(info: Any) -> str:
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(section)"
        if info.default_factory.__name__ in ("gethostname", "_default_state_dir"):
            return {"gethostname": "host name", "_default_state_dir": "`$STATE_DIRECTORY` or `./state`"}[
                info.default_factory.__name__
            ]
        return f"`{value!r}`" if value != [] else "`[]`"
    if info.default is PydanticUndefined:
        return "**required**"
    return f"`{info.default!r}`" if info.default is not None else "none"


def table(title: str, model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip().splitlines()[0]
    rows = [f"## {title}", "", doc, "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        text = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_kind(info)} | {_default(info)} | {text} |")
    return "\n".join(rows) + "\n"


def _nested(model: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for info in model.model_fields.values():
        for arg in (info.annotation, *get_args(info.annotation)):
            for inner in (arg, *get_args(arg)):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in found:
                    found.append(inner)
    return found


def render() -> str:
    parts = [HEADER]
    core: list[tuple[str, type[BaseModel]]] = [
        ("[agent]", AgentSection),
        ("[bus]", BusConfig),
        ("[health]", HealthConfig),
        ("[[pipelines]]", PipelineConfig),
        ("[pipelines.window]", WindowConfig),
        ("[pipelines.alert]", AlertConfig),
        ("[recording]", RecordingConfig),
    ]
    parts += [table(title, model) for title, model in core]
    seen: set[type[BaseModel]] = set()
    kinds: tuple[Literal["source", "sink"], ...] = ("source", "sink")
    for kind in kinds:
        for spec in registry(kind).values():
            section = f'[[{kind}s]] type = "{spec.type}"'
            parts.append(table(section, spec.config))
            for inner in _nested(spec.config):
                if inner not in seen:
                    seen.add(inner)
                    parts.append(table(f"{section}: {inner.__name__}", inner))
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
