"""Scenario files: TOML in and out, `--set section.key=value` overrides, and overheads profiles.

Loading checks every field against its rule (models/schema.py) and the rules that span several fields
(models/fieldpaths.py); every error is one line, a `ScenarioError` naming the field, the value and
what is allowed, and the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from .errors import ScenarioError, read_text
from .fieldpaths import check_consistency
from .overheads import OVERHEAD_FIELDS, load_link_profile, load_overheads_profile
from .policy import check_policy
from .scenario import LinkSpec, OverheadsSpec, Scenario
from .schema import check_scalar, section_from_dict


def resolved_overheads(data: dict[str, Any], path: str, base_dir: Path | None = None) -> OverheadsSpec:
    """Fills every fixed cost: from the named profile, then the costs given inline."""
    given = section_from_dict(OverheadsSpec, data, path)
    profile = given.profile
    if profile not in ("none", "default") and base_dir is not None and not Path(profile).is_absolute():
        profile = str((base_dir / profile).resolve())
    try:
        costs = load_overheads_profile(profile)
    except ValueError as exc:
        raise ScenarioError(f"{path}.profile", given.profile, str(exc)) from None
    costs.update({k: check_scalar(_OVERHEAD_FIELD_DEFS[k], v, f"{path}.{k}")
                  for k, v in data.items() if k in OVERHEAD_FIELDS})
    return OverheadsSpec(profile=profile, **costs)


_OVERHEAD_FIELD_DEFS = {f.name: f for f in dataclasses.fields(OverheadsSpec)}
_LINK_FIELD_DEFS = {f.name: f for f in dataclasses.fields(LinkSpec)}


def profile_link(profile: str, path: str) -> dict[str, Any]:
    """A resolved profile's [link] values (a calibrated link efficiency, backlog, sender rate), each
    checked as the scenario's own field would be."""
    try:
        raw = load_link_profile(profile)
    except ValueError as exc:
        raise ScenarioError(f"{path}.profile", profile, str(exc)) from None
    return {k: check_scalar(_LINK_FIELD_DEFS[k], v, f"{profile} [link].{k}") for k, v in raw.items()}


def with_profile(scenario: Scenario, profile: str, path: str) -> Scenario:
    """`scenario` with a profile named on the command line: its costs, and its [link] values over the
    scenario's (the command line is the later word)."""
    overheads = resolved_overheads({"profile": profile}, path)
    link = dataclasses.replace(scenario.link, **profile_link(overheads.profile, path))
    return dataclasses.replace(scenario, overheads=overheads, link=link)


def scenario_from_dict(data: dict[str, Any], base_dir: Path | None = None, source: str = "") -> Scenario:
    """Builds and validates a Scenario. Relative paths (dirty trace, overheads profile) are resolved
    against `base_dir` and stored absolute, so a scenario written back out still points to them."""
    try:
        data = dict(data)
        overheads_data = data.pop("overheads", {})
        if not isinstance(overheads_data, dict):
            raise ScenarioError("overheads", overheads_data, "expected a table")
        overheads = resolved_overheads(overheads_data, "overheads", base_dir)
        link_data = data.get("link", {})
        if isinstance(link_data, dict):
            # the profile's [link] fills what the scenario's own [link] leaves out
            data["link"] = {**profile_link(overheads.profile, "overheads"), **link_data}
        scenario = section_from_dict(Scenario, data, "")
        scenario = dataclasses.replace(scenario, overheads=overheads)
        check_policy(scenario.policy, data.get("policy", {}))
        return check_consistency(scenario, base_dir)
    except ScenarioError as exc:
        if source and not exc.source:
            raise ScenarioError(exc.field, exc.value, exc.allowed, source) from None
        raise


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def read_toml(path: str | Path, what: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """A TOML input file as a dict, with `section.key=value` overrides applied; errors are one line."""
    path = Path(path)
    return parse_toml(read_text(path, what), str(path), overrides)


def parse_toml(text: str, source: str = "", overrides: list[str] | None = None) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("TOML", source or "<text>", f"not valid TOML ({exc})") from None
    for item in overrides or []:
        apply_override(data, item)
    return data


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Reads a scenario TOML file, applying `section.key=value` overrides (values in TOML syntax)."""
    data = read_toml(path, "scenario file", overrides)
    try:
        return scenario_from_dict(data, base_dir=Path(path).parent.resolve())
    except ScenarioError as exc:
        raise blamed(exc, str(path), overrides) from None


def scenario_from_toml(text: str, base_dir: Path | None = None, source: str = "",
                       overrides: list[str] | None = None) -> Scenario:
    return scenario_from_dict(parse_toml(text, source, overrides), base_dir=base_dir, source=source)


def override_key(item: str) -> str:
    """The dotted key of a `--set key=value`."""
    return item.partition("=")[0].strip()


def blamed(exc: ScenarioError, source: str, overrides: list[str] | None) -> ScenarioError:
    """`exc` blaming `source` (the file), unless its field came from a `--set`: then the file is
    innocent and the error names the field the user typed, as it would without a file."""
    keys = [override_key(item) for item in overrides or []]
    # a field inside the override's value: key.sub or, in a list, key[i]
    if exc.source or any(exc.field == key or exc.field.startswith((f"{key}.", f"{key}[")) for key in keys):
        return exc
    return ScenarioError(exc.field, exc.value, exc.allowed, source)


def apply_override(data: dict[str, Any], item: str) -> None:
    """`--set vm.dirty.rate_mib_s=100`: the value is parsed as TOML, falling back to a bare string."""
    key, sep, raw = item.partition("=")
    if not sep or not all(part.strip() for part in key.split(".")):
        raise ScenarioError("--set", item, "expected section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    *parents, leaf = key.strip().split(".")
    table = data
    for part in parents:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ScenarioError("--set", item, f"{part} is not a section")
    table[leaf] = value


def scenario_to_toml(scenario: Scenario) -> str:
    return tomli_w.dumps(to_dict(scenario))
