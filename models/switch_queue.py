"""The switch's association queue: `capacity` servers, first come first served, as a pure model.

The caller owns the clock. It says when a request arrives (`arrive`) and when a service the queue
started ends (`finish`, at that service's `end_s`); the queue says which request starts service when,
drawing each service time as the service starts. Other tenants' load is a Poisson stream: the queue
draws the gaps (`background_gap_s`), the caller schedules the arrivals, which take servers like ours.
Nothing here sleeps, reads a clock or does I/O, so one queue serves the SimPy switch in simulated time
(sim/switch.py) and the 802.1Qbg emulator on the wall clock (executor/vdp/bridge.py).

Randomness comes only from the generator passed in. At a background arrival the SimPy switch draws the
next gap before the arrival's service time and the emulator after it: each driver keeps its order, so
a seed replays the runs it gave before.

Worked example, one server, a constant 300 ms: requests arrive at 0.0, 0.1 and 0.7 s. The first finds
the server free: it starts at 0.0 and ends at 0.3. The second waits 0.3 - 0.1 = 0.2 s, starts at 0.3
and ends at 0.6. The third arrives after that: it starts at 0.7, no wait, and ends at 1.0.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

import numpy as np

from .units import ms_to_s

if TYPE_CHECKING:
    from .scenario import SwitchSpec

Job = TypeVar("Job")


def answers(spec: SwitchSpec) -> bool:
    """Whether the switch takes our requests at all: a silent one never answers them (other tenants'
    requests still load its servers)."""
    return spec.mode != "silent"


def refuses(spec: SwitchSpec) -> bool:
    """Whether a request the switch has served is answered with a refusal instead of a success."""
    return spec.mode == "refuse"


def sample_service_s(spec: SwitchSpec, rng: np.random.Generator | None) -> float:
    """One service time of the switch: constant, exponential, or lognormal with the spec's mean and
    coefficient of variation."""
    mean, dist = ms_to_s(spec.service_time_ms), spec.service_distribution
    if dist == "constant" or mean == 0:
        return mean
    if rng is None:
        raise ValueError("a random service time needs the run's generator")
    if dist == "exponential":
        return float(rng.exponential(mean))
    sigma2 = math.log1p(spec.service_cv**2)
    return float(rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2)))


class Service(NamedTuple, Generic[Job]):
    """One request on a server: the caller's job (None: another tenant's), when it arrived, when its
    service started and how long it lasts. A named tuple: a busy switch makes millions of them, and
    a tuple is made several times faster than a frozen dataclass."""

    job: Job | None
    arrival_s: float
    start_s: float
    service_s: float

    @property
    def wait_s(self) -> float:
        return self.start_s - self.arrival_s

    @property
    def end_s(self) -> float:
        return self.start_s + self.service_s


class SwitchQueue(Generic[Job]):
    """The servers and the line in front of them. Times are seconds on the caller's clock."""

    def __init__(self, spec: SwitchSpec, rng: np.random.Generator | None) -> None:
        self.spec = spec
        self.rng = rng
        self.busy = 0
        self._waiting: deque[tuple[Job | None, float]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for a server."""
        return len(self._waiting)

    def arrive(self, job: Job | None, now_s: float) -> Service[Job] | None:
        """A request arrives: its service if it starts at once (a server is free), else None (it waits)."""
        self._waiting.append((job, now_s))
        return self._start(now_s)

    def finish(self, now_s: float) -> Service[Job] | None:
        """A service ends and frees its server: the service of the longest waiting request, if any."""
        self.busy -= 1
        return self._start(now_s)

    def background_gap_s(self) -> float:
        """The time from one of the other tenants' requests to the next (exponential: Poisson load)."""
        if self.rng is None:
            raise ValueError("background load needs the run's generator")
        return float(self.rng.exponential(1.0 / self.spec.background_load_per_s))

    def _start(self, now_s: float) -> Service[Job] | None:
        if not self._waiting or self.busy >= self.spec.capacity:
            return None
        job, arrival_s = self._waiting.popleft()
        self.busy += 1
        return Service(job, arrival_s, now_s, sample_service_s(self.spec, self.rng))
