"""Dotted paths to a scenario's scalar fields (`vm.dirty.rate_mib_s`): list them, read one, check a
value against its field's rule, and build a scenario with some of them replaced."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from .errors import ScenarioError
from .scenario import Scenario
from .schema import check_scalar, field_kind, sections


@functools.cache
def leaf_fields() -> dict[str, dataclasses.Field]:
    """Every scalar field of a Scenario by its dotted path, in declaration order."""
    out: dict[str, dataclasses.Field] = {}

    def walk(cls: type, prefix: str) -> None:
        nested = sections(cls)
        for f in dataclasses.fields(cls):
            if f.name in nested:
                walk(nested[f.name], f"{prefix}{f.name}.")
            else:
                out[prefix + f.name] = f

    walk(Scenario, "")
    return out


def get_value(scenario: Scenario, path: str) -> Any:
    obj: Any = scenario
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def leaf_field(path: str, where: str) -> dataclasses.Field:
    """The field at `path`; an error naming `where` when there is none."""
    f = leaf_fields().get(path)
    if f is None:
        raise ScenarioError(where, path, "not a scenario field; e.g. vm.dirty.rate_mib_s, "
                                         "link.bandwidth_mbit_s, migration.max_downtime_ms")
    return f


def check_value(path: str, value: Any, where: str) -> Any:
    """`value` typed and checked as loading a scenario would (type, range, choices); errors name
    `where` and the path. Rules that span several fields are `scenario._check_consistency`'s."""
    try:
        return check_scalar(leaf_field(path, where), value, path)
    except ScenarioError as exc:
        if exc.field == where:
            raise
        raise ScenarioError(where, value, f"{path}: {exc.allowed}") from None


def field_type(path: str) -> type:
    return field_kind(leaf_fields()[path])


def with_values(scenario: Scenario, values: Mapping[str, Any]) -> Scenario:
    """The scenario with the fields at these paths replaced, unchecked: check the values first."""
    nested: dict[str, Any] = {}
    for path, value in values.items():
        *sections, leaf = path.split(".")
        table = nested
        for part in sections:
            table = table.setdefault(part, {})
        table[leaf] = value
    return _replace(scenario, nested)


def _replace(obj: Any, changes: dict[str, Any]) -> Any:
    return dataclasses.replace(obj, **{
        name: _replace(getattr(obj, name), value) if isinstance(value, dict) else value
        for name, value in changes.items()})
