"""Dotted paths to a scenario's scalar fields (`vm.dirty.rate_mib_s`): list them, read one, check a
value against its field's rule, and build a scenario with some of them replaced; and the rules that
span several fields, which a scenario built that way must pass as a loaded one does."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .dirty import load_trace
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
    `where` and the path. Rules that span several fields are `check_consistency`'s."""
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


def check_consistency(s: Scenario, base_dir: Path | None) -> Scenario:
    """The rules that span several fields. A dirty trace is read now, not mid-simulation; a relative
    trace path is resolved against `base_dir` and stored absolute."""
    page = s.vm.page_size_bytes
    if page & (page - 1):
        raise ScenarioError("vm.page_size_bytes", page, "must be a power of two")
    dirty = s.vm.dirty
    written_mib = s.vm.memory_mib * (1.0 - s.vm.zero_page_fraction)
    if dirty.model == "hotcold":
        if dirty.hot_set_mib <= 0:
            raise ScenarioError("vm.dirty.hot_set_mib", dirty.hot_set_mib,
                                "hotcold needs a hot set > 0 MiB")
        if dirty.hot_set_mib > written_mib:
            raise ScenarioError("vm.dirty.hot_set_mib", dirty.hot_set_mib,
                                f"must fit in the written memory, "
                                f"memory_mib x (1 - zero_page_fraction) = {written_mib:g} MiB")
    if dirty.pattern == "sweep" and dirty.model != "constant":
        raise ScenarioError("vm.dirty.pattern", dirty.pattern, "sweep is a constant model's pattern")
    if dirty.model == "trace":
        if not dirty.path:
            raise ScenarioError("vm.dirty.path", dirty.path, "trace needs a CSV path (t_s, dirty_pages)")
        trace_path = Path(dirty.path)
        if not trace_path.is_absolute() and base_dir is not None:
            trace_path = (base_dir / trace_path).resolve()
        load_trace(trace_path)
        s = dataclasses.replace(s, vm=dataclasses.replace(
            s.vm, dirty=dataclasses.replace(dirty, path=str(trace_path))))
    return s
