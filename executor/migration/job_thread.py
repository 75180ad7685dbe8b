"""A thread beside a migration call that may act on its job: libvirt's timeout (virsh's watchdog) and
an orchestrator's monitor loop are both one."""

from __future__ import annotations

import math
import threading
from typing import Any


class JobThread:
    """start(t0_s) when the call starts, stop() when it returns; `fired` and `fired_at_s` say what it
    did to the job and when (wall clock), `error` libvirt's complaint if the action failed."""

    def __init__(self, dom: Any, name: str) -> None:
        self.dom = dom
        self.fired = ""
        self.fired_at_s = math.nan
        self.error = ""
        self.t0_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, t0_s: float) -> None:
        self.t0_s = t0_s
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError
