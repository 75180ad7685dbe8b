"""The pre-check's judgement of a live domain's move, as pure functions over a scenario and its
predicted record: the verdict's reasons, how far the dirty-rate estimate's sampling error moves the
prediction, and what would make a move that does not converge converge. `pausecast precheck` (cli/)
reads the domain and prints these; nothing here touches a host.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..models.record import MigrationRecord
from ..models.scenario import Scenario
from ..sim import predict
from ..sim.advice import (
    bandwidth_for_convergence_mbit_s,
    forced_alternatives,
    smallest_converging_downtime_ms,
    with_auto_converge,
)

# the dirty-rate estimate's sampling error carried to the prediction: predicted again at the estimate
# minus and plus this many standard errors (~95 %)
RANGE_STDERRS = 2.0


def reasons(record: MigrationRecord, scenario: Scenario) -> list[str]:
    """The verdict's reasons, in the operator's words.

    >>> from pausecast.models.files import scenario_from_dict
    >>> s = scenario_from_dict({})
    >>> reasons(MigrationRecord("id", "sim", failure="not-converged"), s)[0][:44]
    'pre-copy never converges at max downtime 300'
    >>> reasons(MigrationRecord("id", "sim", converged=True, iterations=4, total_time_s=12.34,
    ...                         pause_window_ms=412.0, network_outage_ms=1630.0), s)
    ['converges after 4 iterations in 12.3 s', 'frozen 412 ms, network cut off 1630 ms']
    """
    limit = scenario.migration.max_downtime_ms
    if record.failure == "not-converged":
        return [f"pre-copy never converges at max downtime {limit:g} ms: the guest dirties pages "
                "faster than the link drains them under that threshold"]
    if record.failure:
        return [f"the migration would fail: {record.failure}; the VM would stay on the source"]
    out = [f"converges after {record.iterations} iterations in {record.total_time_s:.1f} s"]
    if record.forced:
        out.append(f"only because the timeout forces the switchover ({record.forced})")
    out.append(f"frozen {record.pause_window_ms:.0f} ms, network cut off {record.network_outage_ms:.0f} ms")
    return out


def with_dirty_rate(scenario: Scenario, rate_mib_s: float) -> Scenario:
    vm = scenario.vm
    return scenario.replace(vm=dataclasses.replace(vm, dirty=dataclasses.replace(vm.dirty,
                                                                               rate_mib_s=rate_mib_s)))


def rate_range(scenario: Scenario, rate_mib_s: float, stderr_mib_s: float) -> dict[str, Any] | None:
    """The move predicted again at the ends of the estimate's +-RANGE_STDERRS band; None where the
    rate was counted (job stats), not sampled (no standard error)."""
    if stderr_mib_s <= 0:
        return None
    half = RANGE_STDERRS * stderr_mib_s
    rates = (max(0.0, rate_mib_s - half), rate_mib_s + half)
    records = [predict(with_dirty_rate(scenario, r)) for r in rates]
    # a move that stays on the source has no time or pause to show
    return {"stderrs": RANGE_STDERRS, "dirty_rate_mib_s": list(rates),
            "migrated": [r.migrated for r in records],
            "total_time_s": [r.total_time_s if r.migrated else None for r in records],
            "pause_window_ms": [r.pause_window_ms if r.migrated else None for r in records]}


def uncertainty(spread: dict[str, Any], go: bool) -> list[str]:
    """A reason line for each end of the estimate's band where the verdict would flip.

    >>> band = {"stderrs": 2.0, "dirty_rate_mib_s": [30.0, 50.0], "migrated": [True, False]}
    >>> print(*uncertainty(band, go=True))
    uncertain: at 50.0 MiB/s (the estimate plus 2 standard errors) it would not move; more --calc-runs \
