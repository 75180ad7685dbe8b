"""Prediction against measurement: per-figure errors of one pair of records, and the verdict on a
table of such pairs against the accuracy target:

    median |error| of the total time                      <= 3 %
    median pause-window error                              <= 15 % or <= 5 ms, whichever is larger
    iterations                                             within +-1 at every point
    converged (the verdict)                                right at every point

An error is (predicted - measured) / measured. The pause window's allowance at a point is the larger
of 15 % of the measured window and 5 ms; the target holds when the median point is within its own
allowance (the median of |error| / allowance is <= 1). Numeric errors are taken only where both the
prediction and the measurement migrated the VM; the verdict is compared everywhere, so a failure that
was predicted is right, and where no point migrated in both there is no figure to hold to a target.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..models.record import MigrationRecord

TOTAL_TARGET = 0.03
PAUSE_TARGET = 0.15
PAUSE_FLOOR_MS = 5.0
ITERATIONS_TARGET = 1

# (column, label, unit, scale to the unit) of the figures compared
FIGURES: tuple[tuple[str, str, str, float], ...] = (
    ("total_time_s", "total time", "s", 1.0),
    ("precopy_time_s", "pre-copy", "s", 1.0),
    ("downtime_ms", "QEMU downtime", "ms", 1.0),
    ("pause_window_ms", "pause window", "ms", 1.0),
    ("network_outage_ms", "network outage", "ms", 1.0),
    ("bytes_sent", "bytes sent", "MiB", 1.0 / 2**20),
    ("prepare_s", "Prepare", "s", 1.0),
    ("confirm_s", "Confirm", "s", 1.0),
)
# auto-converge's figures: in every row, shown where the scenario turns it on
THROTTLE_FIGURES: tuple[tuple[str, str, str, float], ...] = (
    ("throttle_peak_pct", "peak throttle", "%", 1.0),
    ("throttle_time_s", "throttled", "s", 1.0),
)


def figure_value(r: MigrationRecord, column: str) -> float:
    if column == "prepare_s":
        return r.prepare_end_s - r.prepare_start_s
    if column == "confirm_s":
        return r.confirm_end_s - r.confirm_start_s
    return float(getattr(r, column))


def relative_error(predicted: float, measured: float) -> float:
    if not (math.isfinite(predicted) and math.isfinite(measured)) or measured == 0:
        return math.nan
    return (predicted - measured) / measured


def pause_allowance_ms(measured_ms: float) -> float:
    return max(PAUSE_TARGET * measured_ms, PAUSE_FLOOR_MS)


def pause_within_target(predicted_ms: float, measured_ms: float) -> bool:
    return abs(predicted_ms - measured_ms) <= pause_allowance_ms(measured_ms)


@dataclass(frozen=True)
class Comparison:
    predicted: MigrationRecord
    measured: MigrationRecord

    @property
    def both_migrated(self) -> bool:
        return self.predicted.migrated and self.measured.migrated

    @property
    def verdict_right(self) -> bool:
        return self.predicted.converged == self.measured.converged

    def row(self) -> dict[str, Any]:
        """Flat: each figure predicted, measured and its error; the verdicts."""
        p, m = self.predicted, self.measured
        out: dict[str, Any] = {
            "scenario_id": m.scenario_id, "scenario_name": m.scenario_name,
            "converged_predicted": p.converged, "converged_measured": m.converged,
            "failure_predicted": p.failure, "failure_measured": m.failure,
            "verdict_right": self.verdict_right,
            "iterations_predicted": p.iterations, "iterations_measured": m.iterations,
            "iterations_error": p.iterations - m.iterations,
        }
        for column, _label, _unit, scale in FIGURES + THROTTLE_FIGURES:
            pv, mv = figure_value(p, column) * scale, figure_value(m, column) * scale
            out[f"{column}_predicted"] = pv
            out[f"{column}_measured"] = mv
            out[f"{column}_error"] = relative_error(pv, mv) if self.both_migrated else math.nan
        out["pause_within_target"] = self.both_migrated and pause_within_target(p.pause_window_ms,
                                                                                m.pause_window_ms)
        return out


@dataclass(frozen=True)
class Verdict:
    points: int
    compared: int
    total_median_abs_error: float
    pause_median_abs_error: float
    pause_median_abs_error_ms: float
    # the median of |error| / allowance
    pause_median_score: float
    pause_points_within: int
    iterations_max_abs_error: int
    verdicts_right: int

    @property
    def total_ok(self) -> bool:
        return self.compared == 0 or self.total_median_abs_error <= TOTAL_TARGET

    @property
    def pause_ok(self) -> bool:
        return self.compared == 0 or self.pause_median_score <= 1.0

    @property
    def iterations_ok(self) -> bool:
        return self.iterations_max_abs_error <= ITERATIONS_TARGET

    @property
    def verdicts_ok(self) -> bool:
        return self.verdicts_right == self.points

    @property
    def met(self) -> bool:
        return self.total_ok and self.pause_ok and self.iterations_ok and self.verdicts_ok

    def lines(self) -> list[str]:
        def mark(ok: bool) -> str:
            return "met" if ok else "NOT met"

        convergence = (f"convergence      {self.verdicts_right}/{self.points} verdicts right  "
                       f"{mark(self.verdicts_ok)}")
        if self.compared == 0:
            return ["total time, pause window, iterations: no point migrated in both the prediction and "
                    "the measurement, so no figure to compare", convergence]
        return [
            f"total time       median |error| {self.total_median_abs_error:6.1%}  (target <= 3 %)      "
            f"{mark(self.total_ok)}",
            f"pause window     median |error| {self.pause_median_abs_error:6.1%} / "
            f"{self.pause_median_abs_error_ms:.1f} ms, {self.pause_median_score:.2f} of the allowance "
            f"(target <= 15 % or <= 5 ms)  {mark(self.pause_ok)}; "
            f"{self.pause_points_within}/{self.compared} points within",
            f"iterations       max |error| {self.iterations_max_abs_error}  (target +-1)  "
            f"{mark(self.iterations_ok)}",
            convergence,
        ]


def verdict(rows: Sequence[dict[str, Any]]) -> Verdict:
    """The target's verdict over rows (Comparison.row(), one per point: medians of replicates)."""
    both = [r for r in rows if not math.isnan(r["total_time_s_error"])]

    def median_abs(key: str) -> float:
        return median_finite([abs(r[key]) for r in both])

    pause_ms = [abs(r["pause_window_ms_predicted"] - r["pause_window_ms_measured"]) for r in both]
    scores = [d / pause_allowance_ms(r["pause_window_ms_measured"])
              for d, r in zip(pause_ms, both, strict=True)]
    # iterations are compared where both migrated: a migration cut short stops counting
    iterations = [abs(r["iterations_error"]) for r in both]
    return Verdict(
        points=len(rows), compared=len(both),
        total_median_abs_error=median_abs("total_time_s_error"),
        pause_median_abs_error=median_abs("pause_window_ms_error"),
        pause_median_abs_error_ms=median_finite(pause_ms),
        pause_median_score=median_finite(scores),
        pause_points_within=sum(bool(r["pause_within_target"]) for r in both),
        iterations_max_abs_error=max(iterations, default=0),
        verdicts_right=sum(bool(r["verdict_right"]) for r in rows))


def median_finite(values: Sequence[float]) -> float:
    """The median of the finite values (NaN: not measured; inf: never), NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


def median_record(records: Sequence[MigrationRecord]) -> MigrationRecord:
    """The replicates of one point as one record: each numeric column's median; the verdict and the
    failure of the majority (the first replicate's on a tie)."""
    first = records[0]
    converged = sum(r.converged for r in records) * 2 > len(records) or (
        sum(r.converged for r in records) * 2 == len(records) and first.converged)
    majority = [r for r in records if r.converged == converged]
    numeric = {}
    for f in dataclasses.fields(MigrationRecord):
        if isinstance(getattr(first, f.name), float):
            numeric[f.name] = median_finite([getattr(r, f.name) for r in majority])
    for counted in ("iterations", "throttle_peak_pct"):
        numeric[counted] = round(statistics.median(getattr(r, counted) for r in majority))
    return dataclasses.replace(majority[0], converged=converged, **numeric)
