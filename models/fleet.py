"""Fleet: a host evacuation. Many migrations at once over shared links and through shared switches.

A fleet file names its links, its hosts (each host's path to the core, nearest link first, and the
switch that associates its ports), its switches, its VM profiles (each a single-VM scenario without
`link` and `switch`, which the fleet supplies), the VMs (listed one by one or drawn from a profile with
a count) and the plan (how many migrations run at once, in which order).

A link may change its bandwidth at set times (`changes`: an uplink failing midway).

A migration crosses its source host's links outbound and its destination host's links inbound. Links
are full duplex, and traffic turns at the lowest link the two hosts share, so links on both paths
(the rack uplink of two hosts in the same rack) are not crossed at all.

Validation is as strict as for a single scenario: every error is a `ScenarioError` naming the field,
e.g. `hosts.src-1.links`, `vms[2].destination` or `profiles.web-4g.vm.memory_mib`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import limits as lim
from .dirty import dirty_model_for
from .errors import ScenarioError
from .files import apply_override, blamed, override_key, parse_toml, read_toml, scenario_from_dict
from .policy import PolicySpec, check_policy, concurrency
from .scenario import LinkSpec, Scenario, SwitchSpec
from .schema import section_from_dict, spec
from .units import mbit_s_to_bytes_s, pages_to_bytes

ORDERS = ("as-listed", "smallest-first", "largest-first", "lowest-dirty-first")
OUT, IN = "out", "in"


@dataclass(frozen=True)
class LinkChange:
    # seconds after the evacuation starts (its first migration, after the switches' warm-up)
    at_s: float = spec(0.0, lo=0.0, most=lim.LINK_CHANGE_AT_S)
    # the link's line rate from then on; 0 = down (sim/fleet.py: what that does to the migrations on it)
    bandwidth_mbit_s: float = spec(0.0, lo=0.0, least=lim.LINK_MIN_MBIT_S, most=lim.LINK_MBIT_S, off=0.0)


@dataclass(frozen=True)
class FleetLinkSpec:
    # a host NIC or a shared uplink; 10 GbE as in the single-VM default
    bandwidth_mbit_s: float = spec(10000.0, lo=0.0, lo_open=True, least=lim.LINK_MIN_MBIT_S,
                                   most=lim.LINK_MBIT_S)
    # usable fraction of the line rate for migration streams
    efficiency: float = spec(1.0, lo=0.0, hi=1.0, lo_open=True, least=lim.EFFICIENCY)
    # this hop's share of a path's round trip: two NICs make the single-VM default of 0.2 ms
    rtt_ms: float = spec(0.1, lo=0.0, most=lim.RTT_MS)
    # changes of bandwidth in time, in time order: `changes = [{ at_s = 600, bandwidth_mbit_s = 0 }]`
    changes: tuple[LinkChange, ...] = ()

    @property
    def capacity_bytes_s(self) -> float:
        return self.capacity_at_bytes_s(self.bandwidth_mbit_s)

    def capacity_at_bytes_s(self, bandwidth_mbit_s: float) -> float:
        """What migration streams may use of the link at a line rate of `bandwidth_mbit_s`."""
        return mbit_s_to_bytes_s(bandwidth_mbit_s) * self.efficiency


@dataclass(frozen=True)
class HostSpec:
    # the host's path to the core, nearest link first (its NIC, then uplinks)
    links: tuple[str, ...]
    # the switch that associates this host's ports ("" = none; needed by VMs with port profiles)
    switch: str = ""


@dataclass(frozen=True)
class PlanSpec:
    # migrations running at once in the whole fleet; 0 = no limit (KubeVirt: 5 per cluster)
    max_concurrent: int = spec(0, lo=0)
    # outbound migrations at once per source host; 0 = no limit
    # (Nova max_concurrent_live_migrations: 1; KubeVirt: 2 per node)
    max_per_source_host: int = spec(1, lo=0)
    # which waiting VM starts when a slot frees up (ties keep the listed order)
    order: str = spec("as-listed", choices=ORDERS)
    # budgets checked before any work (models/limits.py): the fleet's VMs, and the SimPy events of
    # its simulation; raise them here for a larger evacuation
    max_vms: int = spec(lim.FLEET_VMS, lo=1)
    max_events: int = spec(lim.FLEET_EVENTS, lo=1)


@dataclass(frozen=True)
class FleetVm:
    name: str
    profile: str
    source: str
    destination: str
    # (link, direction) pairs the migration stream crosses
    path: tuple[tuple[str, str], ...]
    # the profile with the path (bottleneck rate, summed RTT) as its link and the destination's switch
    scenario: Scenario


@dataclass(frozen=True)
class Fleet:
    name: str
    links: dict[str, FleetLinkSpec]
    hosts: dict[str, HostSpec]
    switches: dict[str, SwitchSpec]
    profiles: dict[str, Scenario]
    plan: PlanSpec
    # in the order listed in the file
    vms: tuple[FleetVm, ...]


_TOP_KEYS = ("name", "links", "hosts", "switches", "profiles", "plan", "policy", "vms")
_VM_KEYS = ("name", "profile", "count", "source", "destination")
_HOST_KEYS = ("links", "switch")
# a profile is one VM's scenario; where it runs and what answers its ports is the fleet's business
_FLEET_OWNED = ("link", "switch")


def _table(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ScenarioError(path, data, "expected a table")
    return data


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...], path: str) -> None:
    for key, value in data.items():
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise ScenarioError(where, value, "unknown key; valid keys: " + ", ".join(allowed))


def _name_list(value: Any, path: str, known: dict[str, Any], what: str) -> tuple[str, ...]:
    """A name or a non-empty list of names, each one of `known`."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ScenarioError(path, value, f"expected a {what} name or a non-empty list of them")
    for name in names:
        if name not in known:
            raise ScenarioError(path, name, f"no such {what}; defined: " + (", ".join(known) or "none"))
    return tuple(names)


