"""The fleet engine: an evacuation, many migrations in one SimPy environment.

Each migration is the single-VM engine's `MigrationRun`, with three things that a fleet changes:
* its memory stream is a flow in a fluid network: flows share every link they cross by max-min
  fairness (sim/bandwidth.py), recomputed whenever a flow starts or ends. A live step cut short by a
  change of share keeps what it sent at the old rate; QEMU's bandwidth estimate, and so its switchover
  threshold and check cadence, follow the new share. The final copy and post-copy are flows too;
* its port requests go to the destination host's switch (pre-associate, associate) and the source
  host's (disassociate), shared with every other migration and with background load;
* it starts when the plan gives it a slot (at most `max_per_source_host` from one host and
  `max_concurrent` in all, the waiting VMs in the plan's order), and frees it when libvirt's call
  returns (Confirm ends, or the migration fails).

Approximations: QEMU's estimate follows the share at once (it averages over ~100 ms), and its check
cadence restarts when the share changes (a shift of at most one 50-100 ms check). A pre-copy that
stalls below its path's full rate waits in steady state for its share to change; when every open
flow is such a stall nothing can free bandwidth, and each is declared not-converging at its next sync
(as an operator would cancel them); the bandwidth they free may still let a later one converge.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from ..models import switchover as rule
from ..models.dirty import dirty_model_for
from ..models.fleet import Fleet, FleetVm, launch_order
from ..models.phases import Phase
from ..models.units import bytes_s_to_mib_s, mib_s_to_bytes_s, ms_to_s, s_to_ms
from .bandwidth import max_min_rates
from .engine import LinkRates, MigrationRun, check_background_budget, first_pass_s, run_within
from .policy import PolicyMixin
from .switch import Switch


@dataclass(frozen=True)
class FleetResult:
    # one flat row per VM: MigrationRecord.to_row() plus the fleet's columns (FLEET_COLUMNS)
    records: list[dict[str, Any]]
    summary: dict[str, Any]


# relative rounding between the network's and the single-VM engine's idea of the same link rate
_SAME_RATE = 1e-9
# the columns a fleet adds to each record row
FLEET_COLUMNS = ("fleet", "vm", "profile", "source_host", "destination_host", "switch", "path",
                 "slot_wait_s", "end_s", "pause_start_s", "pause_end_s", "live_rate_mib_s")


class Flow:
    """One memory stream in the network. `rate_bytes_s` is its current max-min share."""

    __slots__ = ("bytes_sent", "cap_bytes_s", "changed", "links", "rate_bytes_s", "stuck")

    def __init__(self, cap_bytes_s: float, links: tuple[int, ...]) -> None:
        self.cap_bytes_s = cap_bytes_s
        self.links = links
        self.rate_bytes_s = 0.0
        self.bytes_sent = 0.0
        # fired (then dropped) when the share changes; made only while someone waits for it
        self.changed: simpy.Event | None = None
        # set when every open flow was stalled at once: nothing could give this one more bandwidth, so
        # it is declared not-converging at its next sync (as an operator would cancel them all)
        self.stuck = False


class Network:
    """Directed links (a link's name and out|in) with the flows crossing them, as a fluid model."""

    def __init__(self, env: simpy.Environment, capacities_bytes_s: dict[tuple[str, str], float]) -> None:
        self.env = env
        self.keys = list(capacities_bytes_s)
        self.index = {key: j for j, key in enumerate(self.keys)}
        self.capacities_bytes_s = [capacities_bytes_s[key] for key in self.keys]
        self.loads_bytes_s = [0.0] * len(self.keys)
        self.bytes_carried = [0.0] * len(self.keys)
        self.flows: list[Flow] = []
        self.stalled: set[Flow] = set()
        self.last_s = env.now

    def open(self, cap_bytes_s: float, path: tuple[tuple[str, str], ...]) -> Flow:
        flow = Flow(cap_bytes_s, tuple(self.index[key] for key in path))
        self._account()
        self.flows.append(flow)
        self._reallocate()
        return flow

    def close(self, flow: Flow) -> None:
        self._account()
        self.flows.remove(flow)
        self.stalled.discard(flow)
        self._reallocate()
        self._check_deadlock()

    def rate_changed(self, flow: Flow) -> simpy.Event:
        if flow.changed is None:
            flow.changed = self.env.event()
        return flow.changed

    def wait_in_stall(self, flow: Flow) -> simpy.Event:
        """A stalled flow waits for more bandwidth; the event fires on the next change of its share
        (or at once, with `flow.stuck` set, when every open flow is waiting like this)."""
        self.stalled.add(flow)
        changed = self.rate_changed(flow)
        self._check_deadlock()
        return changed

    def _check_deadlock(self) -> None:
        if self.stalled and len(self.stalled) == len(self.flows):
            for flow in self.stalled:
                flow.stuck = True
                self._wake(flow)
            self.stalled.clear()

    def _wake(self, flow: Flow) -> None:
        if flow.changed is not None:
            flow.changed.succeed()
            flow.changed = None

    def _account(self) -> None:
        """Bytes moved since the last change, at the rates that held since then."""
        dt = self.env.now - self.last_s
        if dt > 0:
            for j, load in enumerate(self.loads_bytes_s):
                self.bytes_carried[j] += load * dt
            for flow in self.flows:
                flow.bytes_sent += flow.rate_bytes_s * dt
        self.last_s = self.env.now

    def _reallocate(self) -> None:
        flows = self.flows
        rates = max_min_rates([f.cap_bytes_s for f in flows], [f.links for f in flows],
                              self.capacities_bytes_s)
        loads = [0.0] * len(self.keys)
        for flow, rate in zip(flows, rates, strict=True):
            for j in flow.links:
                loads[j] += rate
            if rate != flow.rate_bytes_s:
                flow.rate_bytes_s = rate
                self.stalled.discard(flow)
                self._wake(flow)
        self.loads_bytes_s = loads


class FleetMigrationRun(MigrationRun):
    """A `MigrationRun` whose link is a share of the fleet's network and whose switches are shared."""

    def __init__(self, env: simpy.Environment, vm: FleetVm, network: Network,
                 destination_switch: Switch | None, source_switch: Switch | None) -> None:
        scenario = vm.scenario
        super().__init__(env, scenario, destination_switch, dirty_model_for(scenario.vm),
                         LinkRates.for_scenario(scenario))
        self.vm = vm
        self.net = network
        self.source_switch = source_switch
        cap_mib_s = scenario.migration.bandwidth_mib_s
        self.cap_bytes_s = mib_s_to_bytes_s(cap_mib_s) if cap_mib_s > 0 else math.inf
        self.live: Flow | None = None
        # the live step under way: when it started, and the timer of its full length
        self._step_start_s = 0.0
        self._step_timer: simpy.Event | None = None
        self.live_s = 0.0
        self.live_bytes = 0.0
        # fires when libvirt's migration call returns: the plan may start the next VM
        self.released = env.event()

    def mark(self, phase: Phase, edge: str) -> None:
        super().mark(phase, edge)
        if phase == Phase.CONFIRM and edge == "end":
            self.released.succeed()

    def _switch_for(self, host: str) -> Switch:
        return self.source_switch if host == "source" else self.switch

    def _perform(self):
        outcome = yield from super()._perform()
        self._close_live()
        return outcome

    def _close_live(self) -> None:
        if self.live is not None:
            self.net.close(self.live)
            self.live_bytes = self.live.bytes_sent
            self.live = None

    def _live_rates(self) -> tuple[float, float, float]:
        """The current share; the live flow joins the network on the first call."""
        if self.live is None:
            self.live = self.net.open(self.cap_bytes_s, self.vm.path)
        rate = self.live.rate_bytes_s
        return (rate, rule.threshold_bytes(rate, ms_to_s(self.s.migration.max_downtime_ms)),
                rule.check_interval_s(rate >= self.cap_bytes_s))

    def _sending(self, duration_s: float) -> simpy.Event:
        self._step_start_s = self.env.now
        self._step_timer = self.wait(duration_s)
        return self._step_timer | self.net.rate_changed(self.live)

    def _sent(self, state: rule.PrecopyState, duration_s: float, rate: float) -> bool:
        elapsed = self.env.now - self._step_start_s
        self.live_s += elapsed
        done = self._step_timer.processed
        rule.send(state, duration_s if done else elapsed, rate)
        return done and self.live.rate_bytes_s == rate

    def _may_speed_up(self, rate: float) -> bool:
        return not self.live.stuck and rate < self.rates.live_bytes_s * (1.0 - _SAME_RATE)

    def _ride_out_stall(self, state: rule.PrecopyState, deadline: float, rate: float):
        start = self.env.now
        if deadline == math.inf:
            yield self.net.wait_in_stall(self.live)
            until = "until the bandwidth changes"
        else:
            timer = self.wait(deadline - self.env.now - 1e-12)
            yield timer | self.net.rate_changed(self.live)
            until = "to the timeout" if timer.processed else "until the bandwidth changes"
        self.live_s += self.env.now - start
        self._fast_forward(state, self.env.now - start, rate, until)

    def _stop_and_copy(self, wire_bytes: float):
        self._close_live()
        yield self.wait(self.oh.handshake_s)
        start = self.env.now
        yield from self._transfer(wire_bytes)
        return self.env.now - start

    def _transfer(self, wire_bytes: float):
        """Sends `wire_bytes` uncapped, as a flow of its own, however its share changes."""
        if wire_bytes <= 0:
            return
        flow = self.net.open(math.inf, self.vm.path)
        remaining = wire_bytes
        while True:
            rate, start = flow.rate_bytes_s, self.env.now
            timer = self.wait(remaining / rate)
            yield timer | self.net.rate_changed(flow)
            if timer.processed:
                break
            remaining -= (self.env.now - start) * rate
        self.net.close(flow)


class FleetPolicyRun(PolicyMixin, FleetMigrationRun):
    """A fleet's migration under its orchestrator's monitor loop (sim/policy.py)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._policy_setup()


_RAISE_WITH = "raise it with plan.max_events"


class FleetRun:
    """One evacuation: the plan starts migrations as slots free up."""

    def __init__(self, fleet: Fleet, seed: int) -> None:
        self.fleet = fleet
        self.seed = seed
        self.env = simpy.Environment()
        rng = np.random.default_rng(seed)
        self.switches = {name: Switch(self.env, spec, rng) for name, spec in fleet.switches.items()}
        warmup_s = max((sw.warmup_s() for sw in self.switches.values()), default=0.0)
        # the evacuation lasts at least its slowest VM's first pass, alone on its path
        horizon_s = warmup_s + max(first_pass_s(vm.scenario) for vm in fleet.vms)
        for name, spec in fleet.switches.items():
            check_background_budget(spec, f"switches.{name}", horizon_s, fleet.plan.max_events, _RAISE_WITH)
        if warmup_s > 0:
            self.env.run(until=warmup_s)
        for switch in self.switches.values():
            switch.peak_queue = 0  # the peak during the evacuation, not during the warm-up
        self.t0 = self.env.now
        self.network = Network(self.env, {
            (link, direction): fleet.links[link].capacity_bytes_s
            for link in fleet.links for direction in ("out", "in")})
        self.runs: list[FleetMigrationRun | None] = [None] * len(fleet.vms)
        self.running_per_host: dict[str, int] = dict.fromkeys(fleet.hosts, 0)
        self.running = 0
        self.slot_freed = self.env.event()
        self.events = 0

    def run(self) -> FleetResult:
        self.events = run_within(self.env, self.env.process(self._plan()), self.fleet.plan.max_events,
                                 _RAISE_WITH, self.switches.values())
        rows = [self._row(i, run) for i, run in enumerate(self.runs)]
        return FleetResult(rows, self._summary(rows))

    def _room(self, host: str) -> bool:
        plan = self.fleet.plan
        return ((plan.max_concurrent == 0 or self.running < plan.max_concurrent)
                and (plan.max_per_source_host == 0 or self.running_per_host[host] < plan.max_per_source_host))

    def _plan(self):
        rank = {i: r for r, i in enumerate(launch_order(self.fleet))}
        waiting: dict[str, deque[int]] = {host: deque() for host in self.fleet.hosts}
        for i in sorted(rank, key=rank.get):
            waiting[self.fleet.vms[i].source].append(i)
        processes = []
        while any(waiting.values()):
            heads = [queue[0] for host, queue in waiting.items() if queue and self._room(host)]
            if not heads:
                yield self.slot_freed
                self.slot_freed = self.env.event()
                continue
            i = min(heads, key=rank.get)
            source = self.fleet.vms[i].source
            waiting[source].popleft()
            self.running += 1
            self.running_per_host[source] += 1
            processes.append(self.env.process(self._migrate(i)))
        yield self.env.all_of(processes)

    def _migrate(self, i: int):
        vm = self.fleet.vms[i]
        hosts = self.fleet.hosts
        kind = FleetPolicyRun if vm.scenario.policy.active else FleetMigrationRun
        run = kind(self.env, vm, self.network, self.switches.get(hosts[vm.destination].switch),
                                self.switches.get(hosts[vm.source].switch))
        self.runs[i] = run
        process = self.env.process(run.run())
        yield process | run.released
        self.running -= 1
        self.running_per_host[vm.source] -= 1
        if not self.slot_freed.triggered:
            self.slot_freed.succeed()
        yield process

    def _row(self, i: int, run: FleetMigrationRun) -> dict[str, Any]:
        vm, record = self.fleet.vms[i], run.record(self.seed, engine="sim-fleet")
        start_s = run.t0 - self.t0
        values = run.m.values
        stop = values.get("source_stop_s", math.nan)
        pause_end = values.get("destination_start_s", values.get("source_resume_s", math.nan))
        last_phase = max((v for v in run.m.phases.values() if math.isfinite(v)), default=0.0)
        row = record.to_row()
        row.update(
            fleet=self.fleet.name, vm=vm.name, profile=vm.profile, source_host=vm.source,
            destination_host=vm.destination, switch=self.fleet.hosts[vm.destination].switch,
            path=",".join(f"{link}:{direction}" for link, direction in vm.path),
            slot_wait_s=start_s, end_s=start_s + last_phase,
            pause_start_s=start_s + stop,
            pause_end_s=start_s + pause_end if not math.isnan(stop) else math.nan,
            live_rate_mib_s=bytes_s_to_mib_s(run.live_bytes / run.live_s) if run.live_s > 0 else math.nan)
        return row

    def _summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        migrated = [r for r in rows if r["failure"] == ""]
        failures: dict[str, int] = {}
        for r in rows:
            if r["failure"]:
                failures[r["failure"]] = failures.get(r["failure"], 0) + 1
        # every flow has closed, so the network's account is complete
        carried: dict[str, float] = dict.fromkeys(self.fleet.links, 0.0)
        for (link, _), n_bytes in zip(self.network.keys, self.network.bytes_carried, strict=True):
            carried[link] += n_bytes
        summary: dict[str, Any] = {
            "fleet": self.fleet.name, "seed": self.seed, "vms": len(rows), "migrated": len(migrated),
            "failed": sum(n for reason, n in failures.items() if reason != "not-converged"),
            "not_converged": failures.get("not-converged", 0),
            "makespan_s": max(r["end_s"] for r in rows) if rows else 0.0,
        }
        for column in ("pause_window_ms", "network_outage_ms"):
            values = np.array([r[column] for r in migrated])
            for label, q in (("p50", 0.50), ("p95", 0.95), ("max", 1.0)):
                # an order statistic, not an interpolation: a window that never closes stays infinite
                stat = float(np.quantile(values, q, method="inverted_cdf")) if len(values) else math.nan
                summary[f"{column.removesuffix('_ms')}_{label}_ms"] = stat
        summary.update(
            peak_switch_queue=max((sw.peak_queue for sw in self.switches.values()), default=0),
            failures=failures, bytes_per_link=carried,
            switch_peak_queue={name: sw.peak_queue for name, sw in self.switches.items()},
            switch_mean_wait_ms={name: s_to_ms(float(np.mean([s.wait_s for s in sw.served])))
                                 if sw.served else 0.0 for name, sw in self.switches.items()},
            events=self.events)
        return summary


def simulate_fleet(fleet: Fleet, seed: int = 0) -> FleetResult:
    """Predicts an evacuation. Deterministic for a given fleet and seed."""
    return FleetRun(fleet, seed).run()
