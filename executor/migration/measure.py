"""What a real migration was, as the same result record the simulator writes (engine "executor").

`build_record` is pure: it reads the observations of one run (the daemons' logged phases and QEMU
events, libvirt's events, job-stats samples, the completed job's statistics) and fills every column.
Where the columns come from:

    phases            the daemons' logs (daemon_log.py); t = 0 is the client's migration call
    precopy_time_s    QEMU MIGRATION "active" -> QEMU STOP (source)
    downtime_ms       QEMU STOP -> MIGRATION "completed" (source): QEMU's own downtime; in a forced
                      post-copy, STOP -> "postcopy-active"
    pause_window_ms   the completed job's `downtime` (libvirt: source stop -> destination start)
    parts             handshake STOP -> "device"; final copy "device" -> "completed"; Finish RPC
                      "completed" -> the destination's Finish; Finish work -> "cont", less the
                      association wait inside it (below); resume "cont" ->
                      QEMU RESUME (destination). They add up to QEMU's STOP -> RESUME, kept as
                      Measured.pause_window_qemu_ms, a few ms under libvirt's figure.
    network_outage    with a switch that can be watched (the 802.1Qbg testbed, PortObservation): QEMU
                      STOP -> the later of the switch's answer to Finish's associate (the destination
                      port forwards from then on) and the guest's first frame reaching that port
                      (QEMU's self-announce, caught by a probe in the switch's namespace). Otherwise
                      the pause window: QEMU sends its first self-announce as it resumes the guest
                      (net/announce.c; announce-initial is the wait before the second), assumed
                      rather than observed (Measured.outage_source says which)
    association       with a watched switch: Finish's associate reaching the switch -> its answer
    association_wait  where libvirt waits for that answer in Finish (802.1Qbh, the VIC's log): the
                      associate reaching the VIC -> libvirt's status read that returned the answer
                      (whole 125 ms polls); 0 where it does not wait (802.1Qbg) or nothing is watched
    preassociation    with a watched switch: the destination's "launch" -> "launch built" in Prepare,
                      libvirt building QEMU's command line, which creates the macvtap and waits for
                      its pre-associate in 125 ms polls (a few ms of building included; the span is
                      Measured.command_line_ms whatever the port)
    iterations        the completed job's memory_iteration (QEMU dirty-sync-count)
    bytes_sent        the completed job's memory_processed
    dirty_rate        the median of QEMU's non-zero memory_dirty_rate samples (pages/s)
    throttle          auto-converge: the highest auto_converge_throttle of the job-stats samples, and
                      the first sample showing one -> the live phase's end (QEMU STOP)

Without logs (real hosts whose logs are not readable here) the phases are NaN and the source stop and
destination start come from libvirt's lifecycle events, timed at the client. A log that lacks one of
the README's log_filters leaves what that filter logs NaN, never 0, and Measured.missing_log_filters
names the entries to add.

A migration that failed keeps what was measured until then: bytes sent, iterations and dirty rate
from the last job statistics of the running job (libvirt's completed-job figures of a failed job are
mostly zero).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ...models.phases import network_outage_s
from ...models.record import Measured, MigrationRecord
from ...models.scenario import Scenario
from ...models.units import bytes_s_to_mib_s, ms_to_s, s_to_ms
from .daemon_log import LogEvent, missing_filters
from .events import DomainEvent
from .jobinfo import JOB_COMPLETED, JobInfo

NAN = math.nan
SWITCHOVER_STATUSES = ("pre-switchover", "device", "completed", "postcopy-active")
# include/libvirt/virterror.h: VIR_ERR_OPERATION_ABORTED, VIR_FROM_RPC
ERR_OPERATION_ABORTED = 78
FROM_RPC = 7


@dataclass(frozen=True)
class PortObservation:
    """What the switch saw of the destination's port during one migration, wall-clock seconds (NaN:
    not seen): Finish's associate arriving, the switch's successful answer (the port forwards from
    then on) and the guest's first frame arriving at the port."""

    associate_request_s: float = NAN
    forwarding_s: float = NAN
    first_frame_s: float = NAN
    source: str = ""
    # where libvirt waits for the answer (802.1Qbh): the status read that returned it
    associate_seen_s: float = NAN


