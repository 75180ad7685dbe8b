"""The SimPy engine: exact event logs, where the switch's latency lands, failures and timeouts."""

import math

import pytest

from pausecast.sim import predict, simulate

from .conftest import make

TINY_OVERHEADS = {"begin_ms": 10, "prepare_ms": 100, "setup_ms": 50, "handshake_ms": 1, "finish_ms": 5,
                  "resume_ms": 2, "confirm_ms": 200, "announce_ms": 50}


def tiny(**more):
    sections = {"vm": {"memory_mib": 64, "dirty": {"rate_mib_s": 0}},
                "link": {"bandwidth_mbit_s": 1000, "rtt_ms": 2},
                "overheads": {"profile": "none", **TINY_OVERHEADS}}
    sections.update(more)
    return make(**sections)


# By hand: Begin 10 ms. Prepare: 1 ms RPC + 100 ms QEMU start + 1 ms reply -> 0.112. Perform: setup
# 50 ms + one RTT to connect -> live from 0.164. 64 MiB = 16,384 pages; the threshold is
# 125 MB/s x 0.3 s = 9,155.3 pages; a 50 ms check moves 6.25 MB = 1,522.9 pages, so check 5
# (t = 0.414) is the first under it; the idle guest dirtied nothing: stop. Final copy:
# (16,384 x 4,104 - 5 x 6.25e6) B / 125 MB/s = 0.287919488 s, +1 ms handshake -> 0.702919488.
# Finish: 1 ms RPC + 5 ms work + 2 ms resume -> 0.710919488. Confirm: 1 ms + 200 ms teardown.
STOP_S = 0.414
PERFORM_END_S = STOP_S + 0.001 + (16384 * 4104 - 5 * 6.25e6) / 125e6
RESUME_S = PERFORM_END_S + 0.001 + 0.005 + 0.002
EXPECTED_LOG = [
    (0.0, "source", "begin start"), (0.010, "source", "begin end"),
    (0.010, "destination", "prepare start"), (0.112, "destination", "prepare end"),
    (0.112, "source", "perform start"), (0.164, "source", "sync"), (STOP_S, "source", "sync"),
    (STOP_S, "source", "stop"), (PERFORM_END_S, "source", "perform end"),
    (PERFORM_END_S, "destination", "finish start"), (RESUME_S, "destination", "resume"),
    (RESUME_S, "destination", "finish end"), (RESUME_S, "source", "confirm start"),
    (RESUME_S + 0.201, "source", "confirm end"),
]


def test_event_log_follows_the_five_phases_exactly():
    log = [(e.t_s, e.host, e.name) for e in simulate(tiny()).events]
    assert [(h, n) for _, h, n in log] == [(h, n) for _, h, n in EXPECTED_LOG]
    assert [t for t, _, _ in log] == pytest.approx([t for t, _, _ in EXPECTED_LOG], abs=1e-12)


def test_record_agrees_with_the_event_log():
    r = predict(tiny())
    assert r.iterations == 3
    assert r.downtime_ms == pytest.approx((PERFORM_END_S - STOP_S) * 1000)
    assert r.pause_window_ms == pytest.approx((RESUME_S - STOP_S) * 1000)
    assert r.network_outage_ms == pytest.approx(r.pause_window_ms + 50)
    assert r.total_time_s == pytest.approx(RESUME_S + 0.201)
    phases = ["begin", "prepare", "perform", "finish", "confirm"]
    edges = [getattr(r, f"{p}_{e}_s") for p in phases for e in ("start", "end")]
    assert edges == sorted(edges)
    # the pause window is the sum of its parts
    parts = r.final_copy_ms + r.handshake_ms + r.finish_rpc_ms + r.finish_work_ms + r.association_wait_ms \
        + r.resume_ms
    assert parts == pytest.approx(r.pause_window_ms)


SLOW_SWITCH = {"service_time_ms": 300.0}


def test_8021qbg_switch_latency_lands_in_prepare_and_the_outage_not_the_pause():
    plain = predict(tiny())
    qbg = predict(tiny(port_profile={"type": "802.1Qbg"}, switch=SLOW_SWITCH))
    # libvirt waits for the pre-associate, seen on its 125 ms polls: ceil(300 / 125) = 3 polls
    assert qbg.preassociation_ms == pytest.approx(375)
    assert qbg.prepare_end_s - qbg.prepare_start_s == pytest.approx(
        plain.prepare_end_s - plain.prepare_start_s + 0.375)
    # the Finish associate does not wait: the vCPUs start as soon as without a port profile...
    assert qbg.pause_window_ms == pytest.approx(plain.pause_window_ms)
    # ...but the port forwards only when the switch answers, 300 ms after the request, which left
    # after the Finish RPC and work (1 + 5 ms past the end of Perform)
    request_after_stop_ms = qbg.downtime_ms + 1 + 5
    assert qbg.association_ms == pytest.approx(300)
    assert qbg.network_outage_ms == pytest.approx(request_after_stop_ms + 300)


