"""The link fit (pausecast/analysis/link_fit.py) recovers parameters it was not told: records made by
the model itself at known link efficiency, socket backlog and sender rate, with noise on every measured
phase, then fitted from scenarios that carry the defaults. The expected values are the ones the records
were made with; the tolerance is the fit's own standard error (which must be honest: the truth lies
within a few of it) and a few percent. Also: the link runs decide the stream rates as the model's
rules say (models/stream.py, from the rule's statement, not the code)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pausecast.analysis.link_fit import LinkRun, fit_link, fit_link_runs, live_bound
from pausecast.cli.calibrate import below_the_sender, idle_scenario, link_scenarios
from pausecast.models.files import scenario_from_dict
from pausecast.models.stream import stream_rates
from pausecast.sim import predict


def _measured_like(scenario, truth: dict, rng: np.random.Generator, noise: float):
    """The model's record of the scenario at the true link, its timed phases off by `noise` (relative)."""
    true_scenario = scenario.replace(link=dataclasses.replace(scenario.link, **truth))
    r = predict(true_scenario)
    return dataclasses.replace(r, precopy_time_s=r.precopy_time_s * (1 + noise * rng.standard_normal()),
                               final_copy_ms=r.final_copy_ms * (1 + noise * rng.standard_normal()))


@settings(max_examples=12, deadline=None)
@given(efficiency=st.floats(0.85, 1.0), final_copy_efficiency=st.floats(0.7, 1.0),
       backlog_mib=st.floats(0.5, 8.0), sender_mib_s=st.floats(300.0, 2000.0),
       noise=st.sampled_from([0.0, 0.005, 0.01]), seed=st.integers(0, 2**16))
def test_the_fit_recovers_the_link_the_records_were_made_with(efficiency, final_copy_efficiency, backlog_mib,
                                                              sender_mib_s, noise, seed):
    # one sender rate for both phases: on the veth the model switches over at the setup sync (50 ms
    # live), too short a live phase to tell a live sender from a stop-and-copy one in its records (the
    # hand-made rows below tell them apart)
    truth = {"efficiency": efficiency, "final_copy_efficiency": final_copy_efficiency,
             "socket_backlog_mib": backlog_mib, "sender_mib_s": sender_mib_s,
             "final_copy_sender_mib_s": sender_mib_s}
    rng = np.random.default_rng(seed)
    idle = idle_scenario(None)
    runs = [(s, _measured_like(s, truth, rng, noise), shaped, math.nan)
            for s, shaped in [(idle, True), (idle, True), *link_scenarios(idle)]]
    fit = fit_link_runs(runs, predict)
    # the model's records carry no bytes measured at the stop
    assert set(fit.not_fitted) == {"final_copy_sender_mib_s"}
    del truth["final_copy_sender_mib_s"]
    for key, true in truth.items():
        got, se = fit.values[key], fit.spreads[key]
        assert math.isfinite(got) and math.isfinite(se)
        # the truth within 4 standard errors, and the error small either way
        assert abs(got - true) <= 4 * se + 0.02 * true + 1e-9, (key, got, se, true)


def test_a_backlog_is_fitted_only_where_a_shaped_link_bound_a_run():
    """Real hosts (no shaped link): only the sender's rates can be fitted, and the fit says why not the
    rest. The rows: a run that sent 100 MB live in 0.5 s (200 MB/s) and its last 10 MB in 25 ms
    (400 MB/s)."""
    runs = [LinkRun(shaped_mbit_s=0.0, capped=False, precopy_s=0.5, final_copy_s=0.025,
                    live_wire_bytes=100e6, final_wire_bytes=10e6)]
    fit = fit_link(runs)
    assert set(fit.not_fitted) == {"efficiency", "final_copy_efficiency", "socket_backlog_mib"}
    assert math.isclose(fit.values["sender_mib_s"], 200e6 / 2**20, rel_tol=1e-9)
    assert math.isclose(fit.values["final_copy_sender_mib_s"], 400e6 / 2**20, rel_tol=1e-9)
    assert set(fit.link_values()) == {"sender_mib_s", "final_copy_sender_mib_s"}


