"""The switch that answers port-profile requests, as a queueing server in SimPy.

`capacity` requests are served at once; the rest queue in arrival order. Other tenants' requests
arrive as a Poisson stream and compete for the same capacity. A refusing switch answers with an
error; a silent one never answers. Every request's wait and service time is kept for reports and
for checking the queue against M/M/c theory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from ..models.association import observed_latency_s, sample_service_s
from ..models.scenario import SwitchSpec
from ..models.units import ms_to_s


@dataclass(frozen=True)
class Answer:
    ok: bool
    latency_s: float
    wait_s: float


@dataclass(frozen=True)
class Served:
    """One request the switch took: who asked, when, how long it queued and was served."""

    kind: str
    arrival_s: float
    wait_s: float
    service_s: float


@dataclass(frozen=True)
class LibvirtView:
    """A request as libvirt's 125 ms polling sees it."""

    ok: bool
    observed_s: float
    answer: Answer | None
    reason: str = ""


class Switch:
    def __init__(self, env: simpy.Environment, spec: SwitchSpec, rng: np.random.Generator | None) -> None:
        self.env = env
        self.spec = spec
        self.rng = rng
        self.server = simpy.Resource(env, capacity=spec.capacity)
        self.served: list[Served] = []
        self.peak_queue = 0
        if spec.background_load_per_s > 0:
            env.process(self._background())

    @property
    def mean_service_s(self) -> float:
        return ms_to_s(self.spec.service_time_ms)

    def warmup_s(self) -> float:
        """How long background load runs before a migration starts, so the queue is in steady state."""
        rate = self.spec.background_load_per_s
        if rate <= 0:
            return 0.0
        return min(60.0, max(5.0, 200.0 / rate, 20.0 * self.mean_service_s))

    def _background(self):
        rate = self.spec.background_load_per_s
        while True:
            yield self.env.timeout(float(self.rng.exponential(1.0 / rate)))
            self.env.process(self._serve("background", None))

    def _serve(self, kind: str, answered: simpy.Event | None):
        arrival = self.env.now
        with self.server.request() as slot:
            self.peak_queue = max(self.peak_queue, len(self.server.queue))
            yield slot
            wait = self.env.now - arrival
            service = sample_service_s(self.spec, self.rng)
            yield self.env.timeout(service)
        self.served.append(Served(kind, arrival, wait, service))
        if answered is not None:
            answered.succeed(Answer(self.spec.mode == "answer", self.env.now - arrival, wait))

    def request(self, kind: str) -> simpy.Event:
        """Sends a request; the event fires with an `Answer` when the switch answers (never, if silent)."""
        answered = self.env.event()
        if self.spec.mode != "silent":
            self.env.process(self._serve(kind, answered))
        return answered

    def libvirt_request(self, kind: str):
        """A process: libvirt sends `kind` and polls until the answer or its timeout."""
        start = self.env.now
        answered = self.request(kind)
        timeout_s = self.spec.timeout_s
        yield self.env.any_of([answered, self.env.timeout(timeout_s)])
        answer: Answer | None = answered.value if answered.triggered else None
        observed = None
        if answer is not None:
            observed = observed_latency_s(answer.latency_s, ms_to_s(self.spec.poll_interval_ms), timeout_s)
        if observed is None:
            yield self.env.timeout(start + timeout_s - self.env.now)
            return LibvirtView(False, timeout_s, answer, f"{kind}-timeout")
        yield self.env.timeout(start + observed - self.env.now)
        return LibvirtView(answer.ok, observed, answer, "" if answer.ok else f"{kind}-refused")
