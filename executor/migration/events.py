"""libvirt domain events from both daemons, timestamped as they arrive.

As libvirt-python's examples/event-test.py does: libvirt's default event loop runs in a daemon thread
(it must be registered before the connections that subscribe are opened), and each connection
subscribes to lifecycle (with details), migration-iteration and job-completed events for one domain,
identified by UUID because the destination's domain does not exist yet when the migration starts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_loop_lock = threading.Lock()
_loop_started = False

# include/libvirt/libvirt-domain.h: virDomainEventType and each type's virDomainEvent*DetailType
LIFECYCLE = ("defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown",
             "pmsuspended", "crashed")
LIFECYCLE_DETAIL = {
    "defined": ("added", "updated", "renamed", "from snapshot"),
    "undefined": ("removed", "renamed"),
    "started": ("booted", "migrated", "restored", "from snapshot", "wakeup"),
    "suspended": ("paused", "migrated", "ioerror", "watchdog", "restored", "from snapshot", "api error",
                  "postcopy", "postcopy failed"),
    "resumed": ("unpaused", "migrated", "from snapshot", "postcopy", "postcopy failed"),
    "stopped": ("shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot"),
    "shutdown": ("finished", "guest", "host"),
}


def ensure_event_loop() -> None:
    """Registers libvirt's default event implementation once and runs it in a daemon thread. Call it
    before opening any connection that will subscribe to events. libvirt's errors then reach the
    caller as exceptions only: libvirt-python would also print each one on stderr."""
    global _loop_started
    import libvirt

    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-event-loop", daemon=True).start()
        _loop_started = True


def lifecycle_name(event: int, detail: int) -> tuple[str, str]:
    name = LIFECYCLE[event] if 0 <= event < len(LIFECYCLE) else str(event)
    details = LIFECYCLE_DETAIL.get(name, ())
    return name, details[detail] if 0 <= detail < len(details) else str(detail)


@dataclass(frozen=True)
class DomainEvent:
    t_s: float
    host: str
    # "lifecycle" | "iteration" | "job completed"
    kind: str
    name: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "host": self.host, "kind": self.kind, "name": self.name,
                "detail": self.detail, "data": self.data}


class EventRecorder:
    """Collects one domain's events on one connection until `close()`."""

    def __init__(self, conn: Any, host: str, uuid: str) -> None:
        import libvirt

        self.conn, self.host, self.uuid = conn, host, uuid
        self._events: list[DomainEvent] = []
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self._ids = [
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None),
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
                                        self._iteration, None),
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                                        self._job_completed, None),
        ]

    def _add(self, dom: Any, kind: str, name: str, detail: str = "", data: dict | None = None) -> None:
        t_s = time.time()
        if dom.UUIDString() != self.uuid:
            return
        with self._lock:
            self._events.append(DomainEvent(t_s, self.host, kind, name, detail, dict(data or {})))
            self.changed.notify_all()

    def _lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        self._add(dom, "lifecycle", *lifecycle_name(event, detail))

    def _iteration(self, _conn: Any, dom: Any, iteration: int, _opaque: Any) -> None:
        self._add(dom, "iteration", str(iteration))

    def _job_completed(self, _conn: Any, dom: Any, params: dict, _opaque: Any) -> None:
        self._add(dom, "job completed", "job completed", data=params)

    @property
    def events(self) -> list[DomainEvent]:
        with self._lock:
            return list(self._events)

    def wait_for(self, kind: str, timeout_s: float) -> DomainEvent | None:
        """The first event of `kind`, waiting up to `timeout_s` for it to arrive."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                found = next((e for e in self._events if e.kind == kind), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self.changed.wait(left)

    def close(self) -> None:
        import libvirt

        for callback_id in self._ids:
            # a connection that is gone (a killed daemon) has nothing left to deregister
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.domainEventDeregisterAny(callback_id)
        self._ids = []
