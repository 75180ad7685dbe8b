"""The results store: each kind of folder (sweep, evacuation, real run, validation report) written
through it reads back as the same records, with a manifest of the same keys."""

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest

from pausecast.analysis.validation import Comparison, verdict
from pausecast.cli.evacuate import write_results
from pausecast.models.files import scenario_from_dict
from pausecast.models.sweep import sweep_from_dict
from pausecast.runs.json_text import strict_json
from pausecast.runs.run_files import RUNS_TABLE, write_run
from pausecast.runs.store import (
    SWEEP_TABLE,
    json_text,
    read_document,
    read_manifest,
    read_table,
    write_folder,
)
from pausecast.runs.sweep import RunOptions, run_sweep
from pausecast.runs.validation_report import write_report
from pausecast.sim import predict
from pausecast.sim.fleet import simulate_fleet

from .test_fleet import two_host_fleet

# every manifest's keys, whatever its kind
COMMON_KEYS = {"format", "kind", "name", "created", "versions", "git", "scenario_ids", "tables", "files"}
TABLE_KEYS = {"files", "rows", "columns"}
SMALL = {"overheads": {"profile": "none"}, "vm": {"memory_mib": 256, "dirty": {"rate_mib_s": 50}}}


def check_manifest(root: Path, kind: str, tables: dict[str, int]) -> dict:
    """The manifest has the common keys; each table's entry lists files that exist, and its rows."""
    manifest = read_manifest(root)
    assert set(manifest) >= COMMON_KEYS and manifest["kind"] == kind
    assert {name: entry["rows"] for name, entry in manifest["tables"].items()} == tables
    for entry in manifest["tables"].values():
        assert set(entry) == TABLE_KEYS
    assert all((root / name).exists() for name in manifest["files"])
    assert set(manifest["git"]) == {"commit", "dirty"} and "pausecast" in manifest["versions"]
    return manifest


def test_a_sweep_reads_back_from_its_chunks(tmp_path):
    sweep = sweep_from_dict({"name": "tiny", "seed": 1, "base": SMALL, "replicates": 2,
                             "axes": [{"field": "link.bandwidth_mbit_s", "values": [1000, 10000]}]}, tmp_path)
    done = run_sweep(sweep, tmp_path / "tiny", RunOptions(workers=1, chunk_runs=3, progress=False))
    rows = read_table(done.root, SWEEP_TABLE)
    assert rows["run"].tolist() == [0, 1, 2, 3]
    manifest = check_manifest(done.root, "sweep", {SWEEP_TABLE: 4})
    assert manifest["tables"][SWEEP_TABLE]["columns"] == list(rows.columns)
    # a sweep's scenarios are its points: counted, not listed
    assert manifest["scenario_ids"] is None and manifest["points"] == 2


def test_an_evacuation_reads_back_as_its_records_and_summary(tmp_path):
    result = simulate_fleet(two_host_fleet(SMALL, count=3), seed=0)
    write_results(result, tmp_path / "drain", title="drain")
    expected = pd.DataFrame(result.records)
    pd.testing.assert_frame_equal(read_table(tmp_path / "drain", "records"), expected)
    assert read_document(tmp_path / "drain", "summary") == strict_json(result.summary)
    manifest = check_manifest(tmp_path / "drain", "evacuation", {"records": 3})
    assert manifest["scenario_ids"] == list(dict.fromkeys(expected["scenario_id"]))
    assert manifest["files"] == ["records.parquet", "records.csv", "summary.json", "timeline.png"]


def test_a_real_run_reads_back_as_its_record_and_its_row(tmp_path):
    from pausecast.executor.migration.migrate import Measurement

    record = dataclasses.replace(predict(scenario_from_dict(SMALL)), extra={"phases_from": "events"})
    folder = write_run(Measurement(record, (), (), (), t0_s=1_700_000_000.25), tmp_path)
    assert read_document(folder, "record") == strict_json({**record.to_row(), "extra": record.extra})
    assert read_document(folder, "raw")["t0_s"] == 1_700_000_000.25
    manifest = check_manifest(folder, "run", {})
    assert manifest["scenario_ids"] == [record.scenario_id]
    assert manifest["files"] == ["record.json", "raw.json"]
    # the shared table: one row per run, the record's columns and where its folder is
    row = read_table(tmp_path, Path(RUNS_TABLE).stem).iloc[0]
    assert row["scenario_id"] == record.scenario_id and row["run_dir"] == str(folder)
    assert row["total_time_s"] == pytest.approx(record.total_time_s)


def test_a_validation_report_reads_back_as_its_points_and_runs(tmp_path):
    predicted = predict(scenario_from_dict(SMALL))
    points = [{"point": 0, "values": "x=1", **Comparison(predicted, predicted).row()}]
    runs = [{"point": 0, "replicate": j, **Comparison(predicted, predicted).row()} for j in range(2)]
    out = tmp_path / "validation" / "tiny-1"
    written = write_report(out, "validation tiny", verdict(points), points, runs, ["a note"])
    for name, rows in (("table", points), ("runs", runs)):
        pd.testing.assert_frame_equal(read_table(out, name), pd.DataFrame(rows))
    manifest = check_manifest(out, "validation", {"table": 1, "runs": 2})
    assert written == [out / name for name in manifest["files"]]
    assert manifest["scenario_ids"] == [predicted.scenario_id] and manifest["notes"] == ["a note"]
    assert (out / "report.md").read_text().startswith("# validation tiny")


def test_whole_tables_read_back_from_csv_too_and_json_is_strict(tmp_path):
    rows = [{"scenario_id": "a", "x_ms": 1.5, "failure": ""}, {"scenario_id": "b", "x_ms": math.nan,
                                                                "failure": "timeout"}]
    write_folder(tmp_path, "evacuation", "t", tables={"t": rows}, formats=("csv",),
                 documents={"d": {"never": math.inf, "list": [math.nan, 1]}})
    back = read_table(tmp_path, "t")
    assert back["scenario_id"].tolist() == ["a", "b"] and back["failure"].tolist()[1] == "timeout"
    assert back["x_ms"].iloc[0] == 1.5 and math.isnan(back["x_ms"].iloc[1])
    assert read_document(tmp_path, "d") == {"never": None, "list": [None, 1]}
    assert json_text({"a": math.nan}, indent=None) == '{"a": null}\n'
    assert read_manifest(tmp_path)["scenario_ids"] == ["a", "b"]
