"""`pausecast precheck` against real migrations on the testbed, on two link shapes: the verdict it gives
before the move is what happens when the move is then made, its figures are as good as its inputs
allow, and the pre-check changes nothing on the way (nor a migration already running).

How a pre-check's prediction can miss, and how each part is held here:

* its dirty-rate estimate. libvirt's calculation samples 512 pages per GiB (QEMU's page-sampling mode;
  libvirt cannot ask for more), so one run is off by about sqrt(2 MiB x rate / period): +-4.4 MiB/s at
  19.5 MiB/s over 2 s. Near the convergence edge the total follows it steeply: a trial at 5,000 pages/s
  over a 300 Mbit/s link that predicted 13.7 s against 9.2 s measured had read 25 MiB/s for 19.5
  (the model gives exactly 13.74 s at 25 MiB/s, 9.02 s at 19.5; five 2 s runs here read 11 to 26).
  The estimate is held to its sampling error, and the rest of the pre-check to the validation's
  accuracy by predicting the scenario it built at the guest's known rate.
* the model, at the right inputs: validation.py's targets, widened by what one run scatters (where
  the switchover falls within a check, how long the fixed parts took), each stated where it is used.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from pathlib import Path

import pytest

from .conftest import on_this_machine

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root (namespaces, mounts, veth)"),
]

STATE_DIR = Path("/var/lib/pausecast-testbed-precheck")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAME = "precheck-guest"
PAGE_BYTES = 4096
# the pre-check's estimate here: the mean of 3 runs of 2 s (2 s keeps a 12,800 pages/s sweep over the
# guest's 32,768 written pages from saturating: 25,600 pages per run)
CALC_S, CALC_RUNS = 2, 3
# QEMU page sampling: 512 sampled pages per GiB, so each dirty sample is 2 MiB of RAM; the number of
# dirty samples in a run is binomial with mean rate x period / 2 MiB and a variance at most that mean
SAMPLED_MIB = 2.0
# QEMU floors each run's result to whole MiB/s, so their mean is up to 1 MiB/s low
FLOOR_MIB_S = 1.0
# What the model computes is the live phase and the final copy; the rest of the total and of the pause
# window are the overheads profile's constants (`pausecast calibrate`), which a shared machine stretches:
# Prepare (starting the destination QEMU) took 0.67-0.98 s against 0.48 s calibrated, a handshake 87 ms
# against 5, while another engineer's testbed ran on the same 2 cores (CI runs the testbed tests one at a
# time). The bounds below excuse exactly the stretch the run measured (printed), never a shortfall.
FIXED_PHASES = ("begin", "prepare", "finish", "confirm")
# the profile's finish_ms is the Finish RPC and its work together
PAUSE_FIXED_PARTS = (("handshake_ms",), ("finish_rpc_ms", "finish_work_ms"), ("resume_ms",))
# QEMU's sync count near the switchover depends on where its checks fall: the validation holds it to
# +-1 on cap-bound shapes; link-bound runs here counted 9-11 where the model says 12 (the last syncs
# come a check, ~50 ms, apart, and a migration thread short of CPU checks less often)
ITERATIONS_BOUND = 3
# what the sender's socket and tbf held when QEMU stopped the guest on the link-bound shape, seen with
# `ss -tmi` at 300 Mbit/s: a write queue of 1.2-1.7 MB plus up to 136 KB in tbf, 1.3-1.8 MiB; the base
# scenario (link.socket_backlog_mib) takes the middle, as it takes calibrated overheads
SOCKET_BACKLOG_MIB = 1.55
# the lowest share of the 300 Mbit/s tbf link a live phase got here (0.87), less a margin (_slower_link_s)
LOWEST_LINK_SHARE_SEEN = 0.85


@pytest.fixture(scope="module")
def tb():
    from pausecast.executor.testbed.hosts import Testbed

    bed = Testbed(state_dir=STATE_DIR)
    bed.down()
    bed.up()
    yield bed
    bed.down()


def _scenario(link_mbit_s: float, cap_mib_s: float, pages_s: int, timeout_s: float, profile: Path):
    """testbed-small.toml shaped as asked, its fixed costs calibrated on this machine (`profile`)."""
    from pausecast.models.files import load_scenario

    s = on_this_machine(load_scenario(EXAMPLES / "testbed-small.toml"), profile)
    link = dataclasses.replace(s.link, bandwidth_mbit_s=link_mbit_s, socket_backlog_mib=SOCKET_BACKLOG_MIB)
    return _with_rate(s.replace(link=link,
                                migration=dataclasses.replace(s.migration, bandwidth_mib_s=cap_mib_s,
                                                              timeout_s=timeout_s)),
                      pages_s * PAGE_BYTES / 2**20)


def _with_rate(s, rate_mib_s: float):
    dirty = dataclasses.replace(s.vm.dirty, rate_mib_s=rate_mib_s)
    return s.replace(vm=dataclasses.replace(s.vm, dirty=dirty))


def _start(tb, real):
    """Shapes the link, boots the guest with the operator's settings, lets it reach its rate."""
    from pausecast.executor.testbed.run import WARMUP_S, shape_for
    from pausecast.executor.testbed.scenario_map import guest_for

    rtt_ms = shape_for(tb, real)
    plan = guest_for(real)
    tb.destroy_guest(NAME)
    dom = tb.start_guest(NAME, memory_mib=plan.memory_mib, dirty=plan.dirty, vcpus=plan.vcpus)
    # the operator's settings the pre-check must read (and the real move then uses)
    dom.migrateSetMaxDowntime(int(real.migration.max_downtime_ms), 0)
    dom.migrateSetMaxSpeed(int(real.migration.bandwidth_mib_s), 0)
    time.sleep(WARMUP_S)
    return dom, rtt_ms


