"""Run one scenario as a real libvirt live migration and measure it.

The scenario's [migration] section becomes libvirt's own knobs: `migrateSetMaxDowntime` (ms),
`VIR_MIGRATE_PARAM_BANDWIDTH` (MiB/s; 0 leaves libvirt's unlimited), protocol v3 live migration either
peer-to-peer (`migrateToURI3` with VIR_MIGRATE_PEER2PEER: the source daemon drives the destination, as
Nova does) or managed direct (`migrate3`: this client drives both daemons); auto-converge is
VIR_MIGRATE_AUTO_CONVERGE with VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL/_INCREMENT (QEMU's other
throttle parameters have no libvirt knob: only their defaults run). A timeout is handled on
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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ...models.errors import ScenarioError
from ...models.policy import may_postcopy
from ...models.record import MigrationRecord
from ...models.scenario import MigrationSpec, Scenario
from ..vdp.faults import StuckVsi, diagnose, qbg_instance_ids
from .daemon_log import LogEvent, LogTail, parse_log
from .events import DomainEvent, EventRecorder, ensure_event_loop
from .job_thread import JobThread
from .jobinfo import JOB_COMPLETED, JobInfo
from .measure import Observations, PortObservation, build_record
from .policy_monitor import PolicyMonitor, initial_downtime_ms
from .sampler import JobSampler

# a migration without a timeout that is still in pre-copy after this long is given up on
GIVE_UP_S = 300.0
# libvirt sends the job-completed event and settles the completed job's figures just after the call
# returns; "query-migrate may report completed before its final figures are set": read again
SETTLE_S = 2.0
# a daemon restarted under a migration (systemd after a crash, an upgrade) answers again within
# seconds; how long to wait for it before calling it gone
RECONNECT_S = 15.0
# (t0_s, wait_s) -> what the switch saw of the destination's port since t0_s
PortObserver = Callable[[float, float], PortObservation]


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
    # the hosts as reports name them ("" = the URI's host), and their lldpad debug logs where this
    # machine can read them (a stuck VSI: vdp_faults.py)
    src_name: str = ""
    dst_name: str = ""
    src_lldpad_log: str = ""
    dst_lldpad_log: str = ""


@dataclass(frozen=True)
class Measurement:
    record: MigrationRecord
    samples: tuple[tuple[float, JobInfo], ...]
    events: tuple[DomainEvent, ...]
    log_events: tuple[LogEvent, ...]
    t0_s: float
    completed: dict[str, Any] = field(default_factory=dict)
    # a host's lldpad refusing the guest's VSI: why the call failed, or a warning after success
    port_fault: StuckVsi | None = None

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
    check_libvirt_can_set(mig)
    params: dict[str, Any] = {}
    if mig.bandwidth_mib_s > 0:
        # libvirt takes whole MiB/s
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = max(1, round(mig.bandwidth_mib_s))
    if ends.migrate_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = ends.migrate_uri
    flags = libvirt.VIR_MIGRATE_LIVE
    if mig.mode == "p2p":
        flags |= libvirt.VIR_MIGRATE_PEER2PEER
    if mig.persistent:
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST
    if mig.undefine_source:
        flags |= libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    if (mig.timeout_s > 0 and mig.timeout_action == "postcopy") or may_postcopy(scenario.policy):
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if mig.auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        # libvirt refuses these without the flag ("Turn auto convergence on to tune it")
        params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL] = mig.auto_converge_initial_pct
        params[libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT] = mig.auto_converge_increment_pct
    return params, flags


def check_libvirt_can_set(mig: MigrationSpec) -> None:
    """QEMU's auto-converge parameters libvirt has no migration parameter for: a scenario may only
    ask for QEMU's own default, which is what the real migration then runs with."""
    for name in ("max_cpu_throttle_pct", "throttle_trigger_threshold_pct", "cpu_throttle_tailslow"):
        value, default = getattr(mig, name), MigrationSpec.__dataclass_fields__[name].default
        if value != default:
            raise ScenarioError(f"migration.{name}", value,
                                f"libvirt has no migration parameter for it: a real run takes QEMU's "
                                f"default, {default}")


class _Watchdog(JobThread):
    """virsh's timeout handling, on the client: one thread that acts once when its time comes."""

    def __init__(self, dom: Any, scenario: Scenario, give_up_s: float) -> None:
        super().__init__(dom, "migration-watchdog")
        mig = scenario.migration
        self.timeout_s, self.action, self.give_up_s = mig.timeout_s, mig.timeout_action, give_up_s

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


