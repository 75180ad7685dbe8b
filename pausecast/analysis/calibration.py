"""The fixed costs of a migration, measured: what an idle guest's migration spends that moving memory
does not explain, in the terms of the engine's overheads (models/overheads.py OVERHEAD_FIELDS).

A measured record (executor/migration/measure.py) has a timestamp at each boundary of the phase layout
(models/timeline.py), so `overheads_of` reads those marks (`marks_of`) and inverts the layout
(`timeline.inverse`): each cost is the difference of two consecutive marks, less the RTTs the layout
adds itself:

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
    announce_ms  the destination's QEMU RESUME -> the guest's first frame at its switch port, where a
                 probe watches the port (the 802.1Qbg testbed); else 0: QEMU sends its first
                 self-announce as it resumes the guest, and the plain testbed's guest has no NIC

With these, the engine reproduces an idle migration's total time and pause window exactly
(tests/test_timeline.py: the layout forward from these costs gives the measured marks back); a busy
guest then differs only by what the pre-copy model predicts.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..models import timeline
from ..models.overheads import OVERHEAD_FIELDS
from ..models.record import Measured, MigrationRecord
from ..models.units import ms_to_s, s_to_ms


class CalibrationError(ValueError):
    """A run cannot be calibrated from (it failed, or its daemons' logs were not readable)."""


def half_rtt_s(measured: Measured) -> float:
    """Half the hosts' measured RTT; a run that did not measure it is taken as local (0)."""
    return ms_to_s(measured.rtt_ms) / 2 if math.isfinite(measured.rtt_ms) else 0.0


def marks_of(r: MigrationRecord) -> timeline.Marks:
    """A measured run's boundaries in the phase layout's terms, seconds after the migration call."""
    x = Measured.of(r)
    if r.failure or x.phases_from != "daemon logs":
        raise CalibrationError(f"calibration needs a migrated run with its daemons' logs "
                               f"(failure {r.failure!r}, phases from {x.phases_from or None})")
    return timeline.Marks(
        begin_start_s=r.begin_start_s, prepare_start_s=r.prepare_start_s, perform_start_s=r.perform_start_s,
        live_start_s=x.live_start_s, source_stop_s=x.qemu_stop_s, handshake_s=ms_to_s(r.handshake_ms),
        final_copy_s=ms_to_s(r.final_copy_ms), resume_s=ms_to_s(r.resume_ms),
        # libvirt's pause window ends the layout's Finish; QEMU's own RESUME starts the announce
        destination_start_s=x.qemu_stop_s + ms_to_s(r.pause_window_ms), total_time_s=r.total_time_s,
        destination_resume_s=x.destination_start_s, port_first_frame_s=x.port_first_frame_s)


def overheads_of(r: MigrationRecord) -> dict[str, float]:
    """One idle run's fixed costs, in ms."""
    costs_s = dataclasses.asdict(timeline.inverse(marks_of(r), half_rtt_s(Measured.of(r))))
    costs = {f"{name[:-len('_s')]}_ms": s_to_ms(value) for name, value in costs_s.items()}
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


# A cold start: a daemon probes QEMU's capabilities (seconds) in the first Begin or Prepare after it
# started or QEMU changed (Begin 3.4 s against 10 ms seen on real hosts). Such a run says nothing about
# the next one: a run whose Begin or Prepare took more than COLD_FACTOR x the other runs' median, and
# more than COLD_MARGIN_MS over it, is left out of the medians.
COLD_FACTOR = 3.0
COLD_MARGIN_MS = 500.0
COLD_START_RULE = (f"a run whose Begin or Prepare took more than {COLD_FACTOR:g} x the other runs' median "
                   f"and more than {COLD_MARGIN_MS:g} ms over it (a cold start: the daemon probed QEMU's "
                   "capabilities) is reported and left out of the medians")


def cold_start_runs(records: Sequence[MigrationRecord]) -> dict[int, str]:
    """The runs a cold start slowed (COLD_START_RULE), by index, each with what was slow."""
    spans = [{"Begin": s_to_ms(r.begin_end_s - r.begin_start_s),
              "Prepare": s_to_ms(r.prepare_end_s - r.prepare_start_s)} for r in records]
    out: dict[int, str] = {}
    for i, span in enumerate(spans):
        for phase, ms in span.items():
            others = [o[phase] for j, o in enumerate(spans) if j != i and math.isfinite(o[phase])]
            if not others or not math.isfinite(ms):
                continue
            typical = statistics.median(others)
            if ms > COLD_FACTOR * typical and ms > typical + COLD_MARGIN_MS:
                out[i] = f"{phase} {ms:.0f} ms against {typical:.0f} ms in the other runs"
                break
    return out


# below this coefficient of variation the switch's answers are taken as constant (timer granularity
# and the wire vary a constant switch's latency by a few percent)
CONSTANT_CV = 0.1


@dataclass(frozen=True)
class SwitchFit:
    """The [switch] service time that best explains measured association latencies, and why."""

    service_time_ms: float
    service_distribution: str
    service_cv: float
    samples: int
    # Akaike's criterion of each distribution tried (lower is better); empty when constant
    aic: dict[str, float]


def fit_switch(latencies_ms: Sequence[float]) -> SwitchFit:
    """Fits the switch's service time to latencies measured at the station (request sent -> the
    switch's answer on the wire, which includes the wire's few ms, as the model's default does).
    Nearly constant latencies give a constant service; otherwise the exponential and the lognormal are
    fitted by maximum likelihood and the one with the lower AIC is kept, with its mean and
    coefficient of variation in the scenario's terms."""
    x = np.asarray(latencies_ms, dtype=float)
    if x.size < 2 or not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise CalibrationError(f"fitting the switch needs at least 2 positive latencies, got {x.tolist()}")
    mean, cv = float(x.mean()), float(x.std(ddof=1) / x.mean())
    if cv < CONSTANT_CV:
        return SwitchFit(mean, "constant", 0.0, x.size, {})
    logs = np.log(x)
    mu, sigma = float(logs.mean()), float(logs.std())
    loglik = {
        "exponential": float(-x.size * math.log(mean) - x.sum() / mean),
        "lognormal": float(-logs.sum() - x.size * math.log(sigma * math.sqrt(2 * math.pi))
                           - ((logs - mu) ** 2).sum() / (2 * sigma**2)),
    }
    aic = {"exponential": 2 * 1 - 2 * loglik["exponential"], "lognormal": 2 * 2 - 2 * loglik["lognormal"]}
    if aic["exponential"] <= aic["lognormal"]:
        return SwitchFit(mean, "exponential", 1.0, x.size, aic)
    return SwitchFit(math.exp(mu + sigma**2 / 2), "lognormal", math.sqrt(math.expm1(sigma**2)), x.size, aic)
