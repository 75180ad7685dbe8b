"""oVirt's vdsm: a convergence schedule of actions, one taken per new iteration seen past its limit.

Source: oVirt/vdsm at fd4b0df (June 2026). `lib/vdsm/virt/migration.py` `MonitorThread.monitor_migration`
(line 932): runs the schedule's `init` actions, then every `migration_monitor_interval` seconds reads
the job; when libvirt's memory iteration has grown since the last poll, `_next_action` (line 1011)
takes the head of the `stalling` list if its `limit` is below the iterations since the first poll,
and pops it: one action per poll at most. The engine sends a schedule with each migration policy;
without one vdsm builds `_legacy_convergence_schedule` (line 776): init sets the first of
`exponential_downtime(migration_downtime, migration_downtime_steps)` (line 871), then each further
downtime at limits 1, 2, 3, ..., the last again at limit 42, then abort at limit -1. That legacy
schedule is what is modelled (the engine's named policies are other schedules of the same form).
Settings are vdsm's `[vars]` (lib/vdsm/common/config.py.in).

Worked example, the defaults: exponential_downtime(500, 5): offset 100, base 400^(1/4) = 4.472,
downtimes int(100 + base^i) = 101, 104, 120, 189, 500 ms. Init sets 101 ms; the polls at 10, 20,
30, 40 s (one iteration or more between each) set 104, 120, 189, 500 ms once the iterations since
the first poll pass 1, 2, 3, 4; 500 ms again past 42 iterations; abort at the next new iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import limits as lim
from ..schema import spec
from .common import NOTHING, Action, Observation


@dataclass(frozen=True)
class Settings:
    # config.py.in line 102: migration_downtime = 500 (ms)
    migration_downtime: int = spec(500, lo=1, most=lim.POLICY_DOWNTIME_MS)
    # line 108: migration_downtime_steps = 5
    migration_downtime_steps: int = spec(5, lo=1, hi=1000)
    # line 83: migration_monitor_interval = 10 (s); 0 disables the monitor thread
    migration_monitor_interval: int = spec(10, lo=0, most=lim.POLICY_SECONDS)
    # line 111: max_outgoing_migrations = 2
    max_outgoing_migrations: int = spec(2, lo=1, most=lim.Limit(10_000, "the fleet's VM budget"))


def exponential_downtime(downtime: int, steps: int) -> list[int]:
    """migration.py `exponential_downtime`.

    >>> exponential_downtime(500, 5)
    [101, 104, 120, 189, 500]
    """
    if steps <= 1:
        return [downtime]
    offset = downtime / float(steps)
    base = (downtime - offset) ** (1 / float(steps - 1))
    return [int(offset + base**i) for i in range(steps)]


def legacy_schedule(s: Settings) -> tuple[int, tuple[tuple[int, str, int], ...]]:
    """`_legacy_convergence_schedule`: (init downtime, ((limit, action, downtime_ms), ...))."""
    downtimes = exponential_downtime(s.migration_downtime, s.migration_downtime_steps)
    stalling = [(limit, "setDowntime", d) for limit, d in enumerate(downtimes[1:], start=1)]
    stalling.append((42, "setDowntime", downtimes[-1]))
    stalling.append((-1, "abort", 0))
    return downtimes[0], tuple(stalling)


@dataclass(frozen=True)
class State:
    stalling: tuple[tuple[int, str, int], ...]
    initial_iteration: int = -1
    last_iteration: int = -1


def initial(s: Settings, memory_mib: float, downtime_ms: float) -> tuple[State, float]:
    """The init actions run before the first wait: the first downtime holds from the start."""
    init_ms, stalling = legacy_schedule(s)
    if s.migration_monitor_interval == 0:
        return State(()), downtime_ms
    return State(stalling), float(init_ms)


def poll_interval_s(s: Settings, state: State) -> float:
    return float(s.migration_monitor_interval) if state.stalling else float("inf")


def concurrency(s: Settings) -> tuple[int | None, int | None]:
    return None, s.max_outgoing_migrations


def poll(s: Settings, state: State, obs: Observation) -> tuple[State, Action]:
    if state.initial_iteration < 0:
        state = replace(state, initial_iteration=obs.iteration, last_iteration=obs.iteration)
    if obs.iteration <= state.last_iteration or not state.stalling:
        return state, NOTHING
    state = replace(state, last_iteration=obs.iteration)
    limit, action, downtime = state.stalling[0]
    if not limit < obs.iteration - state.initial_iteration:
        return state, NOTHING
    state = replace(state, stalling=state.stalling[1:])
    if action == "abort":
        return replace(state, stalling=()), Action(deadline="abort")
    return state, Action(downtime_ms=float(downtime))


def may_act(s: Settings, state: State) -> bool:
    return bool(state.stalling)


def may_postcopy(s: Settings) -> bool:
    """migration.py line 763: only a schedule with a postcopy action adds the flag; the legacy one
    has none."""
    return False
