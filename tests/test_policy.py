"""The orchestrators' policies (models/policy/): each schedule against the orchestrator's own worked
example or its source's numbers, worked by hand here; the engine's mid-migration downtime change
against a hand-worked case; the [policy] section's one-line errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pausecast.models import policy as pol
from pausecast.models.errors import ScenarioError
from pausecast.models.files import scenario_from_toml
from pausecast.models.policy import kubevirt, nova, ovirt, proxmox
from pausecast.models.policy.common import Observation
from pausecast.models.scenario import Scenario
from pausecast.sim import predict, simulate

GIB_MIB = 1024.0


def _polls(module, settings, state, times_s, remaining=lambda t: 1e9, iteration=lambda t: 1):
    """The loop's actions at the given elapsed times: [(t, Action)] where it did something."""
    out = []
    for t in times_s:
        obs = Observation(t, iteration(t), remaining(t), 1e6 * (1 + t))
        state, action = module.poll(settings, state, obs)
        if not math.isnan(action.downtime_ms) or action.deadline:
            out.append((t, action))
    return out, state


# ----------------------------------------------------------------------------------------- Nova

def test_nova_steps_for_a_4_gib_vm_are_the_issues_worked_example():
    # 4 GiB: 50 ms at 0 s, then +45 ms every 300 s up to 500 ms; completion timeout 800 x 4 = 3,200 s
    data = nova.data_gb(4 * GIB_MIB)
    assert data == 4.0
    assert nova.downtime_steps(nova.Settings(), data) == [(300 * i, 50 + 45 * i) for i in range(11)]
    assert nova.completion_timeout_s(nova.Settings(), data) == 3200


def test_nova_steps_match_its_own_docstring_example():
    # nova/virt/libvirt/migration.py: 10 steps, 30 s delay, 3 GB, 400 ms: every 90 s 40, 76, ... 400 ms
    s = nova.Settings(live_migration_downtime=400, live_migration_downtime_delay=30)
    assert nova.downtime_steps(s, 3.0) == [
        (0, 40), (90, 76), (180, 112), (270, 148), (360, 184), (450, 220), (540, 256), (630, 292),
        (720, 328), (810, 364), (900, 400)]


def test_nova_counts_at_least_2_gib():
    # driver.py _live_migration_data_gb: a 512 MiB flavor counts as 2 GiB
    assert nova.data_gb(512) == 2.0
    assert nova.completion_timeout_s(nova.Settings(), nova.data_gb(512)) == 1600


def test_nova_loop_sets_each_step_on_the_first_poll_past_it_and_aborts_past_the_timeout():
    s = nova.Settings()
    state, _ = nova.initial(s, 4 * GIB_MIB, 300.0)
    acted, _ = _polls(nova, s, state, [k * 0.5 for k in range(1, 6403)])
    downtimes = [(t, a.downtime_ms) for t, a in acted if not math.isnan(a.downtime_ms)]
    # update_downtime: elapsed > the step's time, on polls every 0.5 s
    assert downtimes == [(0.5, 50.0)] + [(300 * i + 0.5, 50.0 + 45 * i) for i in range(1, 11)]
    # abort_job at the first pass past 3,200 s (and again at each pass until the job has gone)
    assert next((t, a.deadline) for t, a in acted if a.deadline) == (3200.5, "abort")


def test_nova_force_complete_pauses_on_the_next_pass_or_switches_to_postcopy_when_permitted():
    for permit, expected in ((False, "pause"), (True, "postcopy")):
        s = nova.Settings(live_migration_timeout_action="force_complete",
                          live_migration_permit_post_copy=permit)
        state, _ = nova.initial(s, 4 * GIB_MIB, 300.0)
        acted, _ = _polls(nova, s, state, [3200.0, 3200.5, 3201.0])
        # the timeout queues the task at 3,200.5 s; run_tasks runs it at the start of the next pass
        assert [(t, a.deadline) for t, a in acted if a.deadline] == [(3201.0, expected)]


# ------------------------------------------------------------------------------------- KubeVirt

