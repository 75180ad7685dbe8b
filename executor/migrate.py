"""Run one scenario as a real libvirt live migration and measure it.

The scenario's [migration] section becomes libvirt's own knobs: `migrateSetMaxDowntime` (ms),
`VIR_MIGRATE_PARAM_BANDWIDTH` (MiB/s; 0 leaves libvirt's unlimited), protocol v3 live migration either
peer-to-peer (`migrateToURI3` with VIR_MIGRATE_PEER2PEER: the source daemon drives the destination, as
Nova does) or managed direct (`migrate3`: this client drives both daemons). A timeout is handled on
the client, as `virsh migrate --timeout` does: when it expires the watchdog aborts the job
(`abortJob`, Nova's default), suspends the guest (`suspend`, virsh's --timeout-suspend) or switches to
post-copy (`migrateStartPostCopy`, --timeout-postcopy). Without a timeout, a migration still in
pre-copy after `give_up_s` is aborted and recorded as not converging.

Any libvirt URI works for both ends (qemu+ssh://, qemu+tls://, qemu+unix:// ...). In peer-to-peer
mode `p2p_dst_uri` is how the *source daemon* reaches the destination, which may differ from how this
client does (the testbed: UNIX sockets here, TCP between the hosts).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..models.record import MigrationRecord
from ..models.scenario import Scenario
from .daemon_log import LogEvent, LogTail, parse_log
from .events import DomainEvent, EventRecorder, ensure_event_loop
from .jobinfo import JOB_COMPLETED, JobInfo
from .measure import Observations, build_record
from .sampler import JobSampler

# a migration without a timeout that is still in pre-copy after this long is given up on
GIVE_UP_S = 300.0
# libvirt sends the job-completed event and settles the completed job's figures just after the call
# returns; "query-migrate may report completed before its final figures are set": read again
SETTLE_S = 2.0


class ExecutorError(RuntimeError):
    """The migration could not be attempted (no such domain, a daemon unreachable)."""


@dataclass(frozen=True)
class Endpoints:
    src_uri: str
    dst_uri: str
    # the destination as the source daemon sees it (peer-to-peer); "" = dst_uri
    p2p_dst_uri: str = ""
    # where QEMU sends the stream; "" = the destination daemon's choice
    migrate_uri: str = ""
    # the daemons' debug logs, where this machine can read them (daemon_log.py)
    src_log: str = ""
    dst_log: str = ""
    # the measured round trip between the hosts, recorded beside the scenario's
    rtt_ms: float = float("nan")


@dataclass(frozen=True)
class Measurement:
    record: MigrationRecord
    samples: tuple[tuple[float, JobInfo], ...]
    events: tuple[DomainEvent, ...]
    log_events: tuple[LogEvent, ...]
    t0_s: float
    completed: dict[str, Any] = field(default_factory=dict)

    def raw(self) -> dict[str, Any]:
        """The raw observations, JSON-ready: every job-stats sample, libvirt event and logged mark."""
        return {
            "t0_s": self.t0_s,
            "samples": [{"t_s": t, **info.raw} for t, info in self.samples],
            "events": [e.to_json() for e in self.events],
            "log_events": [e.to_json() for e in self.log_events],
            "completed_job": self.completed,
        }


def migration_call(scenario: Scenario, ends: Endpoints) -> tuple[dict[str, Any], int]:
    """The typed parameters and flags of the v3 call for this scenario."""
    import libvirt

    mig = scenario.migration
    params: dict[str, Any] = {}
    if mig.bandwidth_mib_s > 0:
        # libvirt takes whole MiB/s
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = max(1, round(mig.bandwidth_mib_s))
    if ends.migrate_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = ends.migrate_uri
    flags = libvirt.VIR_MIGRATE_LIVE
    if mig.mode == "p2p":
        flags |= libvirt.VIR_MIGRATE_PEER2PEER
    if mig.timeout_s > 0 and mig.timeout_action == "postcopy":
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    return params, flags


class _Watchdog:
    """virsh's timeout handling, on the client: one thread that acts once when its time comes."""

    def __init__(self, dom: Any, scenario: Scenario, give_up_s: float) -> None:
        self.dom = dom
        mig = scenario.migration
        self.timeout_s, self.action, self.give_up_s = mig.timeout_s, mig.timeout_action, give_up_s
        self.fired = ""
        self.fired_at_s = float("nan")
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="migration-watchdog", daemon=True)
        self.t0_s = 0.0

    def start(self, t0_s: float) -> None:
        self.t0_s = t0_s
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import libvirt

        timed = self.timeout_s > 0
        wait_s = self.timeout_s if timed else self.give_up_s
        if self._stop.wait(max(0.0, self.t0_s + wait_s - time.time())):
            return
        try:
            info = JobInfo.from_stats(self.dom.jobStats())
            if not info.active:
                return  # it finished as the time came
            self.fired_at_s = time.time()
            if not timed:
                self.fired = "give-up"
                self.dom.abortJob()
            else:
                self.fired = "timeout"
                {"abort": self.dom.abortJob, "pause": self.dom.suspend,
                 "postcopy": self.dom.migrateStartPostCopy}[self.action]()
        except libvirt.libvirtError as exc:
            self.error = str(exc)


