"""Sweep throughput: 100,000 single-VM scenarios through the fast path and through the SimPy engine.

The workload is the planner's question (examples/sweep-what-if.toml, sampled): a 4 GiB VM,
dirty rate 10-500 MiB/s x max downtime 50-2000 ms (Latin hypercube, log scales) x 1/10/25 GbE.
About a tenth of it sits near the convergence boundary (1 GbE moves 119 MiB/s), where pre-copy needs
hundreds to thousands of syncs, each decided by the one before; the fast path's compiled loop
(sim/compiled.py) does each migration's syncs one after the other, a few migrations in turn.

Prints the figures with targets first, in scenarios per second:
* fast path: sim.fast.evaluate on the 100,000 scenarios as arrays, one process, once compiled
  (best of --repeats; target >= 1,000,000/s);
* SimPy engine: `pausecast sweep --no-fast` with local worker processes (default 2; target >= 4,000/s
  on 2 cores);
* a whole sweep on the fast path end to end, one process (--sweep-runs, default 1,000,000: the design,
  ids, record columns, Parquet chunks, checksums and manifest on disk; target >= 1,000,000/s), for the
  planner's question and for its 10/25 GbE points only, each with its CPU time and the share spent
  computing chunks;
then the fast path's first call in a fresh process, with numba's cache empty (compiling the loop) and
with it filled, the fast path at 10/25 GbE only, and the SimPy engine alone on one core. The machine's
load average is printed before and after: on a shared machine other jobs take their share of the cores.
Run: .venv/bin/python benchmarks/bench_sweep.py [--runs 100000] [--sweep-runs 1000000] [--workers 2]
     [--repeats 3]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import load_average

from pausecast.models.sweep import design, scenario_at, sweep_from_dict
from pausecast.runs import sweep as sweep_runner
from pausecast.runs.sweep import RunOptions, run_sweep
from pausecast.sim import fast, predict

BANDWIDTHS_MBIT_S = [1000, 10000, 25000]
FAST_TARGET_PER_S = 1_000_000
SIM_TARGET_PER_S = 4_000
SWEEP_TARGET_PER_S = 1_000_000


def what_if(runs: int, bandwidths_mbit_s: list[int] = BANDWIDTHS_MBIT_S) -> dict:
    samples = -(-runs // len(bandwidths_mbit_s))
    return {"name": "bench", "base": {}, "seed": 1, "sampling": {"method": "lhs", "samples": samples},
            "axes": [{"field": "link.bandwidth_mbit_s", "values": bandwidths_mbit_s},
                     {"field": "vm.dirty.rate_mib_s", "sample": {"low": 10, "high": 500, "scale": "log"}},
                     {"field": "migration.max_downtime_ms",
                      "sample": {"low": 50, "high": 2000, "scale": "log"}}]}


def best_of(repeats: int, work) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def verdict(rate: float, target: float) -> str:
    return f"target >= {target:,.0f}/s: {'met' if rate >= target else 'MISSED'}"


def fast_kernel(runs: int, bandwidths_mbit_s: list[int], repeats: int) -> tuple[int, float, np.ndarray]:
    """Scenarios, seconds of sim.fast.evaluate on them (the first call's, then the best of `repeats`
    more), and their iteration counts."""
    sweep = sweep_from_dict(what_if(runs, bandwidths_mbit_s), Path("."))
    columns = design(sweep, entropy=1)
    n = len(columns["link.bandwidth_mbit_s"])
    inputs = fast.inputs(sweep.scenario, columns)
    start = time.perf_counter()
    iterations = fast.evaluate(inputs, n)["iterations"]
    seconds = time.perf_counter() - start
    if repeats:
        seconds = best_of(repeats, lambda: fast.evaluate(inputs, n))
    return n, seconds, iterations


def first_call(runs: int, cache_dir: str) -> float:
    """Seconds of the fast path's first call in a fresh process using numba's cache in `cache_dir`
    (importing numba, loading or compiling the loop, and the run)."""
    done = subprocess.run([sys.executable, __file__, "--runs", str(runs), "--first-call"], check=True,
                          capture_output=True, text=True, env={**os.environ, "NUMBA_CACHE_DIR": cache_dir})
    return float(done.stdout)


def whole_sweep(runs: int, bandwidths_mbit_s: list[int], folder: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and seconds computing chunks (run_task) of a fast-path sweep of `runs`
    runs written to `folder`, one process."""
    computing = [0.0]
    timed = sweep_runner.run_task

    def run_task(job, task):
        start = time.perf_counter()
        rows = timed(job, task)
        computing[0] += time.perf_counter() - start
        return rows

    sweep = sweep_from_dict(what_if(runs, bandwidths_mbit_s), Path("."))
    sweep_runner.run_task = run_task
    try:
        cpu_start = time.process_time()
        done = run_sweep(sweep, folder, RunOptions(workers=1, progress=False))
        cpu_s = time.process_time() - cpu_start
    finally:
        sweep_runner.run_task = timed
    return done.seconds, cpu_s, computing[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--sweep-runs", type=int, default=1_000_000,
                        help="runs of the whole sweeps timed end to end")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="fast path timings: best of this many")
    parser.add_argument("--first-call", action="store_true",
                        help="only time the fast path's first call in this process (used by the benchmark)")
    args = parser.parse_args()
    if args.first_call:
        print(fast_kernel(args.runs, BANDWIDTHS_MBIT_S, repeats=0)[1])
        return
    print(f"load average before: {load_average()}")
    n, fast_s, iterations = fast_kernel(args.runs, BANDWIDTHS_MBIT_S, args.repeats)
    print(f"workload: {n:,} scenarios; syncs per migration: median {np.median(iterations):.0f}, "
          f"99.9th percentile {np.percentile(iterations, 99.9):.0f}, max {iterations.max()}, "
          f"{int((iterations > 1000).sum())} migrations over 1,000 syncs ({iterations.sum():,} in all)")
    sweep = sweep_from_dict(what_if(args.runs), Path("."))
    with tempfile.TemporaryDirectory() as tmp:
        on_processes = RunOptions(workers=args.workers, fast=False, progress=False)
        done = run_sweep(sweep, Path(tmp) / "sim", on_processes)
        sim_rate = done.runs / done.seconds
        fast_rate = n / fast_s
        print(f"\n{n:,} scenarios, the planner's question's figures:")
        print(f"  fast path, 1 process:           {fast_rate:12,.0f} scenarios/s  ({fast_s:.3f} s)  "
              f"{verdict(fast_rate, FAST_TARGET_PER_S)}")
        print(f"  SimPy engine, {args.workers} local processes: {sim_rate:10,.0f} scenarios/s  "
              f"({done.seconds:.1f} s)  {verdict(sim_rate, SIM_TARGET_PER_S)}")
        for label, bandwidths in (("the planner's question", BANDWIDTHS_MBIT_S),
                                  ("10/25 GbE only", BANDWIDTHS_MBIT_S[1:])):
            # a first, small sweep in this folder's process loads what the timed one would pay once
            whole_sweep(1000, bandwidths, Path(tmp) / f"warm-{len(bandwidths)}")
            runs = args.sweep_runs
            wall_s, cpu_s, computing_s = whole_sweep(runs, bandwidths, Path(tmp) / f"sweep-{len(bandwidths)}")
            print(f"  whole sweep, fast path, 1 process, {label}: {runs / wall_s:10,.0f} scenarios/s  "
                  f"({runs:,} runs in {wall_s:.2f} s; {runs / cpu_s:,.0f} per CPU second; "
                  f"{computing_s / wall_s:.0%} computing chunks, the rest writing them)  "
                  f"{verdict(runs / wall_s, SWEEP_TARGET_PER_S)}")

        print("\nmore:")
        cold = first_call(args.runs, str(Path(tmp) / "numba-cache"))
        warm = first_call(args.runs, str(Path(tmp) / "numba-cache"))
        print(f"  fast path, first call in a fresh process: {cold:.1f} s with numba's cache empty "
              f"(compiling), {warm:.2f} s with it filled")
        m, easy_s, _ = fast_kernel(args.runs, BANDWIDTHS_MBIT_S[1:], args.repeats)
        print(f"  fast path, 10/25 GbE only:      {m / easy_s:12,.0f} scenarios/s  ({easy_s:.3f} s, {m:,})")
        columns = design(sweep, entropy=1)
        sample = [scenario_at(sweep.scenario, columns, i) for i in range(0, n, max(1, n // 2000))]
        cpu_start = time.process_time()
        seconds = best_of(1, lambda: [predict(s) for s in sample])
        cpu_s = time.process_time() - cpu_start
        # the CPU-time rate is what a core of our own would give; well above the wall-clock rate, the
        # core was shared with other jobs
        print(f"  SimPy engine alone, 1 core:     {len(sample) / seconds:12,.0f} scenarios/s  "
              f"({len(sample)} scenarios; {len(sample) / cpu_s:,.0f} per CPU second)")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