def test_kubevirt_completion_time_counts_decimal_gigabytes_rounded_up():
    # 4 GiB = 4.295e9 bytes: ScaledValue(Giga) = 5, so 150 x 5 = 750 s; 2 GiB = 2.147e9 -> 3 -> 450 s
    assert kubevirt.initial(kubevirt.Settings(), 4 * GIB_MIB, 300.0)[0].acceptable_completion_s == 750
    assert kubevirt.initial(kubevirt.Settings(), 2 * GIB_MIB, 300.0)[0].acceptable_completion_s == 450


def test_kubevirt_aborts_past_the_completion_time_in_whole_seconds():
    s = kubevirt.Settings()
    state, _ = kubevirt.initial(s, 4 * GIB_MIB, 300.0)
    times = [k * 0.4 for k in range(1, 2000)]
    # remaining falls at every poll: progress, so only the completion time ends it
    acted, _ = _polls(kubevirt, s, state, times, remaining=lambda t: 1e10 - t)
    # int(elapsed) > 750: the first poll at 751 s or later, 751.2 s on a 0.4 s grid
    assert next((round(t, 1), a.deadline) for t, a in acted) == (751.2, "abort")


def test_kubevirt_with_post_copy_switches_and_without_disruption_pauses_then_doubles():
    state, _ = kubevirt.initial(kubevirt.Settings(allowPostCopy=True), 4 * GIB_MIB, 300.0)
    acted, _ = _polls(kubevirt, kubevirt.Settings(allowPostCopy=True), state, [751.0],
                      remaining=lambda t: 1.0)
    assert [a.deadline for _, a in acted] == ["postcopy"]
    s = kubevirt.Settings(allowWorkloadDisruption="true")
    state, _ = kubevirt.initial(s, 4 * GIB_MIB, 300.0)
    acted, state = _polls(kubevirt, s, state, [751.0, 1500.0, 1501.0], remaining=lambda t: 1e10 - t)
    # suspend, and acceptableCompletionTime *= 2: abort past 1,500 s
    assert [(t, a.deadline) for t, a in acted] == [(751.0, "pause"), (1501.0, "abort")]


def test_kubevirt_aborts_a_migration_stuck_for_the_progress_timeout():
    s = kubevirt.Settings()
    state, _ = kubevirt.initial(s, 64 * GIB_MIB, 300.0)
    # remaining never falls after the first poll at 1 s: stuck for more than 150 s at 152 s
    acted, _ = _polls(kubevirt, s, state, [float(t) for t in range(1, 200)], remaining=lambda t: 5e9)
    assert next((t, a.deadline) for t, a in acted) == (152.0, "abort")


# ---------------------------------------------------------------------------------------- oVirt

def test_ovirt_exponential_downtime_by_hand():
    # offset 500/5 = 100, base 400^(1/4) = 4.4721: int(100 + 1), int(100 + 4.47), int(100 + 20),
    # int(100 + 89.44), int(100 + 400)
    assert ovirt.exponential_downtime(500, 5) == [101, 104, 120, 189, 500]
    assert ovirt.exponential_downtime(500, 1) == [500]


def test_ovirt_legacy_schedule_takes_one_action_per_poll_past_each_limit():
    s = ovirt.Settings()
    state, init_ms = ovirt.initial(s, 4 * GIB_MIB, 300.0)
    assert init_ms == 101.0
    # two iterations between polls every 10 s, counted from the first poll's (at 10 s: 2)
    times = [10.0 * k for k in range(1, 40)]
    acted, _ = _polls(ovirt, s, state, times, iteration=lambda t: int(t / 5))
    # since the first poll: 2, 4, 6, ... iterations; limits 1, 2, 3, 4 < those at 20, 30, 40, 50 s;
    # limit 42 < 44 at 230 s; then abort (limit -1) at the next poll with a new iteration
    assert [(t, a.downtime_ms if not a.deadline else a.deadline) for t, a in acted] == [
        (20.0, 104.0), (30.0, 120.0), (40.0, 189.0), (50.0, 500.0), (230.0, 500.0), (240.0, "abort")]


# -------------------------------------------------------------------------------------- Proxmox

