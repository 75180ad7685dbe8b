"""Auto-converge: QEMU's CPU throttle on a pre-copy that dirties faster than it sends, as pure functions.

QEMU 7.2 (Debian 12's), `migration/ram.c`:

* `migration_bitmap_sync` runs at every bitmap sync (the switchover rule's, models/switchover.py). Only
  when more than 1000 ms have passed since the period began (`end_time > rs->time_last_bitmap_sync +
  1000`) does it call `migration_trigger_throttle` and start a new period (`time_last_bitmap_sync`,
  `num_dirty_pages_period = 0`, `bytes_xfer_prev = ram_counters.transferred`). The setup sync only
  opens the first period (`time_last_bitmap_sync` was 0), so it counts from the live phase's start,
  and from 0 bytes.
* `num_dirty_pages_period` adds the pages each sync newly sets in the migration bitmap
  (`ramblock_sync_dirty_bitmap` -> `cpu_physical_memory_sync_dirty_bitmap` counts only bits it
  sets): a page dirtied again while still pending counts once, or not at all if it never left.
* `migration_trigger_throttle`: bytes_dirty_period = those pages x TARGET_PAGE_SIZE;
  bytes_dirty_threshold = bytes_xfer_period x `throttle-trigger-threshold` / 100 (integer division);
  if bytes_dirty_period > bytes_dirty_threshold and ++dirty_rate_high_cnt >= 2: the count goes back to
  0 and `mig_throttle_guest_down` raises the throttle. The count is never reset otherwise: the
  second period over the threshold fires, however many periods under it came between.
* `mig_throttle_guest_down`: not yet throttling, `cpu-throttle-initial`; else + `cpu-throttle-
  increment`, or with `cpu-throttle-tailslow` + min(increment, cpu_now - cpu_ideal), where cpu_now =
  100 - throttle and cpu_ideal = (uint64) cpu_now x bytes_dirty_threshold / bytes_dirty_period (the
  share that would bring the dirtied bytes down to the threshold); then at most `max-cpu-throttle`.

`softmmu/cpu-throttle.c`: `cpu_throttle_set` clamps to [1, 99]; every 10 ms / (1 - pct) of the
host's clock each vCPU is made to sleep pct / (1 - pct) x 10 ms (`cpu_throttle_thread`): it runs
1 - pct of the time. A dirtier bound by its CPU (its writes a function of the work it does) dirties
that fraction of what it would: the guest's own clock runs at 1 - pct (`GuestClock`). A workload paced
by a clock that catches up after a stall is not slowed (README, "Auto-converge"). The throttle stops
with the migration (`migrate_fd_cleanup` -> `cpu_throttle_stop`), at the latest when the guest stops.

QEMU's defaults (`migration/migration.c`, DEFAULT_MIGRATE_*): threshold 50 %, initial 20 %, increment
10 %, max 99 %, tailslow off; libvirt sets initial and increment (VIR_MIGRATE_PARAM_AUTO_CONVERGE_*).

Worked example (the schedule tests/test_auto_converge.py derives by hand): a sweep of 1 GiB written
memory dirtied at 64 MiB/s while 32 MiB/s go out, syncs every 2 s: each period dirties 2 x 64 x (1 -
pct) MiB of new pages and sends 64 MiB; the threshold is 32 MiB, so every period is over it while
128 x (1 - pct) > 32, i.e. pct < 75: throttle 20 % at the 2nd period (t = 4 s), 30 % at the 4th
(8 s), 40 % at 12 s, 50 % at 16 s, 60 % at 20 s, 70 % at 24 s, 80 % at 28 s; past that each period
dirties at most 25.6 MiB, under 32: no more.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .units import s_to_ms

if TYPE_CHECKING:  # models/scenario.py takes its defaults from here
    from .dirty import DirtyModel
    from .scenario import MigrationSpec

# QEMU 7.2 migration/migration.c DEFAULT_MIGRATE_CPU_THROTTLE_INITIAL, _CPU_THROTTLE_INCREMENT,
# _MAX_CPU_THROTTLE, _THROTTLE_TRIGGER_THRESHOLD; libvirt passes initial and increment through
INITIAL_PCT, INCREMENT_PCT, MAX_PCT, TRIGGER_THRESHOLD_PCT = 20, 10, 99, 50
# QEMU migration/ram.c migration_bitmap_sync: a throttle period lasts more than 1000 ms
PERIOD_S = 1.0
# QEMU softmmu/cpu-throttle.c CPU_THROTTLE_PCT_MIN / CPU_THROTTLE_PCT_MAX: cpu_throttle_set's clamp
PCT_MIN, PCT_MAX = 1, 99
# QEMU migration/ram.c migration_trigger_throttle: the second period over the threshold fires
PERIODS_TO_FIRE = 2
# periods without a rise after which a pre-copy that makes no progress is taken to stay so: a state
# whose every period is over the threshold rises every PERIODS_TO_FIRE; this leaves room for one that
# alternates over and under it
STALL_PERIODS = 2 * PERIODS_TO_FIRE + 1


@dataclass(frozen=True)
class AutoConverge:
    """The parameters, with QEMU's names (libvirt's for the two it sets)."""

    initial_pct: int = INITIAL_PCT
    increment_pct: int = INCREMENT_PCT
    max_pct: int = MAX_PCT
    trigger_threshold_pct: int = TRIGGER_THRESHOLD_PCT
    tailslow: bool = False


@dataclass(frozen=True)
class Throttle:
    """Where the throttle stands after a sync: QEMU's RAMState counters and the vCPU throttle."""

    pct: int = 0
    high_count: int = 0
    period_start_s: float = 0.0
    period_start_bytes: float = 0.0
    period_dirty_bytes: float = 0.0
    # what the record reports: the highest throttle and when it first came on (inf: never)
    peak_pct: int = 0
    since_s: float = math.inf
    # periods closed since the throttle last rose (may_still_rise)
    periods_since_rise: int = 0


