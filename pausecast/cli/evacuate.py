"""`pausecast evacuate`: a fleet of migrations over shared links and a shared switch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..models.errors import check_seed
from ..models.fleet import Fleet, load_fleet, with_policy
from ..models.policy import ORCHESTRATORS, PolicySpec
from ..models.units import bytes_to_mib
from ..report.policies import policies_figure
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
    p.add_argument("--policy", dest="policies", action="append", default=[], metavar="ORCHESTRATOR",
                   choices=ORCHESTRATORS,
                   help="compare orchestrators' policies (repeatable: " + " | ".join(ORCHESTRATORS) + "): "
                        "the fleet under each, with the fleet's [policy] settings for its own "
                        "orchestrator and the defaults otherwise; writes RESULTS/<fleet>/<orchestrator>/ "
                        "and RESULTS/<fleet>/policies.png, policies.csv")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="where the run's folder goes (default: results)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed)
    fleet = load_fleet(args.fleet, args.overrides)
    if args.policies:
        return compare_policies(fleet, args.policies, args.seed, Path(args.results))
    result = simulate_fleet(fleet, seed=args.seed)
    out = Path(args.results) / fleet.name
    write_results(result, out, title=f"{fleet.name} (seed {args.seed})")
    print(format_summary(result.summary))
    print(f"\n  wrote {out}/records.parquet, records.csv, summary.json, timeline.png")
    return 0


def compare_policies(fleet: Fleet, orchestrators: list[str], seed: int, results: Path) -> int:
    """The fleet under each orchestrator's policy, each written like an evacuation, then side by side."""
    given = fleet.vms[0].scenario.policy if fleet.vms else PolicySpec()
    summaries = []
    for orchestrator in dict.fromkeys(orchestrators):
        policy = given if given.orchestrator == orchestrator else PolicySpec(orchestrator=orchestrator)
        result = simulate_fleet(with_policy(fleet, policy), seed=seed)
        write_results(result, results / fleet.name / orchestrator, title=f"{fleet.name} under {orchestrator}")
        summaries.append({"orchestrator": orchestrator, **result.summary})
    rows = [{k: s[k] for k in _COMPARED} for s in summaries]
    out = results / fleet.name
    write_folder(out, "evacuation-policies", fleet.name, tables={"policies": rows},
                 figures={"policies.png": (policies_figure(summaries, f"{fleet.name} (seed {seed})"), 110)},
                 seed=seed)
    print(format_comparison(summaries))
    print(f"\n  wrote {out}/<orchestrator>/ for each, and {out}/policies.csv, policies.png")
    return 0


_COMPARED = ("orchestrator", "vms", "migrated", "failed", "not_converged", "makespan_s",
             "pause_window_p50_ms", "pause_window_p95_ms", "pause_window_max_ms")


def format_comparison(summaries: list[dict[str, Any]]) -> str:
    out = [f"pausecast evacuate: {summaries[0]['fleet']} (seed {summaries[0]['seed']}) under "
           f"{len(summaries)} policies",
           f"  {'policy':<10} {'makespan':>10} {'aborted':>8} {'pause p50':>11} {'p95':>11} {'max':>11}"]
    for s in summaries:
        aborted = s["failed"] + s["not_converged"]
        out.append(f"  {s['orchestrator']:<10} {s['makespan_s']:>9.1f}s {aborted:>8d} "
                   f"{window_ms(s['pause_window_p50_ms']):>11} {window_ms(s['pause_window_p95_ms']):>11} "
                   f"{window_ms(s['pause_window_max_ms']):>11}")
    return "\n".join(out)


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
