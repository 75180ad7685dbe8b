"""A validation report on disk: the table (CSV, Parquet, Markdown) and the predicted-vs-measured plot.

    <dir>/table.csv, table.parquet   one row per point: predicted, measured (median of the
                                     replicates), error of each figure, the verdicts
    <dir>/runs.csv, runs.parquet     one row per real run, compared with the point's prediction
    <dir>/report.md                  the target's verdict and the table, for people
    <dir>/predicted_vs_measured.png  total time, pause window and iterations, each point against y = x
    <dir>/manifest.json              the results store's manifest, with the verdict and the notes
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis.validation import Verdict
from ..report.validation import figure, markdown
from .store import write_folder


def write_report(out: Path, title: str, verdict: Verdict, points: Sequence[dict[str, Any]],
                 runs: Sequence[dict[str, Any]], notes: Sequence[str]) -> list[Path]:
    written = write_folder(out, "validation", out.name, tables={"table": points, "runs": runs},
                           texts={"report.md": markdown(title, verdict, points, notes)},
                           figures={"predicted_vs_measured.png": (figure(points, title), 110)},
                           formats=("csv", "parquet"), title=title, verdict=dataclasses.asdict(verdict),
                           met=verdict.met, notes=list(notes))
    return [out / name for name in written["files"]]