def params_of(migration: MigrationSpec) -> AutoConverge | None:
    """A scenario's `[migration]` auto-converge parameters; None when it is off."""
    if not migration.auto_converge:
        return None
    return AutoConverge(initial_pct=migration.auto_converge_initial_pct,
                        increment_pct=migration.auto_converge_increment_pct,
                        max_pct=migration.max_cpu_throttle_pct,
                        trigger_threshold_pct=migration.throttle_trigger_threshold_pct,
                        tailslow=migration.cpu_throttle_tailslow)


def raised_pct(params: AutoConverge, now_pct: int, dirty_bytes: float, threshold_bytes: float) -> int:
    """`mig_throttle_guest_down` then `cpu_throttle_set`'s clamp: the throttle after it fires."""
    if now_pct == 0:
        new = params.initial_pct
    else:
        step = params.increment_pct
        if params.tailslow:
            cpu_now = 100 - now_pct
            cpu_ideal = int(cpu_now * (threshold_bytes / dirty_bytes))
            step = min(cpu_now - cpu_ideal, step)
        new = min(now_pct + step, params.max_pct)
    return max(PCT_MIN, min(PCT_MAX, new))


def after_sync(params: AutoConverge, state: Throttle, t_s: float, new_dirty_bytes: float,
               bytes_sent: float) -> Throttle:
    """The throttle after a bitmap sync at `t_s` (seconds into the live phase) that newly set
    `new_dirty_bytes` of pending pages, with `bytes_sent` sent since the live phase began."""
    dirty = state.period_dirty_bytes + new_dirty_bytes
    # QEMU compares whole milliseconds of its clock (qemu_clock_get_ms)
    if not math.floor(s_to_ms(t_s)) > math.floor(s_to_ms(state.period_start_s)) + s_to_ms(PERIOD_S):
        return dataclasses.replace(state, period_dirty_bytes=dirty)
    threshold = math.floor((bytes_sent - state.period_start_bytes) * params.trigger_threshold_pct / 100)
    pct, count = state.pct, state.high_count
    if dirty > threshold:
        count += 1
        if count >= PERIODS_TO_FIRE:
            count = 0
            pct = raised_pct(params, pct, dirty, threshold)
    rose = pct > state.pct
    return Throttle(pct=pct, high_count=count, period_start_s=t_s, period_start_bytes=bytes_sent,
                    period_dirty_bytes=0.0, peak_pct=max(state.peak_pct, pct),
                    since_s=min(state.since_s, t_s) if pct > 0 else state.since_s,
                    periods_since_rise=0 if rose else state.periods_since_rise + 1)


def may_still_rise(params: AutoConverge, state: Throttle) -> bool:
    """Could a pre-copy that has stopped making progress still be throttled further? Not at the
    maximum, nor once STALL_PERIODS periods have gone by without a rise (then the periods are under
    the trigger, and stay so)."""
    top = min(params.max_pct, PCT_MAX) if state.pct > 0 else PCT_MAX
    return state.pct < top and state.periods_since_rise < STALL_PERIODS


def running_fraction(pct: int) -> float:
    """The share of the host's time a vCPU throttled at `pct` runs (softmmu/cpu-throttle.c)."""
    return 1.0 - pct / 100


@dataclass
class GuestClock:
    """The guest's own time against the live phase's: it runs at `running_fraction(pct)` while
    throttled. The throttle changes only at syncs, so the clock is piecewise linear; mutable on
    purpose, as the engine's pre-copy state is. Unthrottled, guest(t) is t itself, to the bit."""

    changes_s: list[float] = dataclasses.field(default_factory=list)
    lags_s: list[float] = dataclasses.field(default_factory=list)
    pcts: list[int] = dataclasses.field(default_factory=list)

    def guest_s(self, t_s: float) -> float:
        k = bisect.bisect_right(self.changes_s, t_s) - 1
        if k < 0:
            return t_s
        return t_s - (self.lags_s[k] + self.pcts[k] / 100 * (t_s - self.changes_s[k]))

    def set_pct(self, t_s: float, pct: int) -> None:
        """From `t_s` on (no earlier than the last change) the vCPUs are throttled at `pct`."""
        if (self.pcts[-1] if self.pcts else 0) == pct:
            return
        self.lags_s.append(t_s - self.guest_s(t_s))
        self.changes_s.append(t_s)
        self.pcts.append(pct)


@dataclass(frozen=True)
class ThrottledDirty:
    """A dirty model (models/dirty.py) seen through a throttled guest's clock: the pages it dirties in
    [t0, t1] of the live phase are those the unthrottled model dirties in [guest(t0), guest(t1)]."""

    dirty: DirtyModel
    clock: GuestClock

    @property
    def universe_pages(self) -> float:
        return self.dirty.universe_pages

    @property
    def stationary_after_s(self) -> float:
        return self.dirty.stationary_after_s

    @property
    def sweeps(self) -> bool:
        return getattr(self.dirty, "sweeps", False)

    def distinct_pages(self, t0_s: float, t1_s: float) -> float:
        return self.dirty.distinct_pages(self.clock.guest_s(t0_s), self.clock.guest_s(t1_s))