@dataclass(frozen=True)
class Observations:
    """Everything one run saw. Times are wall-clock seconds since the epoch."""

    scenario: Scenario
    mode: str
    t0_s: float
    t_end_s: float
    # "" when the migration call succeeded
    error: str = ""
    error_code: int = 0
    error_domain: int = 0
    # after a failure: could this client still reach the destination daemon (None: not asked)
    destination_reachable: bool | None = None
    # after a failure that took this client's connection to the source daemon with it (the daemon
    # restarted or died): did a new connection reach it (None: the connection survived, not asked)
    source_reachable: bool | None = None
    # the source domain's state after the call: "running", "paused", "shut off", ...
    source_state: str = ""
    # what the executor's watchdog did: "" | "timeout" | "give-up"
    watchdog: str = ""
    watchdog_s: float = NAN
    # the orchestrator's deadline action when its monitor fired ("" : the scenario's timeout_action)
    watchdog_action: str = ""
    # the orchestrator's monitor: (seconds after the call, "downtime" | a deadline action, ms or 0)
    policy_actions: tuple[tuple[float, str, float], ...] = ()
    completed: JobInfo = field(default_factory=JobInfo)
    samples: tuple[tuple[float, JobInfo], ...] = ()
    events: tuple[DomainEvent, ...] = ()
    log_events: tuple[LogEvent, ...] = ()
    rtt_ms: float = NAN
    port: PortObservation | None = None
    # a stuck VSI's one-line diagnosis (vdp_faults.py): the failure's cause, or a warning after success
    port_fault: str = ""
    # "<source URI> -> <destination URI>"
    direction: str = ""
    # {"source": {"libvirt": "9.0.0", "qemu": "7.2.0"}, "destination": {...}}
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    # the domain's memory as libvirt defines it (<memory>)
    domain_memory_mib: float = NAN


class _Timeline:
    def __init__(self, obs: Observations) -> None:
        self.obs = obs
        self.t0 = obs.t0_s

    def log(self, host: str, name: str, detail: str | None = None, after_s: float = -math.inf) -> float:
        """Seconds after t0 of the first logged `name` on `host` (with `detail`), or NaN."""
        for e in self.obs.log_events:
            if e.host == host and e.name == name and (detail is None or e.detail == detail) \
                    and e.t_s - self.t0 >= after_s:
                return e.t_s - self.t0
        return NAN

    def qemu_status(self, host: str, *statuses: str) -> float:
        times = [self.log(host, "qemu MIGRATION", s) for s in statuses]
        return min((t for t in times if not math.isnan(t)), default=NAN)

    def event(self, host: str, kind: str, name: str, detail: str | None = None) -> float:
        for e in self.obs.events:
            if (e.host, e.kind, e.name) == (host, kind, name) and detail in (None, e.detail):
                return e.t_s - self.t0
        return NAN


def _first(*values: float) -> float:
    return next((v for v in values if not math.isnan(v)), NAN)


def _ms_between(a: float, b: float) -> float:
    return s_to_ms(b - a) if not (math.isnan(a) or math.isnan(b)) else NAN


def observed_dirty_rate(samples: Iterable[tuple[float, JobInfo]]) -> float:
    rates = [info.memory_dirty_rate_pages_s for _, info in samples
             if info.active and info.memory_dirty_rate_pages_s > 0]
    return float(statistics.median(rates)) if rates else 0.0


def stream_mib_s(samples: Iterable[tuple[float, JobInfo]]) -> float:
    """The migration stream's throughput: the median of QEMU's non-zero transfer-rate samples
    (memory_bps, measured over its bandwidth windows), NaN when none was seen."""
    rates = [info.memory_bytes_s for _, info in samples if info.active and info.memory_bytes_s > 0]
    return bytes_s_to_mib_s(float(statistics.median(rates))) if rates else NAN