def _snapshot(dom) -> tuple:
    return (dom.XMLDesc(0), dom.state(), dom.migrateGetMaxDowntime(0), dom.migrateGetMaxSpeed(0),
            dom.jobInfo()[0])


def _precheck(tb, real, tmp_path: Path, capsys) -> tuple[int, dict, Path]:
    """Runs the pre-check with `real` as the base (what the domain cannot tell: the link and the
    calibrated overheads); returns its exit code, its JSON and the scenario it built."""
    from pausecast.cli import main
    from pausecast.models.files import scenario_to_toml

    base_path, built = tmp_path / "base.toml", tmp_path / "built.toml"
    base_path.write_text(scenario_to_toml(real))
    code = main(["precheck", NAME, "--testbed", "--state-dir", str(tb.state_dir), "--scenario",
                 str(base_path), "--calc-seconds", str(CALC_S), "--calc-runs", str(CALC_RUNS),
                 "--write-scenario", str(built), "--json"])
    return code, json.loads(capsys.readouterr().out), built


def _figures(r) -> str:
    phases = " ".join(f"{p} {_phase_s(r, p):.2f}" for p in ("begin", "prepare", "perform", "finish",
                                                             "confirm"))
    parts = " ".join(f"{p.removesuffix('_ms')} {getattr(r, p):.0f}"
                     for p in ("final_copy_ms", *(p for group in PAUSE_FIXED_PARTS for p in group)))
    return (f"total {r.total_time_s:.2f} s ({phases}), pause {r.pause_window_ms:.0f} ms ({parts}), "
            f"{r.iterations} iterations")


def _check_s(scenario) -> float:
    """QEMU checks the pending set every 100 ms when the cap binds, every 50 ms (MAX_WAIT) when the link
    does: where the switchover falls within that, the model cannot know."""
    from pausecast.models.switchover import CAP_BOUND_CHECK_INTERVAL_S, LINK_BOUND_CHECK_INTERVAL_S
    from pausecast.sim.engine import LinkRates

    return CAP_BOUND_CHECK_INTERVAL_S if LinkRates.for_scenario(scenario).cap_bound \
        else LINK_BOUND_CHECK_INTERVAL_S


