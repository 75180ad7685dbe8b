"""The SimPy engine: one libvirt v3 migration, phase by phase, as generator processes.

The engine only schedules: the pre-copy rule, the polling rule and the windows' definitions come
from `pausecast.models`. It does no I/O; it returns the result record and its event log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from ..models import auto_converge as ac
from ..models import switchover as rule
from ..models import timeline
from ..models.association import waits_for_switch
from ..models.dirty import DirtyModel, dirty_model_for, written_pages
from ..models.errors import ScenarioError
from ..models.limits import SIM_EVENTS, SWITCH_BACKLOG
from ..models.phases import Phase, network_outage_s
from ..models.record import MigrationRecord
from ..models.scenario import Scenario, SwitchSpec
from ..models.stream import scenario_rates
from ..models.units import mib_to_bytes, mib_to_pages, ms_to_s, s_to_ms
from .policy import PolicyMixin
from .switch import LibvirtView, Switch


@dataclass(frozen=True)
class Event:
    t_s: float
    host: str
    name: str
    detail: str = ""


@dataclass(frozen=True)
class Prediction:
    record: MigrationRecord
    events: tuple[Event, ...]


@dataclass(frozen=True)
class LinkRates:
    """The rates one migration sees: live phase (capped), final copy (never capped); and whether the
    link bound the live phase, leaving its queue full at the stop (models/stream.py)."""

    live_bytes_s: float
    final_bytes_s: float
    cap_bound: bool
    link_bound: bool = True

    @classmethod
    def for_scenario(cls, scenario: Scenario) -> LinkRates:
        r = scenario_rates(scenario)
        return cls(r.live_bytes_s, r.final_bytes_s, r.cap_bound, r.link_bound)


@dataclass
class _Marks:
    """What the run has seen so far, relative to the migration's start."""

    phases: dict[str, float] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    failure: str = ""
    forced: str = ""
    converged: bool = False
    iterations: int = 0
    bytes_sent: float = 0.0


