"""What every orchestrator's monitor loop reads at a poll and what it does."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    """What a monitor loop reads from the job's statistics at one poll (libvirt virDomainGetJobStats)."""

    # seconds since the orchestrator started the migration (its monitor's start)
    elapsed_s: float
    # libvirt memory_iteration: bitmap syncs so far, the setup's counted
    iteration: int
    # libvirt memory_remaining / data_remaining
    remaining_bytes: float
    # libvirt memory_processed: bytes sent so far
    transferred_bytes: float


@dataclass(frozen=True)
class Action:
    """What one poll does: a new max downtime (nan: unchanged) and/or a deadline action ("" none):
    abort the job (the guest stays on the source), pause the guest (libvirt suspend: the rest is
    copied with the guest paused) or switch to post-copy."""

    downtime_ms: float = math.nan
    deadline: str = ""


NOTHING = Action()
DEADLINE_ACTIONS = ("abort", "pause", "postcopy")
