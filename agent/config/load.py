"""The whole config file: load TOML, overlay the environment, validate, and explain what is wrong.

The root model is a pydantic-settings ``BaseSettings`` whose ``sources`` and ``sinks`` are discriminated
unions (on ``type``) of every registered plugin's config model, built when the registry is known.

Environment overrides: ``EDGE_AGENT__<KEY>__<KEY>...=value`` sets a key anywhere in the tree; list items
are picked by index or by their ``name`` (``EDGE_AGENT__SINKS__broker__PASSWORD=...``). Values are read as
TOML values when they parse as such (numbers, booleans, arrays) and as strings otherwise. Every secret
field also accepts ``<field>_file`` (see ``agent.config.base.Model``).

Relative paths in the file (models, replay files, state_dir...) are resolved against the config file's
folder, so a deployment does not depend on the working directory.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field, SecretStr, ValidationError, create_model
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.config.base import SinkConfig, SourceConfig
from agent.config.sections import AgentSection, BusConfig, HealthConfig, PipelineConfig
from agent.errors import ConfigError, ConfigIssue
from agent.plugin import registry

ENV_PREFIX = "EDGE_AGENT__"


class AgentConfig(BaseSettings):
    """Root of the config file. ``config_model()`` returns the subclass that knows every plugin."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    agent: AgentSection = Field(default_factory=AgentSection, description="This agent.")
    bus: BusConfig = Field(default_factory=BusConfig, description="Queue between sources and pipelines.")
    health: HealthConfig = Field(default_factory=HealthConfig, description="Health and metrics endpoint.")
    sources: list[SourceConfig] = Field(default_factory=list, description="Where readings come from.")
    pipelines: list[PipelineConfig] = Field(default_factory=list, description="What is computed from them.")
    sinks: list[SinkConfig] = Field(default_factory=list, description="Where results go.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file and the environment are merged by ``overlay_env`` before validation, because
        # list items (sources, sinks) must be addressable by index and by name.
        return (init_settings,)


def _union(specs: Mapping[str, Any], base: type[BaseModel]) -> Any:
    models = tuple(spec.config for spec in specs.values())
    if not models:
        return base
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at run time


@cache
def config_model() -> type[AgentConfig]:
    """The root model with the discriminated unions of the installed source and sink plugins."""
    sources = _union(registry("source"), SourceConfig)
    sinks = _union(registry("sink"), SinkConfig)
    source_list: Any = list.__class_getitem__(sources)
    sink_list: Any = list.__class_getitem__(sinks)
    model: type[AgentConfig] = create_model(
        "EdgeAgentConfig",
        __base__=AgentConfig,
        sources=(source_list, Field(default_factory=list, description="Where readings come from.")),
        sinks=(sink_list, Field(default_factory=list, description="Where results go.")),
    )
    return model


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def overlay_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[ConfigIssue]:
    """Apply ``EDGE_AGENT__...`` variables to ``data`` in place; return problems with their variable names."""
    issues: list[ConfigIssue] = []
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX) or var.upper() == ENV_PREFIX:
            continue
        keys = [k.lower() for k in var[len(ENV_PREFIX) :].split("__")]
        node: Any = data
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(node, list):
                index = _list_index(node, key)
                if index is None:
                    issues.append(
                        ConfigIssue("", f"{var}: no item {key!r} in that list (use an index or a name)")
                    )
                    break
                if last:
                    node[index] = _parse_env_value(environ[var])
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[key] = _parse_env_value(environ[var])
                else:
                    node = node.setdefault(key, {})
            else:
                issues.append(ConfigIssue("", f"{var}: {'.'.join(keys[:depth])} is not a table"))
                break
    return issues


