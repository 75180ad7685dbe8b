"""An orchestrator's monitor loop beside a simulated migration (models/policy/).

The loop polls on its own grid (Nova every 0.5 s from the migration's start, x `policy.time_scale`).
A poll that falls inside a live step cuts the step at the first of QEMU's checks at or after the poll
(so the check cadence is kept, and a new downtime-limit is read at that check, as QEMU re-reads it
at each check), then calls the orchestrator's `poll` with the job's statistics at that moment: the
iteration count, the pending set, the bytes sent. A new max downtime recomputes the switchover
threshold; a deadline action (abort, pause, post-copy) is the engine's timeout at that moment.

In a stalled steady state the engine skips time (sim/engine.py); the polls go on through it, each
seeing the steady state's saw-tooth: one more iteration per sync period of the last syncs, and the
pending set falling from its post-sync level at the live rate. Auto-converge (KubeVirt's
allowAutoConverge, Nova's live_migration_permit_auto_converge) is issue 15's and not modelled.
"""

from __future__ import annotations

import math

import simpy

from ..models import policy as pol
from ..models import switchover as rule
from ..models.units import ms_to_s


class PolicyMixin:
    """Put before a `MigrationRun` class in the bases (sim/engine.py PolicyRun, sim/fleet.py
    FleetPolicyRun), and call `_policy_setup()` after its __init__: the run under the scenario's
    orchestrator."""

    def _policy_setup(self) -> None:
        spec = self.s.policy
        self.pol = pol.module(spec)
        self.pol_settings = spec.settings
        self.pol_scale = spec.time_scale
        self.pol_state, self.downtime_ms = self.pol.initial(self.pol_settings, self.s.vm.memory_mib,
                                                           self.s.migration.max_downtime_ms)
        self.poll_due = math.inf
        self.pol_deadline = math.inf
        self.pol_action = ""
        self._cut: simpy.Event | None = None
        self._cut_start = 0.0
        self._check_interval_s = rule.LINK_BOUND_CHECK_INTERVAL_S
        # the last syncs: when (simulated time), their period, and the pending set after the last
        self._sync_at = math.nan
        self._sync_period_s = math.inf
        self._sync_pending_bytes = 0.0
        self._live = False

    def _elapsed_s(self) -> float:
        """The orchestrator's clock: seconds since it started the migration."""
        return (self.env.now - self.t0) / self.pol_scale

    def run(self):
        self.env.process(self._early_polls())
        yield from super().run()

    def _early_polls(self):
        """The loop starts with the call: libvirt's job exists from Begin on, before QEMU sends a page
        (iteration 0, nothing sent), and a downtime set then holds when the live phase starts."""
        due = self.t0
        while self.pol.may_act(self.pol_settings, self.pol_state):
            yield self.wait(due - self.env.now)
            if self._live or self.m.failure:
                return
            self._poll(0, 0.0, 0.0)
            due += self.pol.poll_interval_s(self.pol_settings, self.pol_state) * self.pol_scale

    def _live_rates(self) -> tuple[float, float, float]:
        rate, _, interval = super()._live_rates()
        self._live = True
        if self.poll_due == math.inf and self.pol.may_act(self.pol_settings, self.pol_state):
            self._schedule_first_poll()
        self._check_interval_s = interval
        return rate, rule.threshold_bytes(rate, ms_to_s(self.downtime_ms)), interval

    def _schedule_first_poll(self) -> None:
        """The loop's grid from the migration's start: the first poll the live phase sees (strictly
        after now: the early polls took the one at now, if any)."""
        step = self.pol.poll_interval_s(self.pol_settings, self.pol_state) * self.pol_scale
        if step < math.inf:
            self.poll_due = self.t0 + (math.floor((self.env.now - self.t0) / step + 1e-9) + 1) * step

    def _deadline(self) -> float:
        return min(super()._deadline(), self.pol_deadline)

    def _timeout_action(self) -> str:
        return self.pol_action or super()._timeout_action()

    def _sending(self, duration_s: float) -> simpy.Event:
        event = super()._sending(duration_s)
        self._cut = None
        until = self.poll_due - self.env.now
        if until < duration_s:
            interval = self._check_interval_s
            checks = math.ceil(max(0.0, until) / interval - 1e-9)
            cut = until if self.s.migration.switchover_rule == "pass-end" else checks * interval
            if cut < duration_s:
                self._cut_start = self.env.now
                self._cut = self.wait(cut)
                return event | self._cut
        return event

    def _sent(self, state: rule.PrecopyState, duration_s: float, rate: float) -> bool:
        cut = self._cut
        self._cut = None
        if cut is None or not cut.processed:
            return super()._sent(state, duration_s, rate)
        super()._sent(state, self.env.now - self._cut_start, rate)
        self._poll(state.syncs, state.pending_bytes, state.bytes_sent)
        return False

    def _synced(self, state: rule.PrecopyState) -> None:
        super()._synced(state)
        if not math.isnan(self._sync_at):
            self._sync_period_s = self.env.now - self._sync_at
        self._sync_at = self.env.now
        self._sync_pending_bytes = state.pending_bytes

    def _poll(self, iteration: int, remaining_bytes: float, transferred_bytes: float) -> bool:
        """One pass of the orchestrator's loop now. True when it changed anything."""
        obs = pol.Observation(self._elapsed_s(), iteration, remaining_bytes, transferred_bytes)
        self.pol_state, action = self.pol.poll(self.pol_settings, self.pol_state, obs)
        step = self.pol.poll_interval_s(self.pol_settings, self.pol_state) * self.pol_scale
        more = self.pol.may_act(self.pol_settings, self.pol_state)
        self.poll_due = self.poll_due + step if more else math.inf
        acted = False
        if not math.isnan(action.downtime_ms):
            self.downtime_ms = action.downtime_ms
            self.log("source", "max downtime", "{}: {:.0f} ms", self.s.policy.orchestrator,
                     action.downtime_ms)
            acted = True
        if action.deadline:
            self.pol_deadline, self.pol_action = self.env.now, action.deadline
            self.poll_due = math.inf
            acted = True
        return acted

    def _may_speed_up(self, rate: float) -> bool:
        return self.poll_due < math.inf or super()._may_speed_up(rate)

    def _ride_out_stall(self, state: rule.PrecopyState, deadline: float, rate: float):
        """Polls through the steady state until one acts; libvirt's own timeout first if sooner."""
        start = self.env.now
        while self.poll_due < deadline:
            gap = max(0.0, self.poll_due - self.env.now)
            state.t_s += gap
            state.last_sync_s += gap
            state.bytes_sent += gap * rate
            yield self.wait(gap)
            period = self._sync_period_s
            cycles = math.floor((self.env.now - self._sync_at) / period) if period < math.inf else 0
            # QEMU's iterations go on in the steady state: libvirt counts them
            state.syncs += cycles
            self._sync_at += cycles * period
            pending = max(0.0, self._sync_pending_bytes - rate * (self.env.now - self._sync_at))
            if self._poll(state.syncs, pending, state.bytes_sent):
                self.log("source", "steady state", f"polled through {self.env.now - start:.1f} s")
                return
        yield from super()._ride_out_stall(state, deadline, rate)