def _settled_completed_stats(doms: list[Any], want_final: bool) -> JobInfo:
    """libvirt's completed-job statistics, from the first of `doms` that still has the domain: a
    migration that undefined the source (or moved a transient domain) left it only on the destination,
    whose completed job carries the same figures."""
    import libvirt

    deadline = time.monotonic() + SETTLE_S
    info = JobInfo()
    while True:
        try:
            info = JobInfo.from_stats(doms[0].jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
        except libvirt.libvirtError:
            if len(doms) == 1:
                return info
            doms = doms[1:]
            continue
        final = info.type == JOB_COMPLETED and info.downtime_ms > 0 and info.memory_iteration > 0
        if final or not want_final or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def _arrived(dst: Any, uuid: str) -> list[Any]:
    """The migrated domain on the destination, if it is there."""
    import libvirt

    try:
        return [dst.lookupByUUIDString(uuid)]
    except libvirt.libvirtError:
        return []


def _reachable(uri: str) -> bool:
    import libvirt

    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError:
        return False
    return True


def _reopen(uri: str, wait_s: float) -> Any | None:
    """A new connection to the daemon at `uri`, tried until `wait_s` has passed; None if it does not
    answer by then."""
    import libvirt

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                return None
        time.sleep(0.2)


def _alive(conn: Any) -> bool:
    import libvirt

    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


# include/libvirt/libvirt-domain.h: virDomainState
_STATES = ("no state", "running", "blocked", "paused", "shutting down", "shut off", "crashed", "pmsuspended")


def _state_name(dom: Any) -> str:
    import libvirt

    try:
        state = dom.state()[0]
    except libvirt.libvirtError:
        return "unknown"
    return _STATES[state] if 0 <= state < len(_STATES) else str(state)


def _state_on(conn: Any, uuid: str) -> str:
    """The domain's state as the daemon behind `conn` sees it."""
    import libvirt

    try:
        return _state_name(conn.lookupByUUIDString(uuid))
    except libvirt.libvirtError:
        return "unknown"


def _version_text(number: int) -> str:
    """libvirt's version numbers: major x 1,000,000 + minor x 1,000 + release."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def host_versions(conn: Any) -> dict[str, str]:
    """The libvirt and QEMU versions of the daemon behind `conn`."""
    import libvirt

    try:
        return {"libvirt": _version_text(conn.getLibVersion()), "qemu": _version_text(conn.getVersion())}
    except libvirt.libvirtError:
        return {}


def running_domain(src: Any, dst: Any, ends: Endpoints, domain: str) -> Any:
    """The running domain on the source; an ExecutorError that says where it is when it is not there
    (on the destination, where a run before moved it, say)."""
    import libvirt

    def running_on(conn: Any) -> bool | None:
        """None: no such domain there."""
        try:
            return bool(conn.lookupByName(domain).isActive())
        except libvirt.libvirtError:
            return None

    if running_on(src):
        return src.lookupByName(domain)
    if running_on(dst):
        where = f"it is running on the destination, {ends.dst_uri} (swap --src and --dst to move it back)"
    elif running_on(src) is False:
        where = "it is defined there but not running"
    else:
        where = f"there is no domain of that name there nor on {ends.dst_uri}"
    raise ExecutorError(f"domain {domain!r} is not running on {ends.src_uri}: {where}")


def _host_name(uri: str, role: str) -> str:
    return urlsplit(uri).hostname or f"the {role} host"


def stuck_vsi_after(host: str, error: str, daemon: LogTail, lldpad: LogTail,
                    instance_ids: tuple[str, ...]) -> StuckVsi | None:
    """Whether `host`'s lldpad refused one of `instance_ids` for a stuck VSI since the tails were made:
    diagnose() on what its libvirtd and lldpad logged meanwhile, where readable, and on `error`."""
    if not instance_ids:
        return None
    before = ""
    if lldpad.path is not None and lldpad.path.exists():
        with open(lldpad.path, "rb") as fh:
            before = fh.read(lldpad.offset).decode("utf-8", "replace")
    return diagnose(host, error, daemon_log=_read_if_there(daemon), lldpad_log=_read_if_there(lldpad),
                    lldpad_before=before, instance_ids=instance_ids)


def _read_if_there(tail: LogTail) -> str | None:
    return tail.read() if tail.path is not None and tail.path.exists() else None


def migrate(scenario: Scenario, ends: Endpoints, domain: str, *,
            on_sample: Callable[[float, JobInfo], None] | None = None,
            give_up_s: float = GIVE_UP_S, observe_port: PortObserver | None = None) -> Measurement:
    """Live-migrates the running domain `domain` from ends.src_uri to ends.dst_uri as the scenario
    says, and measures it. A failed migration is a result (record.failure), not an exception;
    ExecutorError means it could not be attempted. `observe_port(t0_s, wait_s)`, where the switch can
    be watched, says what it saw of the destination's port since the call started; after a
    successful call it may wait up to the switch's timeout for a late answer to Finish's associate
    (802.1Qbg: libvirt does not wait for it)."""
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
        dom = running_domain(src, dst, ends, domain)
        versions = {"source": host_versions(src), "destination": host_versions(dst)}
        # read now: a migration that undefines the source takes the domain object with it
        memory_mib = dom.maxMemory() / 1024
        uuid = dom.UUIDString()
        recorders = [EventRecorder(src, "source", uuid), EventRecorder(dst, "destination", uuid)]
        tails = {"source": LogTail(ends.src_log), "destination": LogTail(ends.dst_log)}
        lldpad_tails = {"source": LogTail(ends.src_lldpad_log), "destination": LogTail(ends.dst_lldpad_log)}
        instance_ids = qbg_instance_ids(dom.XMLDesc(0))
        dom.migrateSetMaxDowntime(round(initial_downtime_ms(scenario)))
        params, flags = migration_call(scenario, ends)
        watched = watch.lookupByUUIDString(uuid)
        sampler = JobSampler(watched, on_sample=on_sample)
        watchdog = _Watchdog(watched, scenario, give_up_s)
        monitor = PolicyMonitor(watched, scenario, memory_mib) if scenario.policy.active else None

        error, code, domain_code = "", 0, 0
        t0 = time.time()
        sampler.start()
        watchdog.start(t0)
        if monitor:
            monitor.start(t0)
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
        if monitor:
            monitor.stop()
        samples = sampler.stop()
        # the orchestrator's deadline, when it came first, is the run's timeout
        acted = monitor if monitor and monitor.fired else watchdog

        if not error:
            recorders[0].wait_for("job completed", SETTLE_S)
        completed = _settled_completed_stats([dom, *_arrived(dst, uuid)], want_final=not error)
        reachable = _reachable(ends.dst_uri) if error else None
        # the source daemon died under the call (restarted, or gone): its connection went with it, so
        # what became of the guest is asked through a new one once the daemon answers again (libvirt's
        # recovery cancels a migration still in Perform and keeps the guest running)
        source_reachable, source_state = None, ""
        if error and not _alive(src):
            fresh = _reopen(ends.src_uri, RECONNECT_S)
            source_reachable = fresh is not None
            if fresh is not None:
                conns.append(fresh)
                source_state = _state_on(fresh, uuid)
        log_events = [e for host, tail in tails.items() for e in parse_log(tail.read(), host)]
        port = observe_port(t0, 0.0 if error else scenario.switch.timeout_s) if observe_port else None
        events = [e for r in recorders for e in r.events]
        # failed: the destination's lldpad refused Prepare's or Finish's request; succeeded: the source's
        # may have refused Confirm's de-associate (the VSI stays stuck there for the way back)
        role, host = (("destination", ends.dst_name or _host_name(ends.dst_uri, "destination")) if error
                      else ("source", ends.src_name or _host_name(ends.src_uri, "source")))
        fault = stuck_vsi_after(host, error, tails[role], lldpad_tails[role], instance_ids)
        obs = Observations(
            scenario=scenario, mode=scenario.migration.mode, t0_s=t0, t_end_s=t_end,
            error=error, error_code=code, error_domain=domain_code, destination_reachable=reachable,
            source_reachable=source_reachable, source_state=source_state or _state_name(dom),
            watchdog=acted.fired, watchdog_s=acted.fired_at_s,
            watchdog_action=monitor.action if acted is monitor else "",
            policy_actions=tuple(monitor.actions) if monitor else (),
            completed=completed, samples=tuple(samples),
            events=tuple(sorted(events, key=lambda e: e.t_s)),
            log_events=tuple(sorted(log_events, key=lambda e: e.t_s)), rtt_ms=ends.rtt_ms, port=port,
            port_fault=fault.diagnosis if fault else "", direction=f"{ends.src_uri} -> {ends.dst_uri}",
            versions=versions, domain_memory_mib=memory_mib)
        return Measurement(build_record(obs), obs.samples, obs.events, obs.log_events, t0, completed.raw,
                           fault)
    finally:
        for r in recorders:
            r.close()
        for conn in conns:
            # a daemon killed under us has taken its connection with it
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