narrow the estimate
    >>> uncertainty({**band, "migrated": [True, True]}, go=True)
    []
    """
    flips = [(rate, end) for rate, migrated, end in zip(spread["dirty_rate_mib_s"], spread["migrated"],
                                                         ("minus", "plus"), strict=True) if migrated != go]
    return [f"uncertain: at {rate:.1f} MiB/s (the estimate {end} {spread['stderrs']:g} standard errors) it "
            f"would {'not ' if go else ''}move; more --calc-runs narrow the estimate"
            for rate, end in flips]


def advice(scenario: Scenario, record: MigrationRecord, alternative_after_s: float) -> dict[str, Any]:
    """What would make the move converge (the smallest max downtime, the line rate needed) and, for a
    move that would not, what forcing the switchover after `alternative_after_s` would cost."""
    lines = []
    smallest = smallest_converging_downtime_ms(scenario)
    needed = bandwidth_for_convergence_mbit_s(scenario)
    limit = scenario.migration.max_downtime_ms
    if smallest is None:
        lines.append("no max downtime up to 60 s converges at this dirty rate")
    elif smallest <= 1.0:
        lines.append("any max downtime converges at the measured dirty rate (the dirty rate is below the "
                     "migration rate, so passes shrink geometrically; tried down to 1 ms)")
    else:
        lines.append(f"smallest max downtime that converges at the measured dirty rate: {smallest:.0f} ms "
                     f"(set: {limit:g} ms)")
    if needed is None:
        lines.append(f"no link up to 800 Gbit/s makes {limit:g} ms converge")
    else:
        lines.append(f"bandwidth that makes {limit:g} ms converge: {needed:.0f} Mbit/s of line rate "
                     f"(set: {scenario.link.bandwidth_mbit_s:g} Mbit/s x {scenario.link.efficiency:g})")
    alternatives = []
    if not record.migrated:
        for alt in forced_alternatives(scenario, alternative_after_s):
            r = alt.record
            alternatives.append({"what": alt.what, "pause_window_ms": r.pause_window_ms,
                                 "total_time_s": r.total_time_s})
            lines.append(f"{alt.what}: frozen {r.pause_window_ms:.0f} ms, done in {r.total_time_s:.1f} s"
                         + (" (then pages fault in over the network)" if r.forced == "postcopy" else ""))
    throttled = with_auto_converge(scenario)
    lines.append(auto_converge_line(scenario, throttled))
    moved = throttled.migrated
    return {"smallest_max_downtime_ms": smallest, "bandwidth_for_convergence_mbit_s": needed,
            "forced": alternatives, "lines": lines,
            "auto_converge": {"converged": throttled.converged,
                              "throttle_peak_pct": throttled.throttle_peak_pct,
                              "throttle_time_s": throttled.throttle_time_s,
                              "pause_window_ms": throttled.pause_window_ms if moved else None,
                              "total_time_s": throttled.total_time_s if moved else None}}


def auto_converge_line(scenario: Scenario, r: MigrationRecord) -> str:
    """What auto-converge would do to the move (`r`: the engine's prediction with it on, no timeout).

    >>> from pausecast.models.record import MigrationRecord
    >>> from pausecast.models.scenario import Scenario
    >>> r = MigrationRecord("x", "sim", converged=True, precopy_time_s=19.2, total_time_s=21.0,
    ...                     pause_window_ms=88.0, throttle_peak_pct=60, throttle_time_s=15.0)
    >>> print(auto_converge_line(Scenario(), r))
    auto-converge (virsh --auto-converge): converges after 19.2 s of pre-copy with the throttle up to \
60 % (the guest slowed for 15.0 s), frozen 88 ms, done in 21.0 s (a CPU-bound guest's figures: one \
paced by a clock catches up and is slowed less)
    """
    what = "auto-converge " + ("(on)" if scenario.migration.auto_converge else "(virsh --auto-converge)")
    caveat = " (a CPU-bound guest's figures: one paced by a clock catches up and is slowed less)"
    if not r.migrated:
        return f"{what}: does not converge either, the throttle reaching {r.throttle_peak_pct} %" + caveat
    if r.throttle_peak_pct == 0:
        return f"{what}: never throttles this move (it dirties under half of what it sends)"
    return (f"{what}: converges after {r.precopy_time_s:.1f} s of pre-copy with the throttle up to "
            f"{r.throttle_peak_pct} % (the guest slowed for {r.throttle_time_s:.1f} s), frozen "
            f"{r.pause_window_ms:.0f} ms, done in {r.total_time_s:.1f} s" + caveat)