def test_proxmox_doubles_after_six_polls_that_saw_the_remaining_rise():
    s = proxmox.Settings()
    state, start_ms = proxmox.initial(s, 4 * GIB_MIB, 300.0)
    assert start_ms == 100.0  # migrate_downtime 0.1 s
    # remaining rises at every poll: the counter passes 5 at the 6th rise (poll 7: the first has no
    # previous value), and again 6 rises later
    acted, _ = _polls(proxmox, s, state, [float(t) for t in range(1, 20)], remaining=lambda t: 1e8 + t)
    assert [(t, a.downtime_ms) for t, a in acted] == [(7.0, 200.0), (13.0, 400.0), (19.0, 800.0)]


def test_proxmox_caps_at_qemus_2000_s():
    assert proxmox.increase(1_500_000.0) == 2_000_000.0
    s = proxmox.Settings(migrate_downtime=2000)
    state, start_ms = proxmox.initial(s, 4 * GIB_MIB, 300.0)
    assert start_ms == 2_000_000.0 and not proxmox.may_act(s, state)


# ------------------------------------------------------------------------------ the SimPy engine

# a 1 GiB guest with a 100 MiB hot set rewritten at 2000 MiB/s, 10 Gbit/s, the pass-end rule, no fixed
# costs: every pass resends the hot set (100 MiB x 4104/4096 on the wire = 105,062,400 B: 84.05 ms),
# and its estimate 104,857,600 B is above 50 ms x 1.25e9 B/s = 62.5e6 B but below 95 ms's 118.75e6 B
STALLED_HOT_SET = """
name = "hot-set"
[vm]
memory_mib = 1024
[vm.dirty]
model = "hotcold"
hot_set_mib = 100
hot_rate_mib_s = 2000
[link]
bandwidth_mbit_s = 10000
rtt_ms = 0.0
[migration]
max_downtime_ms = 50
switchover_rule = "pass-end"
[overheads]
profile = "none"
"""


# the first pass sends the whole GiB, each later pass the hot set, both on the wire with headers
FIRST_PASS_S = 1024 * 2**20 * 4104 / 4096 / 1.25e9


def _nova(toml: str, **settings) -> str:
    lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
    return toml + f'[policy]\norchestrator = "nova"\ntime_scale = {SCALE}\n[policy.nova]\n{lines}'


SCALE = 0.25


def test_a_downtime_step_mid_migration_lets_the_next_pass_converge_by_hand():
    plain = scenario_from_toml(STALLED_HOT_SET)
    assert predict(plain).failure == "not-converged"
    # Nova, live_migration_downtime_delay 3: a 1 GiB VM counts 2 GiB, so a step every int(3 x 2) = 6 s
    # of Nova's clock: 50 ms, then 95 ms at the first poll past 6 s. Nova's clock runs 4 times faster
    # (time_scale 0.25): polls every 0.125 s, and 95 ms at 6.5 / 4 = 1.625 s
    p = simulate(scenario_from_toml(_nova(STALLED_HOT_SET, live_migration_downtime_delay=3)))
    changes = [(e.t_s, e.detail) for e in p.events if e.name == "max downtime"]
    assert changes[:2] == [(pytest.approx(0.125), "nova: 50 ms"), (pytest.approx(1.625), "nova: 95 ms")]
    # passes end at FIRST_PASS_S + k x 84.05 ms, each sync bringing back the whole hot set; the one
    # under way at 1.625 s is k = 10 (0.8607 + 9 x 0.08405 = 1.617 s < 1.625 s), and its sync finds the
    # hot set's 104.9e6 B below 95 ms's 118.75e6 B: the guest stops, and the hot set is the final copy
    hot_pass_s = 105_062_400 / 1.25e9
    stop_s = next(e.t_s for e in p.events if e.name == "stop")
    assert stop_s == pytest.approx(FIRST_PASS_S + 10 * hot_pass_s, abs=1e-9)
    assert p.record.converged and p.record.failure == ""
    assert p.record.downtime_ms == pytest.approx(hot_pass_s * 1000, rel=1e-9)


