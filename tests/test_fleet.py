"""The fleet engine (sim/fleet.py) against fluid theory, the single-VM engine and hand-derived queues."""

import math

import pytest

from pausecast.models.fleet import fleet_from_dict
from pausecast.models.scenario import LinkSpec
from pausecast.sim import simulate
from pausecast.sim.fleet import simulate_fleet

# 256 MiB = 65,536 pages; each goes on the wire with its 8-byte header: 65,536 x 4,104 B
WIRE_256_MIB_B = 65536 * 4104
# the source NIC, 1 Gbit/s = 125e6 B/s, is every path's bottleneck
SRC_NIC_B_S = 125e6


def two_host_fleet(profile, count=2, plan=None, switch=None, src_mbit_s=1000, src_changes=None):
    """`count` VMs of one profile from host src to host dst; no RTT, so transfers are the only time.
    `src_changes`: the source NIC's changes of bandwidth."""
    data = {
        "links": {"src-nic": {"bandwidth_mbit_s": src_mbit_s, "rtt_ms": 0,
                              **({"changes": src_changes} if src_changes is not None else {})},
                  "dst-nic": {"bandwidth_mbit_s": 10000, "rtt_ms": 0}},
        "hosts": {"src": {"links": ["src-nic"], "switch": "tor"},
                  "dst": {"links": ["dst-nic"], "switch": "tor"}},
        "switches": {"tor": switch or {}},
        "profiles": {"p": {"overheads": {"profile": "none"}, **profile}},
        "plan": plan or {"max_per_source_host": 0},
        "vms": [{"profile": "p", "count": count, "source": "src", "destination": "dst"}],
    }
    return fleet_from_dict(data)


IDLE_256 = {"vm": {"memory_mib": 256, "dirty": {"rate_mib_s": 0}}}


def test_two_vms_sharing_a_link_take_twice_as_long_as_one_alone():
    # An idle guest sends each page once and the link is never idle (no overheads, no RTT), so one
    # VM alone takes wire / C. Two at once each get C / 2 throughout (live phase and final copy):
    # 2 x wire / C each.
    alone_s = WIRE_256_MIB_B / SRC_NIC_B_S
    (solo,) = simulate_fleet(two_host_fleet(IDLE_256, count=1)).records
    assert solo["total_time_s"] == pytest.approx(alone_s, rel=1e-9)
    result = simulate_fleet(two_host_fleet(IDLE_256, count=2))
    for r in result.records:
        assert r["total_time_s"] == pytest.approx(2 * alone_s, rel=1e-9)
        assert r["live_rate_mib_s"] == pytest.approx(SRC_NIC_B_S / 2 / 2**20, rel=1e-9)
    assert result.summary["makespan_s"] == pytest.approx(2 * alone_s, rel=1e-9)


def test_two_vms_serialized_each_take_as_long_as_one_alone():
    # One at a time (Nova's default): each has the link to itself, the second starts when the first
    # returns; the makespan is the same 2 x wire / C as sharing, but each VM's own time is halved.
    alone_s = WIRE_256_MIB_B / SRC_NIC_B_S
    result = simulate_fleet(two_host_fleet(IDLE_256, plan={"max_per_source_host": 1}))
    first, second = result.records
    assert first["total_time_s"] == pytest.approx(alone_s, rel=1e-9)
    assert second["total_time_s"] == pytest.approx(alone_s, rel=1e-9)
    assert (first["slot_wait_s"], second["slot_wait_s"]) == pytest.approx((0.0, alone_s), rel=1e-9)
    assert result.summary["makespan_s"] == pytest.approx(2 * alone_s, rel=1e-9)


@pytest.mark.parametrize("dirty_mib_s", [5.0, 30.0])
@pytest.mark.parametrize("rule", ["qemu", "pass-end"])
def test_two_identical_dirtying_vms_behave_like_one_on_half_the_link(dirty_mib_s, rule):
    # By symmetry two identical VMs started together always get C / 2 each, and QEMU's threshold
    # follows that share: each is one VM alone on a link of C / 2, which the single-VM engine predicts.
    profile = {"vm": {"memory_mib": 512, "dirty": {"rate_mib_s": dirty_mib_s}},
               "migration": {"switchover_rule": rule}}
    fleet = two_host_fleet(profile)
    half = fleet.vms[0].scenario.replace(link=LinkSpec(bandwidth_mbit_s=500, rtt_ms=0))
    expected = simulate(half).record
    assert expected.iterations > 3  # the dirty rate matters: several passes
    for r in simulate_fleet(fleet).records:
        assert r["iterations"] == expected.iterations
        assert r["total_time_s"] == pytest.approx(expected.total_time_s, rel=1e-9)
        assert r["downtime_ms"] == pytest.approx(expected.downtime_ms, rel=1e-9)
        assert r["bytes_sent"] == pytest.approx(expected.bytes_sent, rel=1e-9)


