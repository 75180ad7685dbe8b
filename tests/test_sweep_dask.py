"""A real Dask scheduler and two workers on the loopback run a sweep: the table is local mode's."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pausecast.cli import main
from pausecast.runs.store import load_results

distributed = pytest.importorskip("distributed")

# fast-path points (no port profile) and SimPy ones (a switch under Poisson load), 3 replicates
SWEEP = """
name = "on-dask"
seed = 4
replicates = 3
[base]
vm = { memory_mib = 512, dirty = { rate_mib_s = 80 } }
switch = { service_time_ms = 30.0, service_distribution = "exponential", background_load_per_s = 10.0 }
[[axes]]
field = "port_profile.type"
values = ["none", "802.1Qbg", "802.1Qbh"]
[[axes]]
field = "link.bandwidth_mbit_s"
values = [1000, 10000, 25000]
"""


@pytest.fixture
def cluster(tmp_path):
    """`dask scheduler` and two `dask worker`s on 127.0.0.1, as separate processes."""
    address_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(address_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not address_file.exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, "the scheduler did not start"
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written whole, but let its writer close it
        address = json.loads(address_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(subprocess.Popen([*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                           "--nworkers", "1", "--no-dashboard"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            assert len(client.scheduler_info()["workers"]) == 2
        yield address
    finally:
        # they hold no state worth a graceful stop
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)


def test_a_dask_cluster_gives_the_local_table(cluster, tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP)
    common = ["--chunk-runs", "4", "--no-plots", "--quiet"]
    for where, mode in (("dask", ["--scheduler", cluster]), ("local", ["--workers", "2"])):
        assert main(["sweep", str(sweep), *mode, "--results", str(tmp_path / where), *common]) == 0
    on_dask = load_results(tmp_path / "dask" / "on-dask")
    local = load_results(tmp_path / "local" / "on-dask")
    assert len(on_dask) == 27
    assert set(on_dask["engine"]) == {"fast", "sim"}
    pd.testing.assert_frame_equal(on_dask, local)


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP)
    # a port nothing listens on, on the loopback
    assert main(["sweep", str(sweep), "--scheduler", "tcp://127.0.0.1:9", "--results", str(tmp_path),
                 "--no-plots", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--scheduler" in err


def test_a_fleet_sweep_with_a_failing_uplink_on_dask_gives_the_local_table(cluster, tmp_path):
    # each run is one evacuation (examples/evacuation-uplink-down.toml: an uplink down for a minute),
    # one chunk, one task on a worker; the rows (one per VM) come back and only this process writes
    example = Path(__file__).resolve().parents[1] / "examples" / "evacuation-uplink-down.toml"
    sweep = tmp_path / "fleet-sweep.toml"
    sweep.write_text(f'name = "uplink-plans"\nfleet = "{example}"\nseed = 2\n'
                     '[[axes]]\nfield = "plan.max_per_source_host"\nvalues = [1, 2]\n'
                     '[[axes]]\nfield = "links.rack-a-up.bandwidth_mbit_s"\nvalues = [20000, 40000]\n')
    for where, mode in (("dask", ["--scheduler", cluster]), ("local", ["--workers", "1"])):
        assert main(["sweep", str(sweep), *mode, "--results", str(tmp_path / where), "--no-plots",
                     "--quiet"]) == 0
    on_dask = load_results(tmp_path / "dask" / "uplink-plans")
    local = load_results(tmp_path / "local" / "uplink-plans")
    assert len(on_dask) == 4 * 48
    assert (on_dask["failure"] == "connection-lost").any()
    pd.testing.assert_frame_equal(on_dask, local)
