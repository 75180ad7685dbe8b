"""One fleet under several orchestrators' policies, side by side: makespan, aborted VMs and pause
windows, one panel each. A bare Agg `Figure`, as the other plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def policies_figure(summaries: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """`summaries`: each a fleet summary (sim/fleet.py) with its "orchestrator"."""
    names = [s["orchestrator"] for s in summaries]
    fig = Figure(figsize=(11, 3.6))
    FigureCanvasAgg(fig)
    makespan, aborted, pause = fig.subplots(1, 3)
    x = range(len(names))
    makespan.bar(x, [s["makespan_s"] for s in summaries], color="#3182bd")
    makespan.set_ylabel("makespan (s)")
    aborted.bar(x, [s["failed"] + s["not_converged"] for s in summaries], color="#d62728")
    aborted.set_ylabel("VMs left on their source")
    aborted.yaxis.set_major_locator(MaxNLocator(integer=True))
    width = 0.27
    for k, (label, colour) in enumerate((("p50", "#9ecae1"), ("p95", "#3182bd"), ("max", "#08519c"))):
        values = [s[f"pause_window_{label}_ms"] for s in summaries]
        pause.bar([i + (k - 1) * width for i in x], [v if math.isfinite(v) else 0.0 for v in values],
                  width, color=colour, label=label)
    pause.set_ylabel("pause window (ms), migrated VMs")
    pause.set_yscale("log")
    pause.legend(fontsize=8)
    for ax in (makespan, aborted, pause):
        ax.set_xticks(list(x), names)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
