"""Where real runs go: one folder per run and one row per run in a shared table.

    results/runs/<UTC start>-<scenario id>/record.json   the result record, with what the executor
                                                         measured beyond the common columns ("extra")
    results/runs/<UTC start>-<scenario id>/raw.json      every job-stats sample, libvirt event and
                                                         logged phase mark, as observed
    results/runs/<UTC start>-<scenario id>/manifest.json the results store's manifest
    results/runs.csv                                     one row per run (the record's flat row)
"""

from __future__ import annotations

import time
from pathlib import Path

from ..executor.migration.migrate import Measurement
from .store import append_row, write_folder

RUNS_DIR = "runs"
RUNS_TABLE = "runs.csv"


def write_run(m: Measurement, results_dir: str | Path) -> Path:
    """Writes the run's folder and its row; returns the folder."""
    results = Path(results_dir)
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(m.t0_s)) + f"{m.t0_s % 1:.3f}"[1:]
    folder = results / RUNS_DIR / f"{started}-{m.record.scenario_id}"
    record = {**m.record.to_row(), "extra": m.record.extra}
    write_folder(folder, "run", folder.name, documents={"record": record, "raw": m.raw()}, compact=("raw",),
                 scenario_ids=[m.record.scenario_id], started_utc=started)
    append_row(results / RUNS_TABLE, {**m.record.to_row(), "started_utc": started, "run_dir": str(folder)})
    return folder
