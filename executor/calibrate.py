"""The fixed costs of a migration, measured: what an idle guest's migration spends that moving memory
does not explain, in the terms of the engine's overheads (models/overheads.py OVERHEAD_FIELDS).

The engine lays a migration out as (sim/engine.py; h = RTT / 2)

    begin_ms | h + prepare_ms + h | setup_ms + 2h, live pre-copy, handshake_ms + final copy
             | h + finish_ms + resume_ms | h + confirm_ms

and a measured record (executor/measure.py) has a timestamp at each of those boundaries, so each cost
is the difference of two consecutive ones, less the RTTs the engine adds itself:

    begin_ms     migration call -> the destination's Prepare starts
    prepare_ms   Prepare starts -> the source's Perform starts, less one RTT
    setup_ms     Perform starts -> QEMU's MIGRATION "active" (first page), less one RTT
    handshake_ms QEMU STOP -> MIGRATION "device" (pause-before-switchover, migrate-continue); the
                 final copy after it is the model's to predict, as for any guest
    resume_ms    libvirt's "cont" -> QEMU's RESUME on the destination
    finish_ms    the rest of libvirt's pause window (its completed-job downtime), less half an RTT,
                 so that the engine's pause window adds up to libvirt's
    confirm_ms   the destination's start (source stop + libvirt's downtime) -> the call returns,
                 less half an RTT (mostly tearing the source QEMU down)
    announce_ms  QEMU's announce-initial (not observed: the test guest has no NIC)

With these, the engine reproduces an idle migration's total time and pause window exactly; a busy
guest then differs only by what the pre-copy model predicts.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ..models.overheads import OVERHEAD_FIELDS
from ..models.record import MigrationRecord
from ..models.units import s_to_ms


class CalibrationError(ValueError):
    """A run cannot be calibrated from (it failed, or its daemons' logs were not readable)."""


def overheads_of(r: MigrationRecord) -> dict[str, float]:
    """One idle run's fixed costs, in ms."""
    x = r.extra
    if r.failure or x.get("phases_from") != "daemon logs":
        raise CalibrationError(f"calibration needs a migrated run with its daemons' logs "
                               f"(failure {r.failure!r}, phases from {x.get('phases_from')})")
    rtt_ms = x["rtt_ms"] if math.isfinite(x.get("rtt_ms", math.nan)) else 0.0
    stop_s, live_start_s = x["qemu_stop_s"], x["live_start_s"]
    destination_start_s = stop_s + r.pause_window_ms / 1000.0
    costs = {
        "begin_ms": s_to_ms(r.prepare_start_s - r.begin_start_s),
        "prepare_ms": s_to_ms(r.perform_start_s - r.prepare_start_s) - rtt_ms,
        "setup_ms": s_to_ms(live_start_s - r.perform_start_s) - rtt_ms,
        "handshake_ms": r.handshake_ms,
        "resume_ms": r.resume_ms,
        "finish_ms": r.pause_window_ms - r.handshake_ms - r.final_copy_ms - r.resume_ms - rtt_ms / 2,
        "confirm_ms": s_to_ms(r.total_time_s - destination_start_s) - rtt_ms / 2,
        "announce_ms": float(x["announce_ms"]),
    }
    bad = {k: v for k, v in costs.items() if not math.isfinite(v)}
    if bad:
        raise CalibrationError(f"the logs lack the marks for {sorted(bad)}")
    # a cost that rounding or clock granularity (libvirt logs in ms) pushed below zero took no time
    return {k: max(0.0, costs[k]) for k in OVERHEAD_FIELDS}


def combine(runs: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The median of each cost over the runs, and its (min, max)."""
    if not runs:
        raise CalibrationError("no runs to calibrate from")
    medians = {k: float(statistics.median(run[k] for run in runs)) for k in OVERHEAD_FIELDS}
    spreads = {k: (min(run[k] for run in runs), max(run[k] for run in runs)) for k in OVERHEAD_FIELDS}
    return medians, spreads
