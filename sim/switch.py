"""The switch that answers port-profile requests, as a queueing server in SimPy.

The queue itself (servers, first come first served, service times, other tenants' Poisson load) is
models/switch_queue.py; this runs it in simulated time: a service's end is a SimPy timeout, an answer
a SimPy event. A refusing switch answers with an error; a silent one never answers. Every request's
wait and service time is kept for reports and for checking the queue against M/M/c theory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from ..models.association import observed_latency_s
from ..models.scenario import SwitchSpec
from ..models.switch_queue import Service, SwitchQueue, answers, refuses
from ..models.units import ms_to_s


@dataclass(frozen=True)
class Answer:
    ok: bool
    latency_s: float
    wait_s: float


@dataclass(frozen=True)
class Request:
    """One of our requests at the switch: what it asks and the event its answer fires."""

    kind: str
    answered: simpy.Event


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
        self.queue: SwitchQueue[Request] = SwitchQueue(spec, rng)
        self.served: list[Service[Request]] = []
        self.peak_queue = 0
        if spec.background_load_per_s > 0:
            # other tenants' arrivals are a chain of callbacks, not a process: the same events in
            # the same order (each arrival draws the next gap, then arrives), without a generator
            # to resume for each of the hundreds of thousands of them
            start = env.event()
            start.callbacks.append(self._first_background)
            start.succeed()

    @property
    def mean_service_s(self) -> float:
        return ms_to_s(self.spec.service_time_ms)

    def warmup_s(self) -> float:
        """How long background load runs before a migration starts, so the queue is in steady state."""
        rate = self.spec.background_load_per_s
        if rate <= 0:
            return 0.0
        return min(60.0, max(5.0, 200.0 / rate, 20.0 * self.mean_service_s))

    def _first_background(self, _: simpy.Event) -> None:
        self.env.timeout(self.queue.background_gap_s()).callbacks.append(self._background)

    def _background(self, _: simpy.Event) -> None:
        gap_s = self.queue.background_gap_s()  # before this arrival's service time: see the queue
        self._arrive(None)
        self.env.timeout(gap_s).callbacks.append(self._background)

    def _arrive(self, request: Request | None) -> None:
        started = self.queue.arrive(request, self.env.now)
        self.peak_queue = max(self.peak_queue, self.queue.queued)
        self._serve(started)

    def _serve(self, service: Service[Request] | None) -> None:
        if service is not None:
            self.env.timeout(service.service_s).callbacks.append(lambda _: self._finish(service))

    def _finish(self, service: Service[Request]) -> None:
        started = self.queue.finish(self.env.now)
        self.served.append(service)
        if service.job is not None:
            latency_s = self.env.now - service.arrival_s
            service.job.answered.succeed(Answer(not refuses(self.spec), latency_s, service.wait_s))
        self._serve(started)

    def request(self, kind: str) -> simpy.Event:
        """Sends a request; the event fires with an `Answer` when the switch answers (never, if silent)."""
        answered = self.env.event()
        if answers(self.spec):
            self._arrive(Request(kind, answered))
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
