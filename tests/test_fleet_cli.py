"""`pausecast evacuate`: the files it writes and the timeline figure it draws."""

import json
from pathlib import Path

import pandas as pd
import pytest

from pausecast.cli import main
from pausecast.models.fleet import load_fleet
from pausecast.models.record import REQUIRED_COLUMNS
from pausecast.report.timeline import timeline_figure
from pausecast.sim.fleet import FLEET_COLUMNS, simulate_fleet

from .test_fleet import QBH_TINY, SLOW_SWITCH, two_host_fleet

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "evacuation.toml"
PHASES = ["begin", "prepare", "perform", "finish", "confirm"]


def test_evacuate_prints_the_summary_and_writes_records_and_a_timeline(tmp_path, capsys):
    assert main(["evacuate", str(EXAMPLE), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "13 migrated, 0 failed" in out and "makespan" in out and "pause window" in out
    folder = tmp_path / "rack-a-drain"
    table = pd.read_parquet(folder / "records.parquet")
    assert len(table) == 13
    assert set(REQUIRED_COLUMNS) | set(FLEET_COLUMNS) <= set(table.columns)
    assert list(table["vm"]) == [*(f"web-4g-{i}" for i in range(1, 9)), *(f"app-8g-{i}" for i in range(1, 5)),
                                 "orders-db"]
    assert (table["engine"] == "sim-fleet").all()
    csv = pd.read_csv(folder / "records.csv")
    assert list(csv["vm"]) == list(table["vm"])
    assert csv["pause_window_ms"].to_numpy() == pytest.approx(table["pause_window_ms"].to_numpy())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["migrated"] == 13 and summary["makespan_s"] == table["end_s"].max()
    assert (folder / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_set_overrides_reach_the_plan(tmp_path, capsys):
    # one migration at a time: no two VMs' [start, end) overlap
    assert main(["evacuate", str(EXAMPLE), "--results", str(tmp_path), "--set", "plan.max_concurrent=1"]) == 0
    table = pd.read_parquet(tmp_path / "rack-a-drain" / "records.parquet").sort_values("slot_wait_s")
    assert (table["slot_wait_s"].to_numpy()[1:] >= table["end_s"].to_numpy()[:-1]).all()


def _bars(ax):
    """Each kind of bar's (left, bottom, right, top) boxes, by legend label."""
    return {c.get_label(): [tuple(p.get_extents().extents) for p in c.get_paths()]
            for c in ax.collections if c.get_label() in [*PHASES, "pause window"]}


def test_the_timeline_has_a_row_per_vm_with_its_phases_and_pause_window():
    records = simulate_fleet(load_fleet(EXAMPLE)).records
    fig = timeline_figure(records, "t")
    (ax,) = fig.axes
    bars = _bars(ax)
    assert list(bars) == [*PHASES, "pause window"]
    # every VM went through every phase, and each has a pause window
    assert all(len(bars[name]) == 13 for name in bars)
    by_start = sorted(records, key=lambda r: (r["slot_wait_s"], r["vm"]))
    assert [t.get_text() for t in ax.get_yticklabels()] == [r["vm"] for r in by_start]
    # the db's perform bar: row 12 (started last), from its start to its perform end, in fleet time
    db = by_start[12]
    left, bottom, right, top = bars["perform"][12]
    assert (bottom + top) / 2 == pytest.approx(12)
    assert left == pytest.approx(db["slot_wait_s"] + db["perform_start_s"])
    assert right == pytest.approx(db["slot_wait_s"] + db["perform_end_s"])
    left, _, right, _ = bars["pause window"][12]
    assert (left, right) == pytest.approx((db["pause_start_s"], db["pause_end_s"]))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sorted(legend) == sorted([*PHASES, "pause window", "stayed on source"])


def test_vms_that_stayed_on_their_source_are_crossed_out():
    # the overloaded switch of test_fleet: 3 fail in Finish (stopped, resumed on the source), 3 in
    # Prepare (never stopped, never reached Perform)
    records = simulate_fleet(two_host_fleet(QBH_TINY, count=6, switch=SLOW_SWITCH, src_mbit_s=10000)).records
    (ax,) = timeline_figure(records).axes
    bars = _bars(ax)
    assert len(bars["prepare"]) == 6 and len(bars["perform"]) == 3 and len(bars["pause window"]) == 3
    crosses = [c for c in ax.collections if c.get_label() == "stayed on source"]
    assert len(crosses) == 1 and len(crosses[0].get_offsets()) == 6
