"""Pre-check advice: the searched boundaries are where the engine's verdict actually flips."""

import pytest

from pausecast.sim import predict
from pausecast.sim.advice import (
    bandwidth_for_convergence_mbit_s,
    converges,
    forced_alternatives,
    smallest_converging_downtime_ms,
)

from .conftest import make


def test_smallest_converging_downtime_is_the_boundary():
    # 4 GiB dirtying 1,500 MiB/s over 10 GbE (1,192 MiB/s): at 300 ms it never converges; with a
    # limit long enough to copy all of RAM at once (~3.6 s) it trivially does.
    s = make(vm={"dirty": {"rate_mib_s": 1500}})
    assert not converges(s)
    limit = smallest_converging_downtime_ms(s)
    assert limit is not None
    at = make(vm={"dirty": {"rate_mib_s": 1500}}, migration={"max_downtime_ms": limit})
    below = make(vm={"dirty": {"rate_mib_s": 1500}}, migration={"max_downtime_ms": limit * 0.98})
    assert converges(at) and not converges(below)
    assert limit <= 4096 / 1192 * 1000 * 1.01


def test_an_already_converging_vm_needs_no_more_than_it_has():
    s = make(vm={"dirty": {"rate_mib_s": 100}})
    assert converges(s)
    assert smallest_converging_downtime_ms(s) < 300


def test_bandwidth_for_convergence_lifts_the_cap_and_finds_the_boundary():
    s = make(vm={"dirty": {"rate_mib_s": 1500}}, migration={"bandwidth_mib_s": 100})
    mbit = bandwidth_for_convergence_mbit_s(s)
    assert mbit is not None
    # The cap (100 MiB/s) is lifted: the answer is far above it. It is a little below the 12,583 Mbit/s
    # of dirtying itself: pages re-dirtied while still pending are sent once, so with ~10% of RAM left
    # pending at each sync the effective ratio is 1,500 x 0.9 / rate, under 1 from ~11,400 Mbit/s.
    assert mbit > 11_000 and mbit < 12_583
    fast = make(vm={"dirty": {"rate_mib_s": 1500}}, link={"bandwidth_mbit_s": mbit})
    slow = make(vm={"dirty": {"rate_mib_s": 1500}}, link={"bandwidth_mbit_s": mbit * 0.98})
    assert converges(fast) and not converges(slow)


def test_forced_alternatives_trade_the_pause_window_for_degraded_running():
    s = make(vm={"dirty": {"rate_mib_s": 1500}})
    pause, post = forced_alternatives(s, after_s=30)
    assert pause.record.forced == "pause" and post.record.forced == "postcopy"
    assert post.record.pause_window_ms < pause.record.pause_window_ms
    assert predict(s).failure == "not-converged"


@pytest.mark.parametrize("rate", [0.0, 50.0])
def test_idle_vms_converge_at_the_smallest_limit_searched(rate):
    assert smallest_converging_downtime_ms(make(vm={"memory_mib": 256, "dirty": {"rate_mib_s": rate}})) == 1.0
