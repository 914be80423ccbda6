"""The README's configuration reference names every key of the config model, and only those.

The reference is the table under "## Configuration reference": its first column holds
the full key (``poll.interval``, ``feeds[].learn_cadence``, ``targets.NAME.url``). The
keys are read from the pydantic model itself, so a key added to ``monitor/config/model.py``
without its README row (or a row left behind by a removed key) fails here.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from monitor.config.model import Config

README = Path(__file__).resolve().parents[1] / "README.md"


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            tp = get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys |= _keys_of(_unwrap(field.annotation), prefix + name)
    return keys


def _keys_of(tp: Any, path: str) -> set[str]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _model_keys(tp, path + ".")
    origin, args = get_origin(tp), get_args(tp)
    if origin is list and args and isinstance(_unwrap(args[0]), type) and issubclass(_unwrap(args[0]), BaseModel):
        return _model_keys(_unwrap(args[0]), path + "[].")
    if origin is dict:
        value = _unwrap(args[1])
        if isinstance(value, type) and issubclass(value, BaseModel):
            return _model_keys(value, path + ".NAME.")
        return {path + ".NAME"}
    return {path}


def readme_reference_keys() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration reference\n", 1)[1].split("\n## ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| \*{0,2}`([^`]+)`", section, re.MULTILINE)}


def test_every_config_key_has_a_row_in_the_readme_reference() -> None:
    missing = _model_keys(Config) - readme_reference_keys()
    assert not missing, f"README.md, Configuration reference: no row for {sorted(missing)}"


def test_every_row_of_the_readme_reference_is_a_config_key() -> None:
    keys = _model_keys(Config)
    # A row may also name a group of keys (`poll`, `feeds`, `targets.NAME`).
    groups = {k[: m.start()] for k in keys for m in re.finditer(r"\.|\[\]", k)}
    stale = readme_reference_keys() - keys - groups
    assert not stale, f"README.md, Configuration reference: rows for keys the config has not: {sorted(stale)}"


def test_the_reference_walk_sees_nested_keys() -> None:
    keys = _model_keys(Config)
    expected = {
        "web.listen",
        "web.token",
        "delivery.batch",
        "feeds[].learn_cadence",
        "watchlists[].description",
        "targets.NAME.rate_limit",
        "aliases.NAME",
    }
    assert expected <= keys
