"""`pausecast calibrate`: measure a migration's fixed costs with an idle guest and write them as an
overheads profile that scenarios use with `overheads.profile = "<path>"`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import tomli_w

from .executor.calibrate import combine, overheads_of
from .models.overheads import DEFAULT_PROFILE_MS, OVERHEAD_FIELDS
from .models.scenario import Scenario, load_scenario, scenario_from_dict
from .progress import ProgressLine
from .run_results import write_run
from .targets import add_target_arguments, cannot_run_is_one_line, open_target

# the idle guest: a small written region (its first pass is pre-copy, not a fixed cost), no writes
IDLE_REGION_MIB = 8
DEFAULT_MEMORY_MIB = 256
DEFAULT_LINK_MBIT_S = 1000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="measure the fixed costs of a migration and write an overheads profile",
        description="Migrates an idle guest (on the testbed: the test guest writing nothing; on real "
                    "hosts: the --domain you name, which should be idle) REPEAT times and measures from "
                    "the daemons' logs what the engine calls begin, prepare (destination QEMU start), "
                    "setup, handshake, finish, resume and confirm (source teardown). Writes their "
                    "medians as an overheads profile (TOML) with their spreads.",
        epilog="Example: pausecast calibrate --testbed --out examples/testbed-overheads.toml; then in a "
               "scenario: [overheads] profile = \"testbed-overheads.toml\"")
    p.add_argument("--scenario", metavar="S.toml",
                   help="take the VM size and the link from this scenario (default: 256 MiB, 1000 Mbit/s)")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="migrations to take the median of (3)")
    p.add_argument("--out", default="results/overheads.toml", metavar="PROFILE.toml",
                   help="the profile to write (default results/overheads.toml)")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="where each calibration run's record goes (default: results)")
    add_target_arguments(p)
    p.set_defaults(handler=cannot_run_is_one_line(run))


def idle_scenario(base: Scenario | None) -> Scenario:
    memory_mib = base.vm.memory_mib if base else DEFAULT_MEMORY_MIB
    link = {"bandwidth_mbit_s": base.link.bandwidth_mbit_s if base else DEFAULT_LINK_MBIT_S,
            "rtt_ms": base.link.rtt_ms if base else 0.0}
    return scenario_from_dict({
        "name": "calibration-idle",
        "vm": {"memory_mib": memory_mib, "zero_page_fraction": 1.0 - IDLE_REGION_MIB / memory_mib,
               "dirty": {"model": "constant", "rate_mib_s": 0.0}},
        "link": link, "overheads": {"profile": "none"}})


def run(args: argparse.Namespace) -> int:
    scenario = idle_scenario(load_scenario(args.scenario) if args.scenario else None)
    target = open_target(args, scenario)
    runs = []
    for i in range(args.repeat):
        progress = ProgressLine()
        m = target.run(scenario, on_sample=progress)
        progress.finish(m.record.migrated)
        write_run(m, args.results)
        runs.append(overheads_of(m.record))
        print(f"  run {i + 1}/{args.repeat}: " + ", ".join(f"{k[:-3]} {v:.0f}" for k, v in runs[-1].items())
              + " ms")
    medians, spreads = combine(runs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "overheads": {k: round(medians[k], 1) for k in OVERHEAD_FIELDS},
        "measured": {"by": "pausecast calibrate", "target": target.describe, "runs": args.repeat,
                     "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "guest": f"idle, {scenario.vm.memory_mib:g} MiB, {IDLE_REGION_MIB} MiB written",
                     "link_mbit_s": scenario.link.bandwidth_mbit_s,
                     "spread_ms": {k: [round(lo, 1), round(hi, 1)] for k, (lo, hi) in spreads.items()}},
    }
    header = ("# An overheads profile measured by `pausecast calibrate` (see executor/calibrate.py for what\n"
              "# each cost spans). Scenarios use it with [overheads] profile = \"<this file>\".\n")
    out.write_text(header + tomli_w.dumps(profile))
    print(format_profile(medians, spreads))
    print(f"\n  wrote {out}")
    return 0


def format_profile(medians: dict[str, float], spreads: dict[str, tuple[float, float]]) -> str:
    lines = [f"  {'cost':<14}{'median':>10}{'min':>10}{'max':>10}{'built-in':>10}  (ms)"]
    for k in OVERHEAD_FIELDS:
        lo, hi = spreads[k]
        lines.append(f"  {k:<14}{medians[k]:10.1f}{lo:10.1f}{hi:10.1f}{DEFAULT_PROFILE_MS[k]:10.1f}")
    return "\n".join(lines)
