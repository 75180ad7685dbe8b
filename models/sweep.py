"""Sweep files: a base scenario (one VM, or a fleet) and the axes to vary over it.

    name = "what-if"                  # results/<name>/ (default: the file name)
    base = "busy-database.toml"       # a scenario file, or an inline [base] table; a fleet: fleet = ...
    replicates = 3                    # runs per point
    seed = 42                         # entropy of sampling and replicate seeds (default: fresh, recorded)

    [[axes]]                          # explicit values...
    field = "link.bandwidth_mbit_s"
    values = [1000, 10000, 25000]
    [[axes]]                          # ...a range, linear or log...
    field = "migration.max_downtime_ms"
    range = { start = 50, stop = 2000, num = 12, scale = "log" }
    [[axes]]                          # ...or drawn by [sampling] between low and high
    field = "vm.dirty.rate_mib_s"
    sample = { low = 10, high = 500, scale = "log" }
    [sampling]
    method = "lhs"                    # random | lhs (Latin hypercube)
    samples = 200

The points are the grid of the value and range axes (the first axis varies slowest), each crossed
with the same `samples` draws of the sampled axes. Seeds come from `numpy.random.SeedSequence(seed)`:
its first child draws the samples, its second spawns one seed per replicate. Replicate r runs with the
same seed at every point (common random numbers: a difference between two points is not noise).

For a fleet, `field` is a dotted path into the fleet file's tables, e.g. `plan.max_concurrent` or
`profiles.web.vm.dirty.rate_mib_s`; every point is built and checked as a fleet file would be.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScenarioError
from .fieldpaths import check_consistency, check_value, field_type, leaf_field, with_values
from .files import load_scenario, read_toml, scenario_from_dict, to_dict
from .fleet import check_named_entry, fleet_from_dict
from .identity import id_strings, ids_of_columns
from .limits import FLEET_SWEEP_MIGRATIONS, SWEEP_RUNS
from .scenario import Scenario

TOP_KEYS = ("name", "base", "fleet", "axes", "sampling", "replicates", "seed", "max_runs")
AXIS_KINDS = ("values", "range", "sample")
SCALES = ("linear", "log")
SAMPLING_METHODS = ("random", "lhs")
# the scenario fields that fieldpaths.check_consistency checks against each other; the
# sweep checks every combination of their swept values, and each other value once on its own
CROSS_CHECKED = ("vm.memory_mib", "vm.page_size_bytes", "vm.zero_page_fraction", "vm.dirty.model",
                 "vm.dirty.hot_set_mib", "vm.dirty.path")
# not physics, or not a plain value: the name labels results; a profile name loads other fields
NOT_SWEPT = ("name", "overheads.profile")


@dataclass(frozen=True)
class Axis:
    field: str
    # values: an explicit list; range: start..stop in num steps; sample: drawn in [low, high]
    kind: str
    values: tuple[Any, ...] = ()
    start: float = math.nan
    stop: float = math.nan
    num: int = 0
    low: float = math.nan
    high: float = math.nan
    scale: str = "linear"


@dataclass(frozen=True)
class Sweep:
    name: str
    # the sweep file ("" when built from a dict)
    source: str
    # the base: one VM, or a fleet's checked TOML tables with the folder its paths resolve against
    scenario: Scenario | None
    fleet: dict[str, Any] | None
    fleet_dir: str
    axes: tuple[Axis, ...]
    # "" without sampled axes
    sampling: str
    samples: int
    replicates: int
    # None: the runner draws fresh entropy and records it in the manifest
    seed: int | None

    @property
    def kind(self) -> str:
        return "fleet" if self.fleet is not None else "scenario"

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(a.field for a in self.axes)

    def definition(self) -> dict[str, Any]:
        """Everything the results depend on, as JSON-ready data (the manifest keeps it)."""
        base = to_dict(self.scenario) if self.scenario is not None else self.fleet
        return {"name": self.name, "kind": self.kind, "base": base,
                "axes": [_axis_dict(a) for a in self.axes], "sampling": self.sampling,
                "samples": self.samples, "replicates": self.replicates}


def _axis_dict(axis: Axis) -> dict[str, Any]:
    keep = {"values": ("values",), "range": ("start", "stop", "num", "scale"),
            "sample": ("low", "high", "scale")}[axis.kind]
    out = {"field": axis.field, "kind": axis.kind}
    out.update({k: list(v) if k == "values" else v for k in keep for v in (getattr(axis, k),)})
    return out


# ---------------------------------------------------------------------------------------------------
# loading and checking


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    data = read_toml(path, "sweep file")
    return sweep_from_dict(data, base_dir=path.parent.resolve(), source=str(path), default_name=path.stem)


def sweep_from_dict(data: dict[str, Any], base_dir: Path, source: str = "",
                    default_name: str = "sweep") -> Sweep:
    try:
        return _sweep_from_dict(data, base_dir, source, default_name)
    except ScenarioError as exc:
        if source and not exc.source:
            raise ScenarioError(exc.field, exc.value, exc.allowed, source) from None
        raise


def _sweep_from_dict(data: dict[str, Any], base_dir: Path, source: str, default_name: str) -> Sweep:
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise ScenarioError(key, value, "unknown key; valid keys: " + ", ".join(TOP_KEYS))
    name = data.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ScenarioError("name", name, "a folder name: letters, digits, '.', '_' and '-'")
    replicates = _integer(data, "replicates", 1, 1)
    seed = _integer(data, "seed", None, 0)
    scenario, fleet, fleet_dir = _base(data, base_dir)
    axes_data = data.get("axes")
    if not isinstance(axes_data, list) or not axes_data:
        raise ScenarioError("axes", axes_data, "expected a non-empty list of [[axes]] tables")
    axes = tuple(_axis(a, f"axes[{i}]", base_dir, fleet) for i, a in enumerate(axes_data))
    seen: set[str] = set()
    for i, axis in enumerate(axes):
        if axis.field in seen:
            raise ScenarioError(f"axes[{i}].field", axis.field, "swept twice; give each field one axis")
        seen.add(axis.field)
    sampling, samples = _sampling(data.get("sampling"), any(a.kind == "sample" for a in axes))
    _check_budget(data, axes, samples, replicates, fleet)
    return Sweep(name=name, source=source, scenario=scenario, fleet=fleet,
                 fleet_dir=str(fleet_dir), axes=axes, sampling=sampling, samples=samples,
                 replicates=replicates, seed=seed)


def _check_budget(data: dict[str, Any], axes: tuple[Axis, ...], samples: int, replicates: int,
                  fleet: dict[str, Any] | None) -> None:
    """The sweep's size, before a point is built: runs (points x replicates), and for a fleet the
    migrations they simulate, within `max_runs` (models/limits.py gives the default and why)."""
    points = math.prod(len(a.values) if a.kind == "values" else a.num for a in axes if a.kind != "sample")
    runs = points * max(samples, 1) * replicates
    if fleet is None:
        limit = _integer(data, "max_runs", SWEEP_RUNS, 1)
        if runs > limit:
            raise ScenarioError("runs", runs, f"points x replicates: at most max_runs = {limit} (set "
                                              "max_runs in the sweep file to raise it)")
        return
    # the base fleet is checked: every entry's count is an integer >= 1, and no axis changes one
    vms = sum(entry.get("count", 1) for entry in fleet["vms"])
    limit = _integer(data, "max_runs", FLEET_SWEEP_MIGRATIONS, 1)
    if runs * vms > limit:
        raise ScenarioError("runs", runs, f"x {vms} VMs = {runs * vms} migrations: at most max_runs = "
                                          f"{limit} (set max_runs in the sweep file to raise it)")


def _integer(data: dict[str, Any], key: str, default: int | None, lo: int) -> int | None:
    value = data.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ScenarioError(key, value, f"expected an integer >= {lo}")
    return value


def _base(data: dict[str, Any], base_dir: Path) -> tuple[Scenario | None, dict[str, Any] | None, Path]:
    given = [key for key in ("base", "fleet") if key in data]
    if len(given) != 1:
        raise ScenarioError("base", given or None,
                            "give exactly one base: base = a scenario (file or table) or fleet = a fleet")
    key = given[0]
    value = data[key]
    if isinstance(value, str):
        path = base_dir / value
        if key == "base":
            return load_scenario(path), None, path.parent
        fleet = read_toml(path, "fleet")
        fleet_from_dict(fleet, base_dir=path.parent.resolve(), source=str(path))
        return None, fleet, path.parent.resolve()
    if not isinstance(value, dict):
        raise ScenarioError(key, value, "expected a file name or a table")
    try:
        if key == "base":
            return scenario_from_dict(value, base_dir=base_dir), None, base_dir
        fleet_from_dict(value, base_dir=base_dir)
        return None, value, base_dir
    except ScenarioError as exc:
        raise ScenarioError(f"{key}.{exc.field}", exc.value, exc.allowed) from None


def _axis(data: Any, where: str, base_dir: Path, fleet: dict[str, Any] | None) -> Axis:
    if not isinstance(data, dict):
        raise ScenarioError(where, data, "expected a table with field and one of values, range, sample")
    for key, value in data.items():
        if key not in ("field", *AXIS_KINDS):
            raise ScenarioError(f"{where}.{key}", value,
                                "unknown key; valid keys: field, " + ", ".join(AXIS_KINDS))
    field = data.get("field")
    if not isinstance(field, str) or not field:
        raise ScenarioError(f"{where}.field", field, "expected a dotted field name, e.g. vm.dirty.rate_mib_s")
    kinds = [k for k in AXIS_KINDS if k in data]
    if len(kinds) != 1:
        raise ScenarioError(where, kinds or None, "give exactly one of values, range, sample")
    kind = kinds[0]
    if fleet is None:
        if field in NOT_SWEPT:
            raise ScenarioError(f"{where}.field", field,
                                "cannot be swept (sweep the overheads' costs instead of their profile)")
        check = _scenario_checker(field, f"{where}.field", base_dir)
        numeric = field_type(field) is float
    else:
        _check_fleet_path(fleet, field, f"{where}.field")
        check, numeric = _checked_with_the_fleet, True
    if kind == "values":
        values = data["values"]
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"{where}.values", values, "expected a non-empty list")
        return Axis(field, kind, values=tuple(check(v, f"{where}.values[{i}]") for i, v in enumerate(values)))
    if not numeric:
        raise ScenarioError(f"{where}.{kind}", data[kind],
                            f"{field} is not a real-valued field: list its values instead")
    table = data[kind]
    keys = ("start", "stop", "num", "scale") if kind == "range" else ("low", "high", "scale")
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}.{kind}", table, "expected a table with keys " + ", ".join(keys))
    for key, value in table.items():
        if key not in keys:
            raise ScenarioError(f"{where}.{kind}.{key}", value, "unknown key; valid keys: " + ", ".join(keys))
    scale = table.get("scale", "linear")
    if scale not in SCALES:
        raise ScenarioError(f"{where}.{kind}.scale", scale, "allowed: " + " | ".join(SCALES))
    ends = {}
    for key in keys[:2]:
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ScenarioError(f"{where}.{kind}.{key}", value, "expected a finite number")
        if scale == "log" and value <= 0:
            raise ScenarioError(f"{where}.{kind}.{key}", value, "a log scale needs numbers > 0")
        ends[key] = float(check(float(value), f"{where}.{kind}.{key}"))
    if kind == "sample":
        if not ends["low"] < ends["high"]:
            raise ScenarioError(f"{where}.sample.high", ends["high"], f"must be > low = {ends['low']:g}")
        return Axis(field, kind, low=ends["low"], high=ends["high"], scale=scale)
    num = table.get("num")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ScenarioError(f"{where}.range.num", num, "expected an integer >= 1 (how many values)")
    return Axis(field, kind, start=ends["start"], stop=ends["stop"], num=num, scale=scale)


def _scenario_checker(field: str, where: str, base_dir: Path):
    leaf_field(field, where)

    def check(value: Any, at: str) -> Any:
        value = check_value(field, value, at)
        # a trace named in the sweep file is found next to it
        return str((base_dir / value).resolve()) if field == "vm.dirty.path" and value else value

    return check


def _checked_with_the_fleet(value: Any, at: str) -> Any:
    """A fleet's values are checked when each point's fleet is built (`design`); an axis holds plain
    values only (a table or a list would not make a column)."""
    if not isinstance(value, int | float | str):
        raise ScenarioError(at, value, "expected a number, a string or true/false")
    return value


def _check_fleet_path(fleet: dict[str, Any], field: str, where: str) -> None:
    parts = field.split(".")
    if len(parts) < 2 or parts[0] == "vms":
        raise ScenarioError(where, field, "expected a dotted path into the fleet's tables, e.g. "
                                          "plan.max_concurrent or profiles.NAME.vm.memory_mib")
    check_named_entry(fleet, field, where, whole_entry=False)


def _sampling(data: Any, has_sampled_axes: bool) -> tuple[str, int]:
    if data is None:
        if has_sampled_axes:
            raise ScenarioError("sampling", None, "sampled axes need [sampling] with method and samples")
        return "", 0
    if not isinstance(data, dict):
        raise ScenarioError("sampling", data, "expected a table with method and samples")
    for key, value in data.items():
        if key not in ("method", "samples"):
            raise ScenarioError(f"sampling.{key}", value, "unknown key; valid keys: method, samples")
    if not has_sampled_axes:
        raise ScenarioError("sampling", data, "no axis is sampled: give one a sample = { low, high }")
    method = data.get("method", "lhs")
    if method not in SAMPLING_METHODS:
        raise ScenarioError("sampling.method", method, "allowed: " + " | ".join(SAMPLING_METHODS))
    samples = data.get("samples")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ScenarioError("sampling.samples", samples, "expected an integer >= 1")
    return method, samples


# ---------------------------------------------------------------------------------------------------
# the points


def fresh_entropy() -> int:
    return int(np.random.SeedSequence().entropy)


def _children(entropy: int) -> list[np.random.SeedSequence]:
    """[sampling, replicates]: fixed positions, so adding replicates never moves the samples."""
    return np.random.SeedSequence(entropy).spawn(2)


def replicate_seeds(replicates: int, entropy: int) -> np.ndarray:
    """One seed per replicate, spawned from the sweep's entropy; 63 bits, so it fits int64 columns."""
    return np.array([int(child.generate_state(1, np.uint64)[0] >> 1)
                     for child in _children(entropy)[1].spawn(replicates)], dtype=np.int64)


