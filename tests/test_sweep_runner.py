"""The sweep runner: rows, engines, manifest, resume and CSV, all in this process."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pausecast.cli import main
from pausecast.models.fleet import fleet_from_dict
from pausecast.models.record import COLUMNS
from pausecast.models.sweep import load_sweep, sweep_from_dict
from pausecast.runs.store import ResultsStore, load_results
from pausecast.runs.sweep import RunOptions, run_sweep
from pausecast.sim import fast
from pausecast.sim.fleet import simulate_fleet

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IN_PROCESS = RunOptions(workers=1, progress=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


MIXED = """
name = "mixed"
seed = 5
replicates = 2
[base]
overheads = { profile = "none" }
vm = { memory_mib = 512, dirty = { rate_mib_s = 100 } }
[[axes]]
field = "port_profile.type"
values = ["none", "802.1Qbh"]
[[axes]]
field = "link.bandwidth_mbit_s"
values = [1000, 10000]
"""


def test_rows_follow_runs_and_engines_are_chosen_per_point(tmp_path):
    sweep = load_sweep(write(tmp_path, MIXED))
    done = run_sweep(sweep, tmp_path / "out", IN_PROCESS)
    rows = load_results(done.root)
    # 2 x 2 points x 2 replicates, run r = point 2p + replicate
    assert rows["run"].tolist() == list(range(8))
    assert rows["point"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert rows["replicate"].tolist() == [0, 1] * 4
    assert list(rows.columns) == ["run", "point", "replicate", "port_profile.type", "link.bandwidth_mbit_s",
                                  *COLUMNS]
    # no port profile: exact on the fast path; a port profile needs the switch, so the SimPy engine
    assert rows.groupby("port_profile.type")["engine"].unique().to_dict() == {
        "none": ["fast"], "802.1Qbh": ["sim"]}
    # replicate r has one seed at every point
    assert rows.groupby("replicate")["seed"].nunique().tolist() == [1, 1]
    assert rows["seed"].nunique() == 2


def test_fast_rows_equal_the_simpy_engines(tmp_path):
    sweep = load_sweep(write(tmp_path, MIXED))
    fast = load_results(run_sweep(sweep, tmp_path / "fast", IN_PROCESS).root)
    sim = load_results(run_sweep(sweep, tmp_path / "sim", RunOptions(workers=1, fast=False,
                                                                      progress=False)).root)
    assert (sim["engine"] == "sim").all()
    numbers = [c for c in COLUMNS if c not in ("engine", "scenario_id", "failure", "forced", "scenario_name")]
    pd.testing.assert_frame_equal(fast[numbers], sim[numbers], rtol=1e-9)
    assert fast["scenario_id"].tolist() == sim["scenario_id"].tolist()


def test_without_numba_every_run_goes_to_the_simpy_engine_and_the_manifest_says_so(tmp_path, monkeypatch,
                                                                                 capsys):
    monkeypatch.setattr(fast, "available", lambda: False)
    done = run_sweep(load_sweep(write(tmp_path, MIXED)), tmp_path / "out", IN_PROCESS)
    assert (load_results(done.root)["engine"] == "sim").all()
    assert json.loads((done.root / "manifest.json").read_text())["fast_path"] is False
    [note] = capsys.readouterr().err.splitlines()
    assert note == ("pausecast: numba not installed: sweeps run in the SimPy engine; "
                    "pip install 'pausecast[fast]' for the compiled fast path")


def test_manifest_records_what_the_results_depend_on(tmp_path):
    sweep = load_sweep(write(tmp_path, MIXED))
    done = run_sweep(sweep, tmp_path / "out", IN_PROCESS)
    manifest = json.loads((done.root / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["seed_entropy"] == 5 and manifest["seed_given"] is True
    assert manifest["definition"]["base"]["vm"]["memory_mib"] == 512
    # the resolved base: every field, the overheads profile's costs filled in
    assert manifest["definition"]["base"]["overheads"]["setup_ms"] == 0.0
    assert manifest["definition"]["axes"][0] == {"field": "port_profile.type", "kind": "values",
                                                 "values": ["none", "802.1Qbh"]}
    assert {"numpy", "pandas", "simpy", "pausecast", "python"} <= set(manifest["versions"])
    assert set(manifest["git"]) == {"commit", "dirty"}
    assert (manifest["points"], manifest["runs"]) == (4, 8)


def test_an_unseeded_sweep_records_its_entropy_and_resumes_with_it(tmp_path):
    path = write(tmp_path, MIXED.replace("seed = 5\n", ""))
    store = ResultsStore(tmp_path / "out")
    first = run_sweep(load_sweep(path), store.root, RunOptions(workers=1, chunk_runs=2, progress=False))
    entropy = first.manifest["seed_entropy"]
    assert entropy > 2**64  # SeedSequence's fresh entropy is 128 bits
    store.chunk_path(1).unlink()
    again = run_sweep(load_sweep(path), store.root,
                      RunOptions(workers=1, resume=True, progress=False))
    assert again.manifest["seed_entropy"] == entropy
    assert again.computed == 2


def test_resume_computes_only_missing_chunks_and_cleans_torn_files(tmp_path):
    sweep = load_sweep(write(tmp_path, MIXED))
    whole = load_results(run_sweep(sweep, tmp_path / "whole", IN_PROCESS).root)
    store = ResultsStore(tmp_path / "part")
    run_sweep(sweep, store.root, RunOptions(workers=1, chunk_runs=3, progress=False))
    store.chunk_path(1).unlink()
    torn = store.chunks / "part-000001.parquet.tmp-12345"
    torn.write_bytes(b"PAR1 half a file")
    done = run_sweep(sweep, store.root, RunOptions(workers=1, resume=True, progress=False))
    assert (done.runs, done.computed) == (8, 3)
    assert not torn.exists()
    pd.testing.assert_frame_equal(load_results(store.root), whole)


def test_existing_results_need_resume_and_the_same_sweep(tmp_path, capsys):
    path = write(tmp_path, MIXED)
    out = ["--workers", "1", "--results", str(tmp_path), "--no-plots", "--quiet"]
    assert main(["sweep", str(path), *out]) == 0
    assert main(["sweep", str(path), *out]) == 2
    assert "--resume" in capsys.readouterr().err
    path.write_text(MIXED.replace("[1000, 10000]", "[1000, 25000]"))
    assert main(["sweep", str(path), *out, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "definition differs" in err


def test_csv_export_holds_the_same_rows(tmp_path, capsys):
    path = write(tmp_path, MIXED)
    assert main(["sweep", str(path), "--workers", "1", "--results", str(tmp_path), "--csv", "--no-plots",
                 "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "mixed" / "results.csv", keep_default_na=False, na_values=[""])
    parquet = load_results(tmp_path / "mixed")
    assert len(table) == len(parquet) == 8
    assert table["pause_window_ms"].tolist() == pytest.approx(parquet["pause_window_ms"].tolist())


def test_a_sweep_draws_the_plots_its_axes_fit(tmp_path, capsys):
    path = write(tmp_path, MIXED.replace('field = "port_profile.type"\nvalues = ["none", "802.1Qbh"]',
                                         'field = "vm.dirty.rate_mib_s"\nvalues = [50, 400]'))
    assert main(["sweep", str(path), "--workers", "1", "--results", str(tmp_path), "--quiet"]) == 0
    drawn = sorted(p.name for p in (tmp_path / "mixed" / "plots").iterdir())
    # dirty rate x bandwidth: the convergence map; replicates: the cdf; no downtime axis: no curves
    assert drawn == ["cdf.png", "cdf.svg", "convergence-map.png", "convergence-map.svg"]


FLEET = """
name = "tiny-fleet"
seed = 2
[[axes]]
field = "plan.max_per_source_host"
values = [1, 2]
[fleet]
name = "pair"
links = { a-nic = { bandwidth_mbit_s = 10000 }, b-nic = { bandwidth_mbit_s = 10000 } }
hosts = { a = { links = ["a-nic"] }, b = { links = ["b-nic"] } }
profiles = { small = { vm = { memory_mib = 512, dirty = { rate_mib_s = 50 } } } }
[[fleet.vms]]
profile = "small"
count = 2
source = "a"
destination = "b"
"""


def test_a_fleet_sweep_has_a_row_per_vm_as_the_fleet_engine_gives(tmp_path):
    sweep = load_sweep(write(tmp_path, FLEET))
    rows = load_results(run_sweep(sweep, tmp_path / "out", IN_PROCESS).root)
    assert rows["run"].tolist() == [0, 0, 1, 1]
    assert rows["vm"].tolist() == ["small-1", "small-2"] * 2
    # the same evacuation by hand: the fleet with max_per_source_host = 2 and replicate 0's seed
    data = dict(sweep.fleet, plan={"max_per_source_host": 2})
    seed = int(np.random.SeedSequence(2).spawn(2)[1].spawn(1)[0].generate_state(1, np.uint64)[0]) >> 1
    expected = simulate_fleet(fleet_from_dict(data), seed=seed).records
    got = rows[rows["point"] == 1]
    assert got["seed"].tolist() == [seed, seed]
    assert got["pause_window_ms"].tolist() == [r["pause_window_ms"] for r in expected]
    # two at once share the NIC, so the second VM of the sequential plan finishes later
    first = rows[rows["point"] == 0]
    assert first["end_s"].max() > got["end_s"].max()
    assert all(math.isfinite(v) for v in rows["pause_window_ms"])


def test_results_dir_without_chunks_is_an_input_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_sweep_from_dict_resolves_paths_against_its_folder():
    sweep = sweep_from_dict({"base": "busy-database.toml", "axes": [{"field": "link.rtt_ms", "values": [1]}]},
                            base_dir=EXAMPLES)
    assert sweep.scenario.name == "busy-database"
