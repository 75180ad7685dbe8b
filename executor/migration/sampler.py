"""Job statistics sampled every 100 ms while a migration runs, on a connection of their own so that
the blocking migration call never delays a sample."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .jobinfo import JobInfo

SAMPLE_INTERVAL_S = 0.1


class JobSampler:
    """Calls `dom.jobStats()` every `interval_s` in a thread; `on_sample(t_s, info)` sees each sample."""

    def __init__(self, dom: Any, interval_s: float = SAMPLE_INTERVAL_S,
                 on_sample: Callable[[float, JobInfo], None] | None = None) -> None:
        self.dom = dom
        self.interval_s = interval_s
        self.on_sample = on_sample
        self.samples: list[tuple[float, JobInfo]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[tuple[float, JobInfo]]:
        self._stop.set()
        self._thread.join()
        return self.samples

    def _run(self) -> None:
        import libvirt

        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                info = JobInfo.from_stats(self.dom.jobStats())
            except libvirt.libvirtError:
                info = None  # the domain left this host, or its daemon is gone
            if info is not None:
                t_s = time.time()
                self.samples.append((t_s, info))
                if self.on_sample is not None:
                    self.on_sample(t_s, info)
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))
