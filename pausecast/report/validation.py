"""A validation report rendered: the Markdown table for people and the predicted-vs-measured figure.
runs/validation_report.py writes them with the tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..analysis.validation import PAUSE_FLOOR_MS, PAUSE_TARGET, TOTAL_TARGET, Verdict


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.{digits}g}"
    return str(value)


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:+.1%}"


def markdown(title: str, verdict: Verdict, points: Sequence[dict[str, Any]], notes: Sequence[str]) -> str:
    lines = [f"# {title}", "", *[f"- {n}" for n in notes], "", "## Against the target", "",
             *[f"- {line}" for line in verdict.lines()], "", "## Points", "",
             "| point | converged pred/meas | iterations pred/meas | total s pred/meas (err) | "
             "pause ms pred/meas (err) | QEMU downtime ms pred/meas | pre-copy s pred/meas |",
             "|---|---|---|---|---|---|---|"]
    for r in points:
        lines.append(
            f"| {r['point']} | {'yes' if r['converged_predicted'] else 'no'}/"
            f"{'yes' if r['converged_measured'] else 'no'} | {r['iterations_predicted']}/"
            f"{r['iterations_measured']} | {_fmt(r['total_time_s_predicted'])}/"
            f"{_fmt(r['total_time_s_measured'])} ({_pct(r['total_time_s_error'])}) | "
            f"{_fmt(r['pause_window_ms_predicted'])}/{_fmt(r['pause_window_ms_measured'])} "
            f"({_pct(r['pause_window_ms_error'])}) | {_fmt(r['downtime_ms_predicted'])}/"
            f"{_fmt(r['downtime_ms_measured'])} | {_fmt(r['precopy_time_s_predicted'])}/"
            f"{_fmt(r['precopy_time_s_measured'])} |")
    return "\n".join(lines) + "\n"


def figure(points: Sequence[dict[str, Any]], title: str) -> Figure:
    """Measured (x) against predicted (y) for the points where both migrated, with y = x and the
    target's band. The other points have no pair of figures: the title counts them."""
    fig = Figure(figsize=(13, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    panels = (("total_time_s", "total time (s)", lambda v: TOTAL_TARGET * v),
              ("pause_window_ms", "pause window (ms)", lambda v: max(PAUSE_TARGET * v, PAUSE_FLOOR_MS)),
              ("iterations", "iterations", lambda v: 1.0))
    for ax, (column, label, band) in zip(fig.subplots(1, 3), panels, strict=True):
        both = [r for r in points if r["converged_predicted"] and r["converged_measured"]
                and not r["failure_predicted"] and not r["failure_measured"]]
        xs = [float(r[f"{column}_measured"]) for r in both]
        ys = [float(r[f"{column}_predicted"]) for r in both]
        finite = [v for v in xs + ys if math.isfinite(v)]
        if finite:
            lo, hi = min(finite) * 0.9, max(finite) * 1.1
            grid = [lo + (hi - lo) * i / 50 for i in range(51)]
            ax.plot(grid, grid, color="black", lw=0.8)
            ax.fill_between(grid, [g - band(g) for g in grid], [g + band(g) for g in grid],
                            color="tab:green", alpha=0.15, label="target")
        ax.scatter(xs, ys, color="tab:blue", zorder=3, label="point")
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.legend(loc="upper left", fontsize=8)
    others = len(points) - len(both)
    wrong = sum(not r["verdict_right"] for r in points)
    fig.suptitle(f"{title}: {len(both)} points migrated in both; {others} not, {wrong} verdict(s) wrong")
    return fig
