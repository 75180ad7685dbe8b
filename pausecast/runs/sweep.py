"""Runs a sweep: splits its runs into chunks, computes each chunk somewhere, writes each as it lands.

A run is one point of the design with one replicate's seed; run r is point r // replicates,
replicate r % replicates. Chunk i holds runs [i x chunk_runs, (i + 1) x chunk_runs): fixed by the
manifest, so a resumed sweep cuts the same chunks and skips the files already there. Chunks are
computed in this process (--workers 1), in local processes (the default), or on Dask workers
(--scheduler, --dask-local); only this process writes files, so remote workers need none of them.

`run_task` is the one place that knows what a run is: a single VM goes through the fast path when
that is exact (sim/fast.py) and the sweep may use it, the SimPy engine otherwise; a fleet goes through
the fleet engine. `run_sweep` decides once whether the sweep may: asked for, and numba installed.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import operator
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from ..models.errors import ScenarioError
from ..models.fieldpaths import with_values
from ..models.identity import ID_HEX_DIGITS, ID_SCHEME, id_of_text, ids_of_columns
from ..models.record import COLUMN_DTYPES
from ..models.scenario import Scenario
from ..models.sweep import Sweep, design, fleet_at, fresh_entropy, point_count, point_values
from ..models.sweep import replicate_seeds as spawn_replicate_seeds
from ..sim import fast, predict
from .json_text import strict_json
from .lifeline import die_with
from .store import CHUNKS, SWEEP_TABLE, ResultsStore, json_text, new_manifest, now_utc

# the identity of a run, ahead of its axis values and its record
RUN_COLUMNS = ("run", "point", "replicate")
# chunk sizes: the fast path pays a fixed cost per call (its columns, the compiled loop's setup), so it
# takes large chunks; a SimPy chunk should take a fraction of a second, with several chunks per worker
# for balance and resume
FAST_CHUNK_RUNS = 100_000
SIM_CHUNK_RUNS = (20, 1000)
CHUNKS_PER_WORKER = 16


@dataclass(frozen=True)
class RunOptions:
    # local processes; 1 = in this process; 0 = one per core
    workers: int = 0
    # a Dask scheduler to send chunks to (tcp://HOST:PORT), or a local Dask cluster of this many workers
    scheduler: str = ""
    dask_local: int = 0
    resume: bool = False
    # the fast path wherever it is exact (and numba is installed); False = the SimPy engine for every run
    fast: bool = True
    # runs per chunk; 0 = chosen from the sweep's size
    chunk_runs: int = 0
    progress: bool = True


@dataclass(frozen=True)
class SweepRun:
    root: Path
    runs: int
    # runs computed by this call (the rest were already there)
    computed: int
    seconds: float
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Job:
    """What every chunk of one sweep shares."""

    sweep: Sweep
    fast: bool


@dataclass(frozen=True)
class Task:
    """One chunk: its runs, their axis values and seeds."""

    chunk: int
    runs: np.ndarray
    replicates: int
    columns: dict[str, np.ndarray]
    seeds: np.ndarray


# ---------------------------------------------------------------------------------------------------
# one chunk: where runs become rows


def run_task(job: Job, task: Task) -> pa.Table:
    """The rows of one chunk, in run order: its run, point and replicate, the axis values, and the
    result record (a fleet: one row per VM)."""
    if job.sweep.kind == "fleet":
        return _fleet_rows(job.sweep, task)
    return _single_vm_rows(job, task)


def _head(task: Task, rows_per_run: np.ndarray | int = 1) -> dict[str, np.ndarray]:
    runs = np.repeat(task.runs, rows_per_run)
    head = {"run": runs, "point": runs // task.replicates, "replicate": runs % task.replicates}
    head.update({f: np.repeat(col, rows_per_run) for f, col in task.columns.items()})
    return head


def _single_vm_rows(job: Job, task: Task) -> pa.Table:
    """The chunk's columns go to Arrow straight from the arrays that computed them: a Python step per
    run (building a row, an id, a pandas frame) would cost more than the fast path's arithmetic."""
    base = job.sweep.scenario
    n = len(task.runs)
    on_fast = np.zeros(n, dtype=bool)
    if job.fast:
        on_fast = np.broadcast_to(fast.eligible(fast.inputs(base, task.columns)), (n,))
    if on_fast.all() and task.replicates == 1:
        # every run its own point, all on the fast path: the computed columns are the chunk's
        data: dict[str, np.ndarray | pa.Array] = {**fast.evaluate(fast.inputs(base, task.columns), n)}
        ids = ids_of_columns(base, task.columns)
        data |= {"engine": _same_text(fast.ENGINE, n), "scenario_name": _same_text(base.name, n),
                 "seed": task.seeds}
    else:
        data, ids = _mixed_rows(base, task, on_fast)
    columns = {**_head(task), **{name: _id_array(ids) if name == "scenario_id" else _arrow(data[name])
                                 for name in COLUMN_DTYPES}}
    return pa.table(columns)


