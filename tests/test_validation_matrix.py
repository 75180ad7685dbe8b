"""The validation matrix runner (pausecast/runs/matrix.py) on a stand-in target whose "real" runs are
the simulator's own records: the points, the runs written, cold starts left out, the report."""

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest

from pausecast.models.errors import ScenarioError
from pausecast.runs.matrix import Watch, load_matrix, measure, run_matrix, spread
from pausecast.runs.store import read_manifest, read_table
from pausecast.sim import predict

MATRIX = """
name = "tiny"
replicates = 2
[base]
overheads = { profile = "none" }
vm = { memory_mib = 256, dirty = { rate_mib_s = 50 } }
[[axes]]
field = "migration.max_downtime_ms"
values = [100.0, 300.0]
[[axes]]
field = "port_profile.type"
values = ["none"]
"""


class Quiet:
    def __call__(self, t_s, info):
        pass

    def finish(self, migrated):
        self.migrated = migrated


class Replay:
    """Runs a scenario by predicting it; `slow_begin_s` makes the first run a cold start."""

    describe = "a stand-in"
    testbed = None

    def __init__(self, slow_begin_s=0.0):
        self.slow_begin_s, self.ran = slow_begin_s, []

    def run(self, scenario, on_sample):
        from pausecast.executor.migration.migrate import Measurement

        record = predict(scenario)
        if self.slow_begin_s and not self.ran:
            record = dataclasses.replace(record, begin_end_s=record.begin_start_s + self.slow_begin_s)
        self.ran.append(scenario.name)
        return Measurement(record, (), (), (), t0_s=1_700_000_000.0 + len(self.ran))


def matrix_file(tmp_path: Path, text: str = MATRIX) -> str:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return str(path)


def test_the_points_are_the_sweeps_grid_named_and_labelled(tmp_path):
    matrix = load_matrix(matrix_file(tmp_path))
    assert [p.label for p in matrix.points] == ["max_downtime_ms=100, port_profile.type=none",
                                                "max_downtime_ms=300, port_profile.type=none"]
    assert [p.scenario.name for p in matrix.points] == ["tiny-0", "tiny-1"]
    assert [p.scenario.migration.max_downtime_ms for p in matrix.points] == [100.0, 300.0]
    assert matrix.replicates == 2


def test_a_matrix_has_no_sampled_axes(tmp_path):
    sampled = MATRIX + '[[axes]]\nfield = "vm.dirty.rate_mib_s"\nsample = { low = 10, high = 50 }\n' \
                       '[sampling]\nsamples = 2\n'
    with pytest.raises(ScenarioError, match="axes of values"):
        load_matrix(matrix_file(tmp_path, sampled))


def test_the_matrix_runs_every_point_and_writes_the_report(tmp_path):
    said = []
    target = Replay()
    report = run_matrix(load_matrix(matrix_file(tmp_path)), target, 2, tmp_path, Watch(said.append, Quiet))
    assert target.ran == ["tiny-0", "tiny-0", "tiny-1", "tiny-1"]
    assert said[0] == "point 1/2: max_downtime_ms=100, port_profile.type=none"
    # prediction against itself: every verdict right, no error
    assert report.verdict.met and all(p["verdict_right"] for p in report.points)
    assert [p["total_time_s_error"] for p in report.points] == [0.0, 0.0]
    assert [(r["point"], r["replicate"]) for r in report.runs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert report.folder.parent == tmp_path / "validation" and report.folder.name.startswith("tiny-")
    pd.testing.assert_frame_equal(read_table(report.folder, "table"), pd.DataFrame(report.points))
    assert read_manifest(report.folder)["met"] is True
    # each real run has its folder and its row
    assert len(list((tmp_path / "runs").iterdir())) == 4
    assert len(read_table(tmp_path, "runs")) == 4


def test_a_cold_start_is_run_and_written_but_left_out_of_the_median(tmp_path):
    said = []
    scenario = load_matrix(matrix_file(tmp_path)).points[0].scenario
    used = measure(Replay(slow_begin_s=5.0), scenario, 3, tmp_path, "p", Watch(said.append, Quiet))
    assert len(used) == 2 and len(read_table(tmp_path, "runs")) == 3
    assert any("run 1 left out of the median, a cold start: Begin" in line for line in said)


def test_spread_is_the_range_over_the_median():
    assert spread([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert math.isnan(spread([1.0])) and math.isnan(spread([math.nan, 2.0]))
