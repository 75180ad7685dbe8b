"""`pausecast validate`: the same scenario predicted and run for real, side by side, with the error of
each figure; or a whole matrix of them written as a validation report."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..analysis.calibration import COLD_START_RULE
from ..analysis.validation import (
    FIGURES,
    THROTTLE_FIGURES,
    Comparison,
    figure_value,
    median_record,
    verdict,
)
from ..models.errors import ScenarioError
from ..models.files import load_scenario, with_profile
from ..models.record import MigrationRecord
from ..models.scenario import Scenario
from ..runs.matrix import Watch, load_matrix, measure, run_matrix
from ..sim import predict
from .progress import ProgressLine
from .targets import add_target_arguments, cannot_run_is_one_line, open_target


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
                   help="use this profile (from 'pausecast calibrate') for the predictions: its fixed "
                        "costs and its [link] values (the live and final-copy efficiencies and sender "
                        "rates, the socket backlog) over the scenario's")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one scenario key (single scenario only)")
    p.add_argument("--results", default="results", metavar="DIR", help="where runs and reports go")
    add_target_arguments(p)
    p.set_defaults(handler=cannot_run_is_one_line(run))


def _with_overheads(scenario: Scenario, profile: str | None) -> Scenario:
    if not profile:
        return scenario
    return with_profile(scenario, str(Path(profile).resolve()), "--overheads")


# the runs' progress and notes go to stderr: stdout holds the comparison
WATCH = Watch(say=lambda line: print(line, file=sys.stderr), progress=ProgressLine)


def run(args: argparse.Namespace) -> int:
    if bool(args.scenario) == bool(args.matrix):
        raise ScenarioError("validate", args.scenario or args.matrix,
                            "give a scenario file or --matrix, not both")
    if args.repeat is not None and args.repeat < 1:
        raise ScenarioError("--repeat", args.repeat, "expected an integer >= 1")
    if args.matrix:
        return _matrix(args)
    scenario = _with_overheads(load_scenario(args.scenario, args.overrides), args.overheads)
    predicted = predict(scenario)
    target = open_target(args, scenario)
    measured = measure(target, scenario, args.repeat or 1, args.results, scenario.name, WATCH)
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
    shown = FIGURES + (THROTTLE_FIGURES if scenario.migration.auto_converge else ())
    for column, label, unit, scale in shown:
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


def _matrix(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix, lambda base: _with_overheads(base, args.overheads))
    target = open_target(args, matrix.points[0].scenario)
    report = run_matrix(matrix, target, args.repeat or matrix.replicates, args.results, WATCH)
    print("\n".join("  " + line for line in report.verdict.lines()))
    print(f"\n  wrote {report.folder}/report.md, table.csv, table.parquet, runs.csv, runs.parquet, "
          "predicted_vs_measured.png")
    target.say_where_the_domain_is()
    return 0 if report.verdict.met else 1