class MigrationRun:
    """One migration in one SimPy environment. `run()` is the process; the parts are sub-processes."""

    def __init__(self, env: simpy.Environment, scenario: Scenario, switch: Switch | None,
                 dirty: DirtyModel, rates: LinkRates) -> None:
        self.env = env
        self.s = scenario
        self.switch = switch
        self.dirty = dirty
        self.rates = rates
        # (t_s, host, name, detail, values): a detail with values is a format string, filled in only
        # when the log is read (`events`); a sweep never reads it
        self._log: list[tuple[float, str, str, str, tuple[Any, ...]]] = []
        self.m = _Marks()
        self.t0 = env.now
        self.oh = timeline.Overheads.from_ms(scenario.overheads)
        self.half_rtt_s = ms_to_s(scenario.link.rtt_ms) / 2
        self.spans = timeline.layout(self.oh, self.half_rtt_s)
        self.port_type = scenario.port_profile.type
        self.port_answers: list[simpy.Event] = []

    # -- bookkeeping ---------------------------------------------------------------------------
    def now(self) -> float:
        return self.env.now - self.t0

    def log(self, host: str, name: str, detail: str = "", *values: Any) -> None:
        """With `values`, `detail` is a str.format template, filled in only when `events` is read."""
        self._log.append((self.now(), host, name, detail, values))

    @property
    def events(self) -> list[Event]:
        return [Event(t_s, host, name, detail.format(*values) if values else detail)
                for t_s, host, name, detail, values in self._log]

    def mark(self, phase: Phase, edge: str) -> None:
        key, host, name = _MARKS[phase, edge]
        self.m.phases[key] = self.now()
        self.log(host, name)

    def wait(self, seconds: float):
        return self.env.timeout(max(0.0, seconds))

    def wait_spans(self, *spans: tuple[float, ...]):
        """Waits the layout's delays one after the other (models/timeline.py `after`)."""
        for span in spans:
            for delay_s in span:
                yield self.wait(delay_s)

    # -- port profiles -------------------------------------------------------------------------
    def _port_requests(self, request: str, host: str):
        """Sends `request` for every vNIC in turn. Returns (ok, libvirt-observed seconds, reason)."""
        if self.port_type == "none":
            return True, 0.0, ""
        total = 0.0
        for vnic in range(self.s.port_profile.vnics):
            switch = self._switch_for(host)
            if waits_for_switch(self.port_type, request):
                view: LibvirtView = yield self.env.process(switch.libvirt_request(request))
                self.m.values["switch_wait_ms"] = (self.m.values.get("switch_wait_ms", 0.0)
                                                   + s_to_ms(view.answer.wait_s if view.answer else 0.0))
                total += view.observed_s
                self.log(host, request, f"vnic {vnic}: {'ok' if view.ok else view.reason} "
                                        f"after {s_to_ms(view.observed_s):.0f} ms")
                if not view.ok:
                    return False, total, view.reason
            else:
                sent_at = self.env.now
                answered = switch.request(request)
                answered.callbacks.append(lambda ev, t=sent_at, r=request: self._late_answer(ev, t, r))
                self.port_answers.append(answered)
                self.log(host, request, f"vnic {vnic}: sent, libvirt does not wait")
        return True, total, ""

    def _switch_for(self, host: str) -> Switch:
        """The switch that answers `host`'s port requests: one for both ends of a single migration."""
        return self.switch

    def _late_answer(self, answered: simpy.Event, sent_at: float, request: str) -> None:
        latency = self.env.now - sent_at
        key = f"{request}_answer_s"
        self.m.values[key] = max(self.m.values.get(key, 0.0), self.now())
        self.m.values[f"{request}_latency_s"] = max(self.m.values.get(f"{request}_latency_s", 0.0), latency)

    # -- the five phases -----------------------------------------------------------------------
    def run(self):
        self.mark(Phase.BEGIN, "start")
        yield from self.wait_spans(self.spans.begin)
        self.mark(Phase.BEGIN, "end")

        self.mark(Phase.PREPARE, "start")
        yield from self.wait_spans(self.spans.prepare_before_ports)
        ok, observed_s, reason = yield from self._port_requests("preassociate", "destination")
        self.m.values["preassociation_ms"] = s_to_ms(observed_s)
        yield from self.wait_spans(self.spans.prepare_after_ports)
        self.mark(Phase.PREPARE, "end")
        if not ok:
            self.m.failure = reason
            self.log("source", "abort", reason)
            return

        self.mark(Phase.PERFORM, "start")
        outcome = yield from self._perform()
        self.mark(Phase.PERFORM, "end")
        if outcome == "aborted":
            yield from self._cancel()
            return
        if outcome == "stalled":
            return

        self.mark(Phase.FINISH, "start")
        if self.m.forced != "postcopy":
            yield from self._finish()
        else:
            yield from self._finish_after_postcopy()
        self.mark(Phase.FINISH, "end")

        self.mark(Phase.CONFIRM, "start")
        if self.m.failure:
            # Finish failed: libvirt's Confirm resumes the source guest instead of killing it
            yield from self.wait_spans(self.spans.confirm_after_failure)
            self.m.values["source_resume_s"] = self.now()
            self.log("source", "resume", "migration failed, guest stays on the source")
        else:
            yield from self.wait_spans(self.spans.confirm)
            _, observed_s, _ = yield from self._port_requests("disassociate", "source")
            self.m.values["disassociation_ms"] = s_to_ms(observed_s)
        self.mark(Phase.CONFIRM, "end")
        if self.port_answers:
            # the run ends when late 802.1Qbg answers are in, so the outage is known (or never comes)
            yield self.env.any_of([self.env.all_of(self.port_answers),
                                   self.env.timeout(self.s.switch.timeout_s)])

    def _perform(self):
        """Setup, iterative pre-copy under the switchover rule, stop-and-copy. Returns an outcome."""
        vm, mig = self.s.vm, self.s.migration
        self.m.values["setup_time_ms"] = s_to_ms(timeline.after(0.0, self.spans.setup))
        yield from self.wait_spans(self.spans.setup)
        live_start = self.env.now
        self.m.values["live_start_s"] = self.now()
        zero_pages = mib_to_pages(vm.memory_mib, vm.page_size_bytes) * vm.zero_page_fraction
        state = rule.start_precopy(vm.page_size_bytes, written_pages(vm), zero_pages, vm.zero_page_layout)
        rate, threshold, interval = self._live_rates()
        params = ac.params_of(mig)
        if params is not None:
            # the guest's writes follow its own clock, which the throttle slows (models/auto_converge.py)
            clock = ac.GuestClock()
            self.dirty = ac.ThrottledDirty(self.dirty, clock)
            throttle = ac.Throttle()
        pause_at = math.inf
        # a step cut short by a change of rate ends between checks: QEMU decides only after a sync
        may_stop = True
        self.log("source", "sync", "iteration {}: setup, {:.1f} MiB", state.syncs,
                 state.pending_bytes / 2**20)
        while not (may_stop and rule.below_threshold(state, threshold)):
            # re-read each step: an orchestrator's monitor may set one mid-migration (sim/policy.py)
            deadline = self._deadline()
            may_stop = True
            step = rule.time_to_next_sync(state, mig.switchover_rule, rate, threshold, interval)
            if not self.m.forced and self.env.now + step >= deadline:
                to_deadline = deadline - self.env.now
                yield self._sending(to_deadline)
                if not self._sent(state, to_deadline, rate):
                    rate, threshold, interval = self._live_rates()
                    may_stop = False
                    continue
                outcome = self._on_timeout(state)
                if outcome != "paused":
                    self.m.iterations, self.m.bytes_sent = state.syncs, state.bytes_sent
                    if outcome == "postcopy":
                        yield from self._postcopy(state, live_start)
                    return outcome
                pause_at = self.env.now
                continue
            yield self._sending(step)
            if not self._sent(state, step, rate):
                rate, threshold, interval = self._live_rates()
                may_stop = False
                continue
            pending_before = state.bitmap_data_pages
            rule.sync(state, self.dirty)
            if params is not None:
                newly_dirty_b = (state.bitmap_data_pages - pending_before) * vm.page_size_bytes
                throttle = ac.after_sync(params, throttle, state.t_s, newly_dirty_b, state.bytes_sent)
                if throttle.pct != (clock.pcts[-1] if clock.pcts else 0):
                    self.log("source", "throttle", "{} %", throttle.pct)
                clock.set_pct(state.t_s, throttle.pct)
                self.m.values.update(throttle_peak_pct=throttle.peak_pct, throttle_since_s=throttle.since_s)
            self._synced(state)
            self.log("source", "sync", "iteration {}: {:.1f} MiB", state.syncs, state.pending_bytes / 2**20)
            if (not self.m.forced and rule.stalled(state, threshold, self.dirty.stationary_after_s)
                    and (params is None or not ac.may_still_rise(params, throttle))):
                if deadline == math.inf and not self._may_speed_up(rate):
                    self.m.iterations, self.m.bytes_sent = state.syncs, state.bytes_sent
                    self.m.failure = "not-converged"
                    self.m.values["precopy_time_s"] = math.inf
                    self.log("source", "not converging", "{:.1f} MiB pending", state.pending_bytes / 2**20)
                    return "stalled"
                yield from self._ride_out_stall(state, deadline, rate)
                rate, threshold, interval = self._live_rates()
        self.m.converged = True
        stop_at = self.env.now
        frozen_at = min(stop_at, pause_at)
        self.m.values["precopy_time_s"] = frozen_at - live_start
        self.m.values["source_stop_s"] = frozen_at - self.t0
        self.log("source", "stop", "{:.1f} MiB left", state.pending_bytes / 2**20)
        handshake_s = self.oh.handshake_s
        final_wire = state.wire_bytes_pending + mib_to_bytes(vm.device_state_mib)
        final_s = yield from self._stop_and_copy(final_wire)
        state.syncs += 1  # the completion sync in the stop-and-copy
        self.m.iterations, self.m.bytes_sent = state.syncs, state.bytes_sent + final_wire
        self.m.values.update(downtime_ms=s_to_ms(self.env.now - stop_at), final_copy_ms=s_to_ms(final_s),
                             handshake_ms=s_to_ms(handshake_s))
        return "completed"

    def _deadline(self) -> float:
        """When the live phase's timeout fires (libvirt's --timeout), absolute; inf for none."""
        timeout_s = self.s.migration.timeout_s
        return self.t0 + timeout_s if timeout_s > 0 else math.inf

    def _synced(self, state: rule.PrecopyState) -> None:
        """After each bitmap sync of the live phase: a hook for an orchestrator's monitor (sim/policy.py)."""

    def _on_timeout(self, state: rule.PrecopyState) -> str:
        action = self._timeout_action()
        self.log("source", "timeout", action)
        if action == "abort":
            self.m.failure = "timeout"
            self.m.values["precopy_time_s"] = self.now() - self.m.values["live_start_s"]
            return "aborted"
        self.m.forced = action
        if action == "pause":
            state.dirty_until_s = state.t_s
            return "paused"
        return "postcopy"

    def _timeout_action(self) -> str:
        return self.s.migration.timeout_action

    # -- the link as this migration sees it: constant here; a fleet overrides these (sim/fleet.py) ---
    def _live_rates(self) -> tuple[float, float, float]:
        """The live phase's rate, QEMU's switchover threshold at that rate, and its check interval."""
        rate = self.rates.live_bytes_s
        return (rate, rule.threshold_bytes(rate, ms_to_s(self.s.migration.max_downtime_ms)),
                rule.check_interval_s(self.rates.cap_bound))

    def _sending(self, duration_s: float) -> simpy.Event:
        """What a live step waits for: `duration_s` of sending (or, in a fleet, a change of rate)."""
        return self.wait(duration_s)

    def _sent(self, state: rule.PrecopyState, duration_s: float, rate: float) -> bool:
        """After the wait: adds what went out at `rate`. False when the rate changed before the step's
        end (the state then holds what was sent until the change)."""
        rule.send(state, duration_s, rate)
        return True

    def _may_speed_up(self, rate: float) -> bool:
        """Could a stalled pre-copy still get more bandwidth (and so a higher threshold)?"""
        return False

    def _ride_out_stall(self, state: rule.PrecopyState, deadline: float, rate: float):
        """A stalled pre-copy is in steady state until its timeout: skip there."""
        self._fast_forward(state, deadline - self.env.now - 1e-12, rate, "to the timeout")
        yield self.wait(deadline - self.env.now - 1e-12)

    def _stop_and_copy(self, wire_bytes: float):
        """The guest is stopped: the handshake, then `wire_bytes` uncapped. Returns the copy's seconds."""
        # the backlog drains only where the link bound the live phase (final_copy_s's third argument:
        # the queue was left empty)
        final_s = rule.final_copy_s(wire_bytes, self.rates.final_bytes_s, not self.rates.link_bound,
                                    mib_to_bytes(self.s.link.socket_backlog_mib))
        yield self.wait(timeline.stop_and_copy_s(self.oh, final_s))
        return final_s

    def _transfer(self, wire_bytes: float):
        """Post-copy pulls the rest of RAM uncapped."""
        yield self.wait(wire_bytes / self.rates.final_bytes_s)

    def _fast_forward(self, state: rule.PrecopyState, seconds: float, rate: float, until: str) -> None:
        """A stalled pre-copy is in steady state: skip `seconds` with the link busy the whole time and
        the pending set as it is now."""
        gap = max(0.0, seconds)
        state.t_s += gap
        state.last_sync_s += gap
        state.bytes_sent += gap * rate
        self.log("source", "steady state", f"skipping {gap:.1f} s {until}")

    def _postcopy(self, state: rule.PrecopyState, live_start: float):
        """Post-copy after a timeout: the destination runs once the device state is there; the rest
        of RAM follows at full link speed (max-postcopy-bandwidth 0 = unlimited)."""
        self.m.converged = True
        stop_at = self.env.now
        self.m.values["precopy_time_s"] = stop_at - live_start
        self.m.values["source_stop_s"] = stop_at - self.t0
        handshake_s = self.oh.handshake_s
        device_bytes = mib_to_bytes(self.s.vm.device_state_mib)
        device_s = yield from self._stop_and_copy(device_bytes)
        self.m.values.update(downtime_ms=s_to_ms(self.env.now - stop_at), final_copy_ms=s_to_ms(device_s),
                             handshake_ms=s_to_ms(handshake_s))
        yield from self.wait_spans(self.spans.postcopy_resume)
        self.m.values.update(destination_start_s=self.now(), finish_rpc_ms=s_to_ms(self.half_rtt_s),
                             resume_ms=self.s.overheads.resume_ms)
        self.log("destination", "resume", "post-copy: pages follow on demand")
        remaining = state.wire_bytes_pending
        yield from self._transfer(remaining)
        self.m.bytes_sent = state.bytes_sent + remaining + device_bytes
        self.m.iterations = state.syncs + 1

    def _cancel(self):
        """The pre-copy was aborted: the destination QEMU is killed, the source guest never stopped."""
        self.mark(Phase.FINISH, "start")
        yield from self.wait_spans(self.spans.finish_after_abort)
        self.mark(Phase.FINISH, "end")
        self.mark(Phase.CONFIRM, "start")
        yield from self.wait_spans(self.spans.confirm_after_abort)
        self.mark(Phase.CONFIRM, "end")

    def _finish(self):
        yield from self.wait_spans(self.spans.finish_before_ports)
        ok, observed_s, reason = yield from self._port_requests("associate", "destination")
        self.m.values.update(finish_rpc_ms=s_to_ms(self.half_rtt_s),
                             finish_work_ms=self.s.overheads.finish_ms,
                             association_wait_ms=s_to_ms(observed_s))
        if not ok:
            self.m.failure = reason
            self.log("destination", "abort", f"{reason}: destination QEMU killed")
            return
        yield from self.wait_spans(self.spans.resume)
        self.m.values.update(destination_start_s=self.now(), resume_ms=self.s.overheads.resume_ms)
        self.log("destination", "resume")

    def _finish_after_postcopy(self):
        yield from self.wait_spans(self.spans.finish_after_postcopy)
        ok, observed_s, reason = yield from self._port_requests("associate", "destination")
        self.m.values["association_wait_ms"] = s_to_ms(observed_s)
        self.m.values["postcopy_port_ready_s"] = self.now()
        if not ok:
            self.m.failure = reason

    # -- the record ----------------------------------------------------------------------------
    def record(self, seed: int, engine: str = "sim") -> MigrationRecord:
        m, v = self.m, self.m.values
        stop = v.get("source_stop_s", math.nan)
        if m.failure and "destination_start_s" not in v:
            # the guest stayed on the source: frozen from its stop until it resumed there (if ever)
            end_of_pause = v.get("source_resume_s", stop)
            pause = outage = (end_of_pause - stop) if not math.isnan(stop) else 0.0
            association = 0.0
        else:
            start = v["destination_start_s"]
            pause = start - stop
            port_ready = start
            association = v.get("association_wait_ms", 0.0) / 1000.0
            if self.port_type == "802.1Qbg":
                port_ready = v.get("associate_answer_s", math.inf)
                association = v.get("associate_latency_s", math.inf)
            if m.forced == "postcopy":
                port_ready = max(port_ready, v.get("postcopy_port_ready_s", start))
            outage = network_outage_s(stop, start, port_ready, self.oh.announce_s)
        total = m.phases.get("confirm_end_s", m.phases.get("perform_end_s", self.now()))
        if m.failure == "not-converged":
            total = math.inf
        live = v.get("precopy_time_s", math.nan)
        dirty_rate = self.dirty.distinct_pages(0.0, live) / live if 0 < live < math.inf else 0.0
        # the guest ran throttled from the throttle's first rise until it stopped (or for ever)
        since = v.get("throttle_since_s", math.inf)
        throttled_s = live - since if since < math.inf else 0.0
        return MigrationRecord(
            scenario_id=self.s.scenario_id, engine=engine, seed=seed, scenario_name=self.s.name,
            converged=m.converged, failure=m.failure, forced=m.forced, iterations=m.iterations,
            total_time_s=total, precopy_time_s=live,
            downtime_ms=v.get("downtime_ms", 0.0), pause_window_ms=s_to_ms(pause),
            network_outage_ms=s_to_ms(outage), association_ms=s_to_ms(association),
            bytes_sent=m.bytes_sent, final_copy_ms=v.get("final_copy_ms", 0.0),
            handshake_ms=v.get("handshake_ms", 0.0), finish_rpc_ms=v.get("finish_rpc_ms", 0.0),
            finish_work_ms=v.get("finish_work_ms", 0.0),
            association_wait_ms=v.get("association_wait_ms", 0.0), resume_ms=v.get("resume_ms", 0.0),
            preassociation_ms=v.get("preassociation_ms", 0.0),
            disassociation_ms=v.get("disassociation_ms", 0.0), switch_wait_ms=v.get("switch_wait_ms", 0.0),
            setup_time_ms=v.get("setup_time_ms", 0.0), dirty_rate_pages_s=dirty_rate,
            throttle_peak_pct=v.get("throttle_peak_pct", 0),
            throttle_time_s=throttled_s,
            time_elapsed_ms=s_to_ms(m.phases.get("confirm_start_s", math.nan) - m.phases["begin_start_s"]),
            **{name: m.phases.get(name, math.nan) for name in _PHASE_COLUMNS},
        )


