"""The standard sweep figures, drawn from a results folder (a table of records plus its manifest).

* downtime-curves: pause window, network outage and QEMU downtime against the downtime limit, one
  line per dirty rate (or per the values of another axis);
* convergence-map: dirty rate x bandwidth, total migration time as colour, the cells where the
  pre-copy never converges marked;
* pause-breakdown: the pause window's parts as stacked bars across a swept parameter;
* cdf: the distribution of pause windows (fleet sweeps, or replicates).

Each function returns a matplotlib Figure (no pyplot, no global state: saving renders with Agg); a
value is the median over
the runs that share the plotted coordinates (other axes, replicates), except the stacked bars, which
show means so that the parts add up to the mean pause window. Axes with up to MAX_FACETS value
combinations left over get one row of panels each.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from ..models.errors import ScenarioError
from ..runs.store import MANIFEST, load_results

# each figure kind and what it shows
DESCRIPTIONS = {
    "downtime-curves": "pause window, network outage and QEMU downtime against the downtime limit, one line "
                       "per dirty rate",
    "convergence-map": "dirty rate x bandwidth, total time as colour, the non-converging cells marked",
    "pause-breakdown": "the pause window's parts across a swept parameter",
    "cdf": "pause windows of a fleet sweep or of replicates",
}
KINDS = tuple(DESCRIPTIONS)
FORMATS = ("png", "svg")
PLOTS_DIR = "plots"
MAX_LINES = 12
MAX_FACETS = 4
MAX_BARS = 24
MAX_ANNOTATED_CELLS = 120
DOWNTIME_LIMIT = "migration.max_downtime_ms"
DIRTY_FIELDS = ("vm.dirty.rate_mib_s", "vm.dirty.hot_rate_mib_s", "vm.dirty.cold_rate_mib_s",
                "vm.dirty.hot_set_mib")
BANDWIDTH_FIELDS = ("link.bandwidth_mbit_s", "migration.bandwidth_mib_s", "link.efficiency")
# what the pause-breakdown prefers to put on its x axis: the switch's load first
BREAKDOWN_FIELDS = ("switch.background_load_per_s", "switch.service_time_ms", "switch.capacity",
                    "port_profile.type", "port_profile.vnics")
# the pause window's parts, in the order they happen (record.py)
PAUSE_PARTS = (("final_copy_ms", "final copy"), ("handshake_ms", "pre-switchover handshake"),
               ("finish_rpc_ms", "Finish RPC"), ("finish_work_ms", "Finish work"),
               ("association_wait_ms", "port association"), ("resume_ms", "vCPU resume"))
LABELS = {
    "vm.dirty.rate_mib_s": "dirty rate [MiB/s]", "vm.dirty.hot_rate_mib_s": "hot-set dirty rate [MiB/s]",
    "vm.dirty.cold_rate_mib_s": "cold dirty rate [MiB/s]", "vm.dirty.hot_set_mib": "hot set [MiB]",
    "vm.memory_mib": "VM memory [MiB]", "link.bandwidth_mbit_s": "link bandwidth [Mbit/s]",
    "link.efficiency": "link efficiency [fraction of line rate]", "link.rtt_ms": "round trip [ms]",
    "migration.bandwidth_mib_s": "migration bandwidth cap [MiB/s]",
    DOWNTIME_LIMIT: "max downtime (QEMU downtime-limit) [ms]",
    "switch.background_load_per_s": "switch background load [requests/s]",
    "switch.service_time_ms": "switch service time [ms]",
}
_UNITS = (("_mbit_s", "Mbit/s"), ("_mib_s", "MiB/s"), ("_per_s", "1/s"), ("_ms", "ms"), ("_mib", "MiB"),
          ("_bytes", "bytes"), ("_s", "s"))


def label(field: str) -> str:
    """An axis label with its unit, read from the field name's suffix when no better one is known."""
    if field in LABELS:
        return LABELS[field]
    for suffix, unit in _UNITS:
        if field.endswith(suffix):
            return f"{field.removesuffix(suffix).replace('_', ' ')} [{unit}]"
    return field.replace("_", " ")


@dataclass(frozen=True)
class Results:
    rows: pd.DataFrame
    # the manifest's axes: field, kind (values | range | sample) and their settings
    axes: tuple[dict[str, Any], ...]
    kind: str
    replicates: int
    name: str

    def grid(self, limit: float = math.inf) -> list[str]:
        """Axis fields with a fixed set of at most `limit` values (lines, facets, bars need one)."""
        return [a["field"] for a in self.axes
                if a["kind"] != "sample" and self.rows[a["field"]].nunique() <= limit]

    @property
    def fields(self) -> list[str]:
        return [a["field"] for a in self.axes]


