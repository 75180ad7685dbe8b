"""A sweep's processes and files after the worst endings: its main process killed (SIGKILL runs no
cleanup) or terminated (SIGTERM), and a resume over chunks that are damaged or not its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pausecast.cli import main
from pausecast.runs.store import ResultsStore, load_results
from pausecast.runs.sweep import SAME_SWEEP_KEYS

# SimPy runs of ~10 ms each (a switch under Poisson load needs the engine), in chunks of 5
SWEEP = """
name = "hygiene"
seed = 4
replicates = {replicates}
[base]
vm = {{ memory_mib = 256 }}
port_profile = {{ type = "802.1Qbh" }}
switch = {{ service_time_ms = 20.0, service_distribution = "exponential" }}
[[axes]]
field = "switch.background_load_per_s"
values = [5, 10, 15, 20]
"""
COMMON = ["--chunk-runs", "5", "--no-plots", "--quiet"]


def _sweep_file(tmp_path: Path, replicates: int) -> Path:
    path = tmp_path / f"sweep-{replicates}.toml"
    path.write_text(SWEEP.format(replicates=replicates))
    return path


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (the forkserver, the resource tracker, the workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    # a zombie has exited; only its parent's wait is missing (init reaps it)
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    return {pid for pid in pids if running(pid)}


def _start(sweep: Path, results: Path) -> tuple[subprocess.Popen, set[int]]:
    """A `--workers 2` sweep, once it has written two chunks, and the processes it started."""
    proc = subprocess.Popen([sys.executable, "-m", "pausecast", "sweep", str(sweep), "--workers", "2",
                             "--results", str(results), *COMMON],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = ResultsStore(results / "hygiene")
    deadline = time.monotonic() + 120
    while len(store.done_chunks()) < 2:
        assert proc.poll() is None, "the sweep ended before it could be stopped"
        assert time.monotonic() < deadline, "no chunk written in 120 s"
        time.sleep(0.01)
    helpers = _descendants(proc.pid)
    # two workers, the forkserver that forked them and multiprocessing's resource tracker
    assert len(helpers) >= 4, helpers
    return proc, helpers


def _gone_within(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pids)


def test_sigkill_of_the_main_process_leaves_no_process_behind(tmp_path):
    proc, helpers = _start(_sweep_file(tmp_path, 3000), tmp_path / "res")
    proc.send_signal(signal.SIGKILL)  # the main process alone, as the OOM killer would
    proc.wait(timeout=30)
    proc.stderr.close()
    assert _gone_within(helpers, 10.0) == set()


def test_sigterm_is_one_line_exit_143_and_keeps_what_was_written(tmp_path):
    sweep = _sweep_file(tmp_path, 3000)
    proc, helpers = _start(sweep, tmp_path / "res")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines() == ["pausecast: terminated (SIGTERM)"]
    assert _gone_within(helpers, 10.0) == set()
    store = ResultsStore(tmp_path / "res" / "hygiene")
    kept = store.done_chunks()
    assert kept and all(pq.read_metadata(store.chunk_path(i)).num_rows == 5 for i in kept)
    assert not [p for p in store.chunks.iterdir() if ".tmp-" in p.name]


def _whole_and_damaged(tmp_path: Path) -> tuple[Path, ResultsStore, pd.DataFrame]:
    sweep = _sweep_file(tmp_path, 15)  # 60 runs, 12 chunks
    assert main(["sweep", str(sweep), "--workers", "1", "--results", str(tmp_path / "a"), *COMMON]) == 0
    store = ResultsStore(tmp_path / "a" / "hygiene")
    return sweep, store, load_results(store.root)


def test_resume_computes_a_truncated_or_altered_chunk_again(tmp_path, capsys):
    sweep, store, whole = _whole_and_damaged(tmp_path)
    truncated = store.chunk_path(3)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    # a chunk whose footer and rows are fine but whose bytes are not those written
    altered = pq.read_table(store.chunk_path(7)).to_pandas()
    altered["pause_window_ms"] += 1.0
    key = store.read_manifest()["sweep_key"]
    store.write_chunk(7, altered, key)
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--workers", "1", "--results", str(tmp_path / "a"), "--resume",
                 *COMMON]) == 0
    err = capsys.readouterr().err
    assert "part-000003.parquet: unreadable" in err and "computing it again" in err
    assert "part-000007.parquet: its bytes differ from those written" in err
    pd.testing.assert_frame_equal(load_results(store.root), whole)


def test_resume_refuses_a_chunk_of_another_sweep(tmp_path, capsys):
    sweep, store, _ = _whole_and_damaged(tmp_path)
    other = tmp_path / "other.toml"
    other.write_text(SWEEP.format(replicates=15).replace("seed = 4", "seed = 5"))
    assert main(["sweep", str(other), "--workers", "1", "--results", str(tmp_path / "b"), *COMMON]) == 0
    foreign = ResultsStore(tmp_path / "b" / "hygiene").chunk_path(2)
    store.chunk_path(2).write_bytes(foreign.read_bytes())
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--workers", "1", "--results", str(tmp_path / "a"), "--resume",
                 *COMMON]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "part-000002.parquet" in err[0] and "a chunk of another sweep" in err[0]


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the poll fallback is what runs there")
def test_a_worker_watches_its_main_process_through_a_pidfd():
    from pausecast.runs import lifeline

    # a process that has exited already: the worker would end at once, without a thread
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    child = subprocess.run([sys.executable, "-c", f"from pausecast.runs.lifeline import die_with; "
                            f"die_with({done.pid}); print('still here')"], capture_output=True, text=True)
    assert (child.returncode, child.stdout) == (lifeline.ORPHANED_EXIT, "")


def test_resume_over_a_manifest_that_is_not_a_sweeps_is_one_line(tmp_path, capsys):
    sweep = _sweep_file(tmp_path, 1).read_text().replace("seed = 4\n", "")
    (tmp_path / "noseed.toml").write_text(sweep)
    folder = tmp_path / "res" / "hygiene"
    folder.mkdir(parents=True)
    for text, why in (("{}", "is not a sweep's manifest (no definition"),
                      ('{"kind": "evacuation"}', "is not a sweep's manifest"),
                      (json.dumps({"kind": "evacuation", **dict.fromkeys(SAME_SWEEP_KEYS)}), "evacuation's")):
        (folder / "manifest.json").write_text(text)
        assert main(["sweep", str(tmp_path / "noseed.toml"), "--results", str(tmp_path / "res"), "--resume",
                     *COMMON]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err


def test_a_sweep_whose_ids_are_of_an_earlier_scheme_is_not_resumed(tmp_path, capsys):
    # a table mixing two schemes' ids would join nothing with either: refused, the chunks kept
    sweep = _sweep_file(tmp_path, 1)
    results = tmp_path / "res"
    assert main(["sweep", str(sweep), "--results", str(results), *COMMON]) == 0
    manifest_path = results / "hygiene" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["id_scheme"] == 2
    del manifest["id_scheme"]
    manifest_path.write_text(json.dumps(manifest))
    chunks = sorted((results / "hygiene" / "chunks").iterdir())
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--results", str(results), "--resume", *COMMON]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scenario ids of scheme 1" in err[0] and "scheme 2" in err[0], err
    assert sorted((results / "hygiene" / "chunks").iterdir()) == chunks
