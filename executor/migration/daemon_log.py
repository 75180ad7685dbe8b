"""The phases of a migration as the two libvirt daemons logged them.

With `log_filters` at debug level for qemu.qemu_migration, qemu.qemu_process, conf.virdomainjob and
qemu.qemu_monitor_json (the testbed sets them; on real hosts see README), libvirtd 9.x writes one
timestamped line as each protocol-v3 step starts, and the JSON of every QEMU monitor event, which
carries QEMU's own microsecond timestamp. This module turns a stretch of such a log into `LogEvent`s:

    source       begin       qemuMigrationSrcBeginPhase         Begin starts
    destination  prepare     qemuMigrationDstPrepare*           Prepare starts (first line)
    source       perform     qemuMigrationSrcPerformNative      Perform starts
    destination  launch      qemuProcessLaunch "Creating domain  libvirt starts building QEMU's command
                             log file"                          line, NICs included: an 802.1Qbg
                                                                macvtap is associated (pre-associated
                                                                in Prepare) and polled for here
    destination  launch built qemuProcessLaunch "Building mount  ... done
                             namespace"
    destination  finish      qemuMigrationDstFinish             Finish starts
    destination  start cpus  qemuProcessStartCPUs               libvirt sends "cont"
    source       confirm     qemuMigrationSrcConfirmPhase       Confirm starts
    source       qemu stop   qemuProcessStop (reason=migrated)  Confirm tears the source QEMU down
    both         job end     "Stopping async job: migration *"  the daemon's migration job is over
    both         qemu event  QEMU_MONITOR_RECV_EVENT            STOP, RESUME, MIGRATION, MIGRATION_PASS

Timestamps are wall-clock seconds since the epoch (libvirt's are in ms, UTC; QEMU's in us).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d{4}): \d+: (\w+) : (\w+):\d+ : (.*)$")
# each mark: (function, message pattern or "", name, the log_filters entry that makes libvirtd write it)
_MARKS = (
    ("qemuMigrationSrcBeginPhase", "", "begin", "qemu.qemu_migration"),
    ("qemuMigrationDstPrepareAny", "", "prepare", "qemu.qemu_migration"),
    ("qemuMigrationDstPrepareDirect", "", "prepare", "qemu.qemu_migration"),
    ("qemuMigrationDstPrepareTunnel", "", "prepare", "qemu.qemu_migration"),
    ("qemuMigrationSrcPerformNative", "", "perform", "qemu.qemu_migration"),
    ("qemuMigrationSrcPerformTunnel", "", "perform", "qemu.qemu_migration"),
    ("qemuProcessLaunch", "Creating domain log file", "launch", "qemu.qemu_process"),
    ("qemuProcessLaunch", "Building mount namespace", "launch built", "qemu.qemu_process"),
    ("qemuMigrationDstFinish", "", "finish", "qemu.qemu_migration"),
    ("qemuProcessStartCPUs", "", "start cpus", "qemu.qemu_process"),
    ("qemuMigrationSrcConfirmPhase", "", "confirm", "qemu.qemu_migration"),
    ("qemuProcessStop", "reason=migrated", "qemu stop", "qemu.qemu_process"),
    ("virDomainObjEndAsyncJob", "Stopping async job: migration", "job end", "conf.virdomainjob"),
)
MONITOR_FILTER = "qemu.qemu_monitor_json"
# what the record reads of a completed migration on each host, under each filter (QEMU's events,
# "qemu STOP" and the like, come through MONITOR_FILTER)
_EXPECTED = {
    "source": {"qemu.qemu_migration": "begin", "qemu.qemu_process": "qemu stop",
               "conf.virdomainjob": "job end", MONITOR_FILTER: "qemu STOP"},
    "destination": {"qemu.qemu_migration": "finish", "qemu.qemu_process": "start cpus",
                    MONITOR_FILTER: "qemu RESUME"},
}
_EVENT = re.compile(r"QEMU_MONITOR_RECV_EVENT: mon=\S+ event=(\{.*\})\s*$")


@dataclass(frozen=True)
class LogEvent:
    t_s: float
    # "source" | "destination"
    host: str
    name: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"t_s": self.t_s, "host": self.host, "name": self.name, "detail": self.detail,
                "data": self.data}


def _timestamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f%z").timestamp()


def parse_log(text: str, host: str) -> list[LogEvent]:
    """Every mark and QEMU event in `text` (a stretch of a libvirtd debug log), in log order. A daemon
    runs one migration at a time here, so the stretch belongs to that migration."""
    out: list[LogEvent] = []
    seen_prepare = False
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue  # a continuation line of a multi-line message (cookies are XML)
        stamp, _level, function, message = m.groups()
        event = _EVENT.search(message)
        if event is not None:
            out.append(_qemu_event(event.group(1), host))
            continue
        for mark_function, pattern, name, _filter in _MARKS:
            if function == mark_function and pattern in message:
                # Prepare logs several functions in turn; its start is the first
                if name == "prepare":
                    if seen_prepare:
                        break
                    seen_prepare = True
                out.append(LogEvent(_timestamp(stamp), host, name, message[:200]))
                break
    return out


def _qemu_event(text: str, host: str) -> LogEvent:
    obj = json.loads(text)
    stamp = obj.get("timestamp", {})
    t_s = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
    data = obj.get("data", {}) or {}
    detail = data.get("status", "") if obj.get("event") == "MIGRATION" else ""
    if obj.get("event") == "MIGRATION_PASS":
        detail = str(data.get("pass", ""))
    return LogEvent(t_s, host, "qemu " + obj.get("event", "?"), detail, data)


def mark_line(name: str) -> bytes:
    """What a line of the mark `name` holds, for a fault that waits for it to be logged (the
    function's own first line: a prefix of another function's name does not match)."""
    function = next(function for function, _pattern, mark, _filter in _MARKS if mark == name)
    return f" : {function}:".encode()


def missing_filters(events: list[LogEvent] | tuple[LogEvent, ...], host: str) -> list[str]:
    """The log_filters entries whose lines a completed migration's log stretch on `host` lacks; none
    when nothing was read from that host (no log given: a different matter, said elsewhere)."""
    names = {e.name for e in events if e.host == host}
    if not names:
        return []
    return [log_filter for log_filter, name in _EXPECTED[host].items() if name not in names]


class LogTail:
    """The part of a log written after this object was made: note the size now, read the rest later."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.offset = self._size()

    def _size(self) -> int:
        try:
            return self.path.stat().st_size if self.path else 0
        except OSError:
            return 0

    def read(self) -> str:
        if self.path is None:
            return ""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
