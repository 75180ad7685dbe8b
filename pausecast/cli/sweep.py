"""`pausecast sweep`: a family of what-if predictions from one sweep file, resumable, in parallel."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models.errors import ScenarioError
from ..models.sweep import load_sweep
from ..report import plots
from ..runs.store import export_csv
from ..runs.sweep import RunOptions, run_sweep


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Runs every point of a sweep file (a base scenario or fleet, and axes: value lists, "
                     "linear or log ranges, random or Latin-hypercube samples, replicates) and writes "
                     "RESULTS/<name>/: one Parquet row per run in chunks written atomically, and "
                     "manifest.json (the resolved base, axes, seed entropy, package versions, git commit). "
                     "Single-VM runs take the vectorised fast path where it is exact, the SimPy engine "
                     "otherwise. The standard plots that fit the axes are drawn into RESULTS/<name>/plots.")
    p.epilog = ("Examples: pausecast sweep examples/sweep-what-if.toml; ... --workers 1; ... --dask-local 4; "
                "... --scheduler tcp://10.0.0.5:8786; after an interruption: ... --resume")
    p.add_argument("sweep", help="sweep TOML file (see examples/sweep-*.toml)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=0, metavar="N",
                       help="local processes (default: one per core); 1 runs in this process")
    where.add_argument("--scheduler", default="", metavar="tcp://HOST:PORT",
                       help="send the runs to an existing Dask cluster (its workers need pausecast)")
    where.add_argument("--dask-local", type=int, default=0, metavar="N",
                       help="start a local Dask cluster of N worker processes")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted sweep: keep the chunks already written, run the rest")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="use the vectorised fast path where it is exact (default: yes, when numba is "
                        "installed: pausecast[fast]); --no-fast runs every point with the SimPy engine")
    p.add_argument("--csv", action="store_true", help="also write RESULTS/<name>/results.csv")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="where the sweep's folder goes (default: results)")
    p.add_argument("--chunk-runs", type=int, default=0, metavar="N",
                   help="runs per chunk (task and file); default: chosen from the sweep's size")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="do not draw the standard plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for flag in ("workers", "dask_local", "chunk_runs"):
        if getattr(args, flag) < 0:
            raise ScenarioError(f"--{flag.replace('_', '-')}", getattr(args, flag), "expected a number >= 0")
    sweep = load_sweep(args.sweep)
    options = RunOptions(workers=args.workers, scheduler=args.scheduler, dask_local=args.dask_local,
                         resume=args.resume, fast=args.fast, chunk_runs=args.chunk_runs,
                         progress=not args.quiet)
    done = run_sweep(sweep, Path(args.results) / sweep.name, options)
    rate = f", {done.computed / done.seconds:,.0f} runs/s" if done.computed and done.seconds > 0 else ""
    print(f"pausecast: sweep {sweep.name}: {done.runs} runs ({done.computed} computed now) in "
          f"{done.seconds:.1f} s{rate}")
    print(f"  wrote {done.root}/manifest.json and {done.root}/chunks/")
    if args.csv:
        print(f"  wrote {export_csv(done.root)}")
    if args.plots:
        for path in plots.draw(done.root):
            print(f"  drew {path}")
    return 0