def _stretch_ms(measured, predicted) -> float:
    """How much longer the pause window's fixed parts took in the run than the calibrated ones the
    prediction used."""
    return sum(max(0.0, sum(getattr(measured, p) - getattr(predicted, p) for p in group))
               for group in PAUSE_FIXED_PARTS)


def _phase_s(r, phase: str) -> float:
    return getattr(r, f"{phase}_end_s") - getattr(r, f"{phase}_start_s")


def _total_bounds_s(scenario, measured, predicted) -> tuple[float, float]:
    """How far one run's total may lie below and above the prediction: the validation's 3 % (a median
    over points; unloaded runs here missed by 0.1-2.8 %) and one check interval either way; above, also
    the fixed phases' stretch."""
    from pausecast.analysis.validation import TOTAL_TARGET

    either = TOTAL_TARGET * measured.total_time_s + _check_s(scenario)
    stretch_s = sum(max(0.0, _phase_s(measured, p) - _phase_s(predicted, p)) for p in FIXED_PHASES)
    return either, either + stretch_s + _slower_link_s(scenario, predicted)


def _slower_link_s(scenario, predicted) -> float:
    """Above only, on a link-bound shape: the live phase at the lowest share of the tbf link seen here.
    testbed-small.toml's 0.955 was measured in an earlier session; later ones measured 0.87-0.89 at
    300 Mbit/s (2026-12-03: 9.02 s where 0.955 said 8.34), and this machine's calibration cannot tell it
    (its 1000 Mbit/s runs are bound by QEMU's sender, pausecast/analysis/link_fit.py)."""
    from pausecast.sim.engine import LinkRates

    if not LinkRates.for_scenario(scenario).link_bound:
        return 0.0
    return predicted.precopy_time_s * (scenario.link.efficiency / LOWEST_LINK_SHARE_SEEN - 1.0)


def _pause_bounds_ms(scenario, measured, predicted) -> tuple[float, float]:
    """How far one run's pause window may lie below and above the prediction. Either way:

    * the validation's allowance, max(15 %, 5 ms) (a median over points);
    * the final pending set lies anywhere within one check's sending under the threshold: one check's
      data at the final copy's rate, 28 ms at 32 MiB/s over 1000 Mbit/s, 50 ms link-bound.
    Above only, what the run measures and the calibrated prediction cannot know: the fixed parts'
    stretch (handshake, Finish, resume). The link-bound shape's socket backlog (SOCKET_BACKLOG_MIB) is
    in the model. Without it, unloaded runs came out 30-90 ms above the model link-bound (2-17 ms
    cap-bound). Not covered: a final copy slowed by a CPU shared with another testbed (109 ms where
    the model says 60, once)."""
    from pausecast.analysis.validation import pause_allowance_ms
    from pausecast.models.units import s_to_ms
    from pausecast.sim.engine import LinkRates

    rates = LinkRates.for_scenario(scenario)
    check_ms = s_to_ms(rates.live_bytes_s * _check_s(scenario) / rates.final_bytes_s)
    either = pause_allowance_ms(measured.pause_window_ms) + check_ms
    return either, either + _stretch_ms(measured, predicted)


# Two shapes. 1000 Mbit/s with a 32 MiB/s cap: cap-bound, the final copy at link speed. 300 Mbit/s
# with a 64 MiB/s cap: link-bound at 300 x 0.955 / 8 = 34.2 MiB/s, live and final copy alike.
# GO: 2,000 pages/s (7.8 MiB/s) on both, 5,000 (19.5 MiB/s) on the slow link, rho = 0.57. Each stays a
# GO over the estimate's 3 standard errors and its floor (at 19.5 + 3 x 2.55 + 1 MiB/s the model needs
# 20.5 s, under the 30 s timeout). NO-GO: 12,800 pages/s (50 MiB/s) outruns both the 32 MiB/s cap and
# the 34.2 MiB/s link even as low (36.8 MiB/s); a short timeout keeps it short.
CASES = [
    pytest.param(1000, 32, 2000, True, id="1000mbit-cap32-2000pps-go"),
    pytest.param(1000, 32, 12800, False, id="1000mbit-cap32-12800pps-nogo"),
    pytest.param(300, 64, 2000, True, id="300mbit-cap64-2000pps-go"),
    pytest.param(300, 64, 5000, True, id="300mbit-cap64-5000pps-go"),
    pytest.param(300, 64, 12800, False, id="300mbit-cap64-12800pps-nogo"),
]


