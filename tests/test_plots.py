"""The standard figures, inspected as figure objects: panels, axis labels, lines, bars, marks."""

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.container import BarContainer
from matplotlib.patches import Rectangle

from pausecast.cli import main
from pausecast.models.sweep import sweep_from_dict
from pausecast.report import plots
from pausecast.runs.sweep import RunOptions, run_sweep

DIRTY_MIB_S = [25, 100, 400]
BANDWIDTHS_MBIT_S = [1000, 10000]
SERVICE_MS = [0, 200, 400]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A 1 GiB VM: dirty rate x bandwidth x downtime limit, on the fast path."""
    sweep = sweep_from_dict({"name": "grid", "base": {"vm": {"memory_mib": 1024}}, "seed": 1, "axes": [
        {"field": "vm.dirty.rate_mib_s", "values": DIRTY_MIB_S},
        {"field": "link.bandwidth_mbit_s", "values": BANDWIDTHS_MBIT_S},
        {"field": "migration.max_downtime_ms",
         "range": {"start": 50, "stop": 800, "num": 3, "scale": "log"}}]},
        base_dir=tmp_path_factory.getbasetemp())
    root = tmp_path_factory.mktemp("grid") / "grid"
    run_sweep(sweep, root, RunOptions(workers=1, progress=False))
    return root


@pytest.fixture(scope="module")
def switch(tmp_path_factory):
    """An 802.1Qbh VM behind switches of three service times, four random replicates each (SimPy)."""
    sweep = sweep_from_dict({"name": "switch", "seed": 1, "replicates": 4, "base": {
        "vm": {"memory_mib": 256}, "port_profile": {"type": "802.1Qbh"},
        "switch": {"service_distribution": "constant"}},
        "axes": [{"field": "switch.service_time_ms", "values": SERVICE_MS}]},
        base_dir=tmp_path_factory.getbasetemp())
    root = tmp_path_factory.mktemp("switch") / "switch"
    run_sweep(sweep, root, RunOptions(workers=1, progress=False))
    return root


def test_downtime_curves_have_a_line_per_dirty_rate_and_a_row_per_bandwidth(grid):
    fig = plots.figure(plots.load(grid), "downtime-curves")
    axes = fig.axes
    assert len(axes) == len(BANDWIDTHS_MBIT_S) * 3
    assert [ax.get_ylabel() for ax in axes[:3]] == ["pause window [ms]", "network outage [ms]",
                                                    "QEMU downtime [ms]"]
    assert all(ax.get_xlabel() == "max downtime (QEMU downtime-limit) [ms]" for ax in axes)
    for ax in axes:
        # one line per dirty rate, and the y = limit reference
        assert len(ax.get_lines()) == len(DIRTY_MIB_S) + 1
    assert [t.get_text() for t in axes[0].get_legend().get_texts()][:3] == ["25", "100", "400"]
    # 1 GbE moves 119 MiB/s: 400 MiB/s never converges there (a gap), 25 MiB/s always does;
    # 10 GbE moves 1192 MiB/s: every rate converges
    slow, fast = axes[0], axes[3]
    assert "1000" in slow.get_title() and "10000" in fast.get_title()
    assert np.isnan(slow.get_lines()[2].get_ydata()).all()
    assert np.isfinite(slow.get_lines()[0].get_ydata()).all()
    assert all(np.isfinite(line.get_ydata()).all() for line in fast.get_lines()[:3])


def test_convergence_map_marks_the_cells_that_never_converge(grid):
    fig = plots.figure(plots.load(grid), "convergence-map")
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    colorbar = [ax for ax in fig.axes if ax.get_ylabel() == "total migration time [s]"]
    assert len(panels) == 3 and len(colorbar) == 1  # a panel per downtime limit
    for ax in panels:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("dirty rate [MiB/s]", "link bandwidth [Mbit/s]")
        mesh = [c for c in ax.collections if isinstance(c, QuadMesh)]
        assert len(mesh) == 1 and mesh[0].get_array().shape == (2, 3)
        hatched = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
        # rho = D / R: 400 / 119.2 > 1 at 1 GbE is the only cell that never converges: column 2, row 0
        assert [(p.get_x(), p.get_y()) for p in hatched] == [(2, 0)]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["25", "100", "400"]


def test_pause_breakdown_stacks_the_parts_up_to_the_pause_window(switch):
    r = plots.load(switch)
    fig = plots.figure(r, "pause-breakdown")
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.get_label() for c in bars] == [name for _, name in plots.PAUSE_PARTS]
    assert all(len(c) == len(SERVICE_MS) for c in bars)
    assert ax.get_xlabel() == "switch service time [ms]"
    assert ax.get_ylabel() == "mean pause window [ms]"
    # libvirt polls every 125 ms: a 0 / 200 / 400 ms answer is seen after 0 / 250 / 500 ms
    association = bars[[n for _, n in plots.PAUSE_PARTS].index("port association")]
    assert [b.get_height() for b in association] == pytest.approx([0, 250, 500])
    tops = [sum(c[i].get_height() for c in bars) for i in range(len(SERVICE_MS))]
    means = r.rows.groupby("switch.service_time_ms")["pause_window_ms"].mean()
    assert tops == pytest.approx(means.tolist())


def test_cdf_has_a_line_per_value_reaching_one(switch):
    fig = plots.figure(plots.load(switch), "cdf")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == len(SERVICE_MS)
    assert all(line.get_ydata()[-1] == 1.0 for line in lines)
    assert all(len(line.get_xdata()) == 4 for line in lines)  # four replicates each
    assert ax.get_xlabel().endswith("[ms]") and ax.get_ylabel().startswith("fraction")


def test_fitting_kinds_follow_the_axes(grid, switch):
    assert plots.fitting_kinds(plots.load(grid)) == ["downtime-curves", "convergence-map"]
    assert plots.fitting_kinds(plots.load(switch)) == ["pause-breakdown", "cdf"]


def test_labels_carry_units_from_field_names():
    assert plots.label("link.rtt_ms") == "round trip [ms]"
    assert plots.label("vm.device_state_mib") == "vm.device state [MiB]"
    assert plots.label("switch.background_load_per_s") == "switch background load [requests/s]"


def test_plot_command_writes_png_and_svg_and_refuses_unfit_kinds(switch, tmp_path, capsys):
    assert main(["plot", str(switch), "--kind", "cdf", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdf.png", "cdf.svg"]
    assert (tmp_path / "cdf.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (tmp_path / "cdf.svg").read_bytes()[:500]
    assert main(["plot", str(switch), "--kind", "downtime-curves", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "migration.max_downtime_ms" in err