def test_8021qbh_switch_latency_lands_inside_the_pause_window():
    plain = predict(tiny())
    qbh = predict(tiny(port_profile={"type": "802.1Qbh", "vnics": 2}, switch=SLOW_SWITCH))
    # two vNICs associated in turn, each seen after 3 polls
    assert qbh.association_ms == pytest.approx(750)
    assert qbh.pause_window_ms == pytest.approx(plain.pause_window_ms + 750)
    assert qbh.network_outage_ms == pytest.approx(qbh.pause_window_ms + 50)


def test_silent_switch_fails_the_prepare_after_libvirts_timeout_and_the_vm_stays():
    r = predict(tiny(port_profile={"type": "802.1Qbg"}, switch={"mode": "silent"}))
    assert r.failure == "preassociate-timeout"
    assert r.preassociation_ms == pytest.approx(10_000)
    assert r.pause_window_ms == 0 and r.downtime_ms == 0
    assert math.isnan(r.perform_start_s)


def test_refusing_switch_fails_the_prepare_on_libvirts_first_poll():
    r = predict(tiny(port_profile={"type": "802.1Qbh"}, switch={"mode": "refuse"}))
    assert r.failure == "preassociate-refused"
    assert r.preassociation_ms == pytest.approx(125)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overloaded_switch_times_out_the_finish_associate_and_the_source_resumes(seed):
    # Offered load 13/s x 100 ms = 1.3 per server: the backlog grows by 0.3 s of work every second.
    # After the 16.7 s warm-up (200 arrivals) it is ~5 s (+-1.5 s), so the pre-associate succeeds;
    # the 64 GiB idle VM then pre-copies for ~55 s and the backlog passes 20 s: the Finish associate
    # times out after libvirt's 10 s and the source guest resumes.
    r = predict(make(vm={"memory_mib": 65536, "dirty": {"rate_mib_s": 0}},
                     port_profile={"type": "802.1Qbh"},
                     switch={"service_time_ms": 100, "background_load_per_s": 13.0}), seed=seed)
    assert r.failure == "associate-timeout"
    assert r.converged
    assert r.preassociation_ms >= 125 and r.preassociation_ms <= 10_000
    assert r.association_wait_ms == pytest.approx(10_000)
    # frozen from the source stop until the source resumed: QEMU downtime, Finish RPC and work,
    # libvirt's 10 s, the failed Finish's reply, the resume
    expected = r.downtime_ms + 0.1 + 10 + 10_000 + 0.1 + 3
    assert r.pause_window_ms == pytest.approx(expected)


def test_the_same_seed_gives_the_same_prediction_and_another_seed_another_queue():
    s = make(port_profile={"type": "802.1Qbh"},
             switch={"service_time_ms": 40, "service_distribution": "exponential", "capacity": 2,
                     "background_load_per_s": 45})
    a, b, c = predict(s, seed=7), predict(s, seed=7), predict(s, seed=8)
    assert a == b
    assert a.switch_wait_ms != c.switch_wait_ms


NEVER = {"vm": {"dirty": {"rate_mib_s": 2000}}, "link": {"bandwidth_mbit_s": 10000}}


def test_timeout_abort_leaves_the_guest_running_on_the_source():
    r = predict(make(**NEVER, migration={"timeout_s": 60, "timeout_action": "abort"}))
    assert r.failure == "timeout" and not r.converged
    assert r.pause_window_ms == 0 and r.network_outage_ms == 0
    assert 60 <= r.total_time_s < 61


def test_timeout_pause_freezes_the_guest_until_the_rest_is_copied():
    r = predict(make(**NEVER, migration={"timeout_s": 60, "timeout_action": "pause"}))
    assert r.failure == "" and r.forced == "pause"
    # suspended at 60 s with most of RAM pending: the pending set drains at ~1,192 MiB/s while frozen
    assert r.pause_window_ms > 1000
    assert r.pause_window_ms > r.downtime_ms
    assert r.total_time_s > 60