@pytest.mark.parametrize(("link_mbit_s", "cap_mib_s", "pages_s", "expect_go"), CASES)
def test_precheck_verdict_and_figures_match_the_real_migration_and_change_nothing(
        tb, tmp_path, capsys, machine_overheads, link_mbit_s, cap_mib_s, pages_s, expect_go):
    from pausecast.executor.migration.migrate import migrate
    from pausecast.executor.testbed.run import endpoints
    from pausecast.models.files import load_scenario
    from pausecast.sim import predict

    real = _scenario(link_mbit_s, cap_mib_s, pages_s, timeout_s=30.0 if expect_go else 15.0,
                     profile=machine_overheads)
    rate_mib_s = real.vm.dirty.rate_mib_s
    dom, rtt_ms = _start(tb, real)
    try:
        before = _snapshot(dom)
        code, report, built_path = _precheck(tb, real, tmp_path, capsys)
        assert _snapshot(dom) == before  # XML, state, migration parameters, no job left behind
        assert report["domain"]["max_speed_mib_s"] == cap_mib_s
        dirty = report["dirty_rate"]
        stderr_mib_s = math.sqrt(SAMPLED_MIB * rate_mib_s / (CALC_S * CALC_RUNS))
        # the estimate is as good as page sampling allows: 3 standard errors, ~0.3 % of runs outside
        assert abs(dirty["mib_s"] - rate_mib_s) <= 3 * stderr_mib_s + FLOOR_MIB_S, dirty
        assert len(dirty["runs_mib_s"]) == CALC_RUNS
        assert dirty["stderr_mib_s"] == pytest.approx(math.sqrt(SAMPLED_MIB * dirty["mib_s"]
                                                                / (CALC_S * CALC_RUNS)))
        assert (code == 0) is expect_go and report["verdict"] == ("GO" if expect_go else "NO-GO")

        moved = migrate(real, endpoints(tb, rtt_ms), NAME)
        measured = moved.record
        assert measured.migrated is expect_go, measured.failure
        if not expect_go:
            assert measured.failure == "timeout"
            assert report["advice"]["bandwidth_for_convergence_mbit_s"] is not None
            return
        # the rest of the pre-check (memory, vCPUs, cap and downtime read from libvirt, the base's link
        # and overheads) at the guest's known rate, against the run
        at_rate = predict(_with_rate(load_scenario(built_path), rate_mib_s))
        own = report["record"]
        total_below, total_above = _total_bounds_s(real, measured, at_rate)
        pause_below, pause_above = _pause_bounds_ms(real, measured, at_rate)
        with capsys.disabled():
            print(f"\n{link_mbit_s} Mbit/s, cap {cap_mib_s} MiB/s, {pages_s} pages/s: estimate "
                  f"{dirty['mib_s']:.1f} MiB/s from runs {dirty['runs_mib_s']} (true {rate_mib_s:.2f})")
            for label, r in (("measured", measured), ("at true rate", at_rate)):
                print(f"  {label:13} {_figures(r)}")
            print(f"  pre-check     total {own['total_time_s']:.2f} s, pause {own['pause_window_ms']:.0f} "
                  f"ms; allowed run - model: -{total_below:.2f}..+{total_above:.2f} s, "
                  f"-{pause_below:.0f}..+{pause_above:.0f} ms")
        assert -total_below <= measured.total_time_s - at_rate.total_time_s <= total_above
        assert -pause_below <= measured.pause_window_ms - at_rate.pause_window_ms <= pause_above
        assert abs(at_rate.iterations - measured.iterations) <= ITERATIONS_BOUND
        # the operator's band: the prediction at the estimate lies inside it
        spread = report["dirty_rate_range"]
        assert all(spread["migrated"])
        assert spread["total_time_s"][0] <= own["total_time_s"] <= spread["total_time_s"][1]
    finally:
        tb.destroy_guest(NAME)