SINGLE_VM_CASES = {
    "qemu rule, 802.1Qbh": {"vm": {"memory_mib": 2048, "zero_page_fraction": 0.2, "device_state_mib": 8,
                                   "dirty": {"rate_mib_s": 40}},
                            "port_profile": {"type": "802.1Qbh"}, "overheads": {"profile": "default"}},
    "capped, 802.1Qbg x 2": {"vm": {"memory_mib": 1024, "dirty": {"rate_mib_s": 20}},
                             "migration": {"bandwidth_mib_s": 50},
                             "port_profile": {"type": "802.1Qbg", "vnics": 2}},
    "timeout pause": {"vm": {"memory_mib": 1024, "dirty": {"model": "hotcold", "hot_set_mib": 512,
                                                           "hot_rate_mib_s": 4000, "cold_rate_mib_s": 5}},
                      "migration": {"timeout_s": 30, "timeout_action": "pause"}},
    "timeout postcopy": {"vm": {"memory_mib": 1024, "dirty": {"rate_mib_s": 500}},
                         "migration": {"timeout_s": 10, "timeout_action": "postcopy"}},
    "never converges": {"vm": {"memory_mib": 1024, "dirty": {"rate_mib_s": 500}}},
}


@pytest.mark.parametrize("profile", SINGLE_VM_CASES.values(), ids=SINGLE_VM_CASES.keys())
def test_a_fleet_of_one_predicts_what_the_single_vm_engine_does(profile):
    # Alone, the VM's share is its path's bottleneck all along and the switch has no other client:
    # the fleet engine must reproduce the single-VM prediction of the same scenario.
    fleet = two_host_fleet(profile, count=1, switch={"service_time_ms": 200})
    expected = simulate(fleet.vms[0].scenario).record.to_row()
    (got,) = simulate_fleet(fleet).records
    for column in ("converged", "failure", "forced", "iterations", "total_time_s", "precopy_time_s",
                   "downtime_ms", "pause_window_ms", "network_outage_ms", "association_ms", "bytes_sent"):
        if isinstance(expected[column], float) and math.isfinite(expected[column]):
            assert got[column] == pytest.approx(expected[column], rel=1e-9), column
        else:
            assert got[column] == expected[column], column


def test_a_capped_migration_leaves_the_rest_of_the_link_to_the_other():
    # VM "slow" is capped at 20 MiB/s; "fast" is not. Max-min: slow keeps its 20 MiB/s, fast gets
    # C - 20 MiB/s = 119.2 - 20 = 99.2 MiB/s. slow's 256 MiB take > 12 s, so fast (2.7 s) runs
    # entirely beside it.
    data = {
        "links": {"src-nic": {"bandwidth_mbit_s": 1000, "rtt_ms": 0}, "dst-nic": {"rtt_ms": 0}},
        "hosts": {"src": {"links": ["src-nic"]}, "dst": {"links": ["dst-nic"]}},
        "profiles": {"slow": {**IDLE_256, "migration": {"bandwidth_mib_s": 20},
                              "overheads": {"profile": "none"}},
                     "fast": {**IDLE_256, "overheads": {"profile": "none"}}},
        "plan": {"max_per_source_host": 0},
        "vms": [{"profile": "slow", "source": "src", "destination": "dst"},
                {"profile": "fast", "source": "src", "destination": "dst"}],
    }
    slow, fast = simulate_fleet(fleet_from_dict(data)).records
    share_mib_s = SRC_NIC_B_S / 2**20 - 20
    assert slow["live_rate_mib_s"] == pytest.approx(20, rel=1e-9)
    assert fast["live_rate_mib_s"] == pytest.approx(share_mib_s, rel=1e-9)
    assert fast["total_time_s"] == pytest.approx(WIRE_256_MIB_B / (share_mib_s * 2**20), rel=1e-9)


