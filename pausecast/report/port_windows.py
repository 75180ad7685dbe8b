"""The two port-profile types side by side: the pause window and the network outage of real testbed
migrations (802.1Qbg through lldpad and the VDP emulator, 802.1Qbh through the emulated VIC) under an
immediate and a slow switch, each beside the simulator's prediction. benchmarks/bench_vdp_testbed.py
measures the rows and draws this figure.

A row is one (port type, switch service time): the measured windows of its runs and the predicted
ones. Returns a matplotlib Figure (no pyplot: saving renders with Agg)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import Patch


@dataclass(frozen=True)
class PortWindows:
    port: str
    service_time_ms: float
    pause_window_ms: tuple[float, ...]
    network_outage_ms: tuple[float, ...]
    predicted_pause_window_ms: float
    predicted_network_outage_ms: float


_COLOURS = {"pause": "#4c72b0", "outage": "#dd8452"}


def port_windows_figure(rows: list[PortWindows]) -> Figure:
    """Grouped bars, one group per row: measured (median, each run a dot) and predicted (hatched) pause
    window and network outage."""
    fig = Figure(figsize=(1.9 * len(rows) + 2.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.2
    for i, row in enumerate(rows):
        bars = (("pause", row.pause_window_ms, row.predicted_pause_window_ms),
                ("outage", row.network_outage_ms, row.predicted_network_outage_ms))
        for j, (kind, measured, predicted) in enumerate(bars):
            x = i + (2 * j - 1.5) * width
            ax.bar(x, statistics.median(measured), width, color=_COLOURS[kind])
            ax.plot([x] * len(measured), measured, "k.", markersize=4)
            ax.bar(x + width, predicted, width, color="white", edgecolor=_COLOURS[kind], hatch="//")
    ax.set_xticks(range(len(rows)), [f"{r.port}\nswitch {r.service_time_ms:g} ms" for r in rows])
    ax.set_ylabel("ms")
    ax.set_title("Pause window and network outage on the testbed: measured (solid, dots = runs) "
                 "and simulated (hatched)", fontsize=9)
    ax.legend(handles=[Patch(color=_COLOURS["pause"], label="pause window"),
                       Patch(color=_COLOURS["outage"], label="network outage"),
                       Patch(facecolor="white", edgecolor="grey", hatch="//", label="simulator")],
              loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig
