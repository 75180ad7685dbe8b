"""A validation matrix: every point of a matrix file predicted, and run REPEAT times for real on one
target, each point's prediction against the median of its runs; written as a validation report.

A matrix file is a sweep file (models/sweep.py) with one base scenario and axes of values: its points
are the sweep's grid, in the sweep's order. Unlike a sweep, it draws nothing (no samples, no seeds: a
real run has its own noise) and runs one migration at a time, on hardware that there is one of.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..analysis.calibration import cold_start_runs
from ..analysis.validation import Comparison, Verdict, median_finite, median_record, verdict
from ..models.errors import ScenarioError
from ..models.record import MigrationRecord
from ..models.scenario import Scenario
from ..models.sweep import design, load_sweep, point_count, point_values, scenario_at
from ..sim import predict
from .run_files import write_run
from .validation_report import write_report

if TYPE_CHECKING:
    from ..executor.migration.jobinfo import JobInfo
    from ..executor.migration.migrate import Measurement


class Progress(Protocol):
    """One run's progress as it goes: each job-stats sample, then whether the guest moved."""

    def __call__(self, t_s: float, info: JobInfo) -> None: ...

    def finish(self, migrated: bool) -> None: ...


class Target(Protocol):
    """Where the runs go (the command line's --testbed or --src/--dst/--domain)."""

    @property
    def describe(self) -> str: ...

    @property
    def testbed(self) -> object | None: ...

    def run(self, scenario: Scenario, on_sample: Callable[[float, JobInfo], None]) -> Measurement: ...


@dataclass(frozen=True)
class Watch:
    """What a runner tells its caller as it runs: lines to show, a progress per real run."""

    say: Callable[[str], None]
    progress: Callable[[], Progress]


@dataclass(frozen=True)
class Point:
    index: int
    # its axis values, e.g. "max_downtime_ms=100, bandwidth_mbit_s=1000"
    label: str
    scenario: Scenario


@dataclass(frozen=True)
class Matrix:
    name: str
    # the matrix file as given
    source: str
    base: Scenario
    points: tuple[Point, ...]
    replicates: int


@dataclass(frozen=True)
class MatrixReport:
    folder: Path
    verdict: Verdict
    # one row per point, one per real run
    points: list[dict]
    runs: list[dict]


def load_matrix(path: str, adjust: Callable[[Scenario], Scenario] = lambda s: s) -> Matrix:
    """The matrix file's points; `adjust` changes the base before the axes apply (e.g. its overheads)."""
    sweep = load_sweep(path)
    if sweep.scenario is None or any(a.kind == "sample" for a in sweep.axes):
        raise ScenarioError("--matrix", path, "a matrix is one base scenario with axes of values")
    base = adjust(sweep.scenario)
    columns = design(sweep, 0)
    points = []
    for i in range(point_count(columns)):
        values = point_values(columns, i)
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in values.items())
        points.append(Point(i, label, dataclasses.replace(scenario_at(base, columns, i),
                                                          name=f"{sweep.name}-{i}")))
    return Matrix(sweep.name, path, base, tuple(points), sweep.replicates)


def measure(target: Target, scenario: Scenario, repeat: int, results: str | Path, label: str,
            watch: Watch) -> list[MigrationRecord]:
    """Runs the scenario `repeat` times, writing each run to `results`; returns the records that were
    not cold starts, the ones a median may use."""
    if target.testbed is not None and scenario.vm.dirty.pattern != "sweep":
        watch.say(f"pausecast: note: {label}: the test guest sweeps its pages; vm.dirty.pattern = "
                  f"\"{scenario.vm.dirty.pattern}\" predicts a different pending set")
    records = []
    for i in range(repeat):
        progress = watch.progress()
        m = target.run(scenario, on_sample=progress)
        progress.finish(m.record.migrated)
        write_run(m, results)
        r = m.record
        watch.say(f"  {label} run {i + 1}/{repeat}: {'migrated' if r.migrated else r.failure}, "
                  f"{r.iterations} iterations, total {r.total_time_s:.3f} s, "
                  f"pause {r.pause_window_ms:.1f} ms")
        records.append(r)
    cold = cold_start_runs(records)
    for i, why in cold.items():
        watch.say(f"  {label} run {i + 1} left out of the median, a cold start: {why}")
    return [r for i, r in enumerate(records) if i not in cold]


def run_matrix(matrix: Matrix, target: Target, repeat: int, results: str | Path,
               watch: Watch) -> MatrixReport:
    """Every point predicted and measured; the report in RESULTS/validation/<name>-<UTC time>/."""
    points, runs = [], []
    for p in matrix.points:
        watch.say(f"point {p.index + 1}/{len(matrix.points)}: {p.label}")
        predicted = predict(p.scenario)
        measured = measure(target, p.scenario, repeat, results, f"point {p.index + 1}", watch)
        points.append({"point": p.index, "values": p.label,
                       **Comparison(predicted, median_record(measured)).row(),
                       "total_time_s_spread": spread([r.total_time_s for r in measured]),
                       "pause_window_ms_spread": spread([r.pause_window_ms for r in measured])})
        runs += [{"point": p.index, "replicate": j, "values": p.label, **Comparison(predicted, r).row()}
                 for j, r in enumerate(measured)]
    result = verdict(points)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(results) / "validation" / f"{matrix.name}-{stamp}"
    notes = [f"matrix {matrix.source}: {len(points)} points x {repeat} run(s) on {target.describe}",
             f"overheads profile: {matrix.base.overheads.profile}",
             "error = (predicted - measured) / measured; measured = median of the runs"]
    write_report(out, f"validation {matrix.name}", result, points, runs, notes)
    return MatrixReport(out, result, points, runs)


def spread(values: list[float]) -> float:
    """(max - min) / median of the replicates: the run-to-run noise the errors should be read against."""
    finite = [v for v in values if math.isfinite(v)]
    middle = median_finite(finite)
    return (max(finite) - min(finite)) / middle if len(finite) > 1 and middle else math.nan