def _list_index(items: list[Any], key: str) -> int | None:
    if key.isdigit():
        return int(key) if int(key) < len(items) else None
    for i, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("name", item.get("type", ""))).lower() == key:
            return i
    return None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read, overlay, validate and cross-check a config file.

    Raises:
        ConfigError: every problem found, each with its key path and a fix.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, [ConfigIssue("", f"cannot read the config file: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, [ConfigIssue("", f"TOML syntax error: {exc}")]) from None
    issues = overlay_env(data, os.environ if environ is None else environ)
    if issues:
        raise ConfigError(file, issues)
    model = config_model()
    try:
        cfg = model(**data)
    except ValidationError as exc:
        raise ConfigError(file, explain_validation(exc, model, data)) from None
    _resolve_paths(cfg, Path(path).resolve().parent)
    issues = cross_check(cfg)
    if issues:
        raise ConfigError(file, issues)
    return cfg


def config_hash(config: AgentConfig | str | Path) -> str:
    """Short hash of the parsed config with every secret left out, published in the retained status so
    a fleet can see drift. Hashing the raw file let anyone reading the status brute-force an inline
    password offline (issue 10); secrets, and only secrets, do not change the hash."""
    cfg = config if isinstance(config, AgentConfig) else load_config(config)
    text = json.dumps(_without_secrets(cfg), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _without_secrets(value: Any) -> Any:
    if isinstance(value, BaseModel):
        secret = getattr(value, "_secret_fields", ())
        return {
            name: _without_secrets(getattr(value, name))
            for name in type(value).model_fields
            if name not in secret and not isinstance(getattr(value, name), SecretStr)
        }
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _without_secrets(v) for k, v in value.items() if not isinstance(v, SecretStr)}
    return value


def _resolve_paths(model: BaseModel, base: Path) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            object.__setattr__(model, name, base / value)
        elif isinstance(value, BaseModel):
            _resolve_paths(value, base)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base)


def fmt_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic puts the discriminator value into the location: sources.1.modbus.tags -> sources[1].tags
    out: list[Any] = []
    for i, part in enumerate(loc):
        if (
            i >= 2
            and isinstance(loc[i - 1], int)
            and loc[i - 2] in ("sources", "sinks")
            and isinstance(part, str)
        ):
            continue
        out.append(part)
    return tuple(out)


def _unwrap(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (list, Union) or str(origin) in ("types.UnionType", "<class 'types.UnionType'>"):
        return [t for arg in get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_at(root: type[BaseModel], loc: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The model class that owns the key at ``loc`` (used to list allowed keys)."""
    model: type[BaseModel] | None = root
    node = data
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if model is None or part not in model.model_fields:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        candidates = [t for t in _unwrap(model.model_fields[part].annotation) if isinstance(t, type)]
        models = [t for t in candidates if issubclass(t, BaseModel)]
        if len(models) > 1:
            item = node[0] if isinstance(node, list) and node else node
            wanted = item.get("type") if isinstance(item, dict) else None
            models = [
                m for m in models if m.model_fields.get("type") and wanted in _literal_values(m)
            ] or models
        model = models[0] if models else None
    return model


def _literal_values(model: type[BaseModel]) -> tuple[Any, ...]:
    return get_args(model.model_fields["type"].annotation)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def explain_validation(exc: ValidationError, root: type[BaseModel], data: Any) -> list[ConfigIssue]:
    """Turn pydantic errors into one line each: key path, bad value, what is allowed."""
    issues: list[ConfigIssue] = []
    for err in exc.errors(include_url=False):
        loc = _strip_union_tags(tuple(err["loc"]))
        path = fmt_path(loc)
        kind = err["type"]
        owner = _model_at(root, loc[:-1], data) if loc else None
        key = loc[-1] if loc else ""
        secret = owner is not None and key in getattr(owner, "_secret_fields", ())
        if kind == "extra_forbidden":
            allowed = sorted(owner.model_fields) if owner else []
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            msg = f"unknown key {key!r}"
            msg += f"; did you mean {hint[0]!r}?" if hint else ""
            msg += f" Allowed here: {', '.join(allowed)}" if allowed else ""
        elif kind == "missing":
            msg = f"required key {key!r} is missing; add it"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = f"unknown type {ctx.get('tag')!r}; installed plugins: {ctx.get('expected_tags')} (see `edge-agent plugins`)"
        elif kind == "union_tag_not_found":
            msg = 'missing `type = "..."`; see `edge-agent plugins` for the types installed'
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if not isinstance(err.get("input"), dict | list):
                msg += f" (got {'***' if secret else _show(err.get('input'))})"
        issues.append(ConfigIssue(path, msg))
    return issues


def _tag_locations(cfg: AgentConfig) -> Iterator[tuple[str, str]]:
    for i, source in enumerate(cfg.sources):
        for j, tag in enumerate(source.tags):
            yield tag.name, f"sources[{i}].tags[{j}].name"


def cross_check(cfg: AgentConfig) -> list[ConfigIssue]:
    """Checks across sections: unique names, pipelines naming known tags."""
    issues: list[ConfigIssue] = []
    for section in ("sources", "pipelines", "sinks"):
        seen: dict[str, int] = {}
        for i, item in enumerate(getattr(cfg, section)):
            name = item.name or getattr(item, "type", "")
            if name in seen:
                issues.append(
                    ConfigIssue(
                        f"{section}[{i}].name", f"name {name!r} is already used by {section}[{seen[name]}]"
                    )
                )
            seen.setdefault(name, i)
    tags: dict[str, str] = {}
    for name, where in _tag_locations(cfg):
        if name in tags:
            issues.append(
                ConfigIssue(where, f"tag {name!r} is already defined at {tags[name]}; tag names are unique")
            )
        tags.setdefault(name, where)
    for i, pipe in enumerate(cfg.pipelines):
        for j, tag in enumerate(pipe.tags):
            if tag not in tags:
                hint = difflib.get_close_matches(tag, list(tags), n=1)
                msg = f"unknown tag {tag!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                msg += (
                    f" Defined tags: {', '.join(sorted(tags)[:12])}"
                    if tags
                    else " No source defines any tag."
                )
                issues.append(ConfigIssue(f"pipelines[{i}].tags[{j}]", msg))
        if len(set(pipe.tags)) != len(pipe.tags):
            issues.append(ConfigIssue(f"pipelines[{i}].tags", "a tag is listed twice"))
    return issues
