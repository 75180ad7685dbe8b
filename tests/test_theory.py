"""The model against theory: the closed form of the pass-end rule, and QEMU's rule traced by hand."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pausecast.models.closed_form import closed_form
from pausecast.models.files import scenario_from_dict
from pausecast.sim import predict, simulate

from .conftest import WORKED_DIRTY_MIB_S, make

GIB = 2**30


def test_closed_form_matches_design_worked_example():
    # By hand: V0 = 4.295 GB in 3.436 s, V1 = 0.859 GB in 0.687 s, V2 = 0.172 GB <= 0.375 GB
    r = closed_form(4 * GIB, 1.25e9, 250e6, 0.300)
    assert r.converged and r.iterations == 2
    assert r.precopy_time_s == pytest.approx(3.436 + 0.687, abs=0.002)
    assert r.downtime_s == pytest.approx(0.137, abs=0.001)
    assert r.bytes_sent == pytest.approx(4 * GIB * (1 + 0.2 + 0.04), rel=1e-9)


def test_closed_form_never_converges_when_dirtying_outpaces_the_link():
    assert not closed_form(4 * GIB, 1e9, 1.2e9, 0.3).converged
    # ...unless all of RAM fits in the downtime budget in the first place
    assert closed_form(0.2e9, 1e9, 1.2e9, 0.3).converged


def _pass_end(worked) -> object:
    return worked.replace(migration=worked.migration.__class__(switchover_rule="pass-end"))


def test_pass_end_engine_matches_closed_form_on_the_worked_example(worked_example):
    r = predict(_pass_end(worked_example))
    c = closed_form(4 * GIB, 1.25e9, 250e6, 0.300)
    assert r.converged and r.failure == ""
    assert r.total_time_s == pytest.approx(c.total_time_s, rel=0.01)
    assert r.downtime_ms == pytest.approx(c.downtime_s * 1000, rel=0.01)
    assert r.bytes_sent == pytest.approx(c.bytes_sent, rel=0.01)
    # setup sync + one per drained pass (n = 2) + the completion sync
    assert r.iterations == c.iterations + 2


@settings(max_examples=60, deadline=None)
@given(memory_mib=st.floats(64, 65536), bandwidth_mbit_s=st.floats(100, 100000),
       rho=st.floats(0.0, 0.9), max_downtime_ms=st.floats(10, 5000))
def test_pass_end_engine_matches_closed_form_everywhere(memory_mib, bandwidth_mbit_s, rho, max_downtime_ms):
    rate_bytes_s = bandwidth_mbit_s * 1e6 / 8
    s = make(vm={"memory_mib": memory_mib, "dirty": {"rate_mib_s": rho * rate_bytes_s / 2**20}},
             link={"bandwidth_mbit_s": bandwidth_mbit_s, "rtt_ms": 0.0},
             migration={"switchover_rule": "pass-end", "max_downtime_ms": max_downtime_ms},
             overheads={"profile": "none"})
    r = predict(s)
    # The engine charges QEMU's 8-byte header per 4,096-byte page; near rho = 0.9 and over dozens of
    # passes that compounds past 1%. The closed form is exact for the payload rate, so give it that;
    # QEMU's threshold, though, is its measured (wire) rate x the limit, against payload bytes
    # pending: stretch the limit so the closed form's threshold is that same product.
    payload = 4096 / 4104
    c = closed_form(memory_mib * 2**20, rate_bytes_s * payload, rho * rate_bytes_s,
                    max_downtime_ms / 1000 / payload)
    assert r.total_time_s == pytest.approx(c.total_time_s, rel=0.01)
    assert r.bytes_sent * payload == pytest.approx(c.bytes_sent, rel=0.01)
    # setup sync + one per drained pass + completion sync
    assert r.iterations == c.iterations + 2
    assert r.downtime_ms == pytest.approx(c.downtime_s * 1000, rel=0.01, abs=0.01)


def test_pass_end_boundary_case_found_by_hypothesis():
    # 64 MiB at 100 Mbit/s, 50 ms: V1 = 623.3 kB sits between the payload-rate threshold (623.8 kB)
    # and the wire-rate one (625.0 kB). QEMU compares against the wire rate: one pass suffices.
    s = make(vm={"memory_mib": 64, "dirty": {"rate_mib_s": 0.009286726250775403 * 12.5e6 / 2**20}},
             link={"bandwidth_mbit_s": 100, "rtt_ms": 0.0},
             migration={"switchover_rule": "pass-end", "max_downtime_ms": 50}, overheads={"profile": "none"})
    assert predict(s).iterations == 3


def test_qemu_rule_follows_the_hand_derived_trajectory(worked_example):
    # By hand (QEMU's rule), in 4 KiB pages: each 50 ms check sends 62.5 MB = 15,229.04 pages
    # of 4,096 + 8 bytes; the threshold is 375 MB = 91,552.7 pages.
    # Check 63 (t = 3.15 s) is the first under it: 1,048,576 - 63 x 15,229.04 = 89,146.5 left.
    #   Sync: 250 MB/s x 3.15 s = 192,260.7 pages dirtied, 91.50% of them not pending: 265,062.1.
    # 12 checks later (t = 3.75 s): 82,313.6 left; 36,621.1 dirtied x 92.15% new: 116,059.9.
    # 2 checks later (t = 3.85 s): 85,601.8 left; 6,103.5 x 91.84% new: 91,207.0 < 91,552.7: stop.
    # Final copy: 91,207.0 x 4,104 B = 374.3 MB at 1.25 GB/s = 299.45 ms.
    # Iterations: setup + 3 + completion = 5.
    prediction = simulate(worked_example)
    r = prediction.record
    live_start = r.perform_start_s + r.setup_time_ms / 1000
    syncs = [e.t_s - live_start for e in prediction.events if e.name == "sync"][1:]
    assert syncs == pytest.approx([3.15, 3.75, 3.85], abs=1e-6)
    assert r.iterations == 5
    assert r.precopy_time_s == pytest.approx(3.85, abs=1e-6)
    assert r.downtime_ms == pytest.approx(299.45, abs=0.05)
    # Under QEMU's rule the total lands within ~3% of the pass-end total, the downtime near
    # the limit (about twice the pass-end one)
    pass_end = closed_form(4 * GIB, 1.25e9, 250e6, 0.300)
    assert r.total_time_s == pytest.approx(pass_end.total_time_s, rel=0.03)
    assert 0.9 * 300 <= r.downtime_ms <= 300


def test_capped_live_phase_checks_every_rate_limit_window_and_copies_the_rest_uncapped():
    # 256 MiB = 65,536 pages, idle, capped at 32 MiB/s on a 10 GbE link: the cap binds, so QEMU
    # checks every 100 ms; each check moves 3.2 MiB / 4,104 B = 817.6 pages; the threshold is
    # 32 MiB/s x 0.3 s = 9.6 MiB = 2,457.6 pages. Check floor((65,536 - 2,457.6) / 817.6) + 1 = 78
    # (t = 7.8 s) finds 1,763 pages left; nothing was dirtied, so QEMU stops and sends them at the
    # uncapped link rate: 1,763 x 4,104 B / 1.25 GB/s = 5.79 ms.
    s = make(vm={"memory_mib": 256, "dirty": {"rate_mib_s": 0}}, migration={"bandwidth_mib_s": 32},
             overheads={"profile": "none"})
    r = predict(s)
    assert r.precopy_time_s == pytest.approx(7.8, abs=1e-9)
    assert r.iterations == 3  # setup, the one under-threshold check, completion: an idle VM shows 3
    left_pages = 65536 - 78 * (32 * 2**20 * 0.1 / 4104)
    assert r.downtime_ms == pytest.approx(left_pages * 4104 / 1.25e9 * 1000, rel=1e-9)


def test_zero_pages_cost_only_a_header():
    # 1 GiB, 90% zero, idle, 1 Gbit/s: 26,214 data pages x 4,104 B + 235,930 zero pages x 9 B
    # (pass-end rule: one whole pass, so every page is counted once)
    s = make(vm={"memory_mib": 1024, "zero_page_fraction": 0.9, "dirty": {"rate_mib_s": 0}},
             link={"bandwidth_mbit_s": 1000}, migration={"switchover_rule": "pass-end"},
             overheads={"profile": "none"})
    r = predict(s)
    pages = 1024 * 256
    expected_bytes = pages * 0.1 * 4104 + pages * 0.9 * 9
    assert r.bytes_sent == pytest.approx(expected_bytes, rel=1e-9)
    assert r.precopy_time_s == pytest.approx(expected_bytes / 125e6, rel=1e-9)


def test_rate_above_bandwidth_never_converges_without_timeout():
    s = scenario_from_dict({"vm": {"dirty": {"rate_mib_s": 2000}}})
    r = predict(s)
    assert not r.converged and r.failure == "not-converged"
    assert math.isinf(r.total_time_s)


def test_worked_example_dirty_rate_constant_is_250_mb_s():
    assert pytest.approx(250e6) == WORKED_DIRTY_MIB_S * 2**20


def test_written_low_sends_the_data_then_the_zero_pages_and_first_syncs_on_an_empty_bitmap():
    # By hand, QEMU's walk in address order: 256 MiB = 65,536 pages, the 32,768 written ones low and
    # the 32,768 zero ones above; 8 MiB/s = 2,048 pages/s dirtied; capped at 64 MiB/s on 10 GbE, so a
    # check every 100 ms moving 6,710,886.4 B; threshold 64 MiB/s x 0.3 s = 4,915.2 pages.
    # The first pass: 32,768 x 4,104 B of data, then 32,768 x 9 B of zero pages = 134,774,784 B,
    # drained at t = 2.00830 s. The estimate (pages, zero or not) falls under the threshold only once
    # all the data and 27,852.8 zero pages have gone (134,730,547.2 B, check 21 at 2.1 s): the bitmap is
    # empty first, and the loop that finds it so returns at once. That sync finds the pages dirtied
    # meanwhile, all new: 2,048 x 2.00830 = 4,113.0 pages < 4,915.2: stop, 3 iterations.
    # Final copy: 4,113.0 x 4,104 B uncapped at 1.25 GB/s = 13.50 ms.
    sections = {"vm": {"memory_mib": 256, "zero_page_fraction": 0.5, "zero_page_layout": "written-low",
                       "dirty": {"rate_mib_s": 8.0}},
                "migration": {"bandwidth_mib_s": 64}, "overheads": {"profile": "none"}}
    prediction = simulate(make(**sections))
    r = prediction.record
    drained_s = (32768 * 4104 + 32768 * 9) / (64 * 2**20)
    assert drained_s == pytest.approx(2.00830, abs=1e-5)
    live_start = r.perform_start_s + r.setup_time_ms / 1000
    syncs = [e for e in prediction.events if e.name == "sync"][1:]
    assert [e.t_s - live_start for e in syncs] == pytest.approx([drained_s], abs=1e-9)
    dirtied = 2048 * drained_s
    assert syncs[0].detail == f"iteration 2: {dirtied * 4096 / 2**20:.1f} MiB"
    assert r.iterations == 3
    assert r.downtime_ms == pytest.approx(dirtied * 4104 / 1.25e9 * 1000, rel=1e-9)
    assert r.bytes_sent == pytest.approx(32768 * 4104 + 32768 * 9 + dirtied * 4104, rel=1e-12)
    # Spread, the same VM: each check moves 6,710,886.4 / 2,056.5 B = 3,263.3 pages; check 19 (1.9 s)
    # leaves 3,534.0 pages, 1,767.0 of them data; 3,891.2 dirtied x (1 - 1,767.0 / 32,768) = 3,681.4
    # new: 7,215.4 pending > 4,915.2, so QEMU goes on.
    sections["vm"]["zero_page_layout"] = "spread"
    spread = simulate(make(**sections))
    first = next(e for e in spread.events if e.name == "sync" and e.detail.startswith("iteration 2"))
    assert first.t_s - live_start == pytest.approx(1.9, abs=1e-9)
    assert first.detail == f"iteration 2: {7215.4 * 4096 / 2**20:.1f} MiB"
    assert spread.record.iterations > 3