def test_live_and_stop_and_copy_rates_are_fitted_apart_where_the_sender_is_slower_than_the_link():
    """This machine's case (2026-12-03): QEMU's sender, sharing two cores with the busy guest, moved
    60-67 MiB/s live on the veth and on the 1000 Mbit/s tbf link (119.2 MiB/s) alike, while the
    stop-and-copy, the guest stopped, ran at 99-110 MiB/s through tbf. Rows made by hand: live phases
    at 62 MiB/s where the sender binds, the tbf link's live share 0.95 and its stop-and-copy's 0.9, a
    2 MiB backlog, a stop-and-copy sender of 400 MiB/s; the extra run (calibrate's `below_the_sender`)
    on a 250 Mbit/s link that the sender outruns. Each parameter is told by its own rows, exactly."""
    mib, line, slow = 2**20, 1000e6 / 8, 250e6 / 8
    sender, final_sender = 62 * mib, 400 * mib
    runs = [LinkRun(shaped_mbit_s=1000, capped=False, precopy_s=150 * mib / sender,
                    final_copy_s=26 * mib / (0.9 * line), live_wire_bytes=150 * mib,
                    final_wire_bytes=26 * mib, stream_bytes_s=sender),
            LinkRun(shaped_mbit_s=1000, capped=True, precopy_s=9.5, final_copy_s=8 * mib / (0.9 * line),
                    live_wire_bytes=304 * mib, final_wire_bytes=8 * mib, stream_bytes_s=32 * mib),
            LinkRun(shaped_mbit_s=0, capped=False, precopy_s=120 * mib / sender,
                    final_copy_s=40 * mib / final_sender, live_wire_bytes=120 * mib,
                    final_wire_bytes=40 * mib, stream_bytes_s=sender),
            LinkRun(shaped_mbit_s=0, capped=True, precopy_s=9.5, final_copy_s=7 * mib / final_sender,
                    live_wire_bytes=306 * mib, final_wire_bytes=7 * mib, stream_bytes_s=32 * mib)]
    without_slower = fit_link(runs)
    # no live phase was the link's: its live share and the backlog are not told, and say why
    assert set(without_slower.not_fitted) == {"efficiency", "socket_backlog_mib"}
    assert "62 MiB/s on 1000 Mbit/s" in without_slower.not_fitted["efficiency"]
    assert math.isclose(without_slower.values["final_copy_efficiency"], 0.9, rel_tol=1e-9)
    assert math.isclose(without_slower.values["sender_mib_s"], 62.0, rel_tol=1e-9)
    assert math.isclose(without_slower.values["final_copy_sender_mib_s"], 400.0, rel_tol=1e-9)
    below = LinkRun(shaped_mbit_s=250, capped=False, precopy_s=130 * mib / (0.95 * slow),
                    final_copy_s=(5 + 2) * mib / (0.9 * slow), live_wire_bytes=130 * mib,
                    final_wire_bytes=5 * mib, stream_bytes_s=0.95 * slow)
    fit = fit_link([*runs, below])
    assert not fit.not_fitted
    for key, true in {"efficiency": 0.95, "final_copy_efficiency": 0.9, "socket_backlog_mib": 2.0,
                      "sender_mib_s": 62.0, "final_copy_sender_mib_s": 400.0}.items():
        assert math.isclose(fit.values[key], true, rel_tol=1e-9), key
    # 62 MiB/s is 0.52 of 1000 Mbit/s: the sender's; 0.95 of 250 Mbit/s (29.8 MiB/s, under half the
    # sender's 62): the link's
    assert live_bound(runs[0], 62 * mib) == "sender" and live_bound(below, 62 * mib) == "link"
    # 0.81 of 1000 Mbit/s with a 137 MiB/s sender (CI, 2026-12-03): both bound it, so it tells neither
    partly = dataclasses.replace(runs[0], precopy_s=150 * mib / (0.81 * line))
    assert live_bound(partly, 137 * mib) == "unclear"
    assert live_bound(partly) == "link"  # without a sender rate to say otherwise


def test_calibrate_adds_a_run_below_the_sender_only_where_the_sender_bound_the_shaped_link():
    idle = idle_scenario(None)  # its shaped link: 1000 Mbit/s, 119.2 MiB/s
    mib = 2**20

    def shaped_live(mib_s: float) -> LinkRun:
        return LinkRun(shaped_mbit_s=1000, capped=False, precopy_s=2.0, final_copy_s=0.25,
                       live_wire_bytes=2.0 * mib_s * mib, final_wire_bytes=26 * mib)

    # 0.87 of the line rate: the link's (LINK_BOUND_SHARE 0.75)
    assert below_the_sender(idle, [shaped_live(104.0)]) is None
    slower = below_the_sender(idle, [shaped_live(62.0)])
    # half of 62 MiB/s is 260.1 Mbit/s, taken down to whole 10 Mbit/s
    assert slower.link.bandwidth_mbit_s == 260.0 and slower.migration.bandwidth_mib_s == 0
    assert predict(slower).converged
    # 96 MiB/s on the 1000 Mbit/s link, a 137 MiB/s sender on the veth: neither's alone; the extra run
    # goes at half the slower showing of the sender, 48 MiB/s = 402.7 Mbit/s, taken down to 400
    veth = LinkRun(shaped_mbit_s=0, capped=False, precopy_s=1.0, final_copy_s=0.08,
                   live_wire_bytes=137 * mib, final_wire_bytes=20 * mib)
    assert below_the_sender(idle, [shaped_live(96.0), veth]).link.bandwidth_mbit_s == 400.0