def latin_hypercube(rng: np.random.Generator, samples: int, dims: int) -> np.ndarray:
    """`samples` points in [0, 1)^dims such that each of the `samples` equal slices of every
    dimension holds exactly one point."""
    strata = rng.permuted(np.tile(np.arange(samples), (dims, 1)), axis=1).T
    return (strata + rng.random((samples, dims))) / samples


def _spread(u: np.ndarray, lo: float, hi: float, scale: str) -> np.ndarray:
    values = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))) if scale == "log" else lo + u * (hi - lo)
    return np.clip(values, lo, hi)  # rounding must not step outside the checked ends


def _grid_values(axis: Axis) -> np.ndarray:
    if axis.kind == "values":
        return np.array(axis.values)
    if axis.scale == "log":
        return np.geomspace(axis.start, axis.stop, axis.num)
    return np.linspace(axis.start, axis.stop, axis.num)


def design(sweep: Sweep, entropy: int) -> dict[str, np.ndarray]:
    """The points: one array per axis field, all of one length. Raises ScenarioError when a
    combination of values is not a valid scenario (or fleet)."""
    grid = [a for a in sweep.axes if a.kind != "sample"]
    sampled = [a for a in sweep.axes if a.kind == "sample"]
    values = [_grid_values(a) for a in grid]
    cells = math.prod(len(v) for v in values)
    index = np.indices([len(v) for v in values]).reshape(len(values), cells)
    draws = sweep.samples if sampled else 1
    columns = {a.field: np.repeat(v[i], draws) for a, v, i in zip(grid, values, index, strict=True)}
    if sampled:
        rng = np.random.default_rng(_children(entropy)[0])
        if sweep.sampling == "lhs":
            u = latin_hypercube(rng, draws, len(sampled))
        else:
            u = rng.random((draws, len(sampled)))
        for j, a in enumerate(sampled):
            columns[a.field] = np.tile(_spread(u[:, j], a.low, a.high, a.scale), cells)
    columns = {f: columns[f] for f in sweep.fields}
    if sweep.scenario is not None:
        _check_combinations(sweep.scenario, columns)
    else:
        for point in range(point_count(columns)):
            fleet_at(sweep, columns, point)
    return columns


