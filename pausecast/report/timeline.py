"""The evacuation timeline: one row per VM, its five phases coloured, its pause window marked.

Drawn on a bare `matplotlib.figure.Figure` with the Agg canvas: no pyplot, no display, no global state.
A pause window (a few hundred ms) is too short to see beside an evacuation of minutes, so besides its
bar each one gets a marker at its start; a VM that stayed on its source gets a cross at its end. Each
kind of bar is one `PolyCollection` (one artist for a thousand VMs, not a thousand rectangles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from ..models.phases import Phase

PHASE_COLOURS = {Phase.BEGIN: "#c7c7c7", Phase.PREPARE: "#9ecae1", Phase.PERFORM: "#3182bd",
                 Phase.FINISH: "#fd8d3c", Phase.CONFIRM: "#a1d99b"}
PAUSE_COLOUR = "#d62728"
# VM names label the rows up to this many; beyond, rows are numbers
MAX_NAMED_ROWS = 60


def timeline_figure(rows: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """The timeline of a fleet's per-VM rows (`simulate_fleet(...).records`), rows in start order."""
    rows = sorted(rows, key=lambda r: (r["slot_wait_s"], r["vm"]))
    n = len(rows)
    fig = Figure(figsize=(11, min(40.0, max(3.0, 1.2 + 0.18 * n))), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for phase, colour in PHASE_COLOURS.items():
        _bars(ax, [_span(r, f"{phase}_start_s", f"{phase}_end_s") for r in rows], colour, str(phase))
    pauses = [_span(r, "pause_start_s", "pause_end_s", absolute=True) for r in rows]
    _bars(ax, pauses, PAUSE_COLOUR, "pause window")
    paused = [i for i, s in enumerate(pauses) if s]
    marker_size = 18 if n <= MAX_NAMED_ROWS else 4
    ax.scatter([pauses[i][0] for i in paused], paused, marker="v", s=marker_size, color=PAUSE_COLOUR,
               zorder=3)
    failed = [i for i, r in enumerate(rows) if r["failure"]]
    ax.scatter([rows[i]["end_s"] for i in failed], failed, marker="x", s=2 * marker_size, color="black",
               zorder=3, label="stayed on source")
    ax.autoscale_view()
    ax.set_ylim(n - 0.5, -0.5)
    if n <= MAX_NAMED_ROWS:
        ax.set_yticks(range(n), [r["vm"] for r in rows], fontsize=7)
    ax.set_xlabel("time since the evacuation started (s)")
    ax.set_ylabel("VM (in start order)")
    ax.set_title(title or "evacuation timeline")
    fig.legend(loc="outside lower center", fontsize=7, ncols=7)
    return fig


def _bars(ax: Axes, spans: list[tuple[float, float] | None], colour: str, label: str) -> None:
    """A bar of height 0.8 centred on row i for each span (left, width); None draws nothing."""
    boxes = []
    for i, span in enumerate(spans):
        if span:
            left, width = span
            boxes.append([(left, i - 0.4), (left + width, i - 0.4), (left + width, i + 0.4), (left, i + 0.4)])
    ax.add_collection(PolyCollection(boxes, facecolors=colour, edgecolors="none", label=label),
                      autolim=True)


def _span(row: dict[str, Any], start_key: str, end_key: str,
          absolute: bool = False) -> tuple[float, float] | None:
    """(left, width) on the fleet's clock, or None when the VM never reached it."""
    offset = 0.0 if absolute else row["slot_wait_s"]
    start, end = row[start_key], row[end_key]
    if not (math.isfinite(start) and math.isfinite(end)):
        return None
    return offset + start, end - start
