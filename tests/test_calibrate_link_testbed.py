"""`pausecast calibrate --testbed` fits this machine's link ([link] efficiency and sender_mib_s, the
final copy's own efficiency and sender rate, socket_backlog_mib) from real runs, and the fit makes a
held-out point's prediction closer to its real run than the defaults do: a busy guest on a 300 Mbit/s
tbf link, uncapped (link-bound: its pause drains the socket's backlog, and its stream gets the link's
rate x efficiency), a rate the calibration never ran at. Root only; about a minute (3 idle runs, 4
link runs, one more below the sender where it bound the shaped link's live phase: the session's
calibration, conftest.py `machine_overheads`), then the held-out run. The profile is this machine's
own: nothing measured elsewhere is trusted."""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root (namespaces, mounts, veth)"),
]

STATE_DIR = Path("/var/lib/pausecast-testbed-calibrate-link-pytest")
HELD_OUT = """
name = "held-out-link-bound"
[vm]
memory_mib = 256
zero_page_fraction = 0.5
[vm.dirty]
rate_mib_s = 19.53125
pattern = "sweep"
[link]
bandwidth_mbit_s = 300
rtt_ms = 0.05
[migration]
max_downtime_ms = 300
[overheads]
profile = "{profile}"
"""


@pytest.fixture(scope="module")
def calibrated(machine_overheads):
    """The session's calibration (conftest.py `machine_overheads`: `pausecast calibrate --testbed`)
    and the held-out point run on a testbed of this module's own."""
    from pausecast.executor.testbed.hosts import Testbed
    from pausecast.executor.testbed.run import run_on_testbed
    from pausecast.models.files import scenario_from_toml

    bed = Testbed(state_dir=STATE_DIR, bandwidth_mbit_s=1000)
    held_out = scenario_from_toml(HELD_OUT.format(profile=machine_overheads))
    bed.down()
    bed.up()
    try:
        measured = run_on_testbed(bed, held_out).record
    finally:
        bed.down()
    return machine_overheads, held_out, measured


def test_the_profile_carries_the_fitted_link_with_its_spreads(calibrated):
    profile, _, _ = calibrated
    data = tomllib.loads(profile.read_text())
    link, fit = data["link"], data["measured"]["link_fit"]
    # tbf gives a TCP stream most of its rate, never more: 0.87-0.96 live where it bound the stream,
    # 0.83-0.92 to a stop-and-copy (link_fit.py)
    assert 0.8 < link["efficiency"] <= 1.0
    assert 0.7 < link["final_copy_efficiency"] <= 1.0
    assert link["socket_backlog_mib"] >= 0.0
    assert link["sender_mib_s"] > 0.0
    # the veth's stop-and-copy, the guest stopped, outran the 1000 Mbit/s link's (300-780 MiB/s here)
    assert link["final_copy_sender_mib_s"] > 125.0
    assert not fit["not_fitted"] and fit["rows"] >= 8
    assert all(math.isfinite(v) and v >= 0 for v in fit["standard_error"].values())


def test_the_fitted_link_predicts_a_held_out_link_bound_point_better_than_the_defaults(calibrated):
    from pausecast.models.record import Measured
    from pausecast.models.scenario import LinkSpec
    from pausecast.models.units import mbit_s_to_bytes_s, mib_s_to_bytes_s
    from pausecast.sim import predict

    profile, held_out, measured = calibrated
    assert measured.migrated and not measured.failure
    fitted = predict(held_out)
    defaults = predict(held_out.replace(link=LinkSpec(bandwidth_mbit_s=300, rtt_ms=0.05)))
    # the backlog (1.3-1.8 MiB seen with `ss`) is a small share of a 26-31 MiB final copy: its
    # standard error is larger than it, and a fit may clamp it to 0; the efficiency is what binds here
    assert held_out.link.efficiency < 1.0
    for field in ("pause_window_ms", "final_copy_ms", "precopy_time_s", "total_time_s"):
        got, before, after = (getattr(r, field) for r in (measured, defaults, fitted))
        print(f"{field}: measured {got:.4g}, defaults {before:.4g}, fitted {after:.4g}")
    # the link-bound pause: what the fitted stop-and-copy rate and backlog are for
    got, before, after = (r.pause_window_ms for r in (measured, defaults, fitted))
    assert abs(after - got) < abs(before - got)
    # the live stream's share of this link, as QEMU measured it in the held-out run, within two
    # standard errors of the fitted efficiency. (Not the pre-copy time: at rho = 0.6 it moves 2.6 times
    # as much as the efficiency does, and the share moved by 0.885-0.96 between runs at 300-320 Mbit/s.)
    share = mib_s_to_bytes_s(Measured.of(measured).stream_mib_s) / mbit_s_to_bytes_s(300)
    error = tomllib.loads(profile.read_text())["measured"]["link_fit"]["standard_error"]["efficiency"]
    print(f"the stream's share of the link: measured {share:.3f}, fitted {held_out.link.efficiency:.3f} "
          f"+- {error:.3f}")
    assert abs(share - held_out.link.efficiency) <= 2 * error