def load(root: Path) -> Results:
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        # ValueError: not JSON, or not UTF-8
        raise ScenarioError("RESULTS_DIR", str(root), f"has no readable {MANIFEST} ({exc})") from None
    definition = manifest.get("definition") if isinstance(manifest, dict) else None
    if not (isinstance(definition, dict) and isinstance(definition.get("axes"), list)
            and all(isinstance(a, dict) and "field" in a and "kind" in a for a in definition["axes"])
            and {"kind", "replicates", "name"} <= set(definition)):
        raise ScenarioError("RESULTS_DIR", str(root), f"its {MANIFEST} is not a sweep's manifest "
                                                      "(no definition with axes, kind, replicates, name)")
    try:
        rows = load_results(root)
    except (OSError, pyarrow.ArrowException) as exc:
        # a chunk cut short: its writer was killed, or the disk was full
        raise ScenarioError("RESULTS_DIR", str(root), f"holds a chunk that cannot be read ({exc})") from None
    return Results(rows, tuple(definition["axes"]), definition["kind"], definition["replicates"],
                   definition["name"])


# ---------------------------------------------------------------------------------------------------
# which figures a sweep's axes support


def _downtime_roles(r: Results) -> tuple[str, str | None, list[str]]:
    if r.kind != "scenario" or DOWNTIME_LIMIT not in r.grid():
        raise _unfit("downtime-curves", f"a single-VM sweep with {DOWNTIME_LIMIT} as a values or range axis")
    others = [f for f in r.grid(MAX_LINES) if f != DOWNTIME_LIMIT]
    lines = next((f for f in DIRTY_FIELDS if f in others), others[0] if others else None)
    return DOWNTIME_LIMIT, lines, _facets(r, [DOWNTIME_LIMIT, lines])


def _map_roles(r: Results) -> tuple[str, str, list[str]]:
    """x: a dirty-rate axis; y: a bandwidth axis, or, when x is sampled, another sampled axis (a
    scatter of two drawn quantities reads better than a few stripes; a listed bandwidth then facets)."""
    x = next((f for f in DIRTY_FIELDS if f in r.fields), None)
    y = next((f for f in BANDWIDTH_FIELDS if f in r.fields), None)
    sampled = [a["field"] for a in r.axes if a["kind"] == "sample"]
    others = [f for f in sampled if f != x]
    if x in sampled and y not in sampled and others:
        y = others[0]
    if r.kind != "scenario" or x is None or y is None:
        raise _unfit("convergence-map", "a single-VM sweep with a dirty-rate axis (vm.dirty.*) and a "
                                        "bandwidth axis (link.bandwidth_mbit_s or migration.bandwidth_mib_s)")
    return x, y, _facets(r, [x, y])


def _breakdown_x(r: Results) -> str:
    candidates = r.grid(MAX_BARS)
    x = next((f for f in BREAKDOWN_FIELDS if f in candidates), candidates[0] if candidates else None)
    if x is None:
        raise _unfit("pause-breakdown", f"an axis with a values list or range of at most {MAX_BARS} values")
    return x


def _breakdown_fits(r: Results) -> str:
    """After a sweep, the bars are drawn for a switch or port axis, or when there is only one axis (with
    more, each bar would average over the others)."""
    x = _breakdown_x(r)
    if x not in BREAKDOWN_FIELDS and len(r.axes) > 1:
        raise _unfit("pause-breakdown", "a switch or port-profile axis, or a single axis")
    return x


def _cdf_lines(r: Results) -> str | None:
    grid = r.grid(8)
    return grid[0] if grid else None


def _facets(r: Results, used: list[str | None]) -> list[str]:
    """The remaining grid axes, when their value combinations are few enough for a row each."""
    rest = [f for f in r.grid(MAX_FACETS) if f not in used]
    combos = int(np.prod([r.rows[f].nunique() for f in rest])) if rest else 1
    return rest if combos <= MAX_FACETS else []


def _title(main: str, r: Results, shown: list[str | None], statistic: str = "median") -> str:
    """The title, and a second line naming the axes the figure summarises over."""
    rest = [label(f).split(" [")[0] for f in r.fields if f not in shown]
    return main + (f"\n{statistic} over {', '.join(rest)}" if rest else "")


def _unfit(kind: str, needs: str) -> ScenarioError:
    return ScenarioError("--kind", kind, f"needs {needs}")


