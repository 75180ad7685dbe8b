"""lldpad as the testbed and the VDP lab run it: its configuration (files/lldpad.conf.in), how it is
started in a namespace, and how its debug log is read, the only place that shows when its VDP is ready.

The configuration is written before lldpad starts, because lldpad fixes a port's VDP role when it first
brings the port up (a role set later with lldptool does not reach VDP), and it serves only ports that
exist and are up at start. lldpad keeps a single-instance record in /dev/shm/lldpad.state and writes
/var/run/lldpad.pid: neither may touch the machine's, so every lldpad here has a /dev/shm of its own.

lldpad's VDP accepts requests (and a bridge keeps VSIs) only once it has the EVB timers, which it gets
when it hears the peer's LLDPDU with the EVB TLV or at its own next LLDP transmission, up to 30 s after
start (lldp_evb22.c evb22_update_tlv -> vdp22.c data_from_evb).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from .package_files import filled
from .procs import TestbedError

# lldptool's names for the nearest customer bridge agent's EVB settings (lldptool-evb22(8)): the
# reflective-relay setting a role asks for (station) or offers (bridge)
_REFLECTIVE_RELAY = {"station": "evbrrreq", "bridge": "evbrrcap"}
# in a mount namespace of its own, with private tmpfs on /run and /dev/shm; lldpad logs with printf:
# line-buffer it, its log is read while it runs
_PRIVATE_LLDPAD = ("mount -t tmpfs pcvdp-run /run && mount -t tmpfs pcvdp-shm /dev/shm && "
                   'exec stdbuf -oL lldpad -f "$0" -V 7')


def config(role: str, ports: Iterable[str], ecp_rte: int | None = None) -> str:
    """lldpad.conf: the nearest customer bridge agent on each of `ports` in VDP role `role` ("station"
    or "bridge"), transmitting LLDP; `ecp_rte`: the ECP ack timer exponent (10 us x 2^rte), else
    lldpad's default."""
    rte = "" if ecp_rte is None else f"      ecprte = {ecp_rte};\n"
    blocks = (filled("lldpad-port.conf.in", ifname=port, role=role,
                     reflective_relay=_REFLECTIVE_RELAY[role], ecp_rte=rte) for port in ports)
    return filled("lldpad.conf.in", ports="".join(blocks))


def private_argv(netns: Path, conf: Path) -> list[str]:
    """lldpad in the network namespace `netns`, in a mount namespace of its own with private /run and
    /dev/shm. nsenter and unshare exec without forking, so the child's pid is lldpad's."""
    return ["nsenter", f"--net={netns}", "unshare", "--mount", "--propagation", "private",
            "sh", "-c", _PRIVATE_LLDPAD, str(conf)]


def host_argv(holder_pid: int, conf: Path) -> list[str]:
    """lldpad in a testbed host's own namespaces (the holder's), which give it a /dev/shm of its own:
    its pid file goes to the host's private /run, where that host's libvirtd reads it. nsenter execs:
    the child's pid is lldpad's."""
    return ["nsenter", "-t", str(holder_pid), "-n", "-m", "-u",
            "stdbuf", "-oL", "lldpad", "-f", str(conf), "-V", "7"]


def start(argv: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Starts lldpad (`argv` from private_argv or host_argv) appending to `log`; returns the process and
    where its part of the log starts (an earlier lldpad's lines come before)."""
    out = log.open("ab")
    try:
        offset = out.tell()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        out.close()
    return proc, offset


def runs_vdp(ifname: str) -> str:
    """The log line that says lldpad runs VDP on `ifname`, about a second after its start (evb22_timer).
    A status query does not tell: without VDP on the port lldpad answers it from its draft-0.2 code."""
    return rf"vdp22_create:{ifname} role:"


def has_evb_timers(ifname: str) -> str:
    """The log line that says lldpad's VDP on `ifname` has the EVB timers. Until then a station refuses
    requests (EPROTONOSUPPORT) and a bridge runs its keep-alive timer at 10 us x 2^0, de-associating
    every VSI 30 us after answering it."""
    return rf"data_from_evb:{ifname} .* evb:1$"


def wait_log(proc: subprocess.Popen[bytes], log: Path, offset: int, pattern: str, *, who: str,
             what: str, timeout_s: float) -> None:
    """Until the running lldpad's part of `log` (from `offset`) shows `pattern`; raises TestbedError
    (naming `who`, and `what` is missing) if lldpad exits first or `timeout_s` passes."""
    found = re.compile(pattern.encode(), re.MULTILINE)
    deadline = time.monotonic() + timeout_s
    while not found.search(log.read_bytes()[offset:]):
        if proc.poll() is not None:
            raise TestbedError(f"lldpad {who} exited ({proc.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise TestbedError(f"lldpad {who}: {what} within {timeout_s:.0f} s; see {log}")
        time.sleep(0.05)