def test_contention_can_stop_a_migration_converging():
    # 70 MiB/s of dirtying on a 119.2 MiB/s link: alone rho = 70 / 119.2 = 0.59 < 1 and it converges.
    # Two such VMs sharing the link get 59.6 MiB/s each, rho = 1.17 > 1: neither can converge while
    # the other runs, and nothing else could free bandwidth. The engine then declares them
    # not-converging (an operator cancels them); the first cancelled frees the link and the other,
    # alone again, converges after it.
    profile = {"vm": {"memory_mib": 1024, "dirty": {"rate_mib_s": 70}}}
    (alone,) = simulate_fleet(two_host_fleet(profile, count=1)).records
    assert alone["converged"] and alone["failure"] == ""
    result = simulate_fleet(two_host_fleet(profile, count=2))
    cancelled, survivor = sorted(result.records, key=lambda r: r["failure"], reverse=True)
    assert (cancelled["failure"], survivor["failure"]) == ("not-converged", "")
    assert result.summary["not_converged"] == 1 and result.summary["migrated"] == 1
    # the survivor needed more than the link to itself from the start: it waited out the stall
    assert survivor["precopy_time_s"] > alone["precopy_time_s"]
    assert survivor["end_s"] > cancelled["end_s"]


def test_a_stalled_migration_converges_once_the_other_leaves():
    # "hot" (70 MiB/s, rho 1.17 at half the link) stalls while "idle" shares the link; when idle is
    # done hot has the whole link (rho 0.59) and converges, after idle.
    data = {
        "links": {"src-nic": {"bandwidth_mbit_s": 1000, "rtt_ms": 0}, "dst-nic": {"rtt_ms": 0}},
        "hosts": {"src": {"links": ["src-nic"]}, "dst": {"links": ["dst-nic"]}},
        "profiles": {"hot": {"vm": {"memory_mib": 1024, "dirty": {"rate_mib_s": 70}},
                             "overheads": {"profile": "none"}},
                     "idle": {"vm": {"memory_mib": 2048, "dirty": {"rate_mib_s": 0}},
                              "overheads": {"profile": "none"}}},
        "plan": {"max_per_source_host": 0},
        "vms": [{"profile": "hot", "source": "src", "destination": "dst"},
                {"profile": "idle", "source": "src", "destination": "dst"}],
    }
    hot, idle = simulate_fleet(fleet_from_dict(data)).records
    assert idle["failure"] == "" and hot["failure"] == "" and hot["converged"]
    # idle sends its 2 GiB at no more than half the link while hot is live (> 2 x 2 GiB / C = 36 s)
    assert idle["total_time_s"] > 2 * 2048 * 2**20 / SRC_NIC_B_S
    assert hot["end_s"] > idle["end_s"]


def test_every_link_carries_the_bytes_of_the_migrations_that_cross_it():
    # The network integrates each link's load over time; the records count each migration's bytes
    # from its pre-copy state. Both must agree, link by link, for migrations that converge and for
    # those that stall: db's 64 MiB hot set is over its threshold even at its cap (100 MiB/s x 0.3 s
    # = 30 MiB), so all three never converge.
    data = {
        "links": {"a-nic": {"bandwidth_mbit_s": 2000}, "b-nic": {"bandwidth_mbit_s": 3000},
                  "up": {"bandwidth_mbit_s": 2500}, "d-nic": {"bandwidth_mbit_s": 4000},
                  "e-nic": {"bandwidth_mbit_s": 1500}},
        "hosts": {"a": {"links": ["a-nic", "up"]}, "b": {"links": ["b-nic", "up"]},
                  "d": {"links": ["d-nic"]}, "e": {"links": ["e-nic"]}},
        "profiles": {"web": {"vm": {"memory_mib": 512, "zero_page_fraction": 0.25,
                                    "dirty": {"rate_mib_s": 25}}},
                     "db": {"vm": {"memory_mib": 1024, "device_state_mib": 4,
                                   "dirty": {"model": "hotcold", "hot_set_mib": 64, "hot_rate_mib_s": 400,
                                             "cold_rate_mib_s": 5}},
                            "migration": {"bandwidth_mib_s": 100}}},
        "plan": {"max_per_source_host": 2},
        "vms": [{"profile": "web", "count": 6, "source": ["a", "b"], "destination": ["d", "e"]},
                {"profile": "web", "count": 2, "source": "a", "destination": "b"},
                {"profile": "db", "count": 3, "source": ["b", "a"], "destination": ["e", "d"]}],
    }
    fleet = fleet_from_dict(data)
    result = simulate_fleet(fleet)
    assert (result.summary["migrated"], result.summary["not_converged"]) == (8, 3)
    for link in fleet.links:
        crossing = sum(r["bytes_sent"] for r, vm in zip(result.records, fleet.vms, strict=True)
                       if link in {name for name, _ in vm.path})
        assert result.summary["bytes_per_link"][link] == pytest.approx(crossing, rel=1e-9), link