def test_precheck_of_a_migrating_domain_reads_its_job_stats_and_leaves_the_job_alone(tb, tmp_path, capsys,
                                                                                     machine_overheads):
    """A migration capped at 20 MiB/s: 128 MiB written take 6.4 s for the first pass, whose end (QEMU's
    second sync) brings the job's first dirty rate, and ~11 s in all (2,000 pages/s = 7.8 MiB/s, rho =
    0.39: 6.4 / (1 - 0.39) s of pre-copy; the model says 10.8 s with the fixed costs). The pre-check
    runs on the domain while it migrates."""
    import libvirt

    from pausecast.executor.migration.jobinfo import JobInfo
    from pausecast.executor.migration.migrate import migrate
    from pausecast.executor.testbed.run import endpoints

    pages_s, cap_mib_s = 2000, 20
    real = _scenario(1000, cap_mib_s, pages_s, timeout_s=60.0, profile=machine_overheads)
    dom, rtt_ms = _start(tb, real)
    moved = {}
    mover = threading.Thread(target=lambda: moved.update(m=migrate(real, endpoints(tb, rtt_ms), NAME)))
    try:
        mover.start()
        deadline = time.monotonic() + 10.0
        while not JobInfo.from_stats(dom.jobStats()).active:
            assert time.monotonic() < deadline, "the migration job never started"
            time.sleep(0.05)
        settings = (dom.migrateGetMaxDowntime(0), dom.migrateGetMaxSpeed(0))
        code, report, _ = _precheck(tb, real, tmp_path, capsys)
        job = JobInfo.from_stats(dom.jobStats())
        (_, calc), = tb.connect("pc-src").domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)
        # still the same job, untouched: running, its settings as they were, no calculation beside it
        # (QEMU's state stays "unstarted", 0)
        assert job.active and job.memory_iteration >= 2
        assert (dom.migrateGetMaxDowntime(0), dom.migrateGetMaxSpeed(0)) == settings == (300, cap_mib_s)
        assert calc.get("dirtyrate.calc_status", 0) == 0
        mover.join(timeout=90.0)
        assert not mover.is_alive()
        assert moved["m"].record.migrated, moved["m"].record.failure
    finally:
        mover.join(timeout=90.0)
        tb.destroy_guest(NAME)

    dirty = report["dirty_rate"]
    assert dirty["source"] == "migration job stats (memory_dirty_rate)"
    assert dirty["stderr_mib_s"] == 0 and dirty["runs_mib_s"] == [] and report["dirty_rate_range"] is None
    assert code in (0, 1) and report["domain"]["max_speed_mib_s"] == cap_mib_s
    # QEMU counts the distinct pages dirtied between two syncs >= 1 s apart, exactly (a bitmap, not a
    # sample); the guest's sweep revisits a page only every 32,768 / 2,000 = 16 s, so that is every page
    # it wrote. It writes 2,000 pages/s of host time, less what a starved vCPU loses (a backlog beyond
    # 50 ms is dropped: 3 % seen during migrations here, 10 % allowed), plus at most 50 ms of catch-up
    # in a period of >= 1 s
    job_pages_s = dirty["mib_s"] * 2**20 / PAGE_BYTES
    with capsys.disabled():
        print(f"\njob stats during the move: {job_pages_s:.0f} pages/s (the guest writes {pages_s})")
    assert 0.90 * pages_s <= job_pages_s <= 1.05 * pages_s


def test_unknown_domain_and_unreachable_daemon_are_one_line_errors(tb, capsys):
    from pausecast.cli import main

    assert main(["precheck", "no-such-vm", "--testbed", "--state-dir", str(tb.state_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no domain 'no-such-vm'" in err[0]
    assert main(["precheck", "x", "--src", "qemu+unix:///system?socket=/nonexistent",
                 "--dst", "qemu+unix:///system?socket=/nonexistent"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pausecast: error: cannot reach a daemon")
