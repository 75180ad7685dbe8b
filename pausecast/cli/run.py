"""`pausecast run`: a scenario as a real libvirt live migration, measured into the result record."""

from __future__ import annotations

import argparse
import sys

from ..models.files import load_scenario
from ..models.record import Measured
from ..report.text import format_prediction
from ..runs.run_files import write_run
from ..runs.store import json_text
from .progress import ProgressLine
from .targets import EXIT_CANNOT_RUN, add_target_arguments, cannot_run_is_one_line, open_target


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Migrates a running VM with libvirt (protocol v3: peer-to-peer migrateToURI3 or "
                     "managed direct migrate3, as [migration] mode says) with the scenario's max "
                     "downtime, bandwidth and timeout, measures every phase, the pause window and the "
                     "job statistics, and writes the same result record the simulator does (engine "
                     "'executor') to RESULTS/runs/<time>-<scenario id>/ (record.json, raw.json) and a "
                     "row to RESULTS/runs.csv. Exit code 1 when the VM stayed on the source.")
    p.epilog = ("Examples: pausecast run examples/testbed-small.toml --testbed; pausecast run "
                "my.toml --src qemu+ssh://a/system --dst qemu+ssh://b/system --domain web1")
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one scenario key, value in TOML syntax (repeatable)")
    add_target_arguments(p)
    p.add_argument("--results", default="results", metavar="DIR", help="where runs go (default: results)")
    p.add_argument("--json", action="store_true", help="print the record (with 'extra') as JSON")
    p.set_defaults(handler=cannot_run_is_one_line(run))


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    target = open_target(args, scenario)
    progress = ProgressLine()
    measurement = target.run(scenario, on_sample=progress)
    record = measurement.record
    progress.finish(record.migrated)
    try:
        folder = write_run(measurement, args.results)
    except OSError as exc:
        # the migration is over and the results folder as it was (staging path aside, which is gone):
        # the record printed is all that is left of the run
        folder, unwritten = None, (exc.strerror or str(exc)).lower()
    if args.json:
        print(json_text({**record.to_row(), "extra": record.extra}), end="")
    else:
        print(format_prediction(scenario, record))
        print(f"\n  measured on {target.describe}; phases from {Measured.of(record).phases_from}")
        if folder is not None:
            print(f"  wrote {folder}/record.json, raw.json and a row in {args.results}/runs.csv")
    target.say_where_the_domain_is(sys.stderr if args.json else sys.stdout)
    if folder is None:
        print(f"pausecast: cannot write the run to {args.results}: {unwritten}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    return 0 if record.migrated else 1
