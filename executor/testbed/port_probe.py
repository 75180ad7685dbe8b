"""A packet probe on the switch's side of the testbed: when do the guest's own frames reach a switch port?

The test guest has no network stack (it only writes memory), so nothing can be pinged. Its NIC still
talks: after the destination starts it, QEMU sends the guest's self-announcements (RARP, ethertype
0x8035, from the guest's MAC; migration/options.c announce-initial 50 ms, then every 100 ms, 5 rounds)
out of the macvtap, through the host's VXLAN, to the switch namespace. The probe listens on every port
of that namespace and logs each frame whose source is a watched MAC as a JSON line with its wall-clock
time and the port it arrived on. Together with the switch's log (when it answered the associate), that
gives the measured end of the network outage: the first frame the destination port would forward.

    python -m pausecast.executor.testbed.port_probe --mac 52:54:00:5c:00:01 --log probe.jsonl
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from ..vdp.wire import PACKET_OUTGOING, mac_from_bytes, mac_to_bytes

ETH_P_ALL = 0x0003


def frame_record(raw: bytes, iface: str, t_s: float, macs: frozenset[str]) -> dict[str, Any] | None:
    """The log record for one received frame, or None when its source is not watched."""
    if len(raw) < 14:
        return None
    src = mac_from_bytes(raw[6:12])
    if src not in macs:
        return None
    return {"t": round(t_s, 6), "event": "frame", "iface": iface, "src": src,
            "dst": mac_from_bytes(raw[0:6]), "ethertype": f"{int.from_bytes(raw[12:14], 'big'):#06x}"}


def listen(macs: Iterable[str], log: TextIO, stop: Callable[[], bool]) -> None:
    """Logs every frame from `macs` arriving on any port of this namespace until `stop()`."""
    watched = frozenset(m.lower() for m in macs)
    for mac in watched:
        mac_to_bytes(mac)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.setblocking(False)
        log.write(json.dumps({"t": round(time.time(), 6), "event": "start", "macs": sorted(watched)}) + "\n")
        log.flush()
        while not stop():
            readable, _, _ = select.select([sock], [], [], 0.2)
            while readable:
                try:
                    raw, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                record = frame_record(raw, addr[0], time.time(), watched)
                if record is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()


def read_frames(log_path: Path) -> list[dict[str, Any]]:
    """The frames a probe logged, in arrival order (a missing log: none)."""
    if not log_path.exists():
        return []
    return [r for r in (json.loads(line) for line in log_path.read_text().splitlines() if line.strip())
            if r["event"] == "frame"]


def probe_argv(macs: Iterable[str], log_path: Path) -> list[str]:
    """The command that runs the probe (to start inside the switch's namespace)."""
    return [sys.executable, "-m", "pausecast.executor.testbed.port_probe", "--log", str(log_path),
            *(arg for mac in macs for arg in ("--mac", mac))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pausecast.executor.testbed.port_probe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--mac", action="append", required=True, help="a source MAC to watch (repeatable)")
    parser.add_argument("--log", required=True, type=Path, help="JSON-lines log of the frames seen")
    args = parser.parse_args(argv)
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    with args.log.open("a") as log:
        listen(args.mac, log, lambda: bool(stopping))
    return 0


if __name__ == "__main__":
    sys.exit(main())