def fitting_kinds(r: Results) -> list[str]:
    """The figures worth drawing on their own after a sweep."""
    kinds = []
    for kind, check in (("downtime-curves", _downtime_roles), ("convergence-map", _map_roles),
                        ("pause-breakdown", _breakdown_fits)):
        try:
            check(r)
        except ScenarioError:
            continue
        kinds.append(kind)
    if r.kind == "fleet" or r.replicates > 1:
        kinds.append("cdf")
    return kinds


# ---------------------------------------------------------------------------------------------------
# the figures


def figure(r: Results, kind: str) -> Figure:
    if kind not in KINDS:
        raise ScenarioError("--kind", kind, "allowed: " + " | ".join(KINDS))
    return {"downtime-curves": downtime_curves, "convergence-map": convergence_map,
            "pause-breakdown": pause_breakdown, "cdf": pause_cdf}[kind](r)


def _migrated(rows: pd.DataFrame) -> pd.Series:
    return rows["converged"] & (rows["failure"] == "")


def _facet_rows(r: Results, facets: list[str]) -> list[tuple[str, pd.DataFrame]]:
    if not facets:
        return [("", r.rows)]
    out = []
    for values, group in r.rows.groupby(facets, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        out.append((", ".join(f"{label(f)} = {_fmt(v)}" for f, v in zip(facets, values, strict=True)), group))
    return out


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float | int | np.number) else str(value)


def _log_if_wide(ax: Any, values: Any, axis: str = "x") -> None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() / values.min() > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def downtime_curves(r: Results) -> Figure:
    x, lines, facets = _downtime_roles(r)
    metrics = (("pause_window_ms", "pause window [ms]"), ("network_outage_ms", "network outage [ms]"),
               ("downtime_ms", "QEMU downtime [ms]"))
    panels = _facet_rows(r, facets)
    fig = Figure(figsize=(13, 3.8 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), len(metrics), squeeze=False)
    for row, (title, rows) in enumerate(panels):
        ok = _migrated(rows)
        values = rows.assign(**{m: rows[m].where(ok) for m, _ in metrics})
        keys = [lines, x] if lines else [x]
        medians = values.groupby(keys, sort=True)[[m for m, _ in metrics]].median()
        for col, (metric, ylabel) in enumerate(metrics):
            ax = axes[row][col]
            groups = medians.groupby(level=0) if lines else [(None, medians)]
            for value, curve in groups:
                xs = curve.index.get_level_values(x)
                ax.plot(xs, curve[metric].to_numpy(), marker="o", markersize=3,
                        label=_fmt(value) if lines else "median")
            limits = np.sort(rows[x].unique())
            ax.plot(limits, limits, color="0.6", linestyle=":", linewidth=1, label="= max downtime")
            ax.set_xlabel(label(x))
            ax.set_ylabel(ylabel)
            _log_if_wide(ax, rows[x])
            # the y = max downtime guide spans the x range: scale y alike, so every panel reads the same
            _log_if_wide(ax, np.concatenate([rows[x].to_numpy(float), medians[metric].to_numpy(float)]), "y")
            ax.grid(True, alpha=0.3)
            ax.set_title(f"{ylabel.split(' [')[0]}{' - ' + title if title else ''}", fontsize=10)
        axes[row][0].legend(title=label(lines) if lines else None, fontsize=8, title_fontsize=8)
    fig.suptitle(_title(f"{r.name}: pause windows against the downtime limit (gaps: pre-copy never "
                        "converges)", r, [x, lines, *facets]), fontsize=11)
    return fig


