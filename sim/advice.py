"""Advice a pre-check gives: what would make a migration converge, found with the engine itself.

Both searches bisect on one scenario parameter. Convergence is monotone in each (a larger downtime
limit or a faster link only raises QEMU's threshold or speeds the copy), so bisection finds the
boundary; the answer is then re-checked with the engine, never extrapolated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..models.record import MigrationRecord
from ..models.scenario import Scenario
from .engine import predict

# libvirt accepts any limit; beyond a minute a "live" migration is an offline one
MAX_DOWNTIME_SEARCH_MS = 60_000.0
# 800 Gbit/s: past any NIC a host has today
MAX_BANDWIDTH_SEARCH_MBIT_S = 800_000.0


def _untimed(s: Scenario) -> Scenario:
    """The question is whether pre-copy converges on its own, not what a timeout would force."""
    return s.replace(migration=dataclasses.replace(s.migration, timeout_s=0.0))


def converges(s: Scenario, seed: int = 0) -> bool:
    return predict(_untimed(s), seed).converged


def _smallest(lo: float, hi: float, ok: Callable[[float], bool], rel_tol: float) -> float | None:
    """The smallest x in [lo, hi] with ok(x), for ok monotone in x; None if even hi fails."""
    if ok(lo):
        return lo
    if not ok(hi):
        return None
    while hi - lo > rel_tol * hi:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def smallest_converging_downtime_ms(s: Scenario, seed: int = 0, rel_tol: float = 0.01) -> float | None:
    """The smallest max downtime (ms) at which pre-copy converges, within `rel_tol`."""
    def ok(limit_ms: float) -> bool:
        limited = s.replace(migration=dataclasses.replace(s.migration, max_downtime_ms=limit_ms))
        return converges(limited, seed)

    return _smallest(1.0, MAX_DOWNTIME_SEARCH_MS, ok, rel_tol)


def bandwidth_for_convergence_mbit_s(s: Scenario, seed: int = 0, rel_tol: float = 0.01) -> float | None:
    """The smallest line rate (Mbit/s) at which the scenario's own max downtime converges. A bandwidth
    cap (migration.bandwidth_mib_s) is lifted for the search: the answer is what the path must give."""
    uncapped = s.replace(migration=dataclasses.replace(s.migration, bandwidth_mib_s=0.0))

    def ok(mbit_s: float) -> bool:
        return converges(uncapped.replace(link=dataclasses.replace(s.link, bandwidth_mbit_s=mbit_s)), seed)

    return _smallest(1.0, MAX_BANDWIDTH_SEARCH_MBIT_S, ok, rel_tol)


def with_auto_converge(s: Scenario, seed: int = 0) -> MigrationRecord:
    """The move with auto-converge on (the scenario's own throttle parameters, QEMU's by default) and no
    timeout: whether the throttle alone makes it converge, how far it goes and for how long."""
    on = _untimed(s)
    return predict(on.replace(migration=dataclasses.replace(on.migration, auto_converge=True)), seed)


@dataclass(frozen=True)
class Alternative:
    what: str
    record: MigrationRecord


def forced_alternatives(s: Scenario, after_s: float, seed: int = 0) -> list[Alternative]:
    """What a timeout after `after_s` would do with each forcing action (virsh --timeout-suspend,
    --timeout-postcopy): how long the guest would be frozen and how long the move would take."""
    out = []
    for action in ("pause", "postcopy"):
        forced = s.replace(migration=dataclasses.replace(s.migration, timeout_s=after_s,
                                                         timeout_action=action))
        out.append(Alternative(f"timeout {after_s:g} s, then {action}", predict(forced, seed)))
    return out