def final_job_stats(completed: JobInfo, samples: Iterable[tuple[float, JobInfo]]) -> JobInfo:
    """The job's last figures: libvirt's completed-job statistics when the job completed, else the
    later of those and the running job's last sample (a failed job's completed figures are mostly 0)."""
    last = next((info for _, info in reversed(tuple(samples)) if info.active), JobInfo())
    if completed.type == JOB_COMPLETED and completed.memory_iteration:
        return completed
    return max(completed, last, key=lambda info: info.memory_processed_bytes)


def failure_text(obs: Observations) -> str:
    """Why the VM stayed on the source, in the simulator's words where they overlap ("timeout",
    "not-converged"), a stuck VSI's diagnosis (vdp_faults.py), else what failed and libvirt's message.
    libvirt says "client socket is closed" both when the destination daemon died and when the link
    between the hosts was cut; whether this client can still reach the destination daemon tells the two
    apart. A source daemon that died under the call took this client's connection with it: a new
    connection that reaches it says it was restarted. A failure after the destination's Finish began
    and before it resumed the guest is Finish's (its QEMU gone, say)."""
    if obs.watchdog == "timeout" and timeout_action(obs) == "abort":
        return "timeout"
    if obs.watchdog == "give-up":
        return "not-converged"
    if not obs.error:
        return ""
    if obs.port_fault:
        return obs.port_fault
    if obs.source_reachable is not None:
        what = "restarted during the migration" if obs.source_reachable else "unreachable"
        return f"source daemon {what}: {obs.error}"
    if obs.destination_reachable is False:
        return f"destination daemon unreachable: {obs.error}"
    if obs.error_code == ERR_OPERATION_ABORTED:
        return f"aborted: {obs.error}"
    if obs.error_domain == FROM_RPC:
        return f"connection between the hosts lost (destination daemon up): {obs.error}"
    if _failed_in_finish(obs.log_events):
        return f"Finish failed on the destination, before its guest ran: {obs.error}"
    return f"migration failed: {obs.error}"


def _failed_in_finish(log_events: Iterable[LogEvent]) -> bool:
    """The destination logged Finish's start but never sent "cont": the call failed in Finish, and
    the source's Confirm, told so, resumed the guest there."""
    names = {e.name for e in log_events if e.host == "destination"}
    return "finish" in names and "start cpus" not in names


def timeout_action(obs: Observations) -> str:
    return obs.watchdog_action or obs.scenario.migration.timeout_action