def test_the_stream_rates_follow_the_slowest_of_link_sender_and_cap():
    mib = 2**20
    # 1000 Mbit/s x 0.95 = 118.75 MB/s; a 500 MiB/s sender does not bind it; no cap: the link binds
    r = stream_rates(1000.0, 0.95, 500.0, 0.0)
    assert r.live_bytes_s == r.final_bytes_s == 1000e6 / 8 * 0.95 and r.link_bound and not r.cap_bound
    # on a 40 Gbit/s path the sender binds both phases and leaves the link's queue empty
    r = stream_rates(40000.0, 1.0, 500.0, 0.0)
    assert r.live_bytes_s == r.final_bytes_s == 500 * mib and not r.link_bound
    # a 32 MiB/s cap binds the live phase only
    r = stream_rates(40000.0, 1.0, 500.0, 32.0)
    assert r.live_bytes_s == 32 * mib and r.final_bytes_s == 500 * mib and r.cap_bound and not r.link_bound
    # 0 = unbounded sender: today's model
    r = stream_rates(1000.0, 1.0, 0.0, 0.0)
    assert r.final_bytes_s == 125e6 and r.link_bound
    # the stop-and-copy at its own figures: 1000 Mbit/s x 0.85 = 106.25 MB/s under a 60 MiB/s live
    # sender that binds the live phase (the link's queue stays empty), a 400 MiB/s one after
    r = stream_rates(1000.0, 0.95, 60.0, 0.0, 0.85, 400.0)
    assert r.live_bytes_s == 60 * mib and r.final_bytes_s == 1000e6 / 8 * 0.85 and not r.link_bound
    r = stream_rates(40000.0, 1.0, 60.0, 0.0, 0.85, 400.0)
    assert r.final_bytes_s == 400 * mib


def test_a_sender_bound_pause_drains_no_backlog():
    """The engine: with the sender slower than the link, a socket backlog is never drained (the queue
    is empty), and the final copy runs at the sender's rate."""
    base = {"vm": {"memory_mib": 1024, "zero_page_fraction": 0.5, "dirty": {"rate_mib_s": 50.0}},
            "link": {"bandwidth_mbit_s": 40000, "socket_backlog_mib": 4.0, "sender_mib_s": 400.0}}
    with_backlog = predict(scenario_from_dict(base))
    no_backlog = predict(scenario_from_dict({**base, "link": {**base["link"], "socket_backlog_mib": 0.0}}))
    assert with_backlog.final_copy_ms == no_backlog.final_copy_ms
    link_bound = predict(scenario_from_dict({**base, "link": {**base["link"], "sender_mib_s": 0.0,
                                                              "bandwidth_mbit_s": 1000}}))
    no_backlog_lb = predict(scenario_from_dict({**base, "link": {"bandwidth_mbit_s": 1000}}))
    # 4 MiB at 125 MB/s: 33.6 ms more
    assert math.isclose(link_bound.final_copy_ms - no_backlog_lb.final_copy_ms, 4 * 2**20 / 125e6 * 1e3,
                        rel_tol=1e-6) or link_bound.iterations != no_backlog_lb.iterations


def test_a_profiles_link_fills_what_the_scenario_leaves_out(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text("[overheads]\nbegin_ms = 5\n[link]\nefficiency = 0.9\nsender_mib_s = 700.0\n")
    s = scenario_from_dict({"link": {"efficiency": 0.95}, "overheads": {"profile": str(profile)}})
    assert s.link.efficiency == 0.95 and s.link.sender_mib_s == 700.0 and s.overheads.begin_ms == 5.0
    from pausecast.models.files import with_profile

    over = with_profile(s, str(profile), "--overheads")
    assert over.link.efficiency == 0.9


def test_a_profiles_bad_link_value_is_one_line_naming_it(tmp_path):
    import pytest

    from pausecast.models.errors import ScenarioError

    profile = tmp_path / "p.toml"
    profile.write_text("[link]\nefficiency = 2.0\n")
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict({"overheads": {"profile": str(profile)}})
    assert "efficiency" in str(err.value) and "2.0" in str(err.value) and "\n" not in str(err.value)
