"""Auto-converge (models/auto_converge.py) against QEMU 7.2's rule worked by hand, in the engine, its
fields and their validation, and the fast path's hand-off. Expected values come from the rule's
arithmetic in the comments, never from the code's output."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pausecast.models import auto_converge as ac
from pausecast.models.errors import ScenarioError
from pausecast.models.scenario import Scenario
from pausecast.sim import fast
from pausecast.sim.engine import predict, simulate

from .conftest import make

MIB = 2**20


def test_the_throttle_schedule_is_qemus_rule_worked_by_hand():
    # the module docstring's example: syncs every 2 s, each sending 64 MiB (threshold 50 %: 32 MiB);
    # a sweep dirtying 64 MiB/s of guest time sets 2 x 64 x (1 - pct) MiB of new pages per period.
    # Every period is over 32 MiB while 128 (1 - pct) > 32, i.e. pct < 75; the count fires on every
    # second period: 20 % at 4 s, +10 every 4 s, 80 % at 28 s, which dirties 25.6 MiB a period: no more
    params, state = ac.AutoConverge(), ac.Throttle()
    schedule = []
    for k in range(1, 21):
        dirtied = 2 * 64 * (1 - state.pct / 100) * MIB
        state = ac.after_sync(params, state, 2.0 * k, dirtied, 64 * MIB * k)
        schedule.append(state.pct)
    assert schedule == [0, 20, 20, 30, 30, 40, 40, 50, 50, 60, 60, 70, 70, 80] + [80] * 6
    assert state.peak_pct == 80 and state.since_s == 4.0


def test_a_sync_within_a_second_of_the_periods_start_only_adds_to_the_period():
    # migration_bitmap_sync: end_time > time_last_bitmap_sync + 1000, else the counters carry on. Syncs
    # at 0.6 s and 1.2 s: the first adds 10 MiB to the period, the second closes it with 10 + 10 = 20
    # MiB dirtied against 50 % of 30 MiB sent = 15 MiB: over, count 1, no throttle yet
    params = ac.AutoConverge()
    s1 = ac.after_sync(params, ac.Throttle(), 0.6, 10 * MIB, 15 * MIB)
    assert (s1.period_dirty_bytes, s1.period_start_s, s1.high_count) == (10 * MIB, 0.0, 0)
    s2 = ac.after_sync(params, s1, 1.2, 10 * MIB, 30 * MIB)
    assert (s2.high_count, s2.pct, s2.period_start_s, s2.period_start_bytes) == (1, 0, 1.2, 30 * MIB)
    # exactly 1 s later is not "more than 1000 ms": the period goes on
    s3 = ac.after_sync(params, s2, 2.2, 1 * MIB, 31 * MIB)
    assert s3.period_start_s == 1.2 and s3.period_dirty_bytes == 1 * MIB


def test_a_period_under_the_trigger_does_not_reset_the_count():
    # migration_trigger_throttle only increments dirty_rate_high_cnt; the second period over the
    # threshold fires, with periods under it between them
    params, state = ac.AutoConverge(), ac.Throttle()
    for k, dirtied_mib in enumerate((40, 10, 10, 40), start=1):
        state = ac.after_sync(params, state, 2.0 * k, dirtied_mib * MIB, 64 * MIB * k)
    assert state.pct == 20 and state.high_count == 0


@pytest.mark.parametrize(("now", "dirty", "threshold", "expected"), [
    # tailslow: cpu_now = 60, cpu_ideal = (uint64) 60 x 80/100 = 48, step min(12, 10) = 10
    (40, 100, 80, 50),
    # cpu_ideal = (uint64) 60 x 0.95 = 57: step 3
    (40, 100, 95, 43),
    # cpu_now = 15, cpu_ideal = (uint64) 15 x 0.9 = 13 (13.5 truncated): step 2
    (85, 100, 90, 87),
])
def test_tailslow_steps_towards_the_share_that_meets_the_threshold(now, dirty, threshold, expected):
    params = ac.AutoConverge(tailslow=True)
    assert ac.raised_pct(params, now, dirty * MIB, threshold * MIB) == expected


def test_the_throttle_starts_at_initial_and_stops_at_the_max():
    params = ac.AutoConverge(initial_pct=35, increment_pct=30, max_pct=90)
    assert ac.raised_pct(params, 0, 2.0, 1.0) == 35
    assert ac.raised_pct(params, 65, 2.0, 1.0) == 90
    # cpu_throttle_set's clamp: never past 99, whatever max-cpu-throttle says
    assert ac.raised_pct(ac.AutoConverge(increment_pct=99), 90, 2.0, 1.0) == 99


def test_an_initial_throttle_over_the_max_falls_to_the_max_at_the_next_rise():
    # QEMU 7.2 checks each parameter's range alone: cpu_throttle_set(pct_initial) is not held to
    # max-cpu-throttle, the next rise is MIN(throttle + increment, max)
    params = ac.AutoConverge(initial_pct=50, max_pct=30)
    assert ac.raised_pct(params, 0, 2.0, 1.0) == 50
    assert ac.raised_pct(params, 50, 2.0, 1.0) == 30


def test_a_throttled_guest_runs_on_a_slower_clock():
    clock = ac.GuestClock()
    assert clock.guest_s(3.0) == 3.0
    clock.set_pct(4.0, 20)   # from 4 s the guest keeps 80 % of its time
    clock.set_pct(9.0, 50)   # 4-9 s: 4 s of guest time; from 9 s on half
    assert clock.guest_s(4.0) == 4.0
    assert clock.guest_s(9.0) == pytest.approx(8.0)
    assert clock.guest_s(13.0) == pytest.approx(10.0)
    assert ac.running_fraction(60) == pytest.approx(0.4)


def _live_syncs(events):
    """(seconds into the live phase, event) of each sync and throttle change."""
    live_start = next(e.t_s for e in events if e.name == "sync")
    return [(e.t_s - live_start, e) for e in events if e.name in ("sync", "throttle")]


def test_the_engine_throttles_a_saturated_sweep_on_qemus_schedule():
    # 64 MiB written, swept at 128 MiB/s, sent at a 32 MiB/s cap, textbook pass-end syncs: each pass
    # sends 16,384 pages of 4,104 bytes (4096 + 8 of header) in T = 16384 x 4104 / (32 x 2^20) =
    # 2.00390625 s, and while 128 (1 - pct) MiB/s x T >= 64 MiB every pass refills the whole bitmap:
    # 64 MiB new, over 50 % of the 64.1 MiB sent. Every pass closes a period (T > 1 s): 20 % at 2T,
    # then +10 every 2T while pct <= 75: 80 % at 14T
    s = make(vm={"memory_mib": 64, "dirty": {"rate_mib_s": 128, "pattern": "sweep"}},
             migration={"bandwidth_mib_s": 32, "switchover_rule": "pass-end", "auto_converge": True},
             overheads={"profile": "none"})
    p = simulate(s)
    t = 16384 * 4104 / (32 * MIB)
    changes = [(round(at / t, 6), e.detail) for at, e in _live_syncs(p.events) if e.name == "throttle"]
    assert changes[:7] == [(2.0 * k, f"{10 + 10 * k} %") for k in range(1, 8)]
    r = p.record
    assert r.converged and r.throttle_peak_pct >= 80
    # throttled from 2T until the guest stopped
    assert r.throttle_time_s == pytest.approx(r.precopy_time_s - 2 * t, abs=1e-9)
    # without auto-converge the same VM never converges: the sweep refills its bitmap every pass
    plain = predict(s.replace(migration=dataclasses.replace(s.migration, auto_converge=False)))
    assert plain.failure == "not-converged" and plain.throttle_peak_pct == 0


def test_a_hot_set_the_throttle_cannot_slow_enough_ends_at_the_max_not_converging():
    # an 8 MiB hot set rewritten at 4,000 MiB/s: even at 99 % the guest rewrites it at 40 MiB/s, so
    # every sync finds again every hot page sent since the last one (new dirty bytes = bytes sent, over
    # 50 %): the throttle climbs to 99 % and stays; the 8 MiB never fit the 3.2 MiB threshold (32 MiB/s
    # x 100 ms). QEMU would throttle it for ever
    s = make(vm={"memory_mib": 512, "dirty": {"model": "hotcold", "hot_set_mib": 8, "hot_rate_mib_s": 4000,
                                             "cold_rate_mib_s": 2}},
             migration={"bandwidth_mib_s": 32, "max_downtime_ms": 100, "auto_converge": True})
    r = predict(s)
    assert r.failure == "not-converged" and r.throttle_peak_pct == 99 and r.throttle_time_s == math.inf


def test_fields_default_to_qemus_and_change_no_id():
    m = Scenario().migration
    assert (m.auto_converge, m.auto_converge_initial_pct, m.auto_converge_increment_pct,
            m.max_cpu_throttle_pct, m.throttle_trigger_threshold_pct, m.cpu_throttle_tailslow) == (
        False, 20, 10, 99, 50, False)
    # the README's id of the bundled default scenario, from before these fields existed
    assert Scenario().scenario_id == "f8ab01df200a"
    spelled = make(migration={"auto_converge": False, "auto_converge_initial_pct": 20,
                              "max_cpu_throttle_pct": 99, "cpu_throttle_tailslow": False})
    assert spelled.scenario_id == Scenario().scenario_id
    assert make(migration={"auto_converge": True}).scenario_id != Scenario().scenario_id


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("auto_converge_initial_pct", 0, "allowed range [1, 99]"),
    ("auto_converge_increment_pct", 100, "allowed range [1, 99]"),
    ("max_cpu_throttle_pct", 100, "allowed range [1, 99]"),
    ("throttle_trigger_threshold_pct", 0, "allowed range [1, 100]"),
    ("auto_converge_initial_pct", 20.5, "expected an integer"),
    ("auto_converge", 1, "expected true or false"),
])
def test_out_of_range_values_are_one_line_naming_the_field(field, value, allowed):
    with pytest.raises(ScenarioError) as err:
        make(migration={field: value})
    assert str(err.value).startswith(f"migration.{field} = ") and allowed in str(err.value)


def test_the_fast_path_leaves_auto_converge_to_the_engine():
    s = make(migration={"auto_converge": True})
    assert not fast.eligible(fast.inputs(s, {}))
    assert fast.eligible(fast.inputs(make(), {}))
    with pytest.raises(ValueError, match="auto-converge"):
        fast.predict_many([s])


@settings(max_examples=60, deadline=None)
@given(period_s=st.floats(0.05, 5.0), dirty_mib=st.floats(0.0, 200.0), sent_mib=st.floats(0.0, 200.0),
       params=st.builds(ac.AutoConverge, initial_pct=st.integers(1, 99), increment_pct=st.integers(1, 99),
                        max_pct=st.integers(1, 99), trigger_threshold_pct=st.integers(1, 100),
                        tailslow=st.booleans()))
def test_the_throttle_never_falls_stays_in_range_and_rises_at_most_every_second_period(
        period_s, dirty_mib, sent_mib, params):
    assume(params.initial_pct <= params.max_pct)
    state, rises, periods, previous = ac.Throttle(), 0, 0, 0
    for k in range(1, 40):
        before = state.period_start_s
        state = ac.after_sync(params, state, period_s * k, dirty_mib * MIB, sent_mib * MIB * k)
        periods += state.period_start_s != before
        assert previous <= state.pct <= ac.PCT_MAX and state.peak_pct == max(previous, state.pct)
        rises += state.pct > previous
        previous = state.pct
    assert rises <= periods // ac.PERIODS_TO_FIRE


@settings(max_examples=25, deadline=None)
@given(memory_mib=st.sampled_from((64.0, 256.0, 1024.0)), rate_mib_s=st.floats(1.0, 400.0),
       cap_mib_s=st.sampled_from((0.0, 32.0, 128.0)), pattern=st.sampled_from(("random", "sweep")))
def test_an_unthrottled_run_is_plain_pre_copy_to_the_bit(memory_mib, rate_mib_s, cap_mib_s, pattern):
    # auto-converge changes nothing until the throttle first rises; a run it throttled is frozen no
    # longer than it ran live, and its guest is throttled for no longer than the live phase
    s = make(vm={"memory_mib": memory_mib, "zero_page_fraction": 0.25,
                 "dirty": {"rate_mib_s": rate_mib_s, "pattern": pattern}},
             link={"bandwidth_mbit_s": 1000}, migration={"bandwidth_mib_s": cap_mib_s})
    plain = predict(s)
    on = predict(s.replace(migration=dataclasses.replace(s.migration, auto_converge=True)))
    if on.throttle_peak_pct == 0:
        assert dataclasses.replace(on, scenario_id=plain.scenario_id) == plain
    else:
        assert ac.AutoConverge().initial_pct <= on.throttle_peak_pct <= ac.PCT_MAX
        assert 0 < on.throttle_time_s <= on.precopy_time_s
        if plain.converged:
            assert on.converged
        assert on.throttle_time_s == math.inf or on.converged


def test_the_precheck_advice_says_what_auto_converge_would_do():
    from pausecast.analysis.precheck import advice

    # the testbed test's VM: 64 MiB written swept at 48 MiB/s behind a 32 MiB/s cap never converges;
    # the advice's auto-converge line is the engine's own prediction with auto-converge on
    s = make(vm={"memory_mib": 128, "zero_page_fraction": 0.5,
                 "dirty": {"rate_mib_s": 48, "pattern": "sweep"}},
             link={"bandwidth_mbit_s": 1000, "efficiency": 0.955},
             migration={"bandwidth_mib_s": 32}, overheads={"profile": "none"})
    plain = predict(s)
    assert plain.failure == "not-converged"
    said = advice(s, plain, alternative_after_s=30.0)
    throttled = predict(s.replace(migration=dataclasses.replace(s.migration, auto_converge=True)))
    assert throttled.converged and said["auto_converge"]["converged"]
    assert said["auto_converge"]["throttle_peak_pct"] == throttled.throttle_peak_pct > 0
    assert said["lines"][-1].startswith("auto-converge (virsh --auto-converge): converges after "
                                        f"{throttled.precopy_time_s:.1f} s of pre-copy with the throttle up "
                                        f"to {throttled.throttle_peak_pct} %")


def test_predict_prints_the_throttle(capsys):
    from pausecast.cli import main
    from pausecast.models import load_scenario

    example = str(Path(__file__).parent.parent / "examples" / "never-converges.toml")
    assert main(["predict", example, "--set", "migration.auto_converge=true"]) == 0
    s = load_scenario(example)
    r = predict(s.replace(migration=dataclasses.replace(s.migration, auto_converge=True)))
    assert (f"auto-converge    throttle up to {r.throttle_peak_pct} %, the guest slowed for "
            f"{r.throttle_time_s:.1f} s") in capsys.readouterr().out
