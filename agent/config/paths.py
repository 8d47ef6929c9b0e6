"""Where a config's relative paths point: the folder of the config file, not the working directory.

``anchor_files`` runs on the raw TOML data before validation (secret ``*_file`` values are read while
validating); ``resolve_paths`` runs on the validated models and makes every relative ``Path`` field absolute.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel


def anchor_files(data: Any, base: Path) -> Any:
    """Relative ``*_file`` values made absolute against the config's folder before validation, because
    secret files are read while validating (issue 12: a relative password_file was read from the cwd)."""
    if isinstance(data, list):
        return [anchor_files(item, base) for item in data]
    if not isinstance(data, dict):
        return data
    return {
        k: str(base / v)
        if k.endswith("_file") and isinstance(v, str) and v and not Path(v).is_absolute()
        else anchor_files(v, base)
        for k, v in data.items()
    }


def resolve_paths(model: BaseModel, base: Path) -> None:
    """Relative ``Path`` fields made absolute against the config's folder, in place."""
    for name in _path_bearing(type(model)):
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            object.__setattr__(model, name, base / value)
        elif isinstance(value, BaseModel):
            resolve_paths(value, base)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    resolve_paths(item, base)


@cache
def _path_bearing(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``cls`` that may hold a ``Path`` or a model that does; W2's 10,000 Modbus tags hold
    none, and walking each of them was a tenth of the start-up (issue 17)."""
    return tuple(name for name, field in cls.model_fields.items() if _may_hold_path(field.annotation, set()))


def _may_hold_path(annotation: Any, seen: set[type]) -> bool:
    if annotation is Path or annotation is Any:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return False  # a recursive model: its own fields answer for it
        seen.add(annotation)
        return any(_may_hold_path(f.annotation, seen) for f in annotation.model_fields.values())
    return any(_may_hold_path(arg, seen) for arg in get_args(annotation))
