"""KubeVirt's virt-launcher migration monitor (the legacy convergence path; the stall detector is the
alpha feature gate MigrationStallDetection, off by default).

Source: kubevirt/kubevirt at d923fdb (August 2026). `pkg/virt-launcher/virtwrap/live-migration-source.go`:
the monitor polls every 400 ms (`monitorSleepPeriodMS`, line 60); `acceptableCompletionTime` is
completionTimeoutPerGiB x the VMI's data size (line 408), the size being
`memory.ScaledValue(resource.Giga)` (virtwrap/manager.go line 870): the memory in decimal GB,
rounded up. `handleLegacyConvergence` (line 762), in order: in post-copy, nothing; past the
completion time with allowWorkloadDisruption (which follows allowPostCopy unless set,
pkg/virt-config/virt-config.go line 141): post-copy if allowPostCopy, else suspend the guest and
double the completion time; no progress (remaining data not below the previous poll's,
line 859) for more than progressTimeout: abort; past the completion time: abort. The times are
whole seconds (`elapsedNs / time.Second`), so "past 750 s" is the first poll at 751 s or later.

Worked example, a 4 GiB VM with the defaults: 4 GiB = 4.295 GB, rounded up to 5, so the completion
time is 150 x 5 = 750 s; no post-copy and no workload disruption allowed, so the migration is
aborted at the first poll with 751 s elapsed (751.2 s on polls every 0.4 s). KubeVirt does not
change the max downtime on this path: the scenario's holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .. import limits as lim
from ..schema import spec
from ..units import bytes_to_gb, mib_to_bytes
from .common import NOTHING, Action, Observation

# live-migration-source.go line 60: monitorSleepPeriodMS = 400
POLL_INTERVAL_S = 0.400
_MOST_PARALLEL = lim.Limit(10_000, "the fleet's VM budget")


@dataclass(frozen=True)
class Settings:
    # pkg/virt-config/virt-config.go line 46: MigrationCompletionTimeoutPerGiB = 150 (s)
    completionTimeoutPerGiB: int = spec(150, lo=0, most=lim.POLICY_SECONDS)
    # line 45: MigrationProgressTimeout = 150 (s); 0 = none
    progressTimeout: int = spec(150, lo=0, most=lim.POLICY_SECONDS)
    # line 44: MigrationAllowPostCopy = false
    allowPostCopy: bool = spec(False)
    # line 141: allowWorkloadDisruption follows allowPostCopy unless set; "" = follow it
    allowWorkloadDisruption: str = spec("", choices=("", "true", "false"))
    # line 40: ParallelOutboundMigrationsPerNodeDefault = 2
    parallelOutboundMigrationsPerNode: int = spec(2, lo=1, most=_MOST_PARALLEL)
    # line 41: ParallelMigrationsPerClusterDefault = 5
    parallelMigrationsPerCluster: int = spec(5, lo=1, most=_MOST_PARALLEL)


def data_size_gb(memory_mib: float) -> int:
    """manager.go getVMIMigrationDataSize: memory.ScaledValue(resource.Giga), rounded up."""
    return math.ceil(bytes_to_gb(mib_to_bytes(memory_mib)))


def workload_disruption(s: Settings) -> bool:
    return s.allowPostCopy if s.allowWorkloadDisruption == "" else s.allowWorkloadDisruption == "true"


@dataclass(frozen=True)
class State:
    acceptable_completion_s: int
    last_progress_s: float = 0.0
    watermark_bytes: float = 0.0
    paused: bool = False
    postcopy: bool = False


def initial(s: Settings, memory_mib: float, downtime_ms: float) -> tuple[State, float]:
    return State(s.completionTimeoutPerGiB * data_size_gb(memory_mib)), downtime_ms


def poll_interval_s(s: Settings, state: State) -> float:
    return POLL_INTERVAL_S


def concurrency(s: Settings) -> tuple[int | None, int | None]:
    return s.parallelMigrationsPerCluster, s.parallelOutboundMigrationsPerNode


def poll(s: Settings, state: State, obs: Observation) -> tuple[State, Action]:
    """processInflightMigration, then handleLegacyConvergence."""
    if state.watermark_bytes == 0 or obs.remaining_bytes < state.watermark_bytes:
        state = replace(state, last_progress_s=obs.elapsed_s)
    state = replace(state, watermark_bytes=obs.remaining_bytes)
    if state.postcopy:
        return state, NOTHING
    past = state.acceptable_completion_s != 0 and int(obs.elapsed_s) > state.acceptable_completion_s
    if past and workload_disruption(s) and not state.paused:
        if s.allowPostCopy:
            return replace(state, postcopy=True), Action(deadline="postcopy")
        # dom.Suspend(), and acceptableCompletionTime *= 2 against a premature cancel
        return (replace(state, paused=True, acceptable_completion_s=2 * state.acceptable_completion_s),
                Action(deadline="pause"))
    if s.progressTimeout != 0 and int(obs.elapsed_s - state.last_progress_s) > s.progressTimeout:
        return state, Action(deadline="abort")
    if past:
        return state, Action(deadline="abort")
    return state, NOTHING


def may_act(s: Settings, state: State) -> bool:
    """A stalled migration still falls between its syncs (progress, for KubeVirt): only the
    completion time can end it."""
    return not state.postcopy and state.acceptable_completion_s != 0


def may_postcopy(s: Settings) -> bool:
    """live-migration-source.go line 147: allowPostCopy adds VIR_MIGRATE_POSTCOPY to the call."""
    return s.allowPostCopy
