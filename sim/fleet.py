"""The fleet engine: an evacuation, many migrations in one SimPy environment.

Each migration is the single-VM engine's `MigrationRun`, with three things that a fleet changes:
* its memory stream is a flow in a fluid network: flows share every link they cross by max-min
  fairness (sim/bandwidth.py), recomputed whenever a flow starts or ends or a link changes, over the
  flows the change can reach (linked to it through shared links; the others' shares cannot move).
  A live step cut short by a change of share keeps what it sent at the old rate; QEMU's bandwidth
  estimate, and so its switchover threshold and check cadence, follow the new share. The final copy
  and post-copy are flows too;
* its port requests go to the destination host's switch (pre-associate, associate) and the source
  host's (disassociate), shared with every other migration and with background load;
* it starts when the plan gives it a slot (at most `max_per_source_host` from one host and
  `max_concurrent` in all, the waiting VMs in the plan's order), and frees it when libvirt's call
  returns (Confirm ends, or the migration fails).

A link may change its bandwidth at set times (`links.<name>.changes`): the shares are recomputed at
the change, and every migration on it follows as it follows any change of share. A link at 0 is
down: the streams crossing it stop. The guest keeps running and dirtying, QEMU's thread is blocked in
its socket write and checks nothing; the migration waits for the link to come back. As in libvirt
(qemu.conf keepalive_interval 5 s x (keepalive_count 5 + 1) = 30 s), a peer-to-peer migration whose
link carries nothing for `KEEPALIVE_S` (since the link went down, or since the migration began if
later) loses its connection to the destination daemon
(qemu_migration.c: "Lost connection to destination host") and fails, `connection-lost`: in pre-copy the
guest stays on the source, never paused (unless the timeout's action had paused it: then until
the failure); in the stop-and-copy it resumes there (libvirt restores the
source's state as Perform fails), paused from its stop until then; in post-copy it is left running on
the destination with pages on the source (QEMU's postcopy-paused, which only a recovery can end: the
model stops there). The model keeps the control connection on the same path as the stream, and lets
Begin, Prepare, Finish and Confirm (no stream) pass over a down link; a real Prepare could not open its
connection and would fail at once.

Approximations: QEMU's estimate follows the share at once (it averages over ~100 ms), and its check
cadence restarts when the share changes (a shift of at most one 50-100 ms check). A pre-copy that
stalls below its path's full rate waits in steady state for its share to change; when every open
flow is such a stall nothing can free bandwidth, and each is declared not-converging at its next sync
(as an operator would cancel them); the bandwidth they free may still let a later one converge. While
a link change is still to come, a stall may yet end, so none is declared stuck before the last one.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from ..models import switchover as rule
from ..models.dirty import dirty_model_for
from ..models.fleet import IN, OUT, Fleet, FleetVm, launch_order
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
# a step this close to the migration's timeout is the step to it
_AT_DEADLINE_S = 1e-9
# libvirt qemu.conf: keepalive_interval 5 s, keepalive_count 5; a connection that answers nothing is
# closed after interval x (count + 1) (libvirtd.conf's comment), and the migration fails with it
KEEPALIVE_S = 5.0 * (5 + 1)
# the failure of a migration whose link stayed down past the keepalive
CONNECTION_LOST = "connection-lost"
# the columns a fleet adds to each record row
FLEET_COLUMNS = ("fleet", "vm", "profile", "source_host", "destination_host", "switch", "path",
                 "slot_wait_s", "end_s", "pause_start_s", "pause_end_s", "live_rate_mib_s")


class Flow:
    """One memory stream in the network. `rate_bytes_s` is its current max-min share."""

    __slots__ = ("bytes_sent", "cap_bytes_s", "changed", "links", "opened", "owner", "rate_bytes_s", "stuck")

    def __init__(self, cap_bytes_s: float, links: tuple[int, ...], owner: str, opened: int) -> None:
        self.cap_bytes_s = cap_bytes_s
        self.links = links
        # its place among the flows in the order they opened
        self.opened = opened
        # the VM whose stream it is
        self.owner = owner
        self.rate_bytes_s = 0.0
        self.bytes_sent = 0.0
        # fired (then dropped) when the share changes; made only while someone waits for it
        self.changed: simpy.Event | None = None
        # set when every open flow was stalled at once: nothing could give this one more bandwidth, so
        # it is declared not-converging at its next sync (as an operator would cancel them all)
        self.stuck = False


_OPENED = operator.attrgetter("opened")


class Network:
    """Directed links (a link's name and out|in) with the flows crossing them, as a fluid model."""

    def __init__(self, env: simpy.Environment, capacities_bytes_s: dict[tuple[str, str], float]) -> None:
        self.env = env
        self.keys = list(capacities_bytes_s)
        self.index = {key: j for j, key in enumerate(self.keys)}
        self.capacities_bytes_s = [capacities_bytes_s[key] for key in self.keys]
        # the load of each link that carries any, by link index
        self.loads_bytes_s: dict[int, float] = {}
        self.bytes_carried = [0.0] * len(self.keys)
        self.flows: list[Flow] = []
        # the flows on each link, and how many flows have opened
        self.on_link: list[set[Flow]] = [set() for _ in self.keys]
        self.opened = 0
        self.stalled: set[Flow] = set()
        self.last_s = env.now
        # link changes still to come: while one is, a stall may end, so none is declared stuck
        self.changes_left = 0
        # when each link that is down went down
        self.down_since: dict[int, float] = {}

    def open(self, cap_bytes_s: float, path: tuple[tuple[str, str], ...], owner: str) -> Flow:
        flow = Flow(cap_bytes_s, tuple(self.index[key] for key in path), owner, self.opened)
        self.opened += 1
        self._account()
        self.flows.append(flow)
        for j in flow.links:
            self.on_link[j].add(flow)
        self._reallocate(flow.links)
        return flow

    def close(self, flow: Flow) -> None:
        self._account()
        self.flows.remove(flow)
        for j in flow.links:
            self.on_link[j].discard(flow)
        self.stalled.discard(flow)
        self._reallocate(flow.links)
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

    def set_capacity(self, link: str, capacity_bytes_s: float) -> list[Flow]:
        """A scheduled change of `link`'s capacity (both directions). Returns the flows crossing it."""
        self._account()
        crossed = {self.index[link, OUT], self.index[link, IN]}
        for j in crossed:
            self.capacities_bytes_s[j] = capacity_bytes_s
            if capacity_bytes_s > 0:
                self.down_since.pop(j, None)
            else:
                self.down_since.setdefault(j, self.env.now)
        self.changes_left -= 1
        affected = [flow for flow in self.flows if not crossed.isdisjoint(flow.links)]
        self._reallocate(crossed)
        self._check_deadlock()
        return affected

    def keepalive_expiry(self, flow: Flow, began_s: float) -> simpy.Event:
        """Fires when libvirt's keepalive gives up on a flow's path: `KEEPALIVE_S` after it went
        down, or after its migration began if that was later (its connection has heard nothing
        since; the model lets a migration begin over a down link)."""
        down_s = min((self.down_since[j] for j in flow.links if j in self.down_since), default=self.env.now)
        return self.env.timeout(max(0.0, max(down_s, began_s) + KEEPALIVE_S - self.env.now))

    def _check_deadlock(self) -> None:
        if self.stalled and len(self.stalled) == len(self.flows) and not self.changes_left:
            # in the order the flows opened: a set's order would follow memory addresses
            for flow in self.flows:
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
            for j, load in self.loads_bytes_s.items():
                self.bytes_carried[j] += load * dt
            for flow in self.flows:
                flow.bytes_sent += flow.rate_bytes_s * dt
        self.last_s = self.env.now

    def _component(self, links: Iterable[int]) -> tuple[list[Flow], set[int]]:
        """The flows linked to `links` through shared links, in the order they opened, and their links."""
        seen: set[int] = set()
        found: set[Flow] = set()
        todo = list(links)
        while todo:
            j = todo.pop()
            if j in seen:
                continue
            seen.add(j)
            for flow in self.on_link[j]:
                if flow not in found:
                    found.add(flow)
                    todo.extend(flow.links)
        return sorted(found, key=_OPENED), seen

    def _reallocate(self, links: Iterable[int]) -> None:
        """The max-min shares again, where a change at `links` can reach: flows that share no link,
        even through others, do not meet in the progressive filling."""
        flows, reached = self._component(links)
        rates = max_min_rates([f.cap_bytes_s for f in flows], [f.links for f in flows],
                              self.capacities_bytes_s)
        loads = self.loads_bytes_s
        for j in reached:
            loads.pop(j, None)
        # each link's load summed in the order the flows opened, as over the whole network
        for flow, rate in zip(flows, rates, strict=True):
            for j in flow.links:
                loads[j] = loads.get(j, 0.0) + rate
            if rate != flow.rate_bytes_s:
                flow.rate_bytes_s = rate
                self.stalled.discard(flow)
                self._wake(flow)


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
        # the pre-copy's state and the last rates it acted on (kept while its link is down)
        self._state: rule.PrecopyState | None = None
        self._rates: tuple[float, float, float] | None = None
        # a live step waiting for a down link: its timer to the migration's timeout, its change of share
        self._down: tuple[simpy.Event | None, simpy.Event] | None = None
        # bytes of the stop-and-copy and post-copy flows that have closed
        self._flow_bytes = 0.0

    def mark(self, phase: Phase, edge: str) -> None:
        super().mark(phase, edge)
        if phase == Phase.CONFIRM and edge == "end":
            self.released.succeed()

    def _switch_for(self, host: str) -> Switch:
        return self.source_switch if host == "source" else self.switch

    def run(self):
        try:
            yield from super().run()
        except ConnectionLost:
            yield from self._connection_lost()

    def _connection_lost(self):
        """The link stayed down past the keepalive: libvirt's Perform fails (see the module's notes)."""
        self._close_live()
        m, v = self.m, self.m.values
        m.failure = CONNECTION_LOST
        if self._state is not None:
            m.iterations, m.bytes_sent = self._state.syncs, self._state.bytes_sent + self._flow_bytes
        v.setdefault("precopy_time_s", self.now() - v["live_start_s"])
        self.log("source", "abort", f"{CONNECTION_LOST}: the link carried nothing for {KEEPALIVE_S:.0f} s")
        self.mark(Phase.PERFORM, "end")
        if "destination_start_s" in v:
            return  # post-copy: QEMU's postcopy-paused on the destination, until a recovery
        if "source_stop_s" not in v and m.forced == "pause":
            v["source_stop_s"] = self.s.migration.timeout_s  # paused by the timeout's action, then
        if "source_stop_s" in v:
            v["source_resume_s"] = self.now()
            self.log("source", "resume", "migration failed, guest stays on the source")
        yield from self._cancel()

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
        """The current share; the live flow joins the network on the first call. On a down link the
        last rates stand (QEMU checks nothing while its write is blocked; `_sending` waits)."""
        if self.live is None:
            self.live = self.net.open(self.cap_bytes_s, self.vm.path, self.vm.name)
        rate = self.live.rate_bytes_s
        if rate == 0:
            return self._rates or self._live_rates_at(self.rates.live_bytes_s)
        self._rates = self._live_rates_at(rate)
        return self._rates

    def _live_rates_at(self, rate: float) -> tuple[float, float, float]:
        return (rate, rule.threshold_bytes(rate, ms_to_s(self.s.migration.max_downtime_ms)),
                rule.check_interval_s(rate >= self.cap_bytes_s))

    def _sending(self, duration_s: float) -> simpy.Event:
        self._step_start_s = self.env.now
        if self.live.rate_bytes_s == 0:
            return self._wait_for_link(duration_s)
        self._step_timer = self.wait(duration_s)
        return self._step_timer | self.net.rate_changed(self.live)

    def _wait_for_link(self, duration_s: float) -> simpy.Event:
        """A live step on a down link: until it comes back, the keepalive gives up, or the
        migration's timeout (this step's end, when it is the step to the timeout)."""
        # the timeout once: after its action (pause, post-copy) the engine no longer watches it
        timeout_s = self.s.migration.timeout_s
        deadline = self.t0 + timeout_s if timeout_s > 0 and not self.m.forced else math.inf
        lost = self.net.keepalive_expiry(self.live, self.t0)
        to_deadline = self.wait(deadline - self.env.now) if deadline < math.inf else None
        changed = self.net.rate_changed(self.live)
        # the engine's step to the timeout ends at the deadline (up to rounding)
        self._step_timer = to_deadline if self.env.now + duration_s >= deadline - _AT_DEADLINE_S else None
        self._down = (to_deadline, changed)
        return self.env.any_of([e for e in (lost, to_deadline, changed) if e is not None])

    def _sent(self, state: rule.PrecopyState, duration_s: float, rate: float) -> bool:
        self._state = state
        elapsed = self.env.now - self._step_start_s
        self.live_s += elapsed
        if self._down is not None:
            to_deadline, changed = self._down
            self._down = None
            rule.send(state, elapsed, 0.0)  # the guest dirtied on; nothing went out
            if not changed.triggered and not (to_deadline is not None and to_deadline.processed):
                raise ConnectionLost
            return self._step_timer is not None and self._step_timer.processed and not changed.triggered
        done = self._step_timer.processed
        rule.send(state, duration_s if done else elapsed, rate)
        return done and self.live.rate_bytes_s == rate

    def _may_speed_up(self, rate: float) -> bool:
        # a link change still to come may give it more
        return not self.live.stuck and (rate < self.rates.live_bytes_s * (1.0 - _SAME_RATE)
                                        or self.net.changes_left > 0)

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
        flow = self.net.open(math.inf, self.vm.path, self.vm.name)
        remaining = wire_bytes
        while True:
            rate, start = flow.rate_bytes_s, self.env.now
            if rate == 0:
                changed = self.net.rate_changed(flow)
                yield self.net.keepalive_expiry(flow, self.t0) | changed
                if not changed.triggered:
                    self.net.close(flow)
                    self._flow_bytes += flow.bytes_sent
                    raise ConnectionLost
                continue
            timer = self.wait(remaining / rate)
            yield timer | self.net.rate_changed(flow)
            if timer.processed:
                break
            remaining -= (self.env.now - start) * rate
        self.net.close(flow)
        self._flow_bytes += flow.bytes_sent


class ConnectionLost(Exception):
    """Raised inside a migration's process when its link stayed down past the keepalive."""


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
        # each link change as it happened, for the summary
        self.changes_seen: list[dict[str, Any]] = []
        for name, link in fleet.links.items():
            if link.changes:
                self.network.changes_left += len(link.changes)
                self.env.process(self._link_changes(name))

    def run(self) -> FleetResult:
        self.events = run_within(self.env, self.env.process(self._plan()), self.fleet.plan.max_events,
                                 _RAISE_WITH, self.switches.values())
        rows = [self._row(i, run) for i, run in enumerate(self.runs)]
        return FleetResult(rows, self._summary(rows))

    def _link_changes(self, name: str):
        link = self.fleet.links[name]
        for change in link.changes:
            yield self.env.timeout(self.t0 + change.at_s - self.env.now)
            flows = self.network.set_capacity(name, link.capacity_at_bytes_s(change.bandwidth_mbit_s))
            vms = sorted({flow.owner for flow in flows})
            self.changes_seen.append({"link": name, "at_s": change.at_s,
                                      "bandwidth_mbit_s": change.bandwidth_mbit_s,
                                      "vms_crossing": len(vms), "vms": vms})

    def _room_overall(self) -> bool:
        return self.fleet.plan.max_concurrent == 0 or self.running < self.fleet.plan.max_concurrent

    def _room(self, host: str) -> bool:
        limit = self.fleet.plan.max_per_source_host
        return limit == 0 or self.running_per_host[host] < limit

    def _plan(self):
        """Whenever there is room, starts the waiting VM of least rank among the hosts with room."""
        order = launch_order(self.fleet)
        rank = {i: r for r, i in enumerate(order)}
        waiting: dict[str, deque[int]] = {host: deque() for host in self.fleet.hosts}
        for i in order:
            waiting[self.fleet.vms[i].source].append(i)
        # each host's first waiting VM by rank; a host without room waits aside until a slot frees
        heads = [(rank[queue[0]], host) for host, queue in waiting.items() if queue]
        heapq.heapify(heads)
        aside: list[tuple[int, str]] = []
        processes = []
        left = len(order)
        while left:
            if heads and self._room_overall():
                head = heapq.heappop(heads)
                if not self._room(head[1]):
                    aside.append(head)
                    continue
            else:
                yield self.slot_freed
                self.slot_freed = self.env.event()
                for head in aside:
                    heapq.heappush(heads, head)
                aside.clear()
                continue
            source = head[1]
            i = waiting[source].popleft()
            left -= 1
            if waiting[source]:
                heapq.heappush(heads, (rank[waiting[source][0]], source))
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
        if self.changes_seen:
            # the VMs whose streams were on the link when it changed
            summary["link_changes"] = self.changes_seen
        return summary


def simulate_fleet(fleet: Fleet, seed: int = 0) -> FleetResult:
    """Predicts an evacuation. Deterministic for a given fleet and seed."""
    return FleetRun(fleet, seed).run()
