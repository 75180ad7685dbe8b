"""Where real runs go: one folder per run and one row per run in a shared table.

    results/runs/<UTC start>-<scenario id>/record.json   the result record, with what the executor
                                                         measured beyond the common columns ("extra")
    results/runs/<UTC start>-<scenario id>/raw.json      every job-stats sample, libvirt event and
                                                         logged phase mark, as observed
    results/runs/<UTC start>-<scenario id>/manifest.json the results store's manifest
    results/runs.csv                                     one row per run (the record's flat row)

A run is written whole or not at all: its folder and the new runs.csv are first written in a staging
folder beside them (.run-*, removed when a write fails, a full disk say) and renamed into place when
every byte is on disk, so the runs already there and their rows are never lost nor left torn.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from ..executor.migration.migrate import Measurement
from .store import append_row, write_folder

RUNS_DIR = "runs"
RUNS_TABLE = "runs.csv"


def write_run(m: Measurement, results_dir: str | Path) -> Path:
    """Writes the run's folder and its row; returns the folder. An OSError (no space left, say)
    leaves the results folder as it was."""
    results = Path(results_dir)
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(m.t0_s)) + f"{m.t0_s % 1:.3f}"[1:]
    folder = results / RUNS_DIR / f"{started}-{m.record.scenario_id}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".run-", dir=results))
    try:
        staged_folder, staged_table = staging / folder.name, staging / RUNS_TABLE
        record = {**m.record.to_row(), "extra": m.record.extra}
        write_folder(staged_folder, "run", folder.name, documents={"record": record, "raw": m.raw()},
                     compact=("raw",), scenario_ids=[m.record.scenario_id], started_utc=started)
        if (results / RUNS_TABLE).exists():
            shutil.copyfile(results / RUNS_TABLE, staged_table)
        append_row(staged_table, {**m.record.to_row(), "started_utc": started, "run_dir": str(folder)})
        with open(staged_table, "rb") as fh:
            os.fsync(fh.fileno())
        # renames take no space: the folder first, so that a row never names a folder not there
        os.rename(staged_folder, folder)
        os.replace(staged_table, results / RUNS_TABLE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
