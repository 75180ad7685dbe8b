"""`pausecast evacuate`: a fleet of migrations over shared links and a shared switch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..models.errors import check_seed
from ..models.fleet import load_fleet
from ..models.units import bytes_to_mib
from ..report.text import window_ms
from ..report.timeline import timeline_figure
from ..runs.store import write_folder
from ..sim.fleet import FleetResult, simulate_fleet


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Predicts an evacuation: every VM's migration with the single-VM model, their "
                     "memory streams sharing links max-min fairly, their port requests queueing at "
                     "shared switches, started by the plan's concurrency limits. Prints the fleet "
                     "summary and writes RESULTS/<fleet name>/records.parquet, records.csv, "
                     "summary.json, timeline.png and manifest.json.")
    p.epilog = "Example: pausecast evacuate examples/evacuation.toml --set plan.max_per_source_host=1"
    p.add_argument("fleet", help="fleet TOML file (see examples/evacuation.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one fleet key, value in TOML syntax (repeatable), "
                        "e.g. --set plan.max_concurrent=4")
    p.add_argument("--seed", type=int, default=0, help="seed of the run's random generator (default 0)")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="where the run's folder goes (default: results)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed)
    fleet = load_fleet(args.fleet, args.overrides)
    result = simulate_fleet(fleet, seed=args.seed)
    out = Path(args.results) / fleet.name
    write_results(result, out, title=f"{fleet.name} (seed {args.seed})")
    print(format_summary(result.summary))
    print(f"\n  wrote {out}/records.parquet, records.csv, summary.json, timeline.png")
    return 0


def write_results(result: FleetResult, out: Path, title: str) -> None:
    summary = result.summary
    timeline = timeline_figure(result.records, title)
    write_folder(out, "evacuation", summary["fleet"], tables={"records": result.records},
                 documents={"summary": summary}, figures={"timeline.png": (timeline, 110)},
                 seed=summary["seed"])


def format_summary(s: dict[str, Any]) -> str:
    failures = ", ".join(f"{reason} x {n}" for reason, n in s["failures"].items()) or "none"
    out = [f"pausecast evacuate: {s['fleet']} (seed {s['seed']})",
           f"  VMs              {s['vms']}: {s['migrated']} migrated, {s['failed']} failed, "
           f"{s['not_converged']} not converging",
           f"  stayed on source {failures}",
           f"  makespan         {s['makespan_s']:.1f} s"]
    for label, key in (("pause window", "pause_window"), ("network outage", "network_outage")):
        out.append(f"  {label:<16} p50 {window_ms(s[f'{key}_p50_ms'])}, p95 {window_ms(s[f'{key}_p95_ms'])}, "
                   f"max {window_ms(s[f'{key}_max_ms'])}   (migrated VMs)")
    out.append("  switches         " + "; ".join(
        f"{name}: peak queue {s['switch_peak_queue'][name]}, mean wait {wait:.1f} ms"
        for name, wait in s["switch_mean_wait_ms"].items()) if s["switch_mean_wait_ms"] else
        "  switches         none")
    for change in s.get("link_changes", []):
        state = "down" if change["bandwidth_mbit_s"] == 0 else f"{change['bandwidth_mbit_s']:g} Mbit/s"
        out.append(f"  link change      {change['link']} {state} at {change['at_s']:g} s: "
                   f"{change['vms_crossing']} migration streams on it")
    out.append("  bytes per link")
    out += [f"    {link:<20} {bytes_to_mib(n_bytes) / 1024:10.1f} GiB" for link, n_bytes in
            s["bytes_per_link"].items()]
    return "\n".join(out)