def test_timeout_postcopy_resumes_on_the_destination_quickly_and_pulls_the_rest():
    paused = predict(make(**NEVER, migration={"timeout_s": 60, "timeout_action": "pause"}))
    post = predict(make(**NEVER, migration={"timeout_s": 60, "timeout_action": "postcopy"}))
    assert post.forced == "postcopy" and post.failure == ""
    # handshake (1 ms) + RTT/2 + resume (3 ms): no RAM inside the pause
    assert post.pause_window_ms == pytest.approx(1 + 0.1 + 3)
    assert post.pause_window_ms < paused.pause_window_ms / 100
    assert post.perform_end_s > post.perform_start_s + 60


def hot(rule, hot_set_mib, hot_rate_mib_s):
    dirty = {"model": "hotcold", "hot_set_mib": hot_set_mib, "hot_rate_mib_s": hot_rate_mib_s,
             "cold_rate_mib_s": 1}
    return predict(make(vm={"dirty": dirty}, migration={"switchover_rule": rule}))


def test_pass_end_rule_needs_the_hot_set_under_the_threshold():
    # 10 GbE x 300 ms = 375 MB. A pass after the first lasts long enough to re-dirty a hot set swept
    # at 2 GiB/s, so what is pending at each pass end is the whole hot set (+ a little cold)
    assert hot("pass-end", 512, 2048).failure == "not-converged"  # 537 MB > 375 MB
    assert hot("pass-end", 128, 2048).failure == ""  # 134 MB < 375 MB


def test_qemu_rule_needs_the_hot_rate_under_the_link_rate():
    # Where the two rules part. QEMU syncs at the first check whose bitmap is under the threshold,
    # i.e. at most one check's transfer (62.5 MB) below it, so it switches over only if what was
    # dirtied since the previous sync fits in that gap. A 128 MiB hot set swept at 2 GiB/s re-dirties
    # ~105 MB per 50 ms check: never, although the textbook rule converges easily.
    assert hot("qemu", 128, 2048).failure == "not-converged"
    # a hot set smaller than one check's transfer always fits
    assert hot("qemu", 32, 2048).failure == ""
    # and a hot set larger than the threshold, swept slower than the link moves it, converges
    assert hot("qemu", 512, 500).failure == ""


def test_a_constant_trace_predicts_what_the_constant_model_does(tmp_path):
    rate_mib_s = 100.0
    pages_per_s = rate_mib_s * 2**20 / 4096
    trace = tmp_path / "trace.csv"
    trace.write_text("t_s,dirty_pages\n" + "".join(f"{t},{pages_per_s}\n" for t in range(1, 11)))
    constant = predict(make(vm={"dirty": {"rate_mib_s": rate_mib_s}}))
    traced = predict(make(vm={"dirty": {"model": "trace", "path": str(trace)}}))
    assert traced.total_time_s == pytest.approx(constant.total_time_s, rel=1e-9)
    assert traced.iterations == constant.iterations


@pytest.mark.parametrize(("cap_mib_s", "link_bound"), [(64, True), (16, False)])
def test_a_link_bound_pause_first_drains_the_senders_socket_backlog(cap_mib_s, link_bound):
    base = {"vm": {"memory_mib": 256, "zero_page_fraction": 0.5, "dirty": {"rate_mib_s": 7.8}},
            "migration": {"bandwidth_mib_s": cap_mib_s}}
    link = {"bandwidth_mbit_s": 300, "efficiency": 0.955}
    without = predict(make(**base, link=link))
    backed_up = predict(make(**base, link={**link, "socket_backlog_mib": 1.5}))
    # 300 Mbit/s x 0.955 carries 34.15 MiB/s: under a 64 MiB/s cap QEMU writes faster than that and
    # the backlog, 1.5 MiB, takes 1.5 x 2^20 B / (300e6 x 0.955 / 8 B/s) = 43.92 ms of the pause; under
    # 16 MiB/s the socket stays empty
    expected_ms = 1.5 * 2**20 / (300e6 * 0.955 / 8) * 1000 if link_bound else 0.0
    assert backed_up.pause_window_ms - without.pause_window_ms == pytest.approx(expected_ms, abs=1e-6)
    assert backed_up.final_copy_ms - without.final_copy_ms == pytest.approx(expected_ms, abs=1e-6)
    # the backlog was counted as sent when QEMU wrote it: nothing more goes over the wire
    assert (backed_up.bytes_sent, backed_up.iterations) == (without.bytes_sent, without.iterations)
