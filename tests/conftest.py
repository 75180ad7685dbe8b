import math
import os

import pytest
from hypothesis import settings

from pausecast.models.scenario import scenario_from_dict

# CI explores the same examples every run, so a red build always reproduces
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# DESIGN.md's worked example: 4 GiB, 10 Gbit/s = 1.25 GB/s, 250 MB/s distinct pages, 300 ms
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


def fresh_testbed(bed, guest: str):
    """A module's testbed: brought up from nothing (whatever a crashed run left is taken down first),
    and down again after the module, its guest destroyed first. Use with `yield from`."""
    bed.down()
    bed.up()
    try:
        yield bed
    finally:
        bed.destroy_guest(guest)
        bed.down()