def _mixed_rows(base: Scenario, task: Task, on_fast: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A chunk's record columns and id digits when some runs share a point (replicates) or go to the
    SimPy engine."""
    n = len(task.runs)
    data = {name: np.empty(n, dtype=dtype) for name, dtype in COLUMN_DTYPES.items() if name != "scenario_id"}
    ids = np.zeros((n, ID_HEX_DIGITS), dtype=np.uint8)
    if on_fast.any():
        idx = np.flatnonzero(on_fast)
        # the fast path draws nothing at random: a point's replicates differ only in their seed
        _, first, copies = np.unique(task.runs[idx] // task.replicates, return_index=True,
                                     return_inverse=True)
        points = {f: col[idx[first]] for f, col in task.columns.items()}
        for name, values in fast.evaluate(fast.inputs(base, points), len(first)).items():
            data[name][idx] = values[copies]
        ids[idx] = ids_of_columns(base, points)[copies]
        data["engine"][idx] = fast.ENGINE
        data["scenario_name"][idx] = base.name
        data["seed"][idx] = task.seeds[idx]
    on_sim = np.flatnonzero(~on_fast)
    records = [predict(with_values(base, point_values(task.columns, i)), seed=int(task.seeds[i]))
               for i in on_sim.tolist()]
    if records:
        by_column = zip(*map(_record_values, records), strict=True)
        for (name, dtype), values in zip(COLUMN_DTYPES.items(), by_column, strict=True):
            if name == "scenario_id":
                ids[on_sim] = np.frombuffer("".join(values).encode(), np.uint8).reshape(-1, ID_HEX_DIGITS)
            else:
                data[name][on_sim] = np.array(values, dtype=dtype)
    return data, ids


def _arrow(values: np.ndarray | pa.Array) -> pa.Array:
    if isinstance(values, pa.Array) or values.dtype != object:
        return pa.array(values)
    # a record's text columns hold a few distinct strings (an engine, a failure), as Python strings:
    # Arrow builds them from codes far faster than from a million objects
    if len(values) and (values == values[0]).all():
        return _same_text(values[0], len(values))
    codes, labels = pd.factorize(values, use_na_sentinel=False)
    return pa.DictionaryArray.from_arrays(codes.astype(np.int32), pa.array(labels, type=pa.string())
                                          ).dictionary_decode()


def _same_text(text: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int8), pa.array([text], type=pa.string())
                                          ).dictionary_decode()


def _id_array(digits: np.ndarray) -> pa.Array:
    """(n, 12) ASCII digits as Arrow strings, sharing their bytes."""
    offsets = np.arange(0, digits.size + 1, ID_HEX_DIGITS, dtype=np.int32)
    return pa.StringArray.from_buffers(len(digits), pa.py_buffer(offsets), pa.py_buffer(digits.tobytes()))


# a record's row in COLUMN_DTYPES' order, as MigrationRecord.to_row has it, without a dict per row
_record_values = operator.attrgetter(*COLUMN_DTYPES)


def _fleet_rows(sweep: Sweep, task: Task) -> pa.Table:
    from ..sim.fleet import simulate_fleet  # only fleet sweeps need the fleet engine

    rows: list[dict[str, Any]] = []
    per_run = np.zeros(len(task.runs), dtype=np.int64)
    for i in range(len(task.runs)):
        records = simulate_fleet(fleet_at(sweep, task.columns, i), seed=int(task.seeds[i])).records
        per_run[i] = len(records)
        rows.extend(records)
    body = pd.DataFrame(rows).astype({k: v for k, v in COLUMN_DTYPES.items() if k in rows[0]})
    return pa.Table.from_pandas(pd.concat([pd.DataFrame(_head(task, per_run)), body], axis=1),
                                preserve_index=False)


# ---------------------------------------------------------------------------------------------------
# the whole sweep


def run_sweep(sweep: Sweep, root: Path, options: RunOptions) -> SweepRun:
    started = time.perf_counter()
    store = ResultsStore(root)
    previous = _previous_manifest(store, options.resume)
    entropy = _entropy(sweep, previous)
    columns = design(sweep, entropy)
    seeds = spawn_replicate_seeds(sweep.replicates, entropy)
    n_runs = point_count(columns) * sweep.replicates
    workers = _worker_count(options)
    use_fast = _fast_path_allowed(sweep, options.fast)
    chunk_runs = (previous or {}).get("chunk_runs") or options.chunk_runs or _chunk_runs(
        sweep, columns, use_fast, n_runs, workers)
    manifest = _manifest(sweep, entropy, columns, n_runs, chunk_runs, use_fast, store)
    if previous is not None:
        _check_same_sweep(previous, manifest, store.root)
        manifest["created"] = previous.get("created", manifest["created"])
    manifest["sweep_key"] = sweep_key(manifest)
    manifest["chunk_sha256"] = dict((previous or {}).get("chunk_sha256") or {})
    store.prepare()
    n_chunks = math.ceil(n_runs / chunk_runs)
    done = _whole_chunks(store, manifest, n_runs, chunk_runs)
    manifest["tables"] = {SWEEP_TABLE: store.chunked_table()}
    store.write_manifest(manifest)
    todo = [i for i in range(n_chunks) if i not in done]
    left = sum(min(chunk_runs, n_runs - i * chunk_runs) for i in todo)
    job = Job(sweep, use_fast)
    computed = 0
    tasks = (_task(i, chunk_runs, n_runs, sweep.replicates, columns, seeds) for i in todo)
    # one chunk cannot be shared out: starting processes would only cost time
    local = len(todo) <= 1 and not (options.scheduler or options.dask_local)
    with (_backend(options, 1 if local else workers) as backend,
          tqdm(total=n_runs, initial=n_runs - left, unit="run", desc=sweep.name, disable=not options.progress,
               dynamic_ncols=True, smoothing=0.05) as bar):
        for task, rows in backend(job, tasks):
            digest = store.write_chunk(task.chunk, rows, manifest["sweep_key"])
            manifest["chunk_sha256"][str(task.chunk)] = digest
            # after the chunk, so that a checksum on record always names a whole chunk on disk
            store.write_manifest(manifest)
            computed += len(task.runs)
            bar.update(len(task.runs))
    manifest.update(status="complete", completed=now_utc(), tables={SWEEP_TABLE: store.chunked_table()})
    store.write_manifest(manifest)
    return SweepRun(store.root, n_runs, computed, time.perf_counter() - started, manifest)


def sweep_key(manifest: dict[str, Any]) -> str:
    """What a chunk is marked with: the hash of what makes two sweeps' tables the same table."""
    same = strict_json({key: manifest.get(key) for key in SAME_SWEEP_KEYS})
    return id_of_text(json.dumps(same, sort_keys=True, separators=(",", ":")))


def _whole_chunks(store: ResultsStore, manifest: dict[str, Any], n_runs: int, chunk_runs: int) -> set[int]:
    """The chunks already on disk that a resume keeps: each checked (readable, its rows, its recorded
    bytes, this sweep's); a damaged one is removed, said in one line, and computed again."""
    whole = set()
    recorded = manifest["chunk_sha256"]
    for i in sorted(store.done_chunks()):
        rows = min(chunk_runs, n_runs - i * chunk_runs)
        problem = ("beyond this sweep's runs" if rows <= 0 else
                   store.chunk_problem(i, manifest["sweep_key"], rows, recorded.get(str(i))))
        if problem:
            print(f"pausecast: {store.chunk_path(i)}: {problem}: computing it again", file=sys.stderr)
            store.chunk_path(i).unlink()
            recorded.pop(str(i), None)
        else:
            whole.add(i)
    return whole


def _task(chunk: int, chunk_runs: int, n_runs: int, replicates: int, columns: dict[str, np.ndarray],
          seeds: np.ndarray) -> Task:
    runs = np.arange(chunk * chunk_runs, min(n_runs, (chunk + 1) * chunk_runs), dtype=np.int64)
    points = runs // replicates
    return Task(chunk, runs, replicates, {f: col[points] for f, col in columns.items()},
                seeds[runs % replicates])


def _fast_path_allowed(sweep: Sweep, asked: bool) -> bool:
    """The fast path as asked for, unless numba is missing here: then every run goes to the SimPy
    engine, which gives the same numbers more slowly, and the manifest says so. A fleet never takes
    the fast path, so it needs no numba."""
    if not asked or sweep.kind == "fleet" or fast.available():
        return asked
    print("pausecast: numba not installed: sweeps run in the SimPy engine; pip install 'pausecast[fast]' "
          "for the compiled fast path", file=sys.stderr)
    return False


def _worker_count(options: RunOptions) -> int:
    if options.dask_local:
        return options.dask_local
    return options.workers or os.cpu_count() or 1


def _chunk_runs(sweep: Sweep, columns: dict[str, np.ndarray], use_fast: bool, n_runs: int,
                workers: int) -> int:
    if sweep.kind == "fleet":
        return 1  # one evacuation is already a long run
    if use_fast and np.all(fast.eligible(fast.inputs(sweep.scenario, columns))):
        return FAST_CHUNK_RUNS
    lo, hi = SIM_CHUNK_RUNS
    return int(min(hi, max(lo, math.ceil(n_runs / (workers * CHUNKS_PER_WORKER)))))


def _previous_manifest(store: ResultsStore, resume: bool) -> dict[str, Any] | None:
    previous = store.read_manifest()
    if previous is None and store.done_chunks():
        raise ScenarioError("--results", str(store.root),
                            "holds result chunks but no manifest: choose another folder or remove it")
    if previous is not None and not resume:
        raise ScenarioError("--results", str(store.root), "already holds this sweep's results: pass "
                                                           "--resume to finish it, or remove the folder")
    missing = [key for key in SAME_SWEEP_KEYS
               if previous is not None and key not in previous and key != "id_scheme"]
    if missing or (previous is not None and previous.get("kind", "sweep") != "sweep"):
        raise ScenarioError("--resume", str(store.manifest_path),
                            f"is not a sweep's manifest (no {', '.join(missing)})" if missing else
                            f"is a {previous['kind']}'s manifest, not a sweep's")
    return previous


def _entropy(sweep: Sweep, previous: dict[str, Any] | None) -> int:
    if sweep.seed is not None:
        return sweep.seed
    if previous is not None:
        return int(previous["seed_entropy"])
    return fresh_entropy()


# what must match for a resumed sweep to continue the same table
SAME_SWEEP_KEYS = ("definition", "seed_entropy", "points", "runs", "chunk_runs", "fast_path", "id_scheme")


def _check_same_sweep(previous: dict[str, Any], current: dict[str, Any], root: Path) -> None:
    now = json.loads(json_text(current))
    # a manifest from before scenario ids had a scheme number holds scheme 1's
    scheme = previous.get("id_scheme", 1)
    if scheme != now["id_scheme"]:
        raise ScenarioError("--resume", str(root),
                            f"the results there carry scenario ids of scheme {scheme}, this pausecast "
                            f"writes scheme {now['id_scheme']} (models/identity.py): run the sweep again "
                            "into another --results")
    for key in SAME_SWEEP_KEYS:
        if previous.get(key) != now.get(key):
            raise ScenarioError("--resume", str(root), f"the results there come from another sweep ({key} "
                                                        "differs): choose another --results, or remove them")


def _manifest(sweep: Sweep, entropy: int, columns: dict[str, np.ndarray], n_runs: int, chunk_runs: int,
              use_fast: bool, store: ResultsStore) -> dict[str, Any]:
    # a run per point and replicate: too many scenarios to list, the definition and "points" give them
    # the table's entry is filled in once the chunks on disk have been checked
    return new_manifest("sweep", sweep.name, {}, [f"{CHUNKS}/"], None,
                        sweep_file=sweep.source, status="running", definition=sweep.definition(),
                        seed_entropy=entropy, seed_given=sweep.seed is not None,
                        points=point_count(columns), runs=n_runs, chunk_runs=chunk_runs, fast_path=use_fast,
                        id_scheme=ID_SCHEME,
                        columns={"run": list(RUN_COLUMNS), "axes": list(sweep.fields)})


# ---------------------------------------------------------------------------------------------------
# where chunks are computed: each backend maps (job, tasks) to (task, rows) as chunks finish

Backend = Callable[[Job, Iterable[Task]], Iterator[tuple[Task, pa.Table]]]
# chunks in flight per worker: enough to keep workers busy, few enough to bound memory
IN_FLIGHT_PER_WORKER = 2


class _backend:
    """A context manager that gives the backend the options ask for and tears it down after."""

    def __init__(self, options: RunOptions, workers: int) -> None:
        self.options, self.workers = options, workers
        self.close: Callable[[], None] = lambda: None

    def __enter__(self) -> Backend:
        o = self.options
        if o.scheduler or o.dask_local:
            return self._dask()
        if self.workers == 1:
            return lambda job, tasks: ((task, run_task(job, task)) for task in tasks)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=die_with,
                                   initargs=(os.getpid(),))
        self.close = lambda: pool.shutdown(cancel_futures=True)
        return lambda job, tasks: _windowed(lambda t: pool.submit(run_task, job, t), _first_done_local,
                                            tasks, self.workers * IN_FLIGHT_PER_WORKER)

    def _dask(self) -> Backend:
        try:
            from distributed import Client, LocalCluster
            from distributed import wait as dask_wait
        except ImportError:
            raise ScenarioError("--scheduler" if self.options.scheduler else "--dask-local", "dask",
                                "needs dask[distributed]: pip install 'pausecast[dist]'") from None
        if self.options.scheduler:
            try:
                client = Client(self.options.scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise ScenarioError("--scheduler", self.options.scheduler,
                                    f"no Dask scheduler answers there ({exc})") from None
            self.close = client.close
        else:
            cluster = LocalCluster(n_workers=self.options.dask_local, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
            self.close = lambda: (client.close(), cluster.close())

        def first_done(pending: set) -> set:
            return set(dask_wait(list(pending), return_when="FIRST_COMPLETED").done)

        def backend(job: Job, tasks: Iterable[Task]) -> Iterator[tuple[Task, pa.Table]]:
            shared = client.scatter(job, broadcast=True)
            slots = max(1, sum(client.nthreads().values())) * IN_FLIGHT_PER_WORKER
            return _windowed(lambda t: client.submit(run_task, shared, t, pure=False), first_done, tasks,
                             slots)

        return backend

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_done_local(pending: set) -> set:
    return wait(pending, return_when=FIRST_COMPLETED).done


def _windowed(submit: Callable[[Task], Any], first_done: Callable[[set], set], tasks: Iterable[Task],
              slots: int) -> Iterator[tuple[Task, pa.Table]]:
    """Keeps at most `slots` chunks in flight; yields each as it finishes."""
    pending: dict[Any, Task] = {}
    queue = iter(tasks)
    while True:
        for task in queue:
            pending[submit(task)] = task
            if len(pending) >= slots:
                break
        if not pending:
            return
        for future in first_done(set(pending)):
            yield pending.pop(future), future.result()
