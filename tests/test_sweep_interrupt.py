"""A sweep killed for real in the middle, then resumed, gives the table of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq

from pausecast.cli import main
from pausecast.runs.store import ResultsStore, load_results

# 300 SimPy runs of ~10 ms (a switch under Poisson load needs the engine and a warm-up), in chunks of 5
SWEEP = """
name = "interrupted"
seed = 9
replicates = 75
[base]
vm = { memory_mib = 256 }
port_profile = { type = "802.1Qbh" }
switch = { service_time_ms = 20.0, service_distribution = "exponential" }
[[axes]]
field = "switch.background_load_per_s"
values = [5, 10, 15, 20]
"""
CHUNKS = 300 // 5


def test_sigkill_mid_sweep_then_resume_gives_the_uninterrupted_table(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP)
    common = ["--chunk-runs", "5", "--no-plots", "--quiet"]
    killed = ResultsStore(tmp_path / "killed" / "interrupted")
    # the default local processes, in their own process group so the test can kill all of them
    proc = subprocess.Popen([sys.executable, "-m", "pausecast", "sweep", str(sweep), "--workers", "2",
                             "--results", str(tmp_path / "killed"), *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(killed.done_chunks()) < 2:
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "no chunk written in 120 s"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = killed.done_chunks()
    assert 2 <= len(done) < CHUNKS, "killed mid-run: some chunks, not all"
    # whatever was on disk is whole: every chunk file reads
    assert all(pq.read_table(killed.chunk_path(i)).num_rows == 5 for i in done)

    assert main(["sweep", str(sweep), "--workers", "2", "--results", str(tmp_path / "killed"), "--resume",
                 *common]) == 0
    assert main(["sweep", str(sweep), "--workers", "1", "--results", str(tmp_path / "whole"), *common]) == 0
    resumed = load_results(killed.root)
    whole = load_results(tmp_path / "whole" / "interrupted")
    assert len(resumed) == 300
    pd.testing.assert_frame_equal(resumed, whole)
    assert not [p for p in killed.chunks.iterdir() if ".tmp-" in p.name]