def test_nova_force_complete_pauses_the_guest_and_the_pause_window_is_the_rest_of_the_copy():
    # a 200 MiB hot set: 209.7e6 B stays above every step's threshold (at most 100 ms: 125e6 B)
    toml = STALLED_HOT_SET.replace("hot_set_mib = 100", "hot_set_mib = 200")
    toml += ('[policy]\norchestrator = "nova"\n[policy.nova]\nlive_migration_downtime = 100\n'
             'live_migration_completion_timeout = 1\nlive_migration_timeout_action = "force_complete"\n')
    p = simulate(scenario_from_toml(toml))
    r = p.record
    # completion timeout int(1 x 2) = 2 s: past it at the 2.5 s poll, which queues force-complete; the
    # 3.0 s poll runs it: the guest is paused at 3.0 s. Hot passes of 200 MiB x 4104/4096 / 1.25e9 =
    # 168.1 ms end at 0.8607 + k x 0.1681 s: the 13th at 3.0458 s, whose sync still brings back the
    # hot set (dirtied before the pause); the 14th pass at 3.2139 s finds nothing new: stop, and the
    # destination runs at once (no fixed costs). The pause window is 3.0 s -> 3.2139 s.
    hot_pass_s = 200 * 2**20 * 4104 / 4096 / 1.25e9
    assert (r.converged, r.forced, r.failure) == (True, "pause", "")
    assert next(e.t_s for e in p.events if e.name == "timeout") == pytest.approx(3.0)
    assert r.pause_window_ms == pytest.approx((FIRST_PASS_S + 14 * hot_pass_s - 3.0) * 1000, rel=1e-9)


def test_a_policy_leaves_the_fast_path_and_no_policy_keeps_every_id():
    from pausecast.sim import fast

    base = Scenario()
    columns = fast.inputs(base, {})
    assert bool(fast.eligible(columns))
    nova_scenario = base.replace(policy=pol.PolicySpec(orchestrator="nova"))
    assert not bool(fast.eligible(fast.inputs(nova_scenario, {})))
    # [policy] absent is the default: the id is the one without the section
    assert scenario_from_toml('[policy]\norchestrator = "none"\n').scenario_id == Scenario().scenario_id
    assert nova_scenario.scenario_id != base.scenario_id


# ------------------------------------------------------------------------------------ the errors

@pytest.mark.parametrize(("toml", "field", "allowed"), [
    ('[policy]\norchestrator = "vmware"', "policy.orchestrator", "allowed: none | nova | kubevirt"),
    ('[policy]\norchestrator = "nova"\n[policy.nova]\nlive_migration_downtime = 50',
     "policy.nova.live_migration_downtime", "allowed range [100, inf)"),
    ('[policy]\norchestrator = "nova"\n[policy.nova]\nlive_migration_timeout_action = "pause"',
     "policy.nova.live_migration_timeout_action", "allowed: abort | force_complete"),
    ('[policy]\norchestrator = "nova"\n[policy.kubevirt]\nprogressTimeout = 10',
     "policy.kubevirt.progressTimeout", "but policy.orchestrator is 'nova'"),
    ('[policy]\norchestrator = "kubevirt"\n[policy.kubevirt]\ncompletionTimeoutPerGib = 10',
     "policy.kubevirt.completionTimeoutPerGib", "unknown key; valid keys: completionTimeoutPerGiB"),
    ('[policy]\ntime_scale = 0.00001', "policy.time_scale", "at least 0.001"),
])
def test_policy_errors_name_the_field_the_value_and_what_is_allowed(toml, field, allowed):
    with pytest.raises(ScenarioError) as err:
        scenario_from_toml(toml)
    assert err.value.field == field
    assert allowed in err.value.allowed
    assert "\n" not in str(err.value)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_predict_names_the_policy_and_refuses_a_bad_setting_in_one_line(capsys):
    from pausecast.cli import main

    example = str(EXAMPLES / "never-converges.toml")
    assert main(["predict", example, "--set", "policy.orchestrator=ovirt"]) == 0
    assert "policy ovirt: its monitor loop" in capsys.readouterr().out
    assert main(["predict", example, "--set", "policy.nova.live_migration_downtime_steps=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pausecast: error: policy.nova.live_migration_downtime_steps = 2: "
                   "allowed range [3, 10000]"]