def convergence_map(r: Results) -> Figure:
    x, y, facets = _map_roles(r)
    panels = _facet_rows(r, facets)
    fig = Figure(figsize=(7.5 * len(panels), 6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    total = r.rows["total_time_s"].where(_migrated(r.rows))
    finite = total[np.isfinite(total)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (1.0, 10.0)
    norm = LogNorm(lo, hi) if lo > 0 and hi / lo > 20 else Normalize(lo, hi)
    gridded = all(f in r.grid() for f in (x, y))
    for ax, (title, rows) in zip(axes, panels, strict=True):
        rows = rows.assign(total=rows["total_time_s"].where(_migrated(rows)))
        if gridded:
            cells = rows.groupby([y, x], sort=True)["total"].median().unstack(x)
            image = ax.pcolormesh(np.arange(cells.shape[1] + 1), np.arange(cells.shape[0] + 1),
                                  np.ma.masked_invalid(cells.to_numpy()), norm=norm, cmap="viridis")
            for row, col in zip(*np.nonzero(cells.isna().to_numpy()), strict=True):
                ax.add_patch(Rectangle((col, row), 1, 1, facecolor="0.8", edgecolor="0.4", hatch="xx",
                                       linewidth=0))
            if cells.size <= MAX_ANNOTATED_CELLS:
                for (row, col), seconds in np.ndenumerate(cells.to_numpy()):
                    if np.isfinite(seconds):
                        ax.text(col + 0.5, row + 0.5, f"{seconds:.3g}", ha="center", va="center", fontsize=7,
                                color="white" if norm(seconds) < 0.6 else "black")
            ax.set_xticks(np.arange(cells.shape[1]) + 0.5, [_fmt(v) for v in cells.columns], rotation=45)
            ax.set_yticks(np.arange(cells.shape[0]) + 0.5, [_fmt(v) for v in cells.index])
        else:
            ok = np.isfinite(rows["total"])
            image = ax.scatter(rows.loc[ok, x], rows.loc[ok, y], c=rows.loc[ok, "total"], norm=norm,
                               cmap="viridis", s=18)
            ax.scatter(rows.loc[~ok, x], rows.loc[~ok, y], marker="x", color="0.35", s=18)
            _log_if_wide(ax, rows[x])
            _log_if_wide(ax, rows[y], "y")
        ax.set_xlabel(label(x))
        ax.set_ylabel(label(y))
        if title:
            ax.set_title(title, fontsize=10)
        never = (Patch(facecolor="0.8", edgecolor="0.4", hatch="xx", label="pre-copy never converges")
                 if gridded else Line2D([], [], marker="x", color="0.35", linestyle="",
                                        label="pre-copy never converges"))
        ax.legend(handles=[never], loc="upper left", fontsize=8)
    fig.colorbar(image, ax=list(axes), label="total migration time [s]")
    main = f"{r.name}: where pre-copy converges, and how long the migration takes"
    fig.suptitle(_title(main, r, [x, y, *facets], "median" if gridded else "one dot per run, mixing"),
                 fontsize=11)
    return fig


def pause_breakdown(r: Results) -> Figure:
    x = _breakdown_x(r)
    rows = r.rows[_migrated(r.rows)]
    means = rows.groupby(x, sort=True)[[c for c, _ in PAUSE_PARTS]].mean()
    fig = Figure(figsize=(max(6.0, 0.6 * len(means) + 3), 5), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(means))
    bottom = np.zeros(len(means))
    for column, name in PAUSE_PARTS:
        heights = means[column].to_numpy()
        ax.bar(positions, heights, bottom=bottom, label=name, width=0.7)
        bottom += heights
    ax.set_xticks(positions, [_fmt(v) for v in means.index], rotation=45 if len(means) > 8 else 0)
    ax.set_xlabel(label(x))
    ax.set_ylabel("mean pause window [ms]")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="part of the pause window", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.set_title(_title(f"{r.name}: what the pause window (both VMs paused) is made of", r, [x], "mean"),
                 fontsize=10)
    return fig


def pause_cdf(r: Results) -> Figure:
    lines = _cdf_lines(r)
    rows = r.rows[_migrated(r.rows)]
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    groups = rows.groupby(lines, sort=True) if lines else [(None, rows)]
    for value, group in groups:
        pauses = np.sort(group["pause_window_ms"].to_numpy())
        share = np.arange(1, len(pauses) + 1) / len(pauses)
        ax.step(pauses, share, where="post", label=_fmt(value) if lines else f"{len(pauses)} migrations")
    _log_if_wide(ax, rows["pause_window_ms"])
    ax.set_xlabel("pause window (source stop -> destination start) [ms]")
    ax.set_ylabel("fraction of migrations with a pause <= x")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(title=label(lines) if lines else None, fontsize=8, title_fontsize=8)
    who = "VMs" if r.kind == "fleet" else "runs"
    ax.set_title(f"{r.name}: distribution of pause windows over {who}")
    return fig


def save(fig: Figure, out_dir: Path, kind: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{kind}.{fmt}" for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=130)
    return paths


def draw(root: Path, kinds: list[str] | None = None, out_dir: Path | None = None) -> list[Path]:
    """Draws the given kinds (default: every one that fits the sweep) into RESULTS_DIR/plots."""
    r = load(root)
    out = out_dir or Path(root) / PLOTS_DIR
    chosen = kinds if kinds is not None else fitting_kinds(r)
    return list(itertools.chain.from_iterable(save(figure(r, kind), out, kind) for kind in chosen))