def _named_sections(data: dict[str, Any], key: str, cls: type) -> dict[str, Any]:
    tables = _table(data.get(key, {}), key)
    return {name: section_from_dict(cls, body, f"{key}.{name}") for name, body in tables.items()}


_CHANGE_KEYS = ("at_s", "bandwidth_mbit_s")


def _links(data: dict[str, Any]) -> dict[str, FleetLinkSpec]:
    """The links, each with its changes of bandwidth (a list of tables, which `section_from_dict`
    does not read) checked one by one."""
    links = {}
    for name, body in _table(data.get("links", {}), "links").items():
        where = f"links.{name}"
        body = dict(_table(body, where))
        changes = _changes(body.pop("changes", []), f"{where}.changes")
        links[name] = replace(section_from_dict(FleetLinkSpec, body, where), changes=changes)
    return links


def _changes(entries: Any, where: str) -> tuple[LinkChange, ...]:
    if not isinstance(entries, list):
        raise ScenarioError(where, entries, "expected a list of { at_s, bandwidth_mbit_s } tables")
    changes: list[LinkChange] = []
    for i, body in enumerate(entries):
        at = f"{where}[{i}]"
        _check_keys(_table(body, at), _CHANGE_KEYS, at)
        for key in _CHANGE_KEYS:
            if key not in body:
                raise ScenarioError(f"{at}.{key}", None, "required: " + {
                    "at_s": "seconds after the evacuation starts",
                    "bandwidth_mbit_s": "the line rate from then on (0 = down)"}[key])
        change = section_from_dict(LinkChange, body, at)
        if changes and change.at_s <= changes[-1].at_s:
            raise ScenarioError(f"{at}.at_s", change.at_s, "changes in time order: later than "
                                                           f"{where}[{i - 1}].at_s = {changes[-1].at_s:g}")
        changes.append(change)
    return tuple(changes)


def _hosts(data: dict[str, Any], links: dict[str, FleetLinkSpec],
           switches: dict[str, SwitchSpec]) -> dict[str, HostSpec]:
    hosts = {}
    for name, body in _table(data.get("hosts", {}), "hosts").items():
        where = f"hosts.{name}"
        _check_keys(_table(body, where), _HOST_KEYS, where)
        if "links" not in body:
            raise ScenarioError(f"{where}.links", None, "required: the host's links, nearest first")
        host_links = _name_list(body["links"], f"{where}.links", links, "link")
        if len(set(host_links)) != len(host_links):
            raise ScenarioError(f"{where}.links", list(host_links), "a link may appear only once")
        switch = body.get("switch", "")
        if not isinstance(switch, str) or (switch and switch not in switches):
            raise ScenarioError(f"{where}.switch", switch,
                                "expected a switch name; defined: " + (", ".join(switches) or "none"))
        hosts[name] = HostSpec(host_links, switch)
    return hosts


def _profiles(data: dict[str, Any], base_dir: Path | None) -> dict[str, Scenario]:
    profiles = {}
    for name, body in _table(data.get("profiles", {}), "profiles").items():
        where = f"profiles.{name}"
        body = dict(_table(body, where))
        for key in _FLEET_OWNED:
            if key in body:
                raise ScenarioError(f"{where}.{key}", body[key],
                                    "set by the fleet (links, hosts.*.switch, switches); remove it")
        body.setdefault("name", name)
        try:
            profiles[name] = scenario_from_dict(body, base_dir=base_dir)
        except ScenarioError as exc:
            raise ScenarioError(f"{where}.{exc.field}", exc.value, exc.allowed) from None
    return profiles