def _settled_completed_stats(dom: Any, want_final: bool) -> JobInfo:
    import libvirt

    deadline = time.monotonic() + SETTLE_S
    info = JobInfo()
    while True:
        try:
            info = JobInfo.from_stats(dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
        except libvirt.libvirtError:
            return info
        final = info.type == JOB_COMPLETED and info.downtime_ms > 0 and info.memory_iteration > 0
        if final or not want_final or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def _reachable(uri: str) -> bool:
    import libvirt

    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError:
        return False
    return True


# include/libvirt/libvirt-domain.h: virDomainState
_STATES = ("no state", "running", "blocked", "paused", "shutting down", "shut off", "crashed", "pmsuspended")


def _state_name(dom: Any) -> str:
    import libvirt

    try:
        state = dom.state()[0]
    except libvirt.libvirtError:
        return "unknown"
    return _STATES[state] if 0 <= state < len(_STATES) else str(state)


def migrate(scenario: Scenario, ends: Endpoints, domain: str, *,
            on_sample: Callable[[float, JobInfo], None] | None = None,
            give_up_s: float = GIVE_UP_S) -> Measurement:
    """Live-migrates the running domain `domain` from ends.src_uri to ends.dst_uri as the scenario
    says, and measures it. A failed migration is a result (record.failure), not an exception;
    ExecutorError means it could not be attempted."""
    import libvirt

    ensure_event_loop()
    conns: list[Any] = []
    recorders: list[EventRecorder] = []
    try:
        for uri in (ends.src_uri, ends.dst_uri, ends.src_uri):
            try:
                conns.append(libvirt.open(uri))
            except libvirt.libvirtError as exc:
                raise ExecutorError(f"cannot connect to {uri}: {exc}") from None
        src, dst, watch = conns
        try:
            dom = src.lookupByName(domain)
        except libvirt.libvirtError:
            raise ExecutorError(f"no domain {domain!r} on {ends.src_uri}") from None
        if not dom.isActive():
            raise ExecutorError(f"domain {domain!r} is not running on {ends.src_uri}")
        uuid = dom.UUIDString()
        recorders = [EventRecorder(src, "source", uuid), EventRecorder(dst, "destination", uuid)]
        tails = {"source": LogTail(ends.src_log), "destination": LogTail(ends.dst_log)}
        dom.migrateSetMaxDowntime(round(scenario.migration.max_downtime_ms))
        params, flags = migration_call(scenario, ends)
        watched = watch.lookupByUUIDString(uuid)
        sampler = JobSampler(watched, on_sample=on_sample)
        watchdog = _Watchdog(watched, scenario, give_up_s)

        error, code, domain_code = "", 0, 0
        t0 = time.time()
        sampler.start()
        watchdog.start(t0)
        try:
            if scenario.migration.mode == "p2p":
                dom.migrateToURI3(ends.p2p_dst_uri or ends.dst_uri, params, flags)
            else:
                # migrate3's returned domain is bound to the wrong connection in libvirt-python: unused
                dom.migrate3(dst, params, flags)
        except libvirt.libvirtError as exc:
            error, code, domain_code = str(exc), exc.get_error_code(), exc.get_error_domain()
        t_end = time.time()
        watchdog.stop()
        samples = sampler.stop()

        if not error:
            recorders[0].wait_for("job completed", SETTLE_S)
        completed = _settled_completed_stats(dom, want_final=not error)
        reachable = _reachable(ends.dst_uri) if error else None
        log_events = [e for host, tail in tails.items() for e in parse_log(tail.read(), host)]
        events = [e for r in recorders for e in r.events]
        obs = Observations(
            scenario=scenario, mode=scenario.migration.mode, t0_s=t0, t_end_s=t_end,
            error=error, error_code=code, error_domain=domain_code, destination_reachable=reachable,
            source_state=_state_name(dom), watchdog=watchdog.fired, watchdog_s=watchdog.fired_at_s,
            completed=completed, samples=tuple(samples),
            events=tuple(sorted(events, key=lambda e: e.t_s)),
            log_events=tuple(sorted(log_events, key=lambda e: e.t_s)), rtt_ms=ends.rtt_ms)
        return Measurement(build_record(obs), obs.samples, obs.events, obs.log_events, t0, completed.raw)
    finally:
        for r in recorders:
            r.close()
        for conn in conns:
            # a daemon killed under us has taken its connection with it
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
