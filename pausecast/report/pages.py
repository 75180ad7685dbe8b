"""What the HTML report (report/html.py) shows of each kind of results folder: a sweep, an evacuation,
a validation. Each reads the folder through the results store and its manifest and returns a Page."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.validation import Verdict
from ..models.errors import ScenarioError
from ..runs.store import read_document, read_manifest, read_table
from . import plots
from .html import Page, png
from .text import window_ms

# an axis with more distinct values than this gets no table of its own (a sampled axis has one a run)
MAX_GROUPS = 12
# the evacuation's slowest VMs listed
WORST_VMS = 20
# the evacuation summary's quantiles of each window
QUANTILES = ("p50", "p95", "max")


def page_of(root: Path) -> Page:
    manifest = read_manifest(root)
    kind = manifest.get("kind")
    builders: dict[str, Callable[[Path, dict[str, Any]], Page]] = {
        "sweep": _sweep, "evacuation": _evacuation, "validation": _validation}
    if kind not in builders:
        raise ScenarioError("RESULTS_DIR", str(root), f"holds a {kind or 'unknown'} folder: report reads a "
                                                      f"sweep's, an evacuation's or a validation's")
    return builders[kind](Path(root), manifest)


def _provenance(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    git = manifest.get("git") or {}
    commit = git.get("commit") if isinstance(git, dict) else git
    pausecast = (manifest.get("versions") or {}).get("pausecast", "?")
    return [("created", str(manifest.get("created", "?"))),
            ("made by", f"pausecast {pausecast}" + (f" (git {str(commit)[:12]})" if commit else ""))]


def _stats(rows: pd.DataFrame) -> dict[str, Any]:
    """A group of migrations in one row: how many converged, and the windows' quantiles of those that
    moved."""
    moved = rows[rows["failure"] == ""]

    def q(column: str, p: float) -> float:
        values = moved[column].to_numpy(dtype=float)
        return float(pd.Series(values).quantile(p)) if len(values) else math.nan

    converged = 100.0 * rows["converged"].mean() if len(rows) else math.nan
    return {"migrations": len(rows), "converged %": converged,
            "pause p50 ms": q("pause_window_ms", 0.5), "pause p95 ms": q("pause_window_ms", 0.95),
            "pause max ms": q("pause_window_ms", 1.0), "outage p95 ms": q("network_outage_ms", 0.95),
            "total p50 s": q("total_time_s", 0.5), "total p95 s": q("total_time_s", 0.95),
            "iterations p50": q("iterations", 0.5)}


def _sweep(root: Path, manifest: dict[str, Any]) -> Page:
    r = plots.load(root)
    figures = [(f"{kind}: {plots.DESCRIPTIONS.get(kind, kind)}", png(plots.figure(r, kind)))
               for kind in plots.fitting_kinds(r)]
    tables = [("All migrations", pd.DataFrame([_stats(r.rows)]))]
    for axis in r.fields:
        if r.rows[axis].nunique() <= MAX_GROUPS:
            by = [{axis: value, **_stats(group)} for value, group in r.rows.groupby(axis, sort=True)]
            tables.append((f"By {plots.label(axis)}", pd.DataFrame(by)))
    runs = int(manifest.get("runs") or len(r.rows))
    # a fleet sweep's run is an evacuation: a row per VM
    migrations = [("migrations", f"{len(r.rows):,}")] if r.kind == "fleet" else []
    facts = [("runs", f"{runs:,}"), *migrations, ("points", str(manifest.get("points", "?"))),
             ("replicates", str(r.replicates)),
             ("axes", ", ".join(plots.label(f) for f in r.fields) or "none"),
             ("seed entropy", str(manifest.get("seed_entropy"))),
             ("status", str(manifest.get("status", "?"))), *_provenance(manifest)]
    what = f"a sweep of {runs:,} evacuations" if r.kind == "fleet" else f"a sweep of {runs:,} runs"
    return Page(f"Sweep {r.name}", what, facts, figures, tables,
                manifest=manifest)


def _evacuation(root: Path, manifest: dict[str, Any]) -> Page:
    s = read_document(root, "summary")
    records = read_table(root, "records")
    facts = [("VMs", f"{s['vms']:,}"), ("migrated", f"{s['migrated']:,}"), ("failed", f"{s['failed']:,}"),
             ("not converging", f"{s['not_converged']:,}"), ("makespan", f"{s['makespan_s']:.1f} s"),
             *[(f"{label} p50 / p95 / max", " / ".join(window_ms(s.get(f"{key}_{q}_ms")) for q in QUANTILES))
               for label, key in (("pause window", "pause_window"), ("network outage", "network_outage"))],
             ("seed", str(s["seed"])), *_provenance(manifest)]
    figures = []
    if (root / "timeline.png").is_file():
        figures.append(("each VM's migration: waiting for a slot, live pre-copy, the pause window",
                        (root / "timeline.png").read_bytes()))
    columns = [c for c in ("vm", "source_host", "destination_host", "switch", "pause_window_ms",
                           "network_outage_ms", "total_time_s", "iterations", "failure") if c in records]
    worst = records.sort_values("pause_window_ms", ascending=False).head(WORST_VMS)[columns]
    tables = [(f"The {min(WORST_VMS, len(records))} longest pause windows", worst)]
    if s.get("failures"):
        tables.append(("Stayed on the source", pd.DataFrame(
            [{"why": why, "VMs": n} for why, n in s["failures"].items()])))
    if s.get("switch_mean_wait_ms"):
        tables.append(("Switches", pd.DataFrame(
            [{"switch": name, "peak queue": s["switch_peak_queue"][name], "mean wait ms": wait}
             for name, wait in s["switch_mean_wait_ms"].items()])))
    if s.get("link_changes"):
        tables.append(("Link changes (the migrations streaming over the link when it changed)", pd.DataFrame(
            [{"link": c["link"], "at s": c["at_s"], "Mbit/s": c["bandwidth_mbit_s"],
              "streams": c["vms_crossing"]} for c in s["link_changes"]])))
    tables.append(("Bytes per link", pd.DataFrame(
        [{"link": link, "GiB": n / 2**30} for link, n in (s.get("bytes_per_link") or {}).items()])))
    return Page(f"Evacuation {s['fleet']}", f"an evacuation of {s['vms']:,} VMs", facts, figures, tables,
                manifest=manifest)


def _validation(root: Path, manifest: dict[str, Any]) -> Page:
    fields = {f.name for f in dataclasses.fields(Verdict)}
    # strict JSON wrote a NaN (nothing compared) as null
    given = {k: (math.nan if v is None else v) for k, v in (manifest.get("verdict") or {}).items()
             if k in fields}
    verdict_lines = Verdict(**given).lines() if set(given) == fields else []
    points = read_table(root, "table")
    facts = [("target", "met" if manifest.get("met") else "NOT met"), ("points", f"{len(points):,}"),
             *_provenance(manifest)]
    figures = []
    if (root / "predicted_vs_measured.png").is_file():
        figures.append(("predicted against measured, with y = x and the target's band",
                        (root / "predicted_vs_measured.png").read_bytes()))
    return Page(str(manifest.get("title") or manifest.get("name")),
                "a validation: predicted against measured", facts, figures, [("Points", points)],
                notes=[*verdict_lines, *manifest.get("notes", [])], manifest=manifest)

