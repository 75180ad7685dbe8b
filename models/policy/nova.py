"""OpenStack Nova's libvirt driver: max downtime raised in linear steps, then a completion timeout.

Source: openstack/nova at 00a0304 (August 2026). `nova/virt/libvirt/migration.py` `downtime_steps`,
`update_downtime`, `should_trigger_timeout_action`, `run_tasks`; the loop is
`nova/virt/libvirt/driver.py` `_live_migration_monitor` (line 11618): every 0.5 s (`sleep_time`,
line 11634) it reads the job, runs queued tasks (a force-complete queued by the previous pass), checks
the completion timeout, then sets the downtime step whose time `elapsed` has passed. The data size is
`_live_migration_data_gb` (line 11576): the flavor's RAM in GiB, at least 2 (disks only for block
migration, not modelled).

Worked example, a 4 GiB VM with the defaults (data_gb 4.0): delay int(75 x 4) = 300 s, base
500 / 10 = 50 ms, offset (500 - 50) / 10 = 45 ms, so the steps are (0 s, 50 ms), (300 s, 95 ms),
(600 s, 140 ms) ... (3000 s, 500 ms); the completion timeout is int(800 x 4) = 3,200 s, then abort.
The first poll of the running job (elapsed > 0) sets 50 ms; the 95 ms step comes at the first poll
with elapsed > 300 s, i.e. at 300.5 s on polls at multiples of 0.5 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .. import limits as lim
from ..schema import spec
from ..units import mib_to_gib
from .common import Action, Observation

# nova/virt/libvirt/driver.py _live_migration_monitor: sleep_time = 0.5 (line 11634)
POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Settings:
    # nova/conf/libvirt.py line 321: IntOpt live_migration_downtime, default 500 (ms), min 100
    live_migration_downtime: int = spec(500, lo=100, most=lim.POLICY_DOWNTIME_MS)
    # line 338: live_migration_downtime_steps, default 10, min 3
    live_migration_downtime_steps: int = spec(10, lo=3, hi=10_000)
    # line 346: live_migration_downtime_delay, default 75 (s per GiB), min 3
    live_migration_downtime_delay: int = spec(75, lo=3, most=lim.POLICY_SECONDS)
    # line 356: live_migration_completion_timeout, default 800 (s per GiB), min 0 (0 = none)
    live_migration_completion_timeout: int = spec(800, lo=0, most=lim.POLICY_SECONDS)
    # line 398: live_migration_timeout_action, default abort; force_complete pauses the guest, or
    # switches to post-copy when live_migration_permit_post_copy allows it (migration.py run_tasks)
    live_migration_timeout_action: str = spec("abort", choices=("abort", "force_complete"))
    # line 415: live_migration_permit_post_copy, default False
    live_migration_permit_post_copy: bool = spec(False)
    # nova/conf/compute.py line 704: max_concurrent_live_migrations, default 1 (per compute host,
    # the source's semaphore); 0 = unlimited
    max_concurrent_live_migrations: int = spec(1, lo=0, most=lim.Limit(10_000, "the fleet's VM budget"))


def data_gb(memory_mib: float) -> float:
    """driver.py `_live_migration_data_gb`: RAM in GiB, at least 2."""
    return max(2.0, mib_to_gib(memory_mib))


def downtime_steps(s: Settings, data: float) -> list[tuple[int, int]]:
    """migration.py `downtime_steps`: (seconds, ms) pairs, linear from downtime/steps to downtime.

    >>> downtime_steps(Settings(), 4.0)[:3]
    [(0, 50), (300, 95), (600, 140)]
    """
    delay = int(s.live_migration_downtime_delay * data)
    base = s.live_migration_downtime / s.live_migration_downtime_steps
    offset = (s.live_migration_downtime - base) / s.live_migration_downtime_steps
    return [(int(delay * i), int(base + offset * i)) for i in range(s.live_migration_downtime_steps + 1)]


def completion_timeout_s(s: Settings, data: float) -> int:
    """driver.py line 11673: int(live_migration_completion_timeout x data_gb); 0 = none."""
    return int(s.live_migration_completion_timeout * data)


@dataclass(frozen=True)
class State:
    steps: tuple[tuple[int, int], ...]
    completion_timeout_s: int
    downtime_ms: float = math.nan
    # a force-complete queued at the timeout, run at the start of the next pass (run_tasks)
    force_queued: bool = False
    # the job switched to post-copy (migration.status 'running (post-copy)'): no further timeout
    postcopy: bool = False


def initial(s: Settings, memory_mib: float, downtime_ms: float) -> tuple[State, float]:
    """Nova sets nothing before the call: QEMU's own downtime-limit holds until the first poll."""
    data = data_gb(memory_mib)
    return State(tuple(downtime_steps(s, data)), completion_timeout_s(s, data)), downtime_ms


def poll_interval_s(s: Settings, state: State) -> float:
    return POLL_INTERVAL_S


def concurrency(s: Settings) -> tuple[int | None, int | None]:
    return None, s.max_concurrent_live_migrations


def poll(s: Settings, state: State, obs: Observation) -> tuple[State, Action]:
    """One pass of `_live_migration_monitor` while the job runs (VIR_DOMAIN_JOB_UNBOUNDED)."""
    deadline = ""
    if state.force_queued:  # run_tasks: 'force-complete'
        deadline = "postcopy" if s.live_migration_permit_post_copy else "pause"
        state = replace(state, force_queued=False, postcopy=deadline == "postcopy")
    timed_out = (state.completion_timeout_s and not state.postcopy
                 and obs.elapsed_s > state.completion_timeout_s)
    if timed_out and not deadline:
        if s.live_migration_timeout_action == "abort":
            return state, Action(deadline="abort")
        # live_migration_force_complete queues the task for the next pass
        state = replace(state, force_queued=True)
    # update_downtime: the last step whose time `elapsed` is past
    this = [ms for at_s, ms in state.steps if obs.elapsed_s > at_s]
    downtime = math.nan
    if this and this[-1] != state.downtime_ms:
        downtime = float(this[-1])
        state = replace(state, downtime_ms=downtime)
    return state, Action(downtime_ms=downtime, deadline=deadline)


def may_act(s: Settings, state: State) -> bool:
    """Can a later poll still change a stalled migration (a step to come, or the timeout)?"""
    last_step_ms = state.steps[-1][1]
    return not state.postcopy and (bool(state.completion_timeout_s) or state.downtime_ms != last_step_ms)


def may_postcopy(s: Settings) -> bool:
    """driver.py `_is_post_copy_enabled`: the call carries VIR_MIGRATE_POSTCOPY when permitted."""
    return s.live_migration_permit_post_copy
