"""Sweep throughput: 100,000 single-VM scenarios through the fast path and through the SimPy engine.

The workload is the planner's question of issue 4 (examples/sweep-what-if.toml, sampled): a 4 GiB VM,
dirty rate 10-500 MiB/s x max downtime 50-2000 ms (Latin hypercube, log scales) x 1/10/25 GbE.
About a tenth of it sits near the convergence boundary, where pre-copy needs hundreds to thousands
of syncs: the fast path's loop runs as long as its slowest migration.

Prints, in scenarios per second:
* fast path, kernel: sim.fast.evaluate on the 100,000 scenarios as arrays (target >= 1,000,000/s),
  and on the same design at 10/25 GbE only, where no migration is near the boundary;
* fast path, sweep: `pausecast sweep` end to end in one process (ids, Parquet chunks, manifest);
* SimPy engine, sweep: `pausecast sweep --no-fast` with local worker processes (default 2; target
  >= 4,000/s on 2 cores), and the engine alone on one core for reference.
Run: .venv/bin/python benchmarks/bench_sweep.py [--runs 100000] [--workers 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pausecast.models.sweep import design, scenario_at, sweep_from_dict
from pausecast.sim import fast, predict
from pausecast.sweep_runner import RunOptions, run_sweep

BANDWIDTHS_MBIT_S = [1000, 10000, 25000]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sweep = sweep_from_dict(what_if(args.runs), Path("."))
    columns = design(sweep, entropy=1)
    n = len(columns["link.bandwidth_mbit_s"])
    inputs = fast.inputs(sweep.scenario, columns)
    iterations = fast.evaluate(inputs, n)["iterations"]
    print(f"workload: {n:,} scenarios; syncs per migration: median {np.median(iterations):.0f}, "
          f"99.9th percentile {np.percentile(iterations, 99.9):.0f}, max {iterations.max()}")

    seconds = best_of(3, lambda: fast.evaluate(inputs, n))
    print(f"fast path, kernel:          {n / seconds:12,.0f} scenarios/s  ({seconds:.3f} s)")
    easy = sweep_from_dict(what_if(args.runs, BANDWIDTHS_MBIT_S[1:]), Path("."))
    easy_columns = design(easy, entropy=1)
    m = len(easy_columns["link.bandwidth_mbit_s"])
    easy_inputs = fast.inputs(easy.scenario, easy_columns)
    seconds = best_of(3, lambda: fast.evaluate(easy_inputs, m))
    print(f"  ... at 10/25 GbE only:    {m / seconds:12,.0f} scenarios/s  ({seconds:.3f} s)")

    with tempfile.TemporaryDirectory() as tmp:
        done = run_sweep(sweep, Path(tmp) / "fast", RunOptions(workers=1, progress=False))
        print(f"fast path, sweep, 1 process: {done.runs / done.seconds:11,.0f} scenarios/s  "
              f"({done.seconds:.2f} s)")

        sample = [scenario_at(sweep.scenario, columns, i) for i in range(0, n, max(1, n // 2000))]
        seconds = best_of(1, lambda: [predict(s) for s in sample])
        print(f"SimPy engine alone, 1 core: {len(sample) / seconds:12,.0f} scenarios/s  "
              f"({len(sample)} scenarios)")

        options = RunOptions(workers=args.workers, fast=False, progress=False)
        done = run_sweep(sweep, Path(tmp) / "sim", options)
        print(f"SimPy engine, sweep, {args.workers} processes: {done.runs / done.seconds:8,.0f} scenarios/s  "
              f"({done.seconds:.1f} s)")

if __name__ == "__main__":
    main()