def path_between(source: HostSpec, destination: HostSpec) -> tuple[tuple[str, str], ...]:
    """Out through the source's links, in through the destination's, skipping the links both share."""
    shared = set(source.links) & set(destination.links)
    return (tuple((link, OUT) for link in source.links if link not in shared)
            + tuple((link, IN) for link in destination.links if link not in shared))


def _vm_scenario(profile: Scenario, name: str, path: tuple[tuple[str, str], ...],
                 links: dict[str, FleetLinkSpec], switch: SwitchSpec) -> Scenario:
    bottleneck_mbit_s = min(links[link].bandwidth_mbit_s * links[link].efficiency for link, _ in path)
    rtt_ms = sum(links[link].rtt_ms for link, _ in path)
    return profile.replace(name=name, link=LinkSpec(bandwidth_mbit_s=bottleneck_mbit_s, rtt_ms=rtt_ms),
                           switch=switch)


def _counts(entries: list[Any], max_vms: int) -> list[int]:
    """Each entry's count, their sum checked against the budget before a VM is built."""
    counts = []
    for i, body in enumerate(entries):
        count = _table(body, f"vms[{i}]").get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ScenarioError(f"vms[{i}].count", count, "expected an integer >= 1")
        counts.append(count)
    if sum(counts) > max_vms:
        raise ScenarioError("vms", f"{sum(counts)} VMs", f"at most plan.max_vms = {max_vms} (raise it "
                                                         "for a larger evacuation)")
    return counts


def _vms(data: dict[str, Any], fleet: dict[str, Any], max_vms: int) -> tuple[FleetVm, ...]:
    entries = data.get("vms", [])
    if not isinstance(entries, list) or not entries:
        raise ScenarioError("vms", entries, "expected a non-empty list of [[vms]] tables")
    counts = _counts(entries, max_vms)
    hosts, profiles = fleet["hosts"], fleet["profiles"]
    vms: list[FleetVm] = []
    seen: set[str] = set()
    numbered: dict[str, int] = {}
    for i, body in enumerate(entries):
        where = f"vms[{i}]"
        _check_keys(_table(body, where), _VM_KEYS, where)
        profile = body.get("profile")
        if not isinstance(profile, str) or profile not in profiles:
            raise ScenarioError(f"{where}.profile", profile,
                                "expected a profile name; defined: " + (", ".join(profiles) or "none"))
        count = counts[i]
        name = body.get("name", "")
        if not isinstance(name, str):
            raise ScenarioError(f"{where}.name", name, "expected a string")
        for key in ("source", "destination"):
            if key not in body:
                raise ScenarioError(f"{where}.{key}", None, "required: a host name or a list of them")
        sources = _name_list(body["source"], f"{where}.source", hosts, "host")
        destinations = _name_list(body["destination"], f"{where}.destination", hosts, "host")
        for k in range(count):
            # a list of hosts is dealt round-robin over the entry's VMs
            source, destination = sources[k % len(sources)], destinations[k % len(destinations)]
            if name:
                vm_name = name if count == 1 else f"{name}-{k + 1}"
            else:
                numbered[profile] = numbered.get(profile, 0) + 1
                vm_name = f"{profile}-{numbered[profile]}"
            if vm_name in seen:
                raise ScenarioError(f"{where}.name", vm_name, "duplicate VM name")
            seen.add(vm_name)
            vms.append(_fleet_vm(vm_name, profile, source, destination, where, fleet))
    return tuple(vms)


def _fleet_vm(name: str, profile: str, source: str, destination: str, where: str,
              fleet: dict[str, Any]) -> FleetVm:
    hosts = fleet["hosts"]
    if source == destination:
        raise ScenarioError(f"{where}.destination", destination, f"VM {name}: same host as its source")
    path = path_between(hosts[source], hosts[destination])
    if not path:
        raise ScenarioError(f"hosts.{destination}.links", list(hosts[destination].links),
                            f"VM {name}: {source} -> {destination} crosses no link of its own")
    scenario = fleet["profiles"][profile]
    port_type = scenario.port_profile.type
    for host in (source, destination):
        if port_type != "none" and not hosts[host].switch:
            raise ScenarioError(f"hosts.{host}.switch", "",
                                f"VM {name} has {port_type} ports: its hosts need a switch")
    switch = fleet["switches"].get(hosts[destination].switch, SwitchSpec())
    return FleetVm(name, profile, source, destination, path,
                   _vm_scenario(scenario, name, path, fleet["links"], switch))