def build_record(obs: Observations) -> MigrationRecord:
    s = obs.scenario
    tl = _Timeline(obs)
    failure = failure_text(obs)
    forced = timeout_action(obs) if obs.watchdog == "timeout" and not failure else ""
    done = final_job_stats(obs.completed, obs.samples)

    active = tl.qemu_status("source", "active")
    stop = _first(tl.log("source", "qemu STOP", after_s=_first(active, 0.0)),
                  tl.event("source", "lifecycle", "suspended", "migrated"),
                  tl.event("source", "lifecycle", "suspended", "paused"))
    device = tl.qemu_status("source", "device", "postcopy-active")
    # a guest paused by the timeout stopped long before the switchover's handshake began
    handshake_start = tl.qemu_status("source", "pre-switchover") if forced == "pause" else stop
    # the source's copy ends when the destination may run: "completed", or in post-copy the switch
    # to "postcopy-active" (the rest of RAM follows on demand)
    completed = _first(tl.qemu_status("source", "postcopy-active"), tl.qemu_status("source", "completed"))
    live_end = _first(stop, tl.qemu_status("source", "cancelling", "cancelled", "failed"))
    finish = tl.log("destination", "finish")
    start_cpus = tl.log("destination", "start cpus")
    dst_resume = _first(tl.log("destination", "qemu RESUME"),
                        tl.event("destination", "lifecycle", "resumed", "migrated"),
                        tl.event("destination", "lifecycle", "resumed", "postcopy"))
    switched = not math.isnan(tl.qemu_status("source", *SWITCHOVER_STATUSES)) or (
        not obs.error and not math.isnan(stop))
    converged = (switched or (not obs.error and not failure)) and failure not in ("timeout", "not-converged")

    if failure:
        # the guest stayed on the source: frozen from its stop until it ran there again, if it stopped
        src_resume = tl.log("source", "qemu RESUME", after_s=_first(stop, math.inf))
        pause = _ms_between(stop, src_resume) if not math.isnan(stop) else 0.0
        outage, association, outage_source = pause, 0.0, "the guest stayed on the source"
    else:
        pause = float(done.downtime_ms) if obs.completed.downtime_ms else _ms_between(stop, dst_resume)
        outage, association, outage_source = _outage_ms(obs, stop, pause)
    phases = {
        "begin_start_s": 0.0,
        "begin_end_s": tl.log("destination", "prepare"),
        "prepare_start_s": tl.log("destination", "prepare"),
        "prepare_end_s": tl.log("source", "perform"),
        "perform_start_s": tl.log("source", "perform"),
        "perform_end_s": _first(finish, tl.log("source", "confirm")),
        "finish_start_s": finish,
        "finish_end_s": tl.log("source", "confirm"),
        "confirm_start_s": tl.log("source", "confirm"),
        "confirm_end_s": _first(tl.log("source", "job end", after_s=_first(tl.log("source", "confirm"), 0.0)),
                                obs.t_end_s - obs.t0_s),
    }
    if math.isnan(phases["begin_end_s"]):
        phases["begin_start_s"] = NAN
    # inside Finish -> "cont": the rest of that span is Finish's own work
    association_wait_ms = _association_wait_ms(obs) if not failure else 0.0
    live_s = live_end - active if not (math.isnan(live_end) or math.isnan(active)) else NAN
    qemu_pause = _ms_between(stop, dst_resume)
    command_line_ms = _ms_between(tl.log("destination", "launch"), tl.log("destination", "launch built"))
    missing = [] if failure else sorted({f for host in ("source", "destination")
                                         for f in missing_filters(obs.log_events, host)})
    # a part of the pause window is 0 when it did not happen (the guest never switched over); one that
    # happened but was not logged is not known
    part = _zero_if_nan if failure else float
    measured = Measured(
        mode=s.migration.mode,
        direction=obs.direction,
        pause_window_qemu_ms=qemu_pause,
        command_line_ms=command_line_ms,
        downtime_net_ms=float(done.downtime_net_ms),
        outage_source=outage_source,
        **_port_times(obs),
        memory_constant_pages=done.memory_constant_pages,
        memory_normal_pages=done.memory_normal_pages,
        stream_mib_s=stream_mib_s(obs.samples),
        domain_memory_mib=obs.domain_memory_mib,
        versions=obs.versions,
        iteration_times_s=[e.t_s - obs.t0_s for e in obs.log_events
                           if e.host == "source" and e.name == "qemu MIGRATION_PASS"],
        qemu_stop_s=stop,
        destination_start_s=dst_resume,
        live_start_s=active,
        watchdog=obs.watchdog,
        watchdog_s=obs.watchdog_s - obs.t0_s,
        policy=s.policy.orchestrator if s.policy.active else "",
        policy_time_scale=s.policy.time_scale,
        policy_actions=[list(a) for a in obs.policy_actions],
        error=obs.error,
        error_code=obs.error_code,
        error_domain=obs.error_domain,
        destination_reachable=obs.destination_reachable,
        source_reachable=obs.source_reachable,
        source_state=obs.source_state,
        port_fault=obs.port_fault,
        rtt_ms=obs.rtt_ms,
        missing_log_filters=missing,
        phases_from=phases_from(obs.log_events, missing),
    )
    return MigrationRecord(
        scenario_id=s.scenario_id, engine="executor", seed=0, scenario_name=s.name,
        converged=converged, failure=failure, forced=forced,
        iterations=max(done.memory_iteration, len(measured.iteration_times_s)),
        total_time_s=obs.t_end_s - obs.t0_s, precopy_time_s=live_s,
        downtime_ms=_ms_between(stop, completed) if not failure else 0.0,
        pause_window_ms=pause, network_outage_ms=outage, association_ms=association,
        preassociation_ms=_zero_if_nan(command_line_ms) if obs.port is not None else 0.0,
        bytes_sent=float(done.memory_processed_bytes),
        final_copy_ms=part(_ms_between(device, completed)),
        handshake_ms=part(_ms_between(handshake_start, device)),
        finish_rpc_ms=part(_ms_between(completed, finish)),
        finish_work_ms=part(_ms_between(finish, start_cpus) - association_wait_ms),
        association_wait_ms=association_wait_ms,
        resume_ms=part(_ms_between(start_cpus, dst_resume)),
        setup_time_ms=float(done.setup_time_ms),
        time_elapsed_ms=float(done.time_elapsed_ms) if done.time_elapsed_ms else NAN,
        dirty_rate_pages_s=observed_dirty_rate(obs.samples),
        **_throttle(obs.samples, obs.t0_s, live_end),
        extra=measured.as_extra(), **phases)


