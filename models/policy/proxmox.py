"""Proxmox VE's qemu-server: the downtime doubles whenever the remaining data has stopped falling.

Source: proxmox/qemu-server at e6352be (August 2026), `src/PVE/QemuMigrate.pm` `phase2`: the
downtime-limit is set before `migrate` to the VM's `migrate_downtime` (line 1373; default 0.1 s,
src/PVE/QemuServer.pm line 566); the loop (line 1440) sleeps 1 s, then 0.1 s for good once the
remaining RAM is below the average transferred per poll (line 1525), and queries QEMU; each poll at
which `remaining` is above the previous poll's, or 0, counts (line 1563); when the count passes 5
it is reset and `increase_migrate_downtime` (line 1190) doubles the limit, capped at 2000 s
(line 1177, QEMU's maximum). Proxmox never aborts and has no timeout: a migration that does not
converge runs until an operator stops it.

Worked example: 100 ms; after six polls that saw the remaining data rise, 200 ms; after six more,
400 ms, then 800, 1600, 3200 ms ... up to 2,000,000 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import limits as lim
from ..schema import spec
from .common import NOTHING, Action, Observation

# QemuMigrate.pm line 1440: usleep 1000000; line 1525: 100_000 near the end
POLL_INTERVAL_S = 1.0
FAST_POLL_INTERVAL_S = 0.1
# line 1177: my $migrate_downtime_max = 2000 * 1000 (ms)
DOWNTIME_MAX_MS = 2_000_000.0
# line 1568: if ($downtimecounter > 5)
RISES_BEFORE_DOUBLING = 5


@dataclass(frozen=True)
class Settings:
    # src/PVE/QemuServer.pm line 566: migrate_downtime, number (s), default 0.1
    migrate_downtime: float = spec(0.1, lo=0.0, lo_open=True, most=lim.Limit(2000, "QEMU's cap, 2000 s"))


@dataclass(frozen=True)
class State:
    downtime_ms: float
    polls: int = 0
    last_transferred_bytes: float = 0.0
    last_remaining_bytes: float = 0.0
    counter: int = 0
    fast: bool = False


def initial(s: Settings, memory_mib: float, downtime_ms: float) -> tuple[State, float]:
    start_ms = min(s.migrate_downtime * 1000.0, DOWNTIME_MAX_MS)
    return State(start_ms), start_ms


def poll_interval_s(s: Settings, state: State) -> float:
    return FAST_POLL_INTERVAL_S if state.fast else POLL_INTERVAL_S


def concurrency(s: Settings) -> tuple[int | None, int | None]:
    """Proxmox's bulk migration takes its worker count per call: the fleet's plan holds."""
    return None, None


def increase(downtime_ms: float) -> float:
    """`increase_migrate_downtime`: double, capped at QEMU's maximum."""
    return min(2.0 * downtime_ms, DOWNTIME_MAX_MS)


def poll(s: Settings, state: State, obs: Observation) -> tuple[State, Action]:
    polls = state.polls + 1
    average = state.last_transferred_bytes / polls if state.last_transferred_bytes else 0.0
    state = replace(state, polls=polls)
    if obs.transferred_bytes == state.last_transferred_bytes:
        return state, NOTHING
    rem = obs.remaining_bytes
    fast = state.fast or (average > 0 and rem < average)
    counter = state.counter + (1 if (state.last_remaining_bytes and rem > state.last_remaining_bytes)
                               or rem == 0 else 0)
    state = replace(state, fast=fast, last_remaining_bytes=rem, last_transferred_bytes=obs.transferred_bytes)
    if counter > RISES_BEFORE_DOUBLING and state.downtime_ms < DOWNTIME_MAX_MS:
        new_ms = increase(state.downtime_ms)
        return replace(state, counter=0, downtime_ms=new_ms), Action(downtime_ms=new_ms)
    if counter > RISES_BEFORE_DOUBLING:
        return replace(state, counter=0), NOTHING
    return replace(state, counter=counter), NOTHING


def may_act(s: Settings, state: State) -> bool:
    return state.downtime_ms < DOWNTIME_MAX_MS


def may_postcopy(s: Settings) -> bool:
    """qemu-server never starts post-copy for RAM."""
    return False
