"""A switch port's servers on a caller's clock, shared by the two emulators: the 802.1Qbg bridge
(bridge.py, VDP over ECP) and the 802.1Qbh VIC (executor/vic/vic.py, enic's port profiles).

`ServedPort` holds the timers (a heap the caller drives with `advance` up to `next_deadline_s`), the
log records and the simulator's queue (models/switch_queue.py) with its Poisson background load. A
subclass says what a request is and what answering it does (`_answer`); nothing here does I/O.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np

from ...models.scenario import SwitchSpec
from ...models.switch_queue import Service, SwitchQueue
from ...models.units import s_to_ms

# the [switch] fields the emulators play; the spec's poll interval and timeout are libvirt's
EMULATED_FIELDS = ("service_time_ms", "service_distribution", "service_cv", "capacity",
                   "background_load_per_s", "mode")

Job = TypeVar("Job")


class ServedPort(Generic[Job]):
    """Timers, log records and servers. Times are seconds on one monotonic clock; `records` is drained
    by the caller. A job must have a `request` number (the log's `req`)."""

    def __init__(self, spec: SwitchSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.records: list[dict[str, Any]] = []
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._timer_ids = itertools.count()
        self._cancelled: set[int] = set()
        self.queue: SwitchQueue[Job] = SwitchQueue(spec, rng)

    def played(self) -> dict[str, Any]:
        """The [switch] fields this port plays, as its log's start record carries them."""
        return {name: getattr(self.spec, name) for name in EMULATED_FIELDS}

    # --- clock -------------------------------------------------------------------------------------

    def next_deadline_s(self) -> float | None:
        while self._timers and self._timers[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(self._timers)[1])
        return self._timers[0][0] if self._timers else None

    def advance(self, now_s: float) -> None:
        """Runs every timer due by `now_s`, in time order. Each action sees `now_s`, the time it really
        runs at, so the log shows when things happened, not when they were due."""
        while (deadline := self.next_deadline_s()) is not None and deadline <= now_s:
            _, _, action = heapq.heappop(self._timers)
            action(now_s)

    def _after(self, now_s: float, delay_s: float, action: Callable[[float], None]) -> int:
        timer = next(self._timer_ids)
        heapq.heappush(self._timers, (now_s + delay_s, timer, action))
        return timer

    def _cancel(self, timer: int | None) -> None:
        if timer is not None:
            self._cancelled.add(timer)

    def _log(self, now_s: float, event: str, **fields: Any) -> None:
        self.records.append({"mono_s": round(now_s, 6), "event": event, **fields})

    # --- servers -----------------------------------------------------------------------------------

    def _start_background(self, now_s: float) -> None:
        if self.spec.background_load_per_s > 0:
            self._after(now_s, self.queue.background_gap_s(), self._background_arrival)

    def _answer(self, job: Job, now_s: float) -> None:
        raise NotImplementedError

    def _serve(self, service: Service[Job] | None, now_s: float) -> None:
        """Times the end of a service that started now."""
        if service is None:
            return
        if service.job is not None:
            self._log(now_s, "service", req=service.job.request,  # type: ignore[attr-defined]
                      wait_ms=round(s_to_ms(service.wait_s), 3),
                      service_ms=round(s_to_ms(service.service_s), 3), busy=self.queue.busy,
                      queued=self.queue.queued)
        self._after(now_s, service.service_s, lambda t: self._finish(service, t))

    def _finish(self, service: Service[Job], now_s: float) -> None:
        started = self.queue.finish(now_s)
        if service.job is not None:
            self._answer(service.job, now_s)
        self._serve(started, now_s)

    def _background_arrival(self, now_s: float) -> None:
        self._log(now_s, "background", busy=self.queue.busy, queued=self.queue.queued)
        self._serve(self.queue.arrive(None, now_s), now_s)
        # the next gap after this arrival's service time: the emulator's order of draws (see the queue)
        self._after(now_s, self.queue.background_gap_s(), self._background_arrival)


def spec_from_log_start(record: dict[str, Any]) -> SwitchSpec:
    """The [switch] an emulator runs as, read back from its log's start record."""
    return SwitchSpec(**{name: record[name] for name in EMULATED_FIELDS})
