"""A fleet sweep on Dask, 1 worker against 2: wall time, speed-up, and what a task carries.

The sweep: bench_evacuate.py's two-rack evacuation (500 VMs by default) under 4 per-host limits x 2
switch loads, 2 replicates: 16 runs, each a whole evacuation (one chunk, one Dask task). Each worker
count gets its own LocalCluster of worker processes (one thread each), started before the clock;
the time is `run_sweep`'s, from connecting to the last chunk written. Only this process writes files.
Run: .venv/bin/python benchmarks/bench_fleet_dask.py [--vms 500]
"""

import argparse
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_evacuate import two_racks
from distributed import Client, LocalCluster
from machine import load_average

from pausecast.models.sweep import design, replicate_seeds, sweep_from_dict
from pausecast.runs.store import load_results
from pausecast.runs.sweep import Job, RunOptions, Task, run_sweep, run_task


def fleet_sweep(n_vms: int) -> dict:
    return {"name": "bench-fleet-dask", "fleet": two_racks(n_vms), "seed": 7, "replicates": 2,
            "axes": [{"field": "plan.max_per_source_host", "values": [1, 2, 4, 8]},
                     {"field": "switches.vdp.background_load_per_s", "values": [10.0, 40.0]}]}


def task_sizes(sweep) -> str:
    """What goes over the wire: the job once per worker, a task per chunk, the rows coming back."""
    columns = design(sweep, sweep.seed)
    # run 0 (point 0, replicate 0), as the sweep cuts it
    task = Task(0, np.array([0]), sweep.replicates, {f: col[:1] for f, col in columns.items()},
                replicate_seeds(sweep.replicates, sweep.seed)[:1])
    job = Job(sweep, fast=False)
    rows = run_task(job, task)
    return (f"job (the sweep: base fleet tables and axes, scattered once to every worker) "
            f"{len(pickle.dumps(job)) / 1024:.1f} KiB; task (one run's axis values and seed) "
            f"{len(pickle.dumps(task))} B; its rows back ({len(rows)} VMs) "
            f"{len(pickle.dumps(rows)) / 2**20:.2f} MiB")


def timed_run(sweep, workers: int, root: Path) -> float:
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        start = time.perf_counter()
        run = run_sweep(sweep, root / f"w{workers}", RunOptions(scheduler=cluster.scheduler_address,
                                                                progress=False))
        return time.perf_counter() - start if run.computed == run.runs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=500)
    args = parser.parse_args()
    sweep = sweep_from_dict(fleet_sweep(args.vms), Path.cwd(), default_name="bench-fleet-dask")
    print(task_sizes(sweep))
    with tempfile.TemporaryDirectory() as tmp:
        times = {}
        for workers in (1, 2):
            before = load_average()
            times[workers] = timed_run(sweep, workers, Path(tmp))
            print(f"{workers} worker{'s' if workers > 1 else ''}: 16 evacuations of {args.vms} VMs in "
                  f"{times[workers]:.2f} s wall time\n  load average before: {before}\n"
                  f"  load average after:  {load_average()}")
        same = load_results(Path(tmp) / "w1").equals(load_results(Path(tmp) / "w2"))
        print(f"the two tables ({sweep.name}) are {'identical' if same else 'DIFFERENT'}")
    print(f"speed-up 1 -> 2 workers: {times[1] / times[2]:.2f}x on {os.cpu_count()} cores "
          f"(ideal 2x; other processes share them)")


if __name__ == "__main__":
    main()
