"""Field rules: how a table of an input file is declared and checked, for the scenario's tables and the
fleet's alike.

A table is a frozen dataclass. Each scalar field is declared with `spec`, which keeps its rule (type,
choices, range) beside its default; a field typed as another such dataclass is a nested table. Loading
checks a TOML table against these declarations (`section_from_dict`), and every error is a
`ScenarioError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import field
from typing import Any

from .errors import ScenarioError
from .limits import Limit


def spec(default: Any, *, choices: tuple[str, ...] = (), lo: float | None = None,
         hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
         least: Limit | None = None, most: Limit | None = None, off: float | None = None,
         physics: bool = True) -> Any:
    """A scalar field with its validation rule kept beside its default. `lo`/`hi`: what the model can
    compute with; `least`/`most`: what a real migration can be (models/limits.py), checked after;
    `off`: the value that turns the feature off (0 = unlimited), which `least` lets through.
    `physics` False: how the call is made, not what the migration is (a flag that changes no time):
    left out of `scenario_id`."""
    return field(default=default, metadata={"choices": choices, "lo": lo, "hi": hi,
                                            "lo_open": lo_open, "hi_open": hi_open, "least": least,
                                            "most": most, "off": off, "physics": physics})


@functools.cache
def sections(cls: type) -> dict[str, type]:
    """The nested tables of `cls` by field name: the fields whose type is itself such a dataclass."""
    return {name: kind for name, kind in typing.get_type_hints(cls).items()
            if dataclasses.is_dataclass(kind)}


def is_physics(f: dataclasses.Field) -> bool:
    return f.metadata.get("physics", True)


_TYPE_WORDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}
# the field types by the names `from __future__ import annotations` leaves in dataclass fields
_TYPE_NAMES = {"float": float, "int": int, "str": str, "bool": bool}


def field_kind(f: dataclasses.Field) -> type:
    """The Python type of a scalar field: float, int, str or bool."""
    return f.type if isinstance(f.type, type) else _TYPE_NAMES[f.type]


def check_scalar(f: dataclasses.Field, value: Any, path: str) -> Any:
    """`value` checked against the rule of field `f` (as float when the field is one); errors name
    `path`."""
    kind = field_kind(f)
    meta = f.metadata
    ok = {
        float: isinstance(value, int | float) and not isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        str: isinstance(value, str),
        bool: isinstance(value, bool),
    }[kind]
    if not ok:
        raise ScenarioError(path, value, f"expected {_TYPE_WORDS[kind]}")
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ScenarioError(path, value, "expected a finite number")
    if meta.get("choices") and value not in meta["choices"]:
        raise ScenarioError(path, value, "allowed: " + " | ".join(meta["choices"]))
    lo, hi = meta.get("lo"), meta.get("hi")
    below = lo is not None and (value <= lo if meta.get("lo_open") else value < lo)
    above = hi is not None and (value >= hi if meta.get("hi_open") else value > hi)
    if below or above:
        left = "(" if meta.get("lo_open") else "["
        right = ")" if meta.get("hi_open") or hi is None else "]"
        lo_txt = "-inf" if lo is None else f"{lo:g}"
        hi_txt = "inf" if hi is None else f"{hi:g}"
        raise ScenarioError(path, value, f"allowed range {left}{lo_txt}, {hi_txt}{right}")
    least, most = meta.get("least"), meta.get("most")
    if least is not None and value < least.value and value != meta.get("off"):
        raise ScenarioError(path, value, f"at least {least}")
    if most is not None and value > most.value:
        raise ScenarioError(path, value, f"at most {most}")
    return value


def section_from_dict(cls: type, data: Any, path: str) -> Any:
    """A `cls` built from a TOML table, every key checked; `path` is the table's dotted path ("" for
    the top)."""
    if not isinstance(data, dict):
        raise ScenarioError(path, data, "expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else key
            raise ScenarioError(where, data[key], "unknown key; valid keys: " + ", ".join(fields))
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        where = f"{path}.{name}" if path else name
        if name in sections(cls):
            kwargs[name] = section_from_dict(sections(cls)[name], data[name], where)
        else:
            kwargs[name] = check_scalar(f, data[name], where)
    return cls(**kwargs)
