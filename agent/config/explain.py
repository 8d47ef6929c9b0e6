"""Pydantic validation errors explained for a person: key path, bad value (secrets masked), what is allowed."""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from agent.errors import ConfigIssue


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
