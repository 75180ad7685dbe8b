"""An orchestrator's monitor loop beside a real migration: the same pure functions the simulator
polls (models/policy/), applied as the orchestrator applies them.

A thread polls on the orchestrator's grid from the call's start (Nova every 0.5 s, x
`policy.time_scale`), reads the job's statistics (virDomainGetJobStats), and skips a poll while the
job is not yet running (Nova's VIR_DOMAIN_JOB_NONE case). A new max downtime becomes
`migrateSetMaxDowntime`; a deadline becomes `abortJob`, `suspend` or `migrateStartPostCopy` (the call
then carries VIR_MIGRATE_POSTCOPY where the policy may switch to it, as Nova and KubeVirt add it).
Every action is kept with its time after the call's start, for the record.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ...models import policy as pol
from ...models.scenario import Scenario
from .job_thread import JobThread
from .jobinfo import JobInfo


def initial_downtime_ms(scenario: Scenario) -> float:
    """What the policy sets before the call (vdsm's init, Proxmox's migrate_downtime), else the
    scenario's own."""
    if not scenario.policy.active:
        return scenario.migration.max_downtime_ms
    spec = scenario.policy
    mig = scenario.migration
    return pol.module(spec).initial(spec.settings, scenario.vm.memory_mib, mig.max_downtime_ms)[1]


class PolicyMonitor(JobThread):
    """The orchestrator's loop as a thread: start(t0_s) at the call, stop() when it returns."""

    def __init__(self, dom: Any, scenario: Scenario, memory_mib: float) -> None:
        super().__init__(dom, "policy-monitor")
        spec = scenario.policy
        self.module, self.settings, self.scale = pol.module(spec), spec.settings, spec.time_scale
        self.state, self.downtime_ms = self.module.initial(self.settings, memory_mib,
                                                           scenario.migration.max_downtime_ms)
        # (seconds after the call, "downtime" | "abort" | "pause" | "postcopy", ms or 0)
        self.actions: list[tuple[float, str, float]] = []
        # the deadline action it took ("" none)
        self.action = ""

    def _run(self) -> None:
        import libvirt

        due_s = self.t0_s
        while self.module.may_act(self.settings, self.state):
            if self._stop.wait(max(0.0, due_s - time.time())):
                return
            due_s += self.module.poll_interval_s(self.settings, self.state) * self.scale
            try:
                info = JobInfo.from_stats(self.dom.jobStats())
                if not info.active:
                    continue
                now = time.time()
                obs = pol.Observation((now - self.t0_s) / self.scale, info.memory_iteration,
                                      float(info.memory_remaining_bytes), float(info.memory_processed_bytes))
                self.state, action = self.module.poll(self.settings, self.state, obs)
                if not math.isnan(action.downtime_ms):
                    self.dom.migrateSetMaxDowntime(round(action.downtime_ms))
                    self.actions.append((time.time() - self.t0_s, "downtime", action.downtime_ms))
                if action.deadline:
                    self.fired, self.action, self.fired_at_s = "timeout", action.deadline, time.time()
                    {"abort": self.dom.abortJob, "pause": self.dom.suspend,
                     "postcopy": self.dom.migrateStartPostCopy}[action.deadline]()
                    self.actions.append((self.fired_at_s - self.t0_s, action.deadline, 0.0))
                    return
            except libvirt.libvirtError as exc:
                # the job ended between the read and the action, as the orchestrators' loops allow
                self.error = str(exc)