def point_count(columns: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(columns.values())))


def point_values(columns: Mapping[str, np.ndarray], point: int) -> dict[str, Any]:
    """One point's values as plain Python numbers and strings."""
    return {f: col[point].item() for f, col in columns.items()}


def _check_combinations(base: Scenario, columns: Mapping[str, np.ndarray]) -> None:
    crossed = [f for f in CROSS_CHECKED if f in columns]
    if not crossed:
        return
    seen: set[tuple[Any, ...]] = set()
    for point in range(point_count(columns)):
        combo = tuple(columns[f][point].item() for f in crossed)
        if combo in seen:
            continue
        seen.add(combo)
        try:
            check_consistency(with_values(base, dict(zip(crossed, combo, strict=True))), None)
        except ScenarioError as exc:
            at = ", ".join(f"{f} = {v!r}" for f, v in zip(crossed, combo, strict=True))
            raise ScenarioError(exc.field, exc.value, f"{exc.allowed} (at the point where {at})") from None


def scenario_at(base: Scenario, columns: Mapping[str, np.ndarray], point: int) -> Scenario:
    return with_values(base, point_values(columns, point))


def fleet_at(sweep: Sweep, columns: Mapping[str, np.ndarray], point: int):
    """The fleet of one point, built and checked as if its file said so."""
    data = copy.deepcopy(sweep.fleet)
    values = point_values(columns, point)
    for field, value in values.items():
        *parents, leaf = field.split(".")
        table = data
        for part in parents:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ScenarioError(field, value, f"{part} is not a table in the fleet")
        table[leaf] = value
    try:
        return fleet_from_dict(data, base_dir=Path(sweep.fleet_dir))
    except ScenarioError as exc:
        at = ", ".join(f"{f} = {v!r}" for f, v in values.items())
        raise ScenarioError(exc.field, exc.value, f"{exc.allowed} (at the point where {at})") from None


def point_ids(base: Scenario, columns: Mapping[str, np.ndarray]) -> list[str]:
    """`Scenario.scenario_id` of every point, computed over the columns (models/identity.py)."""
    return id_strings(ids_of_columns(base, columns))