def test_the_plan_respects_both_concurrency_limits():
    # 2 hosts x 3 identical VMs, at most 2 per host and 3 in all: at t = 0 the list order starts
    # a's first two and b's first; never more than 3 run, never more than 2 from a host.
    data = {
        "links": {"a-nic": {}, "b-nic": {}, "d-nic": {}},
        "hosts": {"a": {"links": ["a-nic"]}, "b": {"links": ["b-nic"]}, "d": {"links": ["d-nic"]}},
        "profiles": {"p": {"vm": {"memory_mib": 512, "dirty": {"rate_mib_s": 10}}}},
        "plan": {"max_per_source_host": 2, "max_concurrent": 3},
        "vms": [{"profile": "p", "count": 3, "source": "a", "destination": "d"},
                {"profile": "p", "count": 3, "source": "b", "destination": "d"}],
    }
    records = simulate_fleet(fleet_from_dict(data)).records
    assert [r["vm"] for r in records if r["slot_wait_s"] == 0] == ["p-1", "p-2", "p-4"]
    edges = sorted({t for r in records for t in (r["slot_wait_s"], r["end_s"])})
    peak = 0
    for t in edges:
        running = [r for r in records if r["slot_wait_s"] <= t < r["end_s"]]
        peak = max(peak, len(running))
        assert len(running) <= 3
        for host in ("a", "b"):
            assert sum(r["source_host"] == host for r in running) <= 2
    assert peak == 3


QBH_TINY = {"vm": {"memory_mib": 64, "dirty": {"rate_mib_s": 0}}, "port_profile": {"type": "802.1Qbh"}}
SLOW_SWITCH = {"service_time_ms": 3000, "capacity": 1}


def test_an_overloaded_switch_times_out_associations_and_the_vms_stay_on_their_source():
    # Six 802.1Qbh VMs start at once; the switch serves one request at a time, 3 s each, first come
    # first served, and keeps serving requests libvirt has given up on. Pre-associates P0..P5 are
    # served in [0, 3], [3, 6], ... [15, 18]. libvirt waits at most 10 s:
    # * VM3-5 would see their answer at 12, 15, 18 s: each fails its Prepare at 10 s
    #   (preassociate-timeout) before its guest ever stopped.
    # * VM0-2 get theirs at 3, 6, 9 s, copy 64 MiB in 0.05 s, and send the Finish associate A_k,
    #   which queues behind P_(k+1)..P5 and the earlier A's: A0 is served in [18, 21], 15 s after it
    #   was sent, A1 in [21, 24], A2 in [24, 27]. libvirt gives up after 10 s (associate-timeout):
    #   the destination is killed and the guest, stopped since its switchover, resumes on the source.
    result = simulate_fleet(two_host_fleet(QBH_TINY, count=6, switch=SLOW_SWITCH, src_mbit_s=10000))
    failures = [r["failure"] for r in result.records]
    assert failures == ["associate-timeout"] * 3 + ["preassociate-timeout"] * 3
    assert result.summary["migrated"] == 0 and result.summary["failed"] == 6
    for r in result.records[:3]:
        assert r["converged"] and 10_000 < r["pause_window_ms"] < 10_100
    for r in result.records[3:]:
        assert r["pause_window_ms"] == 0 and r["prepare_end_s"] == pytest.approx(10.0)
    # the queue at the switch: when P1 starts service, P2..P5 wait
    assert result.summary["peak_switch_queue"] >= 4


def test_the_same_switch_serves_everyone_in_turn_when_migrations_are_serialized():
    # One migration at a time: each has the switch to itself, so its pre-associate, associate and
    # (802.1Qbh waits for it too) disassociate take 3 s each, as libvirt's 125 ms polling sees them.
    result = simulate_fleet(two_host_fleet(QBH_TINY, count=6, switch=SLOW_SWITCH, src_mbit_s=10000,
                                           plan={"max_concurrent": 1}))
    assert result.summary["migrated"] == 6
    for r in result.records:
        assert (r["preassociation_ms"], r["association_wait_ms"], r["disassociation_ms"]) == (3000,) * 3


def test_the_same_seed_gives_the_same_fleet_and_another_seed_other_queues():
    switch = {"service_time_ms": 20, "service_distribution": "exponential", "background_load_per_s": 30}
    profile = {"vm": {"memory_mib": 512, "dirty": {"rate_mib_s": 20}}, "port_profile": {"type": "802.1Qbh"}}
    fleet = two_host_fleet(profile, count=4, switch=switch)
    first, again, other = (simulate_fleet(fleet, seed) for seed in (3, 3, 4))
    assert first.records == again.records and first.summary == again.summary
    assert [r["switch_wait_ms"] for r in first.records] != [r["switch_wait_ms"] for r in other.records]
