"""Where real runs go: one folder per run and one row per run in a shared table.

    results/runs/<UTC start>-<scenario id>/record.json   the result record, with what the executor
                                                         measured beyond the common columns ("extra")
    results/runs/<UTC start>-<scenario id>/raw.json      every job-stats sample, libvirt event and
                                                         logged phase mark, as observed
    results/runs.csv                                     one row per run (the record's flat row)
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

from ..executor.migration.migrate import Measurement

RUNS_DIR = "runs"
RUNS_TABLE = "runs.csv"


def strict_json(obj: Any) -> Any:
    """NaN and infinity (not measured, never) become null, at any depth."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    return obj


def write_run(m: Measurement, results_dir: str | Path) -> Path:
    """Writes the run's folder and its row; returns the folder."""
    results = Path(results_dir)
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(m.t0_s)) + f"{m.t0_s % 1:.3f}"[1:]
    folder = results / RUNS_DIR / f"{started}-{m.record.scenario_id}"
    folder.mkdir(parents=True, exist_ok=True)
    record = {**m.record.to_row(), "extra": m.record.extra}
    (folder / "record.json").write_text(json.dumps(strict_json(record), indent=2) + "\n")
    (folder / "raw.json").write_text(json.dumps(strict_json(m.raw())) + "\n")
    append_row(results / RUNS_TABLE, {**m.record.to_row(), "started_utc": started, "run_dir": str(folder)})
    return folder


def append_row(table: Path, row: dict[str, Any]) -> None:
    """Appends to a CSV table, writing the header when the table is new; a table written by an older
    version keeps its own columns."""
    header = list(row)
    if table.exists() and table.stat().st_size > 0:
        with open(table, newline="") as fh:
            header = next(csv.reader(fh), header)
        mode = "a"
    else:
        mode = "w"
    with open(table, mode, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        if mode == "w":
            writer.writeheader()
        writer.writerow(row)
