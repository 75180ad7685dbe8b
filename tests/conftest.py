import math
import os
from pathlib import Path

import pytest
from hypothesis import settings

from pausecast.models.files import resolved_overheads, scenario_from_dict
from pausecast.models.scenario import Scenario

# CI explores the same examples every run, so a red build always reproduces
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# models/closed_form.py's worked example: 4 GiB, 10 Gbit/s = 1.25 GB/s, 250 MB/s distinct pages, 300 ms
WORKED_DIRTY_MIB_S = 250e6 / 2**20


def make(**sections) -> object:
    """A scenario from nested dicts, e.g. make(vm={"memory_mib": 64}, migration={...})."""
    return scenario_from_dict(sections)


def never(value: float) -> float:
    """Total time of a migration that never finishes compares as infinitely long."""
    return math.inf if math.isnan(value) else value


@pytest.fixture
def worked_example():
    return make(vm={"dirty": {"rate_mib_s": WORKED_DIRTY_MIB_S}}, overheads={"profile": "none"})


def fresh_testbed(bed, guest: str | None = None):
    """A module's testbed: brought up from nothing (whatever a crashed run left is taken down first),
    and down again after the module, its guest (if it names one) destroyed first. Use with
    `yield from`."""
    bed.down()
    bed.up()
    try:
        yield bed
    finally:
        if guest is not None:
            bed.destroy_guest(guest)
        bed.down()


def assert_source_keeps_running(tb, guest: str) -> None:
    """After a failed migration: the guest runs on the source, not on the destination, and is still
    making progress (its serial log's counters move on)."""
    import time

    import libvirt

    from pausecast.executor.testbed.guest_domain import read_progress
    from pausecast.executor.testbed.hosts import DST, SRC

    dom = tb.connect(SRC).lookupByName(guest)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    with pytest.raises(libvirt.libvirtError):
        tb.connect(DST).lookupByName(guest).isActive()
    before = read_progress(tb.serial_log(guest))[-1]
    time.sleep(1.5)  # the guest reports its progress every 1 s
    after = read_progress(tb.serial_log(guest))[-1]
    assert after.ms > before.ms and after.pages > before.pages


# the testbed the session's calibration runs on, its own so that no module's testbed is disturbed
CALIBRATION_STATE_DIR = Path("/var/lib/pausecast-testbed-calibration")


@pytest.fixture(scope="session")
def machine_overheads(tmp_path_factory) -> Path:
    """A profile measured on this machine, once per session (`pausecast calibrate --testbed`, the
    README's way): its fixed costs and its [link]. A calibration belongs to the machine it was measured
    on, so the testbed tests predict with this one, never with a profile from another machine:
    `on_this_machine` takes its fixed costs; a scenario naming it as [overheads] profile also takes
    its [link] where its own [link] is silent."""
    from pausecast.cli import main
    from pausecast.executor.testbed.hosts import Testbed

    out = tmp_path_factory.mktemp("calibration")
    profile = out / "overheads.toml"
    bed = Testbed(state_dir=CALIBRATION_STATE_DIR)
    bed.down()
    try:
        code = main(["calibrate", "--testbed", "--state-dir", str(CALIBRATION_STATE_DIR),
                     "--out", str(profile), "--results", str(out / "results")])
    finally:
        bed.down()
    assert code == 0, "calibrating this machine's testbed failed"
    return profile


def on_this_machine(scenario: Scenario, profile: Path) -> Scenario:
    """The scenario with its fixed costs from this machine's calibration."""
    return scenario.replace(overheads=resolved_overheads({"profile": str(profile)}, "overheads"))
