"""A small VDP lab on one machine, for tests and benchmarks: a station namespace with its own lldpad,
joined by a veth pair to a switch namespace that runs either the VDP emulator or lldpad as the bridge.

    pcvdp-<name>-st   st0 --veth-- sw0   pcvdp-<name>-sw
    lldpad (station)                     vdp_switch  |  lldpad (evbmode = "bridge")

Each lldpad runs in a mount namespace of its own with private tmpfs on /run and /dev/shm, configured
before it starts (lldpad.py says why). Both ends of the veth are up before either side starts. A veth
pair is all lldpad needs (libvirt, which walks IFLA_LINK from a macvtap, is another matter).

lldpad's VDP accepts requests only once it has the EVB timers, up to 30 s after start unless it hears
the peer's LLDPDU first. So the station is ready only once a switch is up: `start_emulator` and
`start_lldpad_bridge` wait for that, reading lldpad's debug log.

Cleanup leaves nothing: processes are stopped by the pids the lab started, and any other process still
inside a `pcvdp-<name>-*` namespace (after a crash) is found through /proc/<pid>/ns/net and killed by
pid; deleting the namespaces removes the veth; the mount namespaces die with their processes.
`python -m pausecast.executor.testbed.lab --cleanup` clears every pcvdp- namespace left behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ...models.scenario import SwitchSpec
from ..vdp.serve import switch_argv
from . import lldpad
from .procs import TestbedError, kill_pid, pids_in_netns, run, stop

if TYPE_CHECKING:
    from ..vdp.station import LldpadClient

PREFIX = "pcvdp-"
NETNS_DIR = Path("/run/netns")
STATION_IF, SWITCH_IF = "st0", "sw0"
STATION_MAC, SWITCH_MAC = "02:50:43:56:00:01", "02:50:43:56:00:02"


class LabError(TestbedError):
    pass


def cleanup(name: str | None = None) -> list[str]:
    """Removes the lab's namespaces (every pcvdp- one if `name` is None) and the processes inside them."""
    pattern = f"{PREFIX}{name}-" if name else PREFIX
    removed = []
    for path in sorted(NETNS_DIR.glob(pattern + "*")) if NETNS_DIR.is_dir() else []:
        for pid in pids_in_netns(path):
            kill_pid(pid)
        run(["ip", "netns", "delete", path.name], check=False)
        removed.append(path.name)
    return removed


