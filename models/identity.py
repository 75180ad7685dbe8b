"""A scenario's identity: the key that joins a prediction and a measurement.

It is a hash of the scenario's physics, everything but the fields declared `physics=False` (the name,
how the call is made): the first 12 hex digits of the SHA-1 of `json.dumps(physics_dict(scenario),
sort_keys=True, separators=(",", ":"))`. Stored results carry these ids, so that text must not change.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import operator
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from .schema import is_physics, sections


def id_of_text(canonical_json: str) -> str:
    return hashlib.sha1(canonical_json.encode()).hexdigest()[:12]


def scenario_id(scenario: Any) -> str:
    """`Scenario.scenario_id`. Its canonical JSON is written straight from the fields: `asdict`'s deep
    copy cost as much as a whole prediction."""
    text, leaves = _physics_layout(type(scenario))
    values = tuple(_JSON_SCALAR.get(v.__class__, _json_value)(v) for v in leaves(scenario))
    return id_of_text(text % values)


def physics_dict(scenario: Any) -> dict[str, Any]:
    """What `scenario_id` hashes, as a dict: the scenario without the fields declared
    `physics=False`."""
    def strip(cls: type, table: dict[str, Any]) -> dict[str, Any]:
        nested = sections(cls)
        return {name: strip(nested[name], value) if name in nested else value
                for name, value in table.items() if _is_physics(cls, name)}

    return strip(type(scenario), dataclasses.asdict(scenario))


@functools.cache
def _physics_layout(root: type) -> tuple[str, Callable[[Any], tuple[Any, ...]]]:
    """The canonical JSON of a `root` with a %s slot for each scalar field, and a getter of those
    fields in slot order."""
    paths: list[str] = []

    def table(cls: type, prefix: str) -> str:
        items = []
        for name in sorted(f.name for f in dataclasses.fields(cls)):
            if not _is_physics(cls, name):
                continue
            key = json.dumps(name).replace("%", "%%") + ":"
            if name in sections(cls):
                items.append(key + table(sections(cls)[name], f"{prefix}{name}."))
            else:
                paths.append(prefix + name)
                items.append(key + "%s")
        return "{" + ",".join(items) + "}"

    text = table(root, "")
    return text, operator.attrgetter(*paths)


def _is_physics(cls: type, name: str) -> bool:
    return is_physics(next(f for f in dataclasses.fields(cls) if f.name == name))


def _json_float(value: float) -> str:
    # json.dumps writes a finite float as its repr, and inf or nan as Infinity or NaN
    return float.__repr__(value) if math.isfinite(value) else json.dumps(value)


def _json_value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# json.dumps' own encoding of the field types; any other value (a bool, a numpy number) goes through it
_JSON_SCALAR: dict[type, Callable[[Any], str]] = {float: _json_float, int: int.__repr__,
                                                  str: encode_basestring_ascii}