def fleet_from_dict(data: dict[str, Any], base_dir: Path | None = None, source: str = "") -> Fleet:
    """Builds and validates a Fleet. Relative paths in profiles resolve against `base_dir`."""
    try:
        _check_keys(_table(data, "fleet"), _TOP_KEYS, "")
        name = data.get("name", "fleet")
        # the name is the results folder's
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ScenarioError("name", name, "expected letters, digits, '.', '_' or '-', no spaces")
        parts: dict[str, Any] = {"links": _links(data),
                                 "switches": _named_sections(data, "switches", SwitchSpec)}
        parts["hosts"] = _hosts(data, parts["links"], parts["switches"])
        parts["profiles"] = _profiles(data, base_dir)
        plan = section_from_dict(PlanSpec, data.get("plan", {}), "plan")
        fleet = Fleet(name=name, plan=plan, vms=_vms(data, parts, plan.max_vms), **parts)
        if "policy" not in data:
            return fleet
        policy = section_from_dict(PolicySpec, data["policy"], "policy")
        check_policy(policy, data["policy"])
        for profile, scenario in fleet.profiles.items():
            if scenario.policy.active:
                raise ScenarioError(f"profiles.{profile}.policy", scenario.policy.orchestrator,
                                    "the fleet has [policy]: give the policy once, there")
        return with_policy(fleet, policy)
    except ScenarioError as exc:
        if source and not exc.source:
            raise ScenarioError(exc.field, exc.value, exc.allowed, source) from None
        raise


def fleet_from_toml(text: str, base_dir: Path | None = None, source: str = "",
                    overrides: list[str] | None = None) -> Fleet:
    return _overridden(parse_toml(text, source), base_dir, source, overrides)


def load_fleet(path: str | Path, overrides: list[str] | None = None) -> Fleet:
    """Reads a fleet TOML file, applying `section.key=value` overrides (e.g. plan.max_concurrent=4)."""
    return _overridden(read_toml(path, "fleet file"), Path(path).parent.resolve(), str(path), overrides)


def _overridden(data: dict[str, Any], base_dir: Path | None, source: str,
                overrides: list[str] | None) -> Fleet:
    """The fleet with its `--set`s applied, each into an entry the file has; an error in an
    overridden field names the override, not the file."""
    for item in overrides or []:
        check_named_entry(data, override_key(item), "--set", whole_entry=True)
        apply_override(data, item)
    try:
        return fleet_from_dict(data, base_dir=base_dir)
    except ScenarioError as exc:
        raise (blamed(exc, source, overrides) if source else exc) from None


# fleet tables of named entries: a path must name an entry that exists (a typo must not add a link)
FLEET_NAMED = ("links", "hosts", "switches", "profiles")


def check_named_entry(data: dict[str, Any], path: str, where: str, whole_entry: bool) -> None:
    """A dotted path into a fleet's named tables (`links.NAME.FIELD`) names an entry the fleet has;
    `whole_entry`: `links.NAME` alone (the entry replaced) is a path too."""
    parts = path.split(".")
    if parts[0] not in FLEET_NAMED:
        return
    entries = data.get(parts[0], {})
    names = list(entries) if isinstance(entries, dict) else []
    if len(parts) < (2 if whole_entry else 3) or parts[1] not in names:
        raise ScenarioError(where, path, f"expected {parts[0]}.NAME.FIELD with NAME one of: "
                                         + (", ".join(names) or "none"))


def with_policy(fleet: Fleet, policy: PolicySpec) -> Fleet:
    """`fleet` with every VM under `policy`, and the plan's concurrency the orchestrator's where it
    sets its own (Nova's per source host; KubeVirt's per node and per cluster; vdsm's per host)."""
    cluster, per_host = concurrency(policy)
    plan = replace(fleet.plan,
                   max_concurrent=fleet.plan.max_concurrent if cluster is None else cluster,
                   max_per_source_host=fleet.plan.max_per_source_host if per_host is None else per_host)
    vms = tuple(replace(vm, scenario=vm.scenario.replace(policy=policy)) for vm in fleet.vms)
    return replace(fleet, plan=plan, vms=vms)


def launch_order(fleet: Fleet) -> list[int]:
    """Indices of `fleet.vms` in the order the plan starts them (a stable sort: ties keep the list's
    order). lowest-dirty-first ranks by distinct bytes dirtied in the first second."""
    vms = fleet.vms
    if fleet.plan.order == "lowest-dirty-first":
        # once per profile: a trace profile reads its file
        dirty_b = {name: pages_to_bytes(dirty_model_for(p.vm).distinct_pages(0.0, 1.0), p.vm.page_size_bytes)
                   for name, p in fleet.profiles.items()}
        return sorted(range(len(vms)), key=lambda i: dirty_b[vms[i].profile])
    sign = {"as-listed": 0.0, "smallest-first": 1.0, "largest-first": -1.0}[fleet.plan.order]
    return sorted(range(len(vms)), key=lambda i: sign * vms[i].scenario.vm.memory_mib)
