"""Properties every prediction must have, checked over random scenarios (Hypothesis)."""

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pausecast.models.switchover import CAP_BOUND_CHECK_INTERVAL_S
from pausecast.sim import predict

from .conftest import make

# QEMU checks the switchover condition on a 50-100 ms grid, so a faster link can land the switchover
# one check later than a slower one would: totals are monotone up to one check interval.
ONE_CHECK_S = CAP_BOUND_CHECK_INTERVAL_S

vm_sizes = st.floats(128, 16384)
dirty_rates = st.floats(0, 1500)
links = st.floats(500, 40000)
limits = st.floats(20, 2000)
rules = st.sampled_from(["qemu", "pass-end"])
ports = st.sampled_from(["none", "802.1Qbg", "802.1Qbh"])


def scenario(memory_mib, rate_mib_s, mbit_s, max_downtime_ms, rule, port="none", cap=0.0, zero=0.0):
    return make(vm={"memory_mib": memory_mib, "zero_page_fraction": zero,
                    "dirty": {"rate_mib_s": rate_mib_s}},
                link={"bandwidth_mbit_s": mbit_s},
                migration={"max_downtime_ms": max_downtime_ms, "switchover_rule": rule,
                           "bandwidth_mib_s": cap},
                port_profile={"type": port})


def total(r) -> float:
    return math.inf if r.failure == "not-converged" else r.total_time_s


@settings(max_examples=80)
@given(vm_sizes, dirty_rates, links, st.floats(1.01, 4), limits, rules)
def test_more_bandwidth_never_lengthens_the_migration(memory, rate, mbit_s, factor, limit, rule):
    slow = predict(scenario(memory, rate, mbit_s, limit, rule))
    fast = predict(scenario(memory, rate, mbit_s * factor, limit, rule))
    slack = ONE_CHECK_S if rule == "qemu" else 1e-9
    if slow.failure != "not-converged":
        assert fast.failure != "not-converged"
    assert total(fast) <= total(slow) + slack


@settings(max_examples=80)
@given(vm_sizes, dirty_rates, st.floats(1.01, 4), links, limits, rules)
def test_a_higher_dirty_rate_never_shortens_the_migration(memory, rate, factor, mbit_s, limit, rule):
    calm = predict(scenario(memory, rate, mbit_s, limit, rule))
    busy = predict(scenario(memory, rate * factor + 1, mbit_s, limit, rule))
    slack = ONE_CHECK_S if rule == "qemu" else 1e-9
    if busy.failure != "not-converged":
        assert calm.failure != "not-converged"
    assert total(busy) >= total(calm) - slack


@settings(max_examples=80)
@given(vm_sizes, dirty_rates, links, limits, rules, ports, st.floats(0, 0.95))
def test_windows_nest_and_every_written_page_is_sent(memory, rate, mbit_s, limit, rule, port, zero):
    r = predict(scenario(memory, rate, mbit_s, limit, rule, port, zero=zero))
    assume(r.failure != "not-converged")
    assert r.network_outage_ms >= r.pause_window_ms >= r.downtime_ms >= 0
    written_bytes = memory * 2**20 * (1 - zero)
    assert r.bytes_sent >= written_bytes * (1 - 1e-9)
    if port == "802.1Qbh":
        assert r.pause_window_ms >= r.downtime_ms + r.association_ms - 1e-9
        assert r.association_ms >= 125.0  # at least one of libvirt's polls


@settings(max_examples=60)
@given(vm_sizes, dirty_rates, links, limits, st.floats(8, 2000))
def test_the_uncapped_final_copy_keeps_qemu_downtime_within_the_limit(memory, rate, mbit_s, limit, cap):
    r = predict(make(vm={"memory_mib": memory, "dirty": {"rate_mib_s": rate}},
                     link={"bandwidth_mbit_s": mbit_s},
                     migration={"max_downtime_ms": limit, "bandwidth_mib_s": cap},
                     overheads={"profile": "none"}))
    assume(r.failure == "")
    # threshold = live rate x limit compares page bytes; the final copy runs at the line rate >= the
    # live rate, but also carries each page's 8-byte header (as QEMU's does)
    assert r.downtime_ms <= limit * 4104 / 4096 * (1 + 1e-9)


def test_more_bandwidth_can_lengthen_the_pause_window():
    # The issue asked for "more bandwidth never lengthens the pause window". It does not hold, for
    # QEMU or the textbook rule: the final pending set is whatever the last pass left under the
    # threshold, and a faster link raises the threshold and can skip a pass. By hand (pass-end):
    # 4 GiB, 100 MiB/s dirty, 300 ms. At 1,000 MiB/s: V1 = 409.6 MiB > 300 MiB, V2 = 40.96 MiB ->
    # ~41 ms. At 1,400 MiB/s: V1 = 292.6 MiB <= 420 MiB -> ~209 ms. What holds is the bound tested
    # above (QEMU downtime <= the limit) and monotone total time.
    def run(link_mib_s):
        return predict(make(vm={"dirty": {"rate_mib_s": 100}},
                            link={"bandwidth_mbit_s": link_mib_s * 2**20 * 8 / 1e6},
                            migration={"switchover_rule": "pass-end"}, overheads={"profile": "none"}))

    slow, fast = run(1000), run(1400)
    assert slow.downtime_ms == pytest.approx(40.96 * 4104 / 4096, rel=0.02)
    assert fast.downtime_ms == pytest.approx(4096 * (100 / 1400) / 1400 * 1000, rel=0.02)
    assert fast.pause_window_ms > slow.pause_window_ms
    assert fast.total_time_s < slow.total_time_s
