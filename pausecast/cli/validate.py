"""`pausecast validate`: the same scenario predicted and run for real, side by side, with the error of
each figure; or a whole matrix of them written as a validation report."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

from ..analysis.calibration import COLD_START_RULE, cold_start_runs
from ..analysis.validation import FIGURES, Comparison, figure_value, median_finite, median_record, verdict
from ..models.errors import ScenarioError
from ..models.files import load_scenario, resolved_overheads
from ..models.record import MigrationRecord
from ..models.scenario import Scenario
from ..models.sweep import design, load_sweep, point_count, point_values, scenario_at
from ..runs.run_files import write_run
from ..runs.validation_report import write_report
from ..sim import predict
from .progress import ProgressLine
from .targets import Target, add_target_arguments, cannot_run_is_one_line, open_target


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Predicts the scenario with the simulator, runs it REPEAT times as a real migration "
                     "and prints prediction and measurement side by side with the error of each figure. "
                     "With --matrix, does so for every point of a matrix (a sweep file: a base scenario "
                     "and [[axes]] of values) and writes a validation report to RESULTS/validation/"
                     "<name>-<time>/: table.csv/.parquet, runs.csv/.parquet, report.md and "
                     "predicted_vs_measured.png. Exit code 1 when the accuracy target is not met. "
                     "A migration predicted to fail that fails counts as right. Cold starts: "
                     f"{COLD_START_RULE}.")
    p.epilog = ("Examples: pausecast validate examples/testbed-small.toml --testbed --repeat 3; "
                "pausecast validate --matrix examples/validation-matrix.toml --testbed")
    p.add_argument("scenario", nargs="?", help="scenario TOML file (or give --matrix)")
    p.add_argument("--matrix", metavar="MATRIX.toml", help="a matrix of scenarios (sweep file format)")
    p.add_argument("--repeat", type=int, metavar="N",
                   help="real runs per scenario (default 1; a matrix's own 'replicates')")
    p.add_argument("--overheads", metavar="PROFILE.toml",
                   help="use this overheads profile (from 'pausecast calibrate') for the predictions")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one scenario key (single scenario only)")
    p.add_argument("--results", default="results", metavar="DIR", help="where runs and reports go")
    add_target_arguments(p)
    p.set_defaults(handler=cannot_run_is_one_line(run))


def _with_overheads(scenario: Scenario, profile: str | None) -> Scenario:
    if not profile:
        return scenario
    path = str(Path(profile).resolve())
    return dataclasses.replace(scenario, overheads=resolved_overheads({"profile": path}, "--overheads"))


def _measure(target: Target, scenario: Scenario, repeat: int, results: str,
             label: str) -> list[MigrationRecord]:
    if target.testbed is not None and scenario.vm.dirty.pattern != "sweep":
        print(f"pausecast: note: {label}: the test guest sweeps its pages; vm.dirty.pattern = "
              f"\"{scenario.vm.dirty.pattern}\" predicts a different pending set", file=sys.stderr)
    records = []
    for i in range(repeat):
        progress = ProgressLine()
        m = target.run(scenario, on_sample=progress)
        progress.finish(m.record.migrated)
        write_run(m, results)
        r = m.record
        print(f"  {label} run {i + 1}/{repeat}: {'migrated' if r.migrated else r.failure}, "
              f"{r.iterations} iterations, total {r.total_time_s:.3f} s, pause {r.pause_window_ms:.1f} ms",
              file=sys.stderr)
        records.append(r)
    cold = cold_start_runs(records)
    for i, why in cold.items():
        print(f"  {label} run {i + 1} left out of the median, a cold start: {why}", file=sys.stderr)
    return [r for i, r in enumerate(records) if i not in cold]


def run(args: argparse.Namespace) -> int:
    if bool(args.scenario) == bool(args.matrix):
        raise ScenarioError("validate", args.scenario or args.matrix,
                            "give a scenario file or --matrix, not both")
    if args.repeat is not None and args.repeat < 1:
        raise ScenarioError("--repeat", args.repeat, "expected an integer >= 1")
    if args.matrix:
        return run_matrix(args)
    scenario = _with_overheads(load_scenario(args.scenario, args.overrides), args.overheads)
    predicted = predict(scenario)
    target = open_target(args, scenario)
    measured = _measure(target, scenario, args.repeat or 1, args.results, scenario.name)
    point = Comparison(predicted, median_record(measured)).row()
    print(side_by_side(scenario, point, measured, target.describe))
    result = verdict([point])
    print("\n" + "\n".join("  " + line for line in result.lines()))
    target.say_where_the_domain_is()
    return 0 if result.met else 1


def side_by_side(scenario: Scenario, point: dict, measured: list[MigrationRecord], where: str) -> str:
    lines = [f"pausecast validate: {scenario.name} (scenario {scenario.scenario_id}), "
             f"{len(measured)} run(s) on {where}",
             f"  {'figure':<16}{'predicted':>12}{'measured':>12}  {'[min - max]':<22}{'error':>8}",
             f"  {'converged':<16}{_yes(point['converged_predicted']):>12}"
             f"{_yes(point['converged_measured']):>12}  {'':<22}"
             f"{'right' if point['verdict_right'] else 'WRONG':>8}",
             f"  {'iterations':<16}{point['iterations_predicted']:>12}{point['iterations_measured']:>12}  "
             f"{_span([r.iterations for r in measured], '{:.0f}'):<22}{point['iterations_error']:>+8d}"]
    for column, label, unit, scale in FIGURES:
        values = [figure_value(r, column) * scale for r in measured]
        lines.append(f"  {label + ' (' + unit + ')':<16}{point[column + '_predicted']:>12.4g}"
                     f"{point[column + '_measured']:>12.4g}  {_span(values, '{:.4g}'):<22}"
                     f"{_pct(point[column + '_error']):>8}")
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _span(values: list[float], fmt: str) -> str:
    finite = [v for v in values if math.isfinite(v)]
    return f"[{fmt.format(min(finite))} - {fmt.format(max(finite))}]" if len(finite) > 1 else ""


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:+.1%}"


def run_matrix(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.matrix)
    if sweep.scenario is None or any(a.kind == "sample" for a in sweep.axes):
        raise ScenarioError("--matrix", args.matrix, "a matrix is one base scenario with axes of values")
    base = _with_overheads(sweep.scenario, args.overheads)
    columns = design(sweep, 0)
    repeat = args.repeat or sweep.replicates
    scenarios = []
    for i in range(point_count(columns)):
        values = point_values(columns, i)
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in values.items())
        scenario = dataclasses.replace(scenario_at(base, columns, i), name=f"{sweep.name}-{i}")
        scenarios.append((label, scenario))
    target = open_target(args, scenarios[0][1])
    points, runs = [], []
    for i, (label, scenario) in enumerate(scenarios):
        print(f"point {i + 1}/{len(scenarios)}: {label}", file=sys.stderr)
        predicted = predict(scenario)
        measured = _measure(target, scenario, repeat, args.results, f"point {i + 1}")
        points.append({"point": i, "values": label,
                       **Comparison(predicted, median_record(measured)).row(),
                       "total_time_s_spread": _spread([r.total_time_s for r in measured]),
                       "pause_window_ms_spread": _spread([r.pause_window_ms for r in measured])})
        runs += [{"point": i, "replicate": j, "values": label, **Comparison(predicted, r).row()}
                 for j, r in enumerate(measured)]
    result = verdict(points)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.results) / "validation" / f"{sweep.name}-{stamp}"
    notes = [f"matrix {args.matrix}: {len(points)} points x {repeat} run(s) on {target.describe}",
             f"overheads profile: {base.overheads.profile}",
             "error = (predicted - measured) / measured; measured = median of the runs"]
    write_report(out, f"validation {sweep.name}", result, points, runs, notes)
    print("\n".join("  " + line for line in result.lines()))
    print(f"\n  wrote {out}/report.md, table.csv, table.parquet, runs.csv, runs.parquet, "
          "predicted_vs_measured.png")
    target.say_where_the_domain_is()
    return 0 if result.met else 1


def _spread(values: list[float]) -> float:
    """(max - min) / median of the replicates: the run-to-run noise the errors should be read against."""
    finite = [v for v in values if math.isfinite(v)]
    middle = median_finite(finite)
    return (max(finite) - min(finite)) / middle if len(finite) > 1 and middle else math.nan
