"""The executor's pure parts, without libvirt: job statistics, the daemons' logs, the measured record,
calibration, the scenario -> test guest map, the validation arithmetic, and the sweep pattern the
testbed's guest needs from the model. Expected values are worked out by hand in the comments."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pausecast.analysis.calibration import (
    CalibrationError,
    cold_start_runs,
    combine,
    fit_switch,
    overheads_of,
)
from pausecast.analysis.validation import Comparison, median_record, verdict
from pausecast.cli import main
from pausecast.cli.progress import ProgressLine
from pausecast.executor.migration.daemon_log import LogTail, parse_log
from pausecast.executor.migration.events import lifecycle_name
from pausecast.executor.migration.jobinfo import JOB_COMPLETED, JobInfo
from pausecast.executor.migration.measure import Observations, PortObservation, build_record
from pausecast.executor.testbed.guest_domain import STRIDE_ONE
from pausecast.executor.testbed.scenario_map import RESERVED_MIB, delay_to_apply_ms, guest_for
from pausecast.models import switchover as rule
from pausecast.models.dirty import ConstantDirty, dirty_model_for
from pausecast.models.errors import ScenarioError
from pausecast.models.fieldpaths import get_value
from pausecast.models.overheads import OVERHEAD_FIELDS, load_overheads_profile
from pausecast.models.record import Measured, MigrationRecord
from pausecast.models.scenario import SwitchSpec
from pausecast.models.switch_queue import sample_service_s
from pausecast.models.units import s_to_ms
from pausecast.runs.json_text import strict_json
from pausecast.sim import fast, predict

from .conftest import make

# ------------------------------------------------------------------------------------------ jobinfo


def test_jobinfo_types_what_libvirt_gives_and_keeps_the_rest():
    raw = {"type": 3, "downtime": 125, "memory_iteration": 11, "memory_bps": 34032245,
           "memory_dirty_rate": 4686, "memory_total": 1000, "memory_remaining": 250, "vendor_key": "x"}
    info = JobInfo.from_stats(raw)
    assert (info.type, info.downtime_ms, info.memory_iteration) == (JOB_COMPLETED, 125, 11)
    assert info.memory_bytes_s == 34032245 and info.memory_dirty_rate_pages_s == 4686
    assert info.setup_time_ms == 0  # absent: tolerated
    assert info.raw["vendor_key"] == "x" and info.type_name == "completed" and not info.active
    # virsh --verbose: 100 - 250 x 100 / 1000 = 75 %, from memory when there is no data_total
    assert info.progress_pct() == 75.0
    assert JobInfo.from_stats(None).type_name == "none"


def test_lifecycle_events_are_named_as_libvirt_numbers_them():
    # include/libvirt/libvirt-domain.h: VIR_DOMAIN_EVENT_SUSPENDED = 3 with detail _MIGRATED = 1,
    # VIR_DOMAIN_EVENT_RESUMED = 4 with _MIGRATED = 1, VIR_DOMAIN_EVENT_STOPPED = 5 with _MIGRATED = 3
    assert lifecycle_name(3, 1) == ("suspended", "migrated")
    assert lifecycle_name(4, 1) == ("resumed", "migrated")
    assert lifecycle_name(5, 3) == ("stopped", "migrated")
    assert lifecycle_name(42, 0) == ("42", "0")


def test_the_progress_line_is_virshs_on_a_terminal_only():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    active = JobInfo.from_stats({"type": 2, "data_total": 400, "data_remaining": 100, "memory_iteration": 2,
                                 "memory_bps": 32 * 2**20, "memory_dirty_rate": 5000})
    for stream in (tty, pipe):
        line = ProgressLine(stream)
        line(0.0, active)
        line.finish(migrated=True)
    # 100 - 100 x 100 / 400 = 75 %
    assert tty.getvalue().startswith("\rMigration: [ 75 %]  iteration 2    32.0 MiB/s  dirty 5000 pages/s")
    assert "Migration: [100 %]" in tty.getvalue() and pipe.getvalue() == ""


# -------------------------------------------------------------------------------------- daemon logs

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, the client's migration call in the logs below


def _line(ms: int, function: str, message: str) -> str:
    """A libvirtd debug line `ms` milliseconds after T0."""
    return f"2027-01-15 08:00:{ms // 1000:02d}.{ms % 1000:03d}+0000: 7: debug : {function}:1 : {message}"


def _event(ms: int, event: str, data: dict | None = None) -> str:
    body = {"timestamp": {"seconds": 1_800_000_000 + ms // 1000, "microseconds": ms % 1000 * 1000},
            "event": event, **({"data": data} if data else {})}
    return _line(ms, "qemuMonitorJSONIOProcessLine",
                 f"QEMU_MONITOR_RECV_EVENT: mon=0x5 event={json.dumps(body)}")


SRC_LOG = "\n".join([
    _line(10, "qemuMigrationSrcBeginPhase", "driver=0x1, vm=0x2"),
    _line(520, "qemuMigrationSrcPerformNative", "uri=tcp:10.0.0.2:49152, cookiein=<qemu-migration>"),
    "  a continuation line of the cookie </qemu-migration>",
    _event(540, "MIGRATION", {"status": "active"}),
    _event(4540, "MIGRATION_PASS", {"pass": 2}),
    _event(6040, "STOP"),
    _event(6045, "MIGRATION", {"status": "device"}),
    _event(6125, "MIGRATION", {"status": "completed"}),
    _line(6170, "qemuMigrationSrcConfirmPhase", "driver=0x1, vm=0x2"),
    _line(6171, "qemuProcessStop", "Shutting down vm=0x2 name=g id=1 pid=9, reason=migrated"),
    _line(6400, "virDomainObjEndAsyncJob", "Stopping async job: migration out (vm=0x2)"),
]) + "\n"
DST_LOG = "\n".join([
    _line(20, "qemuMigrationDstPrepareDirect", "driver=0x3"),
    _line(21, "qemuMigrationDstPrepareFresh", "name=g"),
    _line(30, "qemuProcessLaunch", "Creating domain log file"),
    _line(162, "qemuProcessLaunch", "Building mount namespace"),
    _line(6130, "qemuMigrationDstFinish", "driver=0x3"),
    _line(6140, "qemuProcessStartCPUs", "Using lock state '<null>'"),
    _event(6141, "RESUME"),
]) + "\n"


def _logged() -> list:
    return sorted(parse_log(SRC_LOG, "source") + parse_log(DST_LOG, "destination"), key=lambda e: e.t_s)


def test_the_log_gives_each_phase_mark_and_qemu_event_once():
    names = [(e.host, e.name, e.detail) for e in _logged()]
    assert [n for h, n, _ in names if h == "destination"] == ["prepare", "launch", "launch built", "finish",
                                                              "start cpus", "qemu RESUME"]
    assert [n for h, n, _ in names if h == "source"] == [
        "begin", "perform", "qemu MIGRATION", "qemu MIGRATION_PASS", "qemu STOP", "qemu MIGRATION",
        "qemu MIGRATION", "confirm", "qemu stop", "job end"]


def test_log_tail_reads_only_what_came_after_it(tmp_path):
    log = tmp_path / "migration.log"
    log.write_text("old\n")
    tail = LogTail(log)
    with open(log, "a") as fh:
        fh.write("new\n")
    assert tail.read() == "new\n"
    assert LogTail(None).read() == "" and LogTail(tmp_path / "absent").read() == ""


# ----------------------------------------------------------------------------------- the record


def _observations(**changes) -> Observations:
    scenario = make(vm={"memory_mib": 256, "zero_page_fraction": 0.5, "dirty": {"rate_mib_s": 19.53125}})
    completed = JobInfo.from_stats({"type": 3, "downtime": 110, "memory_iteration": 3, "setup_time": 2,
                                    "memory_processed": 300 * 2**20})
    samples = tuple((T0 + 1 + i, JobInfo.from_stats({"type": 2, "memory_dirty_rate": rate}))
                    for i, rate in enumerate((0, 4900, 5000, 5100)))
    base = dict(scenario=scenario, mode="p2p", t0_s=T0, t_end_s=T0 + 6.5, completed=completed,
                samples=samples, log_events=tuple(_logged()), rtt_ms=0.05)
    base.update(changes)
    return Observations(**base)


def test_a_migrated_run_becomes_the_simulators_record():
    r = build_record(_observations())
    assert (r.engine, r.converged, r.failure, r.iterations) == ("executor", True, "", 3)
    # phases from the marks, t = 0 at the call: Prepare starts at .020, Perform at .520, Finish at 6.130,
    # Confirm at 6.170, the source's job ends at 6.400
    assert (r.begin_start_s, r.begin_end_s) == (0.0, pytest.approx(0.020, abs=1e-6))
    assert r.prepare_end_s == r.perform_start_s == pytest.approx(0.520, abs=1e-6)
    assert r.perform_end_s == r.finish_start_s == pytest.approx(6.130, abs=1e-6)
    assert r.finish_end_s == r.confirm_start_s == pytest.approx(6.170, abs=1e-6)
    assert r.confirm_end_s == pytest.approx(6.400, abs=1e-6) and r.total_time_s == pytest.approx(6.5)
    # QEMU's stamps: active .540, STOP 6.040, device 6.045, completed 6.125; RESUME 6.141 on the destination
    assert r.precopy_time_s == pytest.approx(5.5, abs=1e-6)
    assert r.downtime_ms == pytest.approx(85.0, abs=1e-3)
    assert (r.handshake_ms, r.final_copy_ms) == (pytest.approx(5.0, abs=1e-3), pytest.approx(80.0, abs=1e-3))
    # completed -> Finish 5 ms, Finish -> cont 10 ms, cont -> RESUME 1 ms: 101 ms by QEMU's stamps
    assert (r.finish_rpc_ms, r.finish_work_ms, r.resume_ms) == pytest.approx((5.0, 10.0, 1.0), abs=1e-3)
    assert r.extra["pause_window_qemu_ms"] == pytest.approx(101.0, abs=1e-3)
    # libvirt's completed-job downtime is the pause window; with no switch port watched, the outage is
    # the pause (QEMU sends its first self-announce as it resumes)
    assert r.pause_window_ms == 110.0 and r.network_outage_ms == 110.0
    assert "no switch port watched" in r.extra["outage_source"]
    # QEMU's command line took 30 -> 162 ms; without a port there is no pre-associate in it
    assert r.extra["command_line_ms"] == pytest.approx(132.0, abs=1e-3) and r.preassociation_ms == 0.0
    assert r.bytes_sent == 300 * 2**20 and r.setup_time_ms == 2.0
    # the median of the non-zero dirty rates 4900, 5000, 5100
    assert r.dirty_rate_pages_s == 5000.0
    assert r.extra["iteration_times_s"] == [pytest.approx(4.54, abs=1e-6)]


def test_a_watched_switch_port_ends_the_outage_when_it_forwards_and_the_guest_talks():
    def outage(request_s: float, forwarding_s: float, frame_s: float) -> MigrationRecord:
        port = PortObservation(T0 + request_s, T0 + forwarding_s, T0 + frame_s, "switch log + probe")
        return build_record(_observations(port=port))

    # QEMU STOP at 6.040, RESUME at 6.141. A slow switch: Finish's associate reaches it at 6.131 and is
    # answered at 6.451, the guest's first frame arrives at 6.142: cut off until 6.451, 411 ms, of
    # which the association took 320 ms
    slow = outage(6.131, 6.451, 6.142)
    assert slow.network_outage_ms == pytest.approx(411.0, abs=1e-3)
    assert slow.association_ms == pytest.approx(320.0, abs=1e-3)
    assert slow.extra["port_forwarding_s"] == pytest.approx(6.451, abs=1e-6)
    # with a port, building QEMU's command line in Prepare (30 -> 162 ms) waited for the pre-associate
    assert slow.preassociation_ms == pytest.approx(132.0, abs=1e-3)
    # a fast switch answers before the guest runs: the guest's first frame (6.142) ends it, 102 ms
    # after the STOP; shorter than libvirt's 110 ms pause window by the two clocks' skew, so the pause
    assert outage(6.131, 6.132, 6.142).network_outage_ms == 110.0
    assert outage(6.131, 6.132, 6.160).network_outage_ms == pytest.approx(120.0, abs=1e-3)
    # a switch that never answers Finish's associate leaves the port blocked
    never = outage(6.131, math.nan, 6.142)
    assert never.network_outage_ms == math.inf and never.association_ms == math.inf
    assert never.migrated


def test_failures_say_what_failed_and_leave_the_pause_at_zero():
    def failed(**kw) -> MigrationRecord:
        return build_record(_observations(log_events=(), completed=JobInfo(), **kw))

    lost = dict(error="internal error: client socket is closed", error_code=1, error_domain=7)
    assert failed(destination_reachable=False, **lost).failure.startswith("destination daemon unreachable")
    assert failed(destination_reachable=True, **lost).failure.startswith("connection between the hosts lost")
    timed_out = failed(error="operation aborted: migration out job: canceled by client", error_code=78,
                       watchdog="timeout", scenario=make(migration={"timeout_s": 5}))
    assert (timed_out.failure, timed_out.converged) == ("timeout", False)
    assert failed(error="x", error_code=78).failure == "aborted: x"
    assert failed(error="x", error_code=1).failure == "migration failed: x"
    assert failed(watchdog="give-up", error="x", error_code=78).failure == "not-converged"
    for r in (timed_out, failed(**lost)):
        assert r.pause_window_ms == 0.0 and not r.migrated and math.isnan(r.prepare_start_s)


def test_a_source_daemon_gone_under_the_call_is_named_before_the_link():
    def failed(**kw) -> MigrationRecord:
        return build_record(_observations(log_events=(), completed=JobInfo(), **kw))

    # the executor's own connection to the source died with its daemon: the destination is up, so
    # without the source's side this would read as the link between the hosts
    lost = dict(error="End of file while reading data: Input/output error", error_code=38, error_domain=7,
                destination_reachable=True)
    restarted = failed(source_reachable=True, source_state="running", **lost)
    assert restarted.failure == f"source daemon restarted during the migration: {lost['error']}"
    assert restarted.extra["source_state"] == "running" and not restarted.migrated
    assert failed(source_reachable=False, **lost).failure.startswith("source daemon unreachable: End of")
    assert failed(**lost).failure.startswith("connection between the hosts lost")


def test_a_failure_in_finish_before_the_guest_ran_is_finishs():
    # the destination logged Finish's start and no "cont": its QEMU went away under Finish
    marks = tuple(e for e in _logged()
                  if e.host == "source" or e.name not in ("start cpus", "qemu RESUME"))
    error = dict(error="operation failed: domain is not running", error_code=55, error_domain=10)
    r = build_record(_observations(log_events=marks, completed=JobInfo(), **error))
    assert r.failure == "Finish failed on the destination, before its guest ran: " + error["error"]
    assert not r.migrated
    # a failure before Finish stays what libvirt says
    before = tuple(e for e in marks if e.name != "finish")
    assert build_record(_observations(log_events=before, completed=JobInfo(), **error)).failure == \
        "migration failed: " + error["error"]


def _a_run(t0_s: float):
    from pausecast.executor.migration.migrate import Measurement

    record = predict(make())
    return Measurement(record, (), (), (), t0_s=t0_s)


def test_a_run_that_cannot_be_written_leaves_the_results_as_they_were(tmp_path, monkeypatch):
    import errno

    from pausecast.runs import store
    from pausecast.runs.run_files import RUNS_TABLE, write_run

    first = write_run(_a_run(1_700_000_000.25), tmp_path)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real = store.ResultsStore._atomic
    written: list[str] = []

    def full_after_one(self, final, write):
        # record.json goes whole, raw.json finds the disk full half-way
        if written:
            with open(final.with_name(final.name + ".part"), "wb") as fh:
                fh.write(b"{")
            raise OSError(errno.ENOSPC, "No space left on device", str(final))
        written.append(final.name)
        return real(self, final, write)

    monkeypatch.setattr(store.ResultsStore, "_atomic", full_after_one)
    with pytest.raises(OSError, match="No space left"):
        write_run(_a_run(1_700_000_100.5), tmp_path)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before and [p.name for p in (tmp_path / "runs").iterdir()] == [first.name]
    assert len((tmp_path / RUNS_TABLE).read_text().splitlines()) == 2
    assert not list(tmp_path.glob(".run-*"))


def test_a_log_without_a_filter_leaves_its_parts_missing_and_names_the_filter():
    # the destination's log without qemu.qemu_process: no "launch", no "start cpus" line
    dst = "\n".join(line for line in DST_LOG.splitlines() if "qemuProcess" not in line)
    events = tuple(sorted(parse_log(SRC_LOG, "source") + parse_log(dst, "destination"), key=lambda e: e.t_s))
    r = build_record(_observations(log_events=events))
    # Finish -> cont and cont -> RESUME both need "start cpus": not known, not 0
    assert math.isnan(r.finish_work_ms) and math.isnan(r.resume_ms)
    # what the other filters logged is still there: STOP 6.040 -> device 6.045 -> completed 6.125
    assert (r.handshake_ms, r.final_copy_ms) == (pytest.approx(5.0, abs=1e-3), pytest.approx(80.0, abs=1e-3))
    assert r.extra["missing_log_filters"] == ["qemu.qemu_process"]
    assert "add 1:qemu.qemu_process to log_filters" in r.extra["phases_from"]
    with pytest.raises(CalibrationError, match=r"qemu\.qemu_process"):
        overheads_of(r)
    complete = build_record(_observations())
    assert complete.extra["missing_log_filters"] == [] and complete.extra["phases_from"] == "daemon logs"


def test_an_aborted_run_keeps_what_its_job_statistics_saw():
    # the job ran 3 iterations and sent 332 MB before the abort; libvirt's completed-job statistics of
    # the failed job say 0, and the sampler's last sample came after the job was gone
    running = [(T0 + 1 + i, JobInfo.from_stats({"type": 2, "memory_processed": mb * 10**6,
                                                 "memory_iteration": it, "memory_dirty_rate": 5000}))
               for i, (mb, it) in enumerate(((100, 1), (250, 2), (332, 3)))]
    gone = (T0 + 4.1, JobInfo.from_stats({"type": 0}))
    r = build_record(_observations(log_events=(), samples=(*running, gone),
                                   completed=JobInfo.from_stats({"type": 4, "memory_iteration": 3}),
                                   error="operation aborted: migration out job: canceled by client",
                                   error_code=78))
    assert r.failure.startswith("aborted") and not r.migrated
    assert (r.bytes_sent, r.iterations, r.dirty_rate_pages_s) == (332e6, 3, 5000.0)


# -------------------------------------------------------------------------------------- calibration


def test_calibrated_costs_add_up_to_the_measured_run():
    r = build_record(_observations())
    costs = overheads_of(r)
    assert set(costs) == set(OVERHEAD_FIELDS)
    # rtt 0.05 ms: begin 20; prepare 500 - 0.05; setup 20 - 0.05; handshake 5; resume 1;
    # finish = 110 - 5 - 80 - 1 - 0.025 = 23.975; confirm = (6.5 - (6.040 + 0.110)) s - 0.025 = 349.975
    expected = {"begin_ms": 20.0, "prepare_ms": 499.95, "setup_ms": 19.95, "handshake_ms": 5.0,
                "resume_ms": 1.0, "finish_ms": 23.975, "confirm_ms": 349.975, "announce_ms": 0.0}
    assert costs == pytest.approx(expected, abs=1e-3)
    # the engine's layout: begin | h+prepare+h | setup+2h, live, handshake + final | h+finish+resume
    # | h+confirm, with the measured live phase and final copy, gives back the measured total
    h = 0.05 / 2
    total_ms = (costs["begin_ms"] + costs["prepare_ms"] + 2 * h + costs["setup_ms"] + 2 * h + 5500.0
                + costs["handshake_ms"] + 80.0 + h + costs["finish_ms"] + costs["resume_ms"]
                + h + costs["confirm_ms"])
    # (epoch seconds carry ~1e-7 s of float rounding)
    assert total_ms == pytest.approx(6500.0, abs=1e-3)
    medians, spreads = combine([costs, {**costs, "begin_ms": 30.0}, {**costs, "begin_ms": 10.0}])
    assert medians["begin_ms"] == pytest.approx(20.0, abs=1e-3) and spreads["begin_ms"] == (10.0, 30.0)
    with pytest.raises(CalibrationError):
        overheads_of(build_record(_observations(log_events=())))


def test_time_elapsed_is_libvirts_completed_job_figure_and_the_models_confirm_start():
    measured = build_record(_observations(completed=JobInfo.from_stats(
        {"type": 3, "downtime": 110, "memory_iteration": 3, "time_elapsed": 6151})))
    assert measured.time_elapsed_ms == 6151.0
    # a job whose statistics lack it: not known, not 0
    assert math.isnan(build_record(_observations()).time_elapsed_ms)
    # predicted: Begin through the destination's start (models/timeline.py), the layout's Confirm start
    from pausecast.models.timeline import Overheads, forward

    s = make(vm={"memory_mib": 256, "dirty": {"rate_mib_s": 30}})
    r = predict(s)
    half_rtt_s = s.link.rtt_ms / 2000
    marks = forward(Overheads.from_ms(s.overheads), half_rtt_s, r.precopy_time_s, r.final_copy_ms / 1000)
    assert r.time_elapsed_ms == pytest.approx(marks.destination_start_s * 1000, abs=1e-6)
    assert r.time_elapsed_ms < r.total_time_s * 1000


def test_the_layout_forward_from_a_runs_costs_gives_the_run_back():
    # models/timeline.py: calibration inverts the layout over the run's marks; laying the costs out
    # again with the run's live phase and final copy gives its boundaries and windows back
    from pausecast.analysis.calibration import half_rtt_s, marks_of
    from pausecast.models.timeline import forward, inverse

    r = build_record(_observations())
    marks, h = marks_of(r), half_rtt_s(Measured.of(r))
    back = forward(inverse(marks, h), h, precopy_s=marks.source_stop_s - marks.live_start_s,
                   final_copy_s=marks.final_copy_s, start_s=marks.begin_start_s)
    assert back.total_time_s == pytest.approx(r.total_time_s, abs=1e-9)
    pause_ms = (back.destination_start_s - back.source_stop_s) * 1000
    assert pause_ms == pytest.approx(r.pause_window_ms, abs=1e-6)
    assert (back.prepare_start_s, back.perform_start_s) == (pytest.approx(r.prepare_start_s, abs=1e-9),
                                                            pytest.approx(r.perform_start_s, abs=1e-9))


def test_virshs_persistent_and_undefinesource_become_libvirts_flags():
    from pausecast.executor.migration.migrate import Endpoints, migration_call

    # include/libvirt/libvirt-domain.h: VIR_MIGRATE_LIVE 1 << 0, _PEER2PEER 1 << 1, _PERSIST_DEST 1 << 3,
    # _UNDEFINE_SOURCE 1 << 4; off by default, as in virsh
    both = make(migration={"persistent": True, "undefine_source": True})
    assert migration_call(both, Endpoints("a", "b"))[1] == 1 | 2 | 8 | 16
    assert migration_call(make(migration={"mode": "direct"}), Endpoints("a", "b"))[1] == 1
    # how the call is made is not what the migration is: predictions and runs still join
    assert both.scenario_id == make().scenario_id


def test_auto_converge_becomes_libvirts_flag_and_typed_parameters():
    import libvirt

    from pausecast.executor.migration.migrate import Endpoints, migration_call

    # include/libvirt/libvirt-domain.h: VIR_MIGRATE_AUTO_CONVERGE 1 << 13; the two parameters are
    # "auto_converge.initial" and "auto_converge.increment", refused by libvirt without the flag
    params, flags = migration_call(make(migration={"auto_converge": True, "auto_converge_initial_pct": 30,
                                                   "auto_converge_increment_pct": 15}), Endpoints("a", "b"))
    assert flags == 1 | 2 | 1 << 13
    assert params == {"auto_converge.initial": 30, "auto_converge.increment": 15}
    assert libvirt.VIR_MIGRATE_AUTO_CONVERGE == 1 << 13
    assert migration_call(make(), Endpoints("a", "b")) == ({}, 1 | 2)
    # QEMU's parameters libvirt cannot set: only their defaults can run for real
    tuned = make(migration={"auto_converge": True, "max_cpu_throttle_pct": 80})
    with pytest.raises(ScenarioError, match=r"^migration\.max_cpu_throttle_pct = 80.*QEMU's default, 99"):
        migration_call(tuned, Endpoints("a", "b"))


def test_the_throttle_is_read_from_the_job_statistics():
    # samples at 1-4 s after the call show auto_converge_throttle 0, 20, 30, 30: the peak is 30 %, the
    # guest throttled from the 2 s sample until QEMU's STOP at 6.040 s: 4.04 s
    samples = tuple((T0 + 1 + i, JobInfo.from_stats({"type": 2, "memory_dirty_rate": 5000,
                                                     "auto_converge_throttle": pct}))
                    for i, pct in enumerate((0, 20, 30, 30)))
    r = build_record(_observations(samples=samples))
    assert r.throttle_peak_pct == 30 and r.throttle_time_s == pytest.approx(4.04, abs=1e-6)
    assert (build_record(_observations()).throttle_peak_pct, build_record(_observations()).throttle_time_s) \
        == (0, 0.0)


def test_calibration_migrates_as_the_scenario_says_without_its_timeout():
    from pausecast.cli.calibrate import idle_scenario

    base = make(migration={"mode": "direct", "persistent": True, "timeout_s": 30.0, "bandwidth_mib_s": 64.0})
    idle = idle_scenario(base)
    mig = idle.migration
    assert (mig.mode, mig.persistent, mig.bandwidth_mib_s) == ("direct", True, 64.0)
    assert idle.migration.timeout_s == 0.0 and idle.vm.dirty.rate_mib_s == 0.0
    assert idle_scenario(None).migration.mode == "p2p"


def test_a_calibrated_profile_is_a_scenarios_profile(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text('[overheads]\nprepare_ms = 480.0\nconfirm_ms = 218.0\n[measured]\nruns = 5\n')
    costs = load_overheads_profile(str(profile))
    assert (costs["prepare_ms"], costs["confirm_ms"]) == (480.0, 218.0)
    s = make(overheads={"profile": str(profile)})
    assert s.overheads.prepare_ms == 480.0


# --------------------------------------------------------------------------------- the test guest


def test_the_guest_stands_for_the_scenarios_vm():
    s = make(vm={"memory_mib": 256, "zero_page_fraction": 0.5, "dirty": {"rate_mib_s": 19.53125}})
    plan = guest_for(s)
    assert plan.memory_mib == 256 and plan.dirty.region_mib == 128
    assert plan.dirty.rate_pages == 5000  # 19.53125 MiB/s x 256 pages per MiB
    # 128 MiB spread over the 253 MiB the region may use: pages 253/128 apart, in 16.16 fixed point
    assert plan.dirty.stride_fp == (256 - RESERVED_MIB) * STRIDE_ONE // 128
    assert plan.dirty.min_memory_mib() <= 256 and plan.dirty.scatter == 1 and plan.dirty.pm_timer == 1
    # timer-paced unless auto-converge is on: then the workload that loses what it cannot run
    assert plan.dirty.work_paced == 0
    auto_converging = s.replace(migration=make(migration={"auto_converge": True}).migration)
    assert guest_for(auto_converging).dirty.work_paced == 1
    hot = guest_for(make(vm={"memory_mib": 128, "zero_page_fraction": 0.5, "dirty": {
        "model": "hotcold", "hot_set_mib": 8, "hot_rate_mib_s": 40, "cold_rate_mib_s": 4}}))
    assert (hot.dirty.hot_mib, hot.dirty.hot_rate_pages, hot.dirty.cold_rate_pages) == (8, 10240, 1024)


def test_a_written_low_guest_writes_one_contiguous_region_and_leaves_the_ram_above_untouched():
    vm = {"memory_mib": 1024, "zero_page_fraction": 0.875, "dirty": {"rate_mib_s": 6.0}}
    plan = guest_for(make(vm={**vm, "zero_page_layout": "written-low"}))
    # 128 MiB from 2 MiB up, page after page: 1024 - 2 - 128 = 894 MiB above it never written
    assert (plan.dirty.region_start_mib, plan.dirty.region_mib) == (2, 128)
    assert plan.dirty.stride_fp == STRIDE_ONE and plan.dirty.span_mib() == 128
    assert "stride_fp=65536" in plan.dirty.cmdline()
    # spread: the same 128 MiB over all the RAM the region may use
    assert guest_for(make(vm=vm)).dirty.span_mib() == 1024 - RESERVED_MIB


@pytest.mark.parametrize(("sections", "field"), [
    ({"vm": {"page_size_bytes": 65536}}, "vm.page_size_bytes"),
    ({"vm": {"memory_mib": 256.5}}, "vm.memory_mib"),
    ({"vm": {"memory_mib": 256, "zero_page_fraction": 0.0}}, "vm.zero_page_fraction"),
    ({"vm": {"device_state_mib": 1.0}}, "vm.device_state_mib"),
    ({"port_profile": {"type": "802.1Qbg"}}, "port_profile.type"),
])
def test_what_the_guest_cannot_be_is_refused_by_field(sections, field):
    with pytest.raises(ScenarioError) as err:
        guest_for(make(**sections))
    assert err.value.field == field


def test_a_delay_is_refused_only_where_it_cannot_be_added_and_matters():
    s = make(link={"rtt_ms": 0.5})
    assert delay_to_apply_ms(s, can_delay=False, measured_rtt_ms=0.05) == 0.0  # 0.45 ms short: tolerated
    assert delay_to_apply_ms(s, can_delay=True, measured_rtt_ms=0.05) == pytest.approx(0.45)
    with pytest.raises(ScenarioError) as err:
        delay_to_apply_ms(make(link={"rtt_ms": 20.0}), can_delay=False, measured_rtt_ms=0.05)
    assert err.value.field == "link.rtt_ms" and "netem" in str(err.value)


# ----------------------------------------------------------------------------- the sweep pattern


def test_a_sweep_adds_all_its_new_pages_after_the_first_sync():
    # 1,000 written pages, 100 pending. The first sync after the setup meets the setup's pending pages
    # at random: 200 dirtied pages add 200 x (1 - 100/1000) = 180. Later syncs add all 200 (a sweep
    # does not come back to a pending page within its round); random keeps adding 180.
    def after(pattern: str, syncs: int) -> float:
        state = rule.PrecopyState(page_size_bytes=4096, universe_pages=1000, t_s=1.0,
                                  bitmap_data_pages=100, syncs=syncs)
        rule.sync(state, ConstantDirty(200.0, 1000, sweeps=pattern == "sweep"))
        return state.bitmap_data_pages

    assert after("sweep", 1) == pytest.approx(280) and after("random", 1) == pytest.approx(280)
    assert after("sweep", 2) == pytest.approx(300) and after("random", 2) == pytest.approx(280)


def test_the_sweep_pattern_is_a_constant_models_and_goes_to_the_simpy_engine():
    s = make(vm={"dirty": {"rate_mib_s": 500, "pattern": "sweep"}})
    assert dirty_model_for(s.vm).sweeps
    # pending sets that shrink more slowly: never fewer syncs than the random pattern
    assert predict(s).iterations >= predict(make(vm={"dirty": {"rate_mib_s": 500}})).iterations
    columns = {f: [get_value(x, f) for x in (s, make())] for f in fast.FIELDS}
    assert fast.eligible(columns).tolist() == [False, True]
    with pytest.raises(ScenarioError) as err:
        make(vm={"dirty": {"model": "hotcold", "hot_set_mib": 1, "pattern": "sweep"}})
    assert err.value.field == "vm.dirty.pattern"


# -------------------------------------------------------------------------------------- validation


def _record(**values) -> MigrationRecord:
    base = dict(scenario_id="s", engine="x", converged=True, total_time_s=10.0, pause_window_ms=100.0,
                iterations=5, precopy_time_s=9.0, prepare_start_s=0.0, prepare_end_s=0.5,
                confirm_start_s=9.7, confirm_end_s=10.0)
    base.update(values)
    return MigrationRecord(**base)


def test_errors_and_the_target_verdict():
    row = Comparison(_record(total_time_s=10.2, pause_window_ms=110.0, iterations=6), _record()).row()
    assert (row["total_time_s_error"], row["pause_window_ms_error"]) == pytest.approx((0.02, 0.1))
    assert row["iterations_error"] == 1 and row["pause_within_target"] and row["verdict_right"]
    # three points: total errors 2 %, 5 %, 1 % -> median 2 %; pause 10 ms of 100 (allowance 15),
    # 4 ms of 20 (allowance 5: 0.8) and 30 ms of 100 (2.0) -> median 0.8 of the allowance
    rows = [row,
            Comparison(_record(total_time_s=10.5, pause_window_ms=24.0), _record(pause_window_ms=20.0)).row(),
            Comparison(_record(total_time_s=10.1, pause_window_ms=130.0), _record()).row()]
    v = verdict(rows)
    assert v.total_median_abs_error == pytest.approx(0.02) and v.total_ok
    assert v.pause_median_score == pytest.approx(0.8) and v.pause_ok and v.pause_points_within == 2
    assert v.iterations_ok and v.verdicts_ok and v.met
    wrong = Comparison(_record(converged=False, failure="not-converged"), _record()).row()
    v = verdict([*rows, wrong])
    assert (v.points, v.compared, v.verdicts_right, v.met) == (4, 3, 3, False)


def test_a_failure_predicted_and_measured_is_right_and_leaves_no_figure_to_miss():
    stalled = dict(converged=False, failure="not-converged", total_time_s=math.inf)
    v = verdict([Comparison(_record(**stalled), _record(**stalled, pause_window_ms=0.0)).row()])
    assert (v.points, v.compared, v.verdicts_right) == (1, 0, 1)
    assert v.met and not any("nan" in line for line in v.lines())


def test_a_cold_start_is_left_out_by_its_begin_or_prepare():
    def run(begin_s: float, prepare_s: float) -> MigrationRecord:
        return _record(begin_start_s=0.0, begin_end_s=begin_s, prepare_start_s=begin_s,
                       prepare_end_s=begin_s + prepare_s)

    # Begin 3.4 s where the others took 10-12 ms: over 3 x 11 ms and over 11 + 500 ms
    assert list(cold_start_runs([run(3.4, 0.2), run(0.010, 0.2), run(0.012, 0.21)])) == [0]
    # Prepare 1.2 s against 0.2 s: 6 x, 1,000 ms over
    assert list(cold_start_runs([run(0.01, 0.2), run(0.01, 1.2)])) == [1]
    # 3.5 x but only 450 ms over (a slow Prepare on a loaded host, not a probe): kept
    assert cold_start_runs([run(0.01, 0.18), run(0.01, 0.63), run(0.01, 0.18)]) == {}
    assert cold_start_runs([run(3.4, 0.2)]) == {}


def test_replicates_throttle_is_their_median_and_shows_where_auto_converge_is_on():
    from pausecast.cli.validate import side_by_side

    runs = [_record(throttle_peak_pct=p, throttle_time_s=t) for p, t in ((50, 10.0), (70, 14.0), (60, 12.0))]
    m = median_record(runs)
    assert (m.throttle_peak_pct, m.throttle_time_s) == (60, 12.0)
    point = Comparison(_record(throttle_peak_pct=60, throttle_time_s=15.0), m).row()
    # predicted 15 s against 12 s measured: +25 %
    assert point["throttle_time_s_error"] == pytest.approx(0.25)
    on = make(migration={"auto_converge": True})
    assert "peak throttle (%)" in side_by_side(on, point, runs, "here")
    assert "peak throttle (%)" not in side_by_side(make(), point, runs, "here")


def test_replicates_become_one_median_record():
    m = median_record([_record(total_time_s=t, iterations=i) for t, i in ((10.0, 5), (12.0, 7), (11.0, 6))])
    assert (m.total_time_s, m.iterations) == (11.0, 6)


def test_records_are_written_as_strict_json():
    assert json.dumps(strict_json({"a": math.nan, "b": [math.inf, 1.0], "c": {"d": -math.inf}})) == \
        '{"a": null, "b": [null, 1.0], "c": {"d": null}}'


# --------------------------------------------------------------------------------------- the CLI


SMALL = str(Path(__file__).resolve().parent.parent / "examples" / "testbed-small.toml")


@pytest.mark.parametrize("argv", [
    ["run", SMALL],                                                       # no target
    ["run", SMALL, "--testbed", "--src", "qemu:///system"],
    ["validate"],                                                         # neither scenario nor matrix
    ["validate", SMALL, "--testbed", "--repeat", "0"],
])
def test_a_run_without_a_clear_target_is_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pausecast: error:")


@pytest.mark.parametrize("spec", [
    SwitchSpec(service_time_ms=150.0),
    SwitchSpec(service_time_ms=100.0, service_distribution="exponential"),
    SwitchSpec(service_time_ms=80.0, service_distribution="lognormal", service_cv=0.3),
], ids=lambda s: s.service_distribution)
def test_switch_fit_recovers_the_distribution_the_emulator_draws_from(spec):
    # the emulator's service times come from sample_service_s: 2,000 of them, plus a wire of 1-3 ms
    rng = np.random.default_rng(7)
    latencies = [s_to_ms(sample_service_s(spec, rng)) + rng.uniform(1, 3) for _ in range(2000)]
    fit = fit_switch(latencies)
    assert fit.service_distribution == spec.service_distribution
    # the mean's standard error is cv x mean / sqrt(2000) (2.2% for the exponential); 4 of them, plus
    # the 2 ms of wire
    assert fit.service_time_ms == pytest.approx(spec.service_time_ms + 2, rel=0.09)
    if spec.service_distribution == "lognormal":
        assert fit.service_cv == pytest.approx(spec.service_cv, abs=0.05)


def test_switch_fit_refuses_what_cannot_be_fitted():
    for bad in ([], [120.0], [120.0, math.nan], [0.0, 10.0]):
        with pytest.raises(CalibrationError, match="at least 2 positive latencies"):
            fit_switch(bad)
