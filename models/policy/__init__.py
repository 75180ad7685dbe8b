"""The orchestrators' migration policies: what Nova, KubeVirt, oVirt (vdsm) and Proxmox do to a
running migration, as small pure functions (one module each).

Each orchestrator runs a monitor loop beside libvirt's migration call: every poll it reads the job's
statistics and may change the max downtime, abort the job, pause the guest or switch to post-copy.
Each module here gives that loop's rule as

    initial(settings, memory_mib, downtime_ms) -> (State, downtime_ms)   before the migration starts
    poll(settings, state, Observation) -> (State, Action)                 one pass of the loop
    poll_interval_s(settings, state) -> seconds until the next pass

and the SimPy engine (sim/policy.py) and the executor call these same functions. `[policy]` in a
scenario or a fleet names the orchestrator and its settings, under the names the orchestrator gives
them (`[policy.nova] live_migration_downtime = 500`); orchestrator "none" (the default) is plain
libvirt, as before policies existed, and leaves every scenario id as it was.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .. import limits as lim
from ..errors import ScenarioError
from ..schema import spec
from . import kubevirt, nova, ovirt, proxmox
from .common import DEADLINE_ACTIONS, NOTHING, Action, Observation

ORCHESTRATORS = ("none", "nova", "kubevirt", "ovirt", "proxmox")
_MODULES = {"nova": nova, "kubevirt": kubevirt, "ovirt": ovirt, "proxmox": proxmox}


@dataclass(frozen=True)
class PolicySpec:
    # none: plain libvirt (no orchestrator); nova | kubevirt | ovirt | proxmox: its monitor loop
    orchestrator: str = spec("none", choices=ORCHESTRATORS)
    # the orchestrator's clock runs this many times faster (0.01: Nova's 300 s step after 3 s), for
    # tests where the defaults run to hours; 1 = real time. Written in every record's scenario.
    time_scale: float = spec(1.0, lo=0.0, hi=1.0, lo_open=True, least=lim.POLICY_TIME_SCALE)
    nova: nova.Settings = field(default_factory=nova.Settings)
    kubevirt: kubevirt.Settings = field(default_factory=kubevirt.Settings)
    ovirt: ovirt.Settings = field(default_factory=ovirt.Settings)
    proxmox: proxmox.Settings = field(default_factory=proxmox.Settings)

    @property
    def active(self) -> bool:
        return self.orchestrator != "none"

    @property
    def settings(self) -> Any:
        return getattr(self, self.orchestrator)


def module(policy: PolicySpec) -> Any:
    """The orchestrator's module (initial, poll, poll_interval_s, concurrency)."""
    return _MODULES[policy.orchestrator]


def check_policy(policy: PolicySpec, given: dict[str, Any], path: str = "policy") -> None:
    """A setting off its default for an orchestrator other than the one named is a mistake, not a
    no-op (a written-out scenario repeats every table at its defaults, which is fine)."""
    for name in _MODULES:
        settings = getattr(policy, name)
        if name != policy.orchestrator and settings != type(settings)():
            default = type(settings)()
            key = next(k for k in given[name] if getattr(settings, k) != getattr(default, k))
            raise ScenarioError(f"{path}.{name}.{key}", given[name][key],
                                f"a setting of {name}, but {path}.orchestrator is "
                                f"{policy.orchestrator!r}; set {path}.orchestrator = {name!r} or drop it")


def concurrency(policy: PolicySpec) -> tuple[int | None, int | None]:
    """(migrations at once in the cluster, outbound at once per source host) as the orchestrator
    applies them; None where it sets no limit of its own (the fleet's plan then holds)."""
    if not policy.active:
        return None, None
    return module(policy).concurrency(policy.settings)


def may_postcopy(policy: PolicySpec) -> bool:
    """Whether the orchestrator's migration call carries VIR_MIGRATE_POSTCOPY."""
    return policy.active and module(policy).may_postcopy(policy.settings)


def with_orchestrator(policy: PolicySpec, orchestrator: str) -> PolicySpec:
    """`policy` naming `orchestrator` (with that orchestrator's default settings unless given)."""
    return dataclasses.replace(policy, orchestrator=orchestrator)


__all__ = ["DEADLINE_ACTIONS", "NOTHING", "ORCHESTRATORS", "Action", "Observation", "PolicySpec",
           "check_policy", "concurrency", "may_postcopy", "module", "with_orchestrator"]