_HOST = {Phase.BEGIN: "source", Phase.PREPARE: "destination", Phase.PERFORM: "source",
         Phase.FINISH: "destination", Phase.CONFIRM: "source"}
_PHASE_COLUMNS = tuple(f"{p}_{edge}_s" for p in Phase for edge in ("start", "end"))
# each phase edge's column and its log entry (host, name)
_MARKS = {(p, edge): (f"{p}_{edge}_s", _HOST[p], f"{p} {edge}") for p in Phase for edge in ("start", "end")}


def _needs_rng(scenario: Scenario) -> bool:
    sw = scenario.switch
    return scenario.port_profile.type != "none" and (
        sw.background_load_per_s > 0 or sw.service_distribution != "constant")


def simulate(scenario: Scenario, seed: int = 0, max_events: int = SIM_EVENTS) -> Prediction:
    """Predicts one migration. Deterministic for a given scenario and seed."""
    run = _run(scenario, seed, max_events)
    return Prediction(run.record(seed), tuple(run.events))


def predict(scenario: Scenario, seed: int = 0, max_events: int = SIM_EVENTS) -> MigrationRecord:
    """`simulate`'s record, without building its event log."""
    return _run(scenario, seed, max_events).record(seed)


class PolicyRun(PolicyMixin, MigrationRun):
    """A single migration under its scenario's orchestrator (sim/policy.py)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._policy_setup()


def _run(scenario: Scenario, seed: int, max_events: int) -> MigrationRun:
    env = simpy.Environment()
    rng = np.random.default_rng(seed) if _needs_rng(scenario) else None
    switch = Switch(env, scenario.switch, rng) if scenario.port_profile.type != "none" else None
    raise_with = "raise it with --max-events"
    if switch is not None:
        check_background_budget(scenario.switch, "switch", switch.warmup_s() + first_pass_s(scenario),
                                max_events, raise_with)
    if switch is not None and switch.warmup_s() > 0:
        env.run(until=switch.warmup_s())
    kind = PolicyRun if scenario.policy.active else MigrationRun
    run = kind(env, scenario, switch, dirty_model_for(scenario.vm), LinkRates.for_scenario(scenario))
    run_within(env, env.process(run.run()), max_events, raise_with, () if switch is None else (switch,))
    return run


# SimPy steps per background request: its arrival, its process, the slot and the service time
_STEPS_PER_REQUEST = 4


def first_pass_s(scenario: Scenario) -> float:
    """The least the live phase can take: its first pass over the written memory at the live rate."""
    vm = scenario.vm
    written_b = mib_to_bytes(vm.memory_mib * (1.0 - vm.zero_page_fraction))
    return written_b / LinkRates.for_scenario(scenario).live_bytes_s


def check_background_budget(switch: SwitchSpec, where: str, horizon_s: float, max_events: int,
                            raise_with: str) -> None:
    """Before any work: other tenants' requests at the switch at `where` over at least `horizon_s`
    fit the events budget, and an overloaded switch's backlog stays within SWITCH_BACKLOG."""
    load = switch.background_load_per_s
    expected = _STEPS_PER_REQUEST * load * horizon_s
    if expected > max_events:
        raise ScenarioError(f"{where}.background_load_per_s", load,
                            f"over at least {horizon_s:.3g} s of simulation (warm-up and the first pass) "
                            f"that is ~{expected:.3g} simulated events, more than the budget of "
                            f"{max_events} ({raise_with})")
    service_s = ms_to_s(switch.service_time_ms)
    growth_per_s = load - switch.capacity / service_s if service_s > 0 else 0.0
    if growth_per_s * horizon_s > SWITCH_BACKLOG:
        raise ScenarioError(f"{where}.background_load_per_s", load, _overloaded(
            f"its backlog grows by {growth_per_s:.3g} requests/s, over {horizon_s:.3g} s at least"))


def _overloaded(how: str) -> str:
    return (f"an overloaded switch (load x service time > capacity): {how}, more than the "
            f"{SWITCH_BACKLOG} waiting the simulation keeps (raise capacity or lower the load)")


def run_within(env: simpy.Environment, until: simpy.Event, max_events: int, raise_with: str,
               switches: Iterable[Switch] = ()) -> int:
    """`env.run(until=...)` that stops at `max_events` steps, or at a switch backlog past
    SWITCH_BACKLOG, with the one-line error. Returns the steps."""
    steps = 0
    switches = tuple(switches)
    while not until.triggered:
        env.step()
        steps += 1
        if steps > max_events:
            raise ScenarioError("simulated events", steps, f"more than the budget of {max_events} "
                                                           f"({raise_with})")
        # every 1024 steps: an overloaded switch's line grows without end (models/limits.py)
        if switches and not steps & 1023:
            waiting = sum(sw.queue.queued for sw in switches)
            if waiting > SWITCH_BACKLOG:
                raise ScenarioError("switch backlog", waiting, _overloaded(f"{waiting} requests waiting"))
    return steps