class VdpLab:
    """`with VdpLab("t") as lab:` brings up the station (namespace, veth, lldpad); then
    `lab.start_emulator(spec)` or `lab.start_lldpad_bridge()` puts a switch on the other end."""

    def __init__(self, name: str = "lab", workdir: Path | None = None, ready_timeout_s: float = 20.0) -> None:
        if not name.replace("-", "").isalnum():
            raise ValueError(f"lab name {name!r}: letters, digits and dashes only")
        self.name = name
        self.station_ns = f"{PREFIX}{name}-st"
        self.switch_ns = f"{PREFIX}{name}-sw"
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=PREFIX)) if workdir is None else Path(workdir)
        self.ready_timeout_s = ready_timeout_s
        self.station: subprocess.Popen | None = None
        self.switch: subprocess.Popen | None = None
        self.switch_log: Path | None = None
        self._switches = 0
        self._log_offsets: dict[str, int] = {}  # where the running lldpad's part of its log starts

    def __enter__(self) -> VdpLab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- bring up ----------------------------------------------------------------------------------

    def up(self) -> None:
        for tool in ("ip", "nsenter", "unshare", "mount", "stdbuf", "lldpad"):
            if shutil.which(tool) is None:
                raise LabError(f"{tool} is not installed")
        cleanup(self.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        run(["ip", "netns", "add", self.station_ns])
        run(["ip", "netns", "add", self.switch_ns])
        run(["ip", "link", "add", STATION_IF, "netns", self.station_ns, "type", "veth", "peer", "name",
             SWITCH_IF, "netns", self.switch_ns])
        ends = ((self.station_ns, STATION_IF, STATION_MAC), (self.switch_ns, SWITCH_IF, SWITCH_MAC))
        for ns, ifname, mac in ends:
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "link", "set", ifname, "address", mac, "up"])
        self.station = self._start_lldpad(self.station_ns, STATION_IF, "station")
        self._wait_vdp(self.station, STATION_IF, "station")

    def _start_lldpad(self, ns: str, ifname: str, role: str) -> subprocess.Popen:
        conf_dir = self.workdir / f"lldpad-{role}"
        conf_dir.mkdir(exist_ok=True)
        conf = conf_dir / "lldpad.conf"
        conf.write_text(lldpad.config(role, [ifname]))
        proc, self._log_offsets[role] = lldpad.start(lldpad.private_argv(NETNS_DIR / ns, conf),
                                                     conf_dir / "lldpad.log")
        return proc

    def lldpad_pid_file(self, proc: subprocess.Popen) -> Path:
        """An lldpad's /var/run/lldpad.pid as libvirt inside its namespace would read it."""
        return Path(f"/proc/{proc.pid}/root/run/lldpad.pid")

    def _wait_log(self, proc: subprocess.Popen, role: str, pattern: str, what: str) -> None:
        lldpad.wait_log(proc, self.workdir / f"lldpad-{role}" / "lldpad.log", self._log_offsets[role],
                        pattern, who=f"({role})", what=what, timeout_s=self.ready_timeout_s)

    def _wait_vdp(self, proc: subprocess.Popen, ifname: str, role: str) -> None:
        """Until lldpad runs VDP on the port (lldpad.runs_vdp)."""
        self._wait_log(proc, role, lldpad.runs_vdp(ifname), f"no VDP on {ifname}")

    def _wait_timers(self, proc: subprocess.Popen, ifname: str, role: str) -> None:
        """Until lldpad's VDP has the EVB timers (lldpad.has_evb_timers): up to 30 s after start."""
        self._wait_log(proc, role, lldpad.has_evb_timers(ifname), f"no EVB timers for VDP on {ifname}")

    # --- the switch --------------------------------------------------------------------------------

    def start_emulator(self, spec: SwitchSpec, seed: int = 0, extra_args: tuple[str, ...] = ()) -> Path:
        """Starts the emulator on sw0; returns its JSON-lines log (a fresh one per start)."""
        self.stop_switch()
        self._switches += 1
        log = self.workdir / f"switch-{self._switches}.jsonl"
        err = self.workdir / f"switch-{self._switches}.err"
        stderr = err.open("ab")
        argv = [*switch_argv(SWITCH_IF, spec, log, seed), *extra_args]
        self.switch = subprocess.Popen(["nsenter", f"--net={NETNS_DIR / self.switch_ns}", *argv],
                                       stdin=subprocess.DEVNULL, stdout=stderr, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        stderr.close()
        self.switch_log = log
        deadline = time.monotonic() + self.ready_timeout_s
        while not (log.exists() and '"start"' in log.read_text()):
            if self.switch.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"the VDP emulator did not start: see {err}")
            time.sleep(0.05)
        self._wait_timers(self._station(), STATION_IF, "station")
        return log

    def start_lldpad_bridge(self) -> None:
        self.stop_switch()
        self.switch = self._start_lldpad(self.switch_ns, SWITCH_IF, "bridge")
        self.switch_log = None
        self._wait_vdp(self.switch, SWITCH_IF, "bridge")
        self._wait_timers(self.switch, SWITCH_IF, "bridge")
        self._wait_timers(self._station(), STATION_IF, "station")

    def stop_switch(self) -> None:
        if self.switch is not None:
            stop(self.switch)
            self.switch = None

    def switch_records(self) -> list[dict]:
        """The emulator's log so far."""
        if self.switch_log is None or not self.switch_log.exists():
            return []
        return [json.loads(line) for line in self.switch_log.read_text().splitlines() if line.strip()]

    # --- the station -------------------------------------------------------------------------------

    def _station(self) -> subprocess.Popen:
        if self.station is None:
            raise LabError("the lab is not up")
        return self.station

    def client(self, **options: float | bool) -> LldpadClient:
        """A netlink client for the station's lldpad, as libvirt on that host would talk to it."""
        # vdp needs pyroute2 (the executor extra); the testbed imports this module for its namespace
        # helpers, and `pausecast testbed|run --help` must work without that extra
        from ..vdp.station import LldpadClient, read_lldpad_pid

        pid = read_lldpad_pid(self.lldpad_pid_file(self._station()))
        return LldpadClient(pid, self.station_ns, **options)

    def restart_station(self) -> None:
        """A fresh station lldpad, which forgets every VSI, stuck ones included. The switch is stopped
        too: the station gets its VDP timers from the next switch's LLDP (`start_emulator` and
        `start_lldpad_bridge` wait for that)."""
        self.stop_switch()
        stop(self._station())
        self.station = self._start_lldpad(self.station_ns, STATION_IF, "station")
        self._wait_vdp(self.station, STATION_IF, "station")

    # --- tear down ---------------------------------------------------------------------------------

    def down(self) -> None:
        self.stop_switch()
        if self.station is not None:
            stop(self.station)
            self.station = None
        cleanup(self.name)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pausecast.executor.testbed.lab")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove every pcvdp- namespace and the processes inside")
    args = parser.parse_args(argv)
    if args.cleanup:
        for name in cleanup():
            print(f"removed {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