def _throttle(samples: Iterable[tuple[float, JobInfo]], t0_s: float, live_end_s: float) -> dict[str, Any]:
    """Auto-converge as the job statistics saw it (every 100 ms): the highest auto_converge_throttle,
    and the time from the first sample that showed one to the end of the live phase (0 when none did;
    a sample's resolution, so up to 0.1 s short)."""
    throttled = [(t_s - t0_s, info.auto_converge_throttle_pct) for t_s, info in samples
                 if info.active and info.auto_converge_throttle_pct > 0]
    if not throttled:
        return {"throttle_peak_pct": 0, "throttle_time_s": 0.0}
    return {"throttle_peak_pct": max(pct for _, pct in throttled),
            "throttle_time_s": max(0.0, _zero_if_nan(live_end_s - throttled[0][0]))}


def phases_from(log_events: Iterable[LogEvent], missing: list[str]) -> str:
    """Where the record's phases came from, in one line; a filter the logs lack is named with the
    libvirtd.conf entry that adds it."""
    if not any(True for _ in log_events):
        return "client events only (give --src-log/--dst-log: see README)"
    if not missing:
        return "daemon logs"
    add = " ".join(f"1:{f}" for f in missing)
    return f"daemon logs lacking {', '.join(missing)}: its phases are missing; add {add} to log_filters"


def _outage_ms(obs: Observations, stop: float, pause_ms: float) -> tuple[float, float, str]:
    """(network outage, Finish's association, where the outage came from) of a migration that
    completed; `stop` is QEMU's STOP, seconds after t0."""
    port = obs.port
    if port is None or math.isnan(stop):
        return pause_ms, 0.0, "the pause window: no switch port watched (QEMU announces as it resumes)"
    # a switch that never answered Finish's associate leaves the port blocked: the outage never ends
    forwarding_at_s = math.inf if math.isnan(port.forwarding_s) else port.forwarding_s
    if math.isnan(port.first_frame_s):
        guest_talks = stop + ms_to_s(pause_ms)
        source = f"{port.source}; the guest's first frame not seen, taken to leave as it resumed"
    else:
        guest_talks, source = port.first_frame_s - obs.t0_s, port.source
    outage = s_to_ms(network_outage_s(stop, guest_talks, forwarding_at_s - obs.t0_s, 0.0))
    # libvirt's pause window and the logged STOP come from different clocks: the outage contains the
    # pause by definition, so a few-ms inversion between them is not a shorter outage
    return max(outage, pause_ms), _ms_between(port.associate_request_s, forwarding_at_s), source


def _association_wait_ms(obs: Observations) -> float:
    """Finish's associate reaching the switch -> libvirt reading its answer, where libvirt waits."""
    port = obs.port
    if port is None or math.isnan(port.associate_seen_s):
        return 0.0
    return _ms_between(port.associate_request_s, port.associate_seen_s)


def _port_times(obs: Observations) -> dict[str, float]:
    """The switch's observations, seconds after t0 (NaN: not seen or not watched)."""
    port = obs.port or PortObservation()
    return {f"port_{name}": getattr(port, name) - obs.t0_s
            for name in ("associate_request_s", "forwarding_s", "first_frame_s", "associate_seen_s")}


def _zero_if_nan(value: float) -> float:
    """A part of the pause window that did not happen (or was not logged) took no time."""
    return 0.0 if math.isnan(value) else value

