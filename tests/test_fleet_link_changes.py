"""A link whose bandwidth changes at set times (links.NAME.changes): against the fluid closed form,
libvirt's keepalive when it goes down, and the old records when nothing changes."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from pausecast.cli import main
from pausecast.sim.fleet import simulate_fleet

from .test_fleet import IDLE_256, SRC_NIC_B_S, WIRE_256_MIB_B, two_host_fleet

# libvirt qemu.conf: keepalive_interval = 5, keepalive_count = 5; libvirtd.conf: a connection that
# answers nothing is closed after keepalive_interval x (keepalive_count + 1) seconds
KEEPALIVE_S = 5 * (5 + 1)
# the idle guest alone on the 1 Gbit/s source NIC: every page once, the link never idle
ALONE_S = WIRE_256_MIB_B / SRC_NIC_B_S


def test_a_link_that_halves_midway_stretches_the_rest_of_the_transfer():
    # C until t, C / 2 after: C t bytes by t, the other W - C t at C / 2, so T = t + 2 (W - C t) / C
    # = 2 W / C - t. The idle guest sends each page once whatever the threshold does.
    t = 1.0
    fleet = two_host_fleet(IDLE_256, count=1, src_changes=[{"at_s": t, "bandwidth_mbit_s": 500}])
    result = simulate_fleet(fleet)
    (r,) = result.records
    assert r["failure"] == "" and r["converged"]
    assert r["total_time_s"] == pytest.approx(2 * ALONE_S - t, rel=1e-9)
    assert r["bytes_sent"] == pytest.approx(WIRE_256_MIB_B, rel=1e-9)
    assert result.summary["link_changes"] == [{"link": "src-nic", "at_s": t, "bandwidth_mbit_s": 500.0,
                                               "vms_crossing": 1, "vms": ["p-1"]}]


def test_two_vms_on_a_link_that_doubles_share_the_new_capacity():
    # Two idle guests share C, each at C / 2; at t the link doubles to 2C, each then gets C. Each has
    # sent C t / 2 by t, and sends the other W - C t / 2 at C: T = t + (W - C t / 2) / C = W / C + t / 2.
    t = 2.0
    fleet = two_host_fleet(IDLE_256, count=2, src_changes=[{"at_s": t, "bandwidth_mbit_s": 2000}])
    for r in simulate_fleet(fleet).records:
        assert r["total_time_s"] == pytest.approx(ALONE_S + t / 2, rel=1e-9)


def test_a_link_down_for_less_than_the_keepalive_only_delays_the_migration():
    # Down from t to t + d, d < 30 s: nothing moves meanwhile and the idle guest dirties nothing, so
    # the migration ends d later than alone, and migrates.
    t, d = 1.0, 12.0
    fleet = two_host_fleet(IDLE_256, count=1, src_changes=[{"at_s": t, "bandwidth_mbit_s": 0},
                                                           {"at_s": t + d, "bandwidth_mbit_s": 1000}])
    (r,) = simulate_fleet(fleet).records
    assert r["failure"] == "" and r["converged"]
    assert r["total_time_s"] == pytest.approx(ALONE_S + d, rel=1e-9)


def test_a_link_down_for_good_in_precopy_loses_the_connection_and_the_guest_stays_put():
    # Down at t in the first pass: the stream carries nothing; after the keepalive libvirt's Perform
    # fails, the guest never stopped (no pause), and the migration's call returns.
    t = 1.0
    fleet = two_host_fleet(IDLE_256, count=1, src_changes=[{"at_s": t, "bandwidth_mbit_s": 0}])
    result = simulate_fleet(fleet)
    (r,) = result.records
    assert (r["failure"], r["converged"], r["pause_window_ms"]) == ("connection-lost", False, 0.0)
    assert math.isnan(r["pause_start_s"])
    assert r["perform_end_s"] == pytest.approx(t + KEEPALIVE_S, rel=1e-9)
    # what it sent before the failure: C t, all of it counted on the link
    assert r["bytes_sent"] == pytest.approx(SRC_NIC_B_S * t, rel=1e-9)
    assert result.summary["bytes_per_link"]["src-nic"] == pytest.approx(r["bytes_sent"], rel=1e-9)
    assert result.summary["failed"] == 1 and result.summary["failures"] == {"connection-lost": 1}


def test_a_link_down_in_the_stop_and_copy_resumes_the_guest_on_its_source():
    # The guest stops at s (the same run as without the change up to then); the link goes down during
    # its final copy, at t > s. After the keepalive, libvirt resumes it on the source: paused from s
    # to t + 30 s.
    (unchanged,) = simulate_fleet(two_host_fleet(IDLE_256, count=1)).records
    stop_s = unchanged["pause_start_s"]
    t = stop_s + unchanged["final_copy_ms"] / 1000 / 2
    fleet = two_host_fleet(IDLE_256, count=1, src_changes=[{"at_s": t, "bandwidth_mbit_s": 0}])
    (r,) = simulate_fleet(fleet).records
    assert r["failure"] == "connection-lost" and r["converged"]
    assert r["pause_start_s"] == stop_s
    assert r["pause_window_ms"] == pytest.approx((t + KEEPALIVE_S - stop_s) * 1000, rel=1e-9)


def test_a_stall_waits_for_a_link_change_still_to_come():
    # Two 70 MiB/s guests on 1 Gbit/s stall (test_fleet: rho 1.17 at half the link) and, with nothing
    # to come, one is cancelled. With the link going to 10 Gbit/s at 120 s, each then has 5x its share:
    # both converge, none is declared stuck before.
    profile = {"vm": {"memory_mib": 1024, "dirty": {"rate_mib_s": 70}}}
    result = simulate_fleet(two_host_fleet(profile, count=2,
                                           src_changes=[{"at_s": 120, "bandwidth_mbit_s": 10000}]))
    assert [r["failure"] for r in result.records] == ["", ""]
    assert all(r["pause_start_s"] > 120 for r in result.records)


def test_an_empty_change_list_gives_exactly_the_old_records():
    profile = {"vm": {"memory_mib": 512, "dirty": {"rate_mib_s": 30}}, "port_profile": {"type": "802.1Qbh"}}
    switch = {"service_time_ms": 20, "service_distribution": "exponential", "background_load_per_s": 30}
    old = simulate_fleet(two_host_fleet(profile, count=3, switch=switch), seed=5)
    empty = simulate_fleet(two_host_fleet(profile, count=3, switch=switch, src_changes=[]), seed=5)
    assert repr(empty.records) == repr(old.records) and repr(empty.summary) == repr(old.summary)
    assert "link_changes" not in empty.summary


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "evacuation-uplink-down.toml"


def test_the_uplink_example_fails_exactly_the_streams_down_past_the_keepalive(tmp_path, capsys):
    # rack-b-up is down from 120 s to 180 s, longer than the keepalive: the migrations streaming over
    # it at 120 s lose their connection; those still on it at 180 s had been stalled for less than
    # 30 s (else they would have failed already) and migrate.
    assert main(["evacuate", str(EXAMPLE), "--results", str(tmp_path)]) == 0
    assert "link change      rack-b-up down at 120 s" in capsys.readouterr().out
    summary = json.loads((tmp_path / "uplink-down" / "summary.json").read_text())
    records = pd.read_parquet(tmp_path / "uplink-down" / "records.parquet")
    halved, down, back = summary["link_changes"]
    assert (halved["link"], down["link"], back["link"]) == ("rack-a-up", "rack-b-up", "rack-b-up")
    assert down["vms"] and back["vms"] and not set(down["vms"]) & set(back["vms"])
    failed = set(records.loc[records["failure"] != "", "vm"])
    assert failed == set(down["vms"])
    assert (records.loc[records["vm"].isin(failed), "failure"] == "connection-lost").all()
    assert (records.loc[records["vm"].isin(back["vms"]), "failure"] == "").all()


def test_the_keepalive_counts_from_when_the_link_went_down_and_a_timeout_pause_ends_with_it():
    # Down at 5 s for good; the migration's 10 s timeout pauses the guest meanwhile (virsh
    # --timeout-suspend). The connection has heard nothing since 5 s: lost at 5 + 30 = 35 s, when
    # libvirt resumes the guest on its source: paused from 10 s to 35 s.
    profile = {"vm": {"memory_mib": 1024, "dirty": {"rate_mib_s": 500}},
               "migration": {"timeout_s": 10, "timeout_action": "pause"}}
    (r,) = simulate_fleet(two_host_fleet(profile, count=1,
                                         src_changes=[{"at_s": 5, "bandwidth_mbit_s": 0}])).records
    assert (r["failure"], r["forced"]) == ("connection-lost", "pause")
    assert r["perform_end_s"] == pytest.approx(5 + KEEPALIVE_S, rel=1e-9)
    assert r["pause_window_ms"] == pytest.approx((5 + KEEPALIVE_S - 10) * 1000, rel=1e-9)
