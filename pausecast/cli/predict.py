"""`pausecast predict`: one migration, phase by phase, with its pause window."""

from __future__ import annotations

import argparse

from .. import default_scenario_path
from ..models.errors import ScenarioError, check_seed
from ..models.files import load_scenario
from ..models.limits import SIM_EVENTS
from ..report.text import format_prediction, record_json
from ..sim import simulate


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Predicts one libvirt live migration: whether pre-copy converges, how many "
                     "iterations, total time, QEMU's downtime, the pause window (both VMs paused) with "
                     "its breakdown, the network outage, and a phase timeline.")
    p.epilog = ("Examples: pausecast predict; pausecast predict examples/busy-database.toml --set "
                "migration.max_downtime_ms=500 --json")
    p.add_argument("scenario", nargs="?", help="scenario TOML file (default: the bundled default, "
                   "the worked example of models/closed_form.py)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one scenario key, value in TOML syntax (repeatable), "
                        "e.g. --set vm.dirty.rate_mib_s=100")
    p.add_argument("--seed", type=int, default=0, help="seed of the run's random generator (default 0)")
    p.add_argument("--max-events", type=int, default=SIM_EVENTS, metavar="N",
                   help=f"refuse a simulation of more SimPy events (default {SIM_EVENTS}: a migration "
                        "needs tens; other tenants' requests at the switch need the rest)")
    p.add_argument("--json", action="store_true", help="print the result record as JSON")
    p.add_argument("--events", action="store_true", help="with --json: include the event log")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed)
    if args.max_events < 1:
        raise ScenarioError("--max-events", args.max_events, "expected an integer >= 1")
    path = args.scenario or default_scenario_path()
    scenario = load_scenario(path, args.overrides)
    prediction = simulate(scenario, seed=args.seed, max_events=args.max_events)
    if args.json:
        more = {}
        if args.events:
            more["events"] = [[e.t_s, e.host, e.name, e.detail] for e in prediction.events]
        print(record_json(prediction.record, **more))
    else:
        print(format_prediction(scenario, prediction.record))
    return 0
