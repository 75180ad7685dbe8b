"""The two-host testbed with an 802.1Qbg port on the guest's NIC: each host runs its own lldpad as the
VDP station, and a switch namespace runs the VDP emulator on one port per host.

    pc-src: vx0 (VXLAN) over up0 --veth-- pc-src-up: vx-pc-src   pcvdp-tb<hash>-sw (emulator per port)
    pc-dst: vx0 (VXLAN) over up0 --veth-- pc-dst-up: vx-pc-dst

The guest's NIC is a macvtap in VEPA mode on vx0 with `<virtualport type='802.1Qbg'>`, so libvirt itself
pre-associates on the destination in Prepare, associates there in Finish and de-associates on the source
in Confirm, through the host's lldpad, over real ECP frames to the switch.

Why this shape: libvirt follows IFLA_LINK from the macvtap's lower device to a device without
a parent and asks lldpad about that one; a VXLAN is such a device and lives in the host's namespace, and
lldpad serves it only if it exists and is up when lldpad starts (a VXLAN reports UNKNOWN, so no later UP
event adds it). Each lldpad keeps its single-instance record in /dev/shm/lldpad.state: every host gets a
tmpfs of its own there. Its pid file goes to the host's private /run, where that host's libvirtd reads it.

libvirt 9.0 sends 802.1Qbg requests from its netlink event socket and refuses to when that socket's
port id, read into an int, is negative (virNetDevVPortProfileOpCommon: `src_pid < 0`). libnl's
generate_local_port makes a port id from the pid's low 22 bits and a block index in the top 10 bits
that it seeds from time(NULL) >> 5, so daemons started in about half of all 32-second windows are
affected, whatever their pid: a PID namespace does not help. `up()` reads each libvirtd's route-netlink
port ids from /proc/net/netlink and, while one is negative, restarts that daemon with time(2) shifted
into another 32-second window by an LD_PRELOAD shim in that libvirtd only (waiting for a good window
instead can take minutes: the index moves one block per window). Whatever else in libvirtd calls
time(2) sees the shift too, a few minutes at most.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...models.errors import ScenarioError
from ...models.scenario import SwitchSpec
from ..migration.measure import PortObservation
from ..migration.migrate import PortObserver
from ..vdp.faults import StuckVsi
from ..vdp.serve import switch_argv
from ..vdp.served import spec_from_log_start
from . import lldpad
from .hosts import DST, HOSTS, Testbed, TestbedError
from .lab import NETNS_DIR, PREFIX
from .lab import cleanup as lab_cleanup
from .package_files import FILES_DIR
from .port_probe import probe_argv, read_frames
from .procs import argv_of, kill_pid, pids_in_netns, run, stop

VXLAN_IF, UPLINK_IF = "vx0", "up0"
VXLAN_PORT = 4789
# the emulator's ECP ack timer: 10 us x 2^14 = 164 ms, so a loaded machine does not make it resend
ECP_RTE = 14
NIC_MAC = "52:54:00:5c:00:01"
# how far apart the hosts' interface indexes start (_separate_ifindexes): more macvtaps than this made
# on the source beyond those made on the destination would collide again. /dev is shared by every
# testbed on the machine too: two 802.1Qbg testbeds up at once can collide with each other.
IFINDEX_GAP = 2048
# libvirt's 802.1Qbg parameters for the test VSI (any values the switch accepts)
MANAGER_ID, TYPE_ID, TYPE_ID_VERSION = 11, 1193047, 2
# what plays the switch: the VDP emulator (a [switch] spec) or lldpad itself in bridge mode, the
# reference peer the emulator must match; the bridge's ECP ack timer is the emulator's
SWITCH_KINDS = ("emulator", "lldpad-bridge")
# the key of the switch's lldpad (lldpad-bridge) among the hosts' lldpads
_BRIDGE = "switch"
_PORT_ID_SIGN = 1 << 31
# each restart lands in a random seed window, so each is a fresh ~50% chance: 16 fail ~1 in 60,000
_LIBVIRTD_RESTARTS = 16
_PORT_SEED_PERIOD_S = 32
# a VDP response's status: 0x40 (a reply) with no error
_ANSWERED = "0x40"
# what files/time_shift.c, preloaded into libvirtd only, adds to time(2): whole seed windows, since
# libnl seeds its port ids from it
_SHIFT_ENV = "PAUSECAST_TIME_SHIFT_S"


@dataclass(frozen=True)
class Uplink:
    host: str
    vni: int
    host_ip: str
    switch_ip: str
    switch_if: str
    switch_vxlan: str


def uplinks() -> tuple[Uplink, ...]:
    return tuple(Uplink(host, 101 + i, f"10.203.{i}.1", f"10.203.{i}.2", f"{host}-up", f"vx-{host}")
                 for i, host in enumerate(HOSTS))


def interface_xml(instance_id: str, mac: str = NIC_MAC) -> str:
    return (f"<interface type='direct'><mac address='{mac}'/><source dev='{VXLAN_IF}' mode='vepa'/>"
            "<virtualport type='802.1Qbg'>"
            f"<parameters managerid='{MANAGER_ID}' typeid='{TYPE_ID}' typeidversion='{TYPE_ID_VERSION}' "
            f"instanceid='{instance_id}'/></virtualport>"
            "<model type='virtio'/><rom enabled='no'/></interface>")


def _netlink_route_ports(holder_pid: int, pid: int) -> list[int]:
    """The NETLINK_ROUTE port ids of process `pid`'s sockets, as the host's /proc/net/netlink lists them."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.is_dir() else ():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    table = Path(f"/proc/{holder_pid}/net/netlink").read_text().splitlines()[1:]
    # columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    return [int(cols[2]) for cols in (line.split() for line in table)
            if cols[1] == "0" and cols[9] in inodes]


class VdpTestbed(Testbed):
    """A Testbed whose guests carry an 802.1Qbg port. `switch` is the [switch] the emulator plays;
    `restart_switch(spec)` swaps it, on both ports or one (the lldpads keep running). With
    switch_kind="lldpad-bridge", lldpad in bridge mode plays the switch instead, as it is."""

    __test__ = False
    nic_port = "802.1Qbg"
    recovers_port_faults = True
    # the folder of the switch's files under the state dir, which also says what the testbed is for
    switch_folder = "vdp"

    def __init__(self, *args: Any, switch: SwitchSpec | None = None, seed: int = 0,
                 switch_kind: str = "emulator", **overrides: Any) -> None:
        if switch_kind not in SWITCH_KINDS:
            raise ScenarioError("switch_kind", switch_kind, f"one of {', '.join(SWITCH_KINDS)}")
        super().__init__(*args, **overrides)
        self.switch_kind = switch_kind
        self.switch = switch or SwitchSpec()
        self.seed = seed
        self.instance_id = str(uuid.uuid4())
        self._switch_procs: dict[str, subprocess.Popen[bytes]] = {}
        self._probe: subprocess.Popen[bytes] | None = None
        # each host's station lldpad and, with lldpad-bridge, the switch's (key _BRIDGE)
        self._lldpads: dict[str, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[str, int] = {}  # where each running lldpad's part of its log starts
        self._time_shift_s = 0

    @property
    def lab_name(self) -> str:
        """Names this testbed's switch namespace, pcvdp-<lab_name>-sw: one per state dir."""
        return "tb" + hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:8]

    @property
    def switch_ns(self) -> str:
        return f"{PREFIX}{self.lab_name}-sw"

    @property
    def vdp_dir(self) -> Path:
        return self.state_dir / self.switch_folder

    def _switch_starts(self, host: str) -> int:
        """How many emulators have run on `host`'s port: each logs to a file of its own, numbered, so
        another process (a later `pausecast run`) finds the running one's log."""
        return max((int(m.group(1)) for f in self.vdp_dir.glob(f"switch-{host}-*.jsonl")
                    if (m := re.fullmatch(rf"switch-{host}-(\d+)\.jsonl", f.name))), default=0)

    def switch_seed(self, host: str) -> int:
        """The seed of the emulator running on `host`'s port: the testbed's, moved on at each restart.
        A restarted emulator must not start its ECP sequence where the last one did: the station would
        drop its first reply as a repeat of the last one it acked."""
        return self.seed + self._switch_starts(host)

    def switch_log(self, host: str) -> Path:
        return self.vdp_dir / f"switch-{host}-{self._switch_starts(host)}.jsonl"

    @property
    def probe_log(self) -> Path:
        return self.vdp_dir / "probe.jsonl"

    def lldpad_log(self, host: str) -> Path:
        """The lldpad debug log of `host` (or of the switch's lldpad, _BRIDGE)."""
        return self.vdp_dir / f"lldpad-{host}.log"

    # ------------------------------------------------------------------------------------------ up
    def _up(self) -> dict[str, Any]:
        status = super()._up()
        self.vdp_dir.mkdir(exist_ok=True)
        lab_cleanup(self.lab_name)
        run(["ip", "netns", "add", self.switch_ns])
        run(["ip", "-n", self.switch_ns, "link", "set", "lo", "up"])
        for up in uplinks():
            self._setup_uplink(up)
        self._separate_ifindexes()
        self.restart_switch(self.switch)
        self._start_probe()
        self._start_stations()
        return status

    def _start_stations(self) -> None:
        """Each host's lldpad, the VDP station libvirt asks, once the switch runs."""
        for up in uplinks():
            self._start_lldpad(up.host)
        for up in uplinks():
            self._wait_lldpad(up.host, lldpad.has_evb_timers(VXLAN_IF))
        self._wait_bridge_timers()
        self._fix_netlink_ports()

    def _separate_ifindexes(self) -> None:
        """Moves the destination's next interface index far from the source's. libvirt opens a
        macvtap's queue as /dev/tap<ifindex>, and /dev is the machine's: two hosts in namespaces number
        their links alike, so the destination's QEMU would open the SOURCE's macvtap (its frames leave
        through the source's port, and stop when the source's macvtap goes in Confirm). Interface
        indexes are handed out cyclically per namespace: links made and dropped advance the counter
        (their peers go in a namespace deleted at once, which removes both ends in one batch)."""
        scratch = f"{self.switch_ns}-idx"
        run(["ip", "netns", "add", scratch])
        batch = self.vdp_dir / "ifindex-gap.batch"
        batch.write_text("".join(f"link add pcgap{i} type veth peer name pcgap{i} netns {scratch}\n"
                                 for i in range(IFINDEX_GAP)))
        # the network namespace only: the host's own /run hides the scratch namespace's name
        run(["nsenter", "-t", str(self.host(DST).holder_pid), "-n", "ip", "-batch", str(batch)])
        run(["ip", "netns", "delete", scratch])

    def _setup_uplink(self, up: Uplink) -> None:
        holder = self.host(up.host).holder_pid
        run(["ip", "link", "add", UPLINK_IF, "netns", str(holder), "type", "veth", "peer", "name",
             up.switch_if, "netns", self.switch_ns])
        self.run_in(up.host, ["ip", "addr", "add", f"{up.host_ip}/30", "dev", UPLINK_IF])
        self.run_in(up.host, ["ip", "link", "set", UPLINK_IF, "up"])
        self.run_in(up.host, ["ip", "link", "add", VXLAN_IF, "type", "vxlan", "id", str(up.vni),
                              "local", up.host_ip, "remote", up.switch_ip, "dstport", str(VXLAN_PORT),
                              "dev", UPLINK_IF])
        self.run_in(up.host, ["ip", "link", "set", VXLAN_IF, "up"])
        sw = ["ip", "-n", self.switch_ns]
        run([*sw, "addr", "add", f"{up.switch_ip}/30", "dev", up.switch_if])
        run([*sw, "link", "set", up.switch_if, "up"])
        run([*sw, "link", "add", up.switch_vxlan, "type", "vxlan", "id", str(up.vni), "local", up.switch_ip,
             "remote", up.host_ip, "dstport", str(VXLAN_PORT), "dev", up.switch_if])
        run([*sw, "link", "set", up.switch_vxlan, "up"])
        # the macvtap carries the guest's MAC: without IPv6 the host sends nothing from it, so every frame
        # the switch's probe sees from that MAC is the guest's own (QEMU's self-announce)
        self.run_in(up.host, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                              "net.ipv6.conf.default.disable_ipv6=1"])
        # lldpad's private /dev/shm, in the host's own mount namespace (never the machine's)
        self.run_in(up.host, ["mount", "-t", "tmpfs", "-o", "size=1m", "pcvdp-shm", "/dev/shm"])

    def _start_lldpad(self, host: str) -> None:
        conf = self.vdp_dir / f"lldpad-{host}.conf"
        conf.write_text(lldpad.config("station", [VXLAN_IF]))
        self._lldpads[host], self._log_offsets[host] = lldpad.start(
            lldpad.host_argv(self.host(host).holder_pid, conf), self.lldpad_log(host))

    def restart_lldpad(self, host: str) -> None:
        """A fresh lldpad on `host`, which forgets every VSI, stuck ones included (the stuck-VSI fault: a
        station whose switch went silent during a keep-alive drops the VSI without telling libvirt and
        refuses it until restarted). The switch on its port restarts too: a fresh switch sends its LLDPDU
        at once, which hands the fresh station its VDP timers (else it waits up to 30 s for the next)."""
        stop(self._lldpads.pop(host))
        self._start_lldpad(host)
        self.restart_switch(self.switch, (host,))
        self._wait_lldpad(host, lldpad.has_evb_timers(VXLAN_IF))

    def recover_stuck_vsi(self, fault: StuckVsi) -> None:
        """Clears a stuck VSI the one way there is, a fresh lldpad on the fault's host: a testbed's own
        lldpad, never a real host's (there the executor only reports)."""
        self.restart_lldpad(fault.host)

    def _wait_lldpad(self, host: str, pattern: str, what: str = "no VDP timers",
                     timeout_s: float = 40.0) -> None:
        """Until the running lldpad's part of its log shows `pattern`."""
        lldpad.wait_log(self._lldpads[host], self.lldpad_log(host), self._log_offsets[host], pattern,
                        who=f"on {host}", what=what, timeout_s=timeout_s)

    def libvirtd_netlink_ports(self, host: str) -> list[int]:
        holder = self.host(host).holder_pid
        return [port for pid in self.libvirtd_pids(host) for port in _netlink_route_ports(holder, pid)]

    def _start_libvirtd(self, h: Any) -> None:
        if not self._time_shift_s:
            super()._start_libvirtd(h)
            return
        with preloaded(self.vdp_dir / "time_shift.so", {_SHIFT_ENV: str(self._time_shift_s)}):
            super()._start_libvirtd(h)

    def _fix_netlink_ports(self) -> None:
        bad: dict[str, list[int]] = {}
        for attempt in range(1, _LIBVIRTD_RESTARTS + 1):
            bad = {h: ports for h in HOSTS
                   if not (ports := self.libvirtd_netlink_ports(h)) or max(ports) >= _PORT_ID_SIGN}
            if not bad:
                return
            if attempt == 1:
                so = self.vdp_dir / "time_shift.so"
                run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(so), str(FILES_DIR / "time_shift.c")])
            # another seed window for libnl's port block index, far from the last: neighbouring windows
            # give neighbouring blocks, and half of all blocks are negative in runs of up to 16
            self._time_shift_s = secrets.randbelow(4096) * _PORT_SEED_PERIOD_S
            for host in bad:
                self.restart_libvirtd(host)
        raise TestbedError(f"libvirtd kept a negative netlink port id after {_LIBVIRTD_RESTARTS} restarts: "
                           f"{bad}")

    # ------------------------------------------------------------------------------------ the switch
    def restart_switch(self, spec: SwitchSpec, hosts: tuple[str, ...] = HOSTS) -> None:
        """A fresh emulator, with a fresh log (switch_log), on the ports of `hosts`; the others run on.
        With lldpad-bridge: a fresh lldpad on both ports (`spec` and `hosts` do not apply)."""
        self.switch = spec
        if self.switch_kind == "lldpad-bridge":
            self._restart_lldpad_bridge()
            return
        ports = [up for up in uplinks() if up.host in hosts]
        for up in ports:
            self._stop_switch_port(up.host)
            # created before the emulator starts, so switch_log names it from now on
            (self.vdp_dir / f"switch-{up.host}-{self._switch_starts(up.host) + 1}.jsonl").touch()
            log = self.switch_log(up.host)
            err = (self.vdp_dir / f"switch-{up.host}.err").open("ab")
            argv = self._switch_argv(up, spec, log)
            try:
                self._switch_procs[up.host] = subprocess.Popen(
                    ["nsenter", f"--net={NETNS_DIR / self.switch_ns}", *argv], stdin=subprocess.DEVNULL,
                    stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                err.close()
        deadline = time.monotonic() + 20
        for up in ports:
            log = self.switch_log(up.host)
            while not (log.exists() and '"start"' in log.read_text()):
                if self._switch_procs[up.host].poll() is not None or time.monotonic() > deadline:
                    raise TestbedError(f"the VDP emulator for {up.host} did not start; "
                                       f"see {self.vdp_dir}/switch-{up.host}.err")
                time.sleep(0.05)

    def _switch_argv(self, up: Uplink, spec: SwitchSpec, log: Path) -> list[str]:
        """The emulator's command for `up`'s port, run in the switch namespace."""
        return [*switch_argv(up.switch_vxlan, spec, log, self.switch_seed(up.host)),
                "--ecp-rte", str(ECP_RTE)]

    def _is_switch_process(self, argv: list[str], up: Uplink) -> bool:
        """Whether `argv`, a process in the switch namespace, is the emulator on `up`'s port."""
        return "pausecast.executor.vdp.bridge" in argv and argv[argv.index("--iface") + 1] == up.switch_vxlan

    def _start_probe(self) -> None:
        err = (self.vdp_dir / "probe.err").open("ab")
        try:
            self._probe = subprocess.Popen(
                ["nsenter", f"--net={NETNS_DIR / self.switch_ns}", *probe_argv([NIC_MAC], self.probe_log)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            err.close()
        deadline = time.monotonic() + 20
        while not self.probe_log.exists() or '"start"' not in self.probe_log.read_text():
            if time.monotonic() > deadline:
                raise TestbedError(f"the port probe did not start; see {self.vdp_dir}/probe.err")
            time.sleep(0.05)

    def _stop_switch_port(self, host: str) -> None:
        """Stops the emulator on `host`'s port, whichever process started it (`pausecast testbed up`
        starts it; a later `pausecast run` may swap it)."""
        proc = self._switch_procs.pop(host, None)
        if proc is not None:
            stop(proc)
        up = next(up for up in uplinks() if up.host == host)
        for pid in pids_in_netns(NETNS_DIR / self.switch_ns):
            if self._is_switch_process(argv_of(pid), up):
                kill_pid(pid)

    def stop_switch(self) -> None:
        for host in HOSTS:
            self._stop_switch_port(host)
        if _BRIDGE in self._lldpads:
            stop(self._lldpads.pop(_BRIDGE))

    def _restart_lldpad_bridge(self) -> None:
        """lldpad with evbmode "bridge" on every switch port, in a mount namespace of its own with
        private /run and /dev/shm (lldpad.private_argv: never the machine's /dev/shm/lldpad.state). Its
        configuration is written first and the ports are up: lldpad fixes a port's role at start."""
        self.stop_switch()
        conf = self.vdp_dir / "lldpad-switch.conf"
        conf.write_text(lldpad.config("bridge", [up.switch_vxlan for up in uplinks()], ECP_RTE))
        self._lldpads[_BRIDGE], self._log_offsets[_BRIDGE] = lldpad.start(
            lldpad.private_argv(NETNS_DIR / self.switch_ns, conf), self.lldpad_log(_BRIDGE))
        for up in uplinks():
            self._wait_lldpad(_BRIDGE, lldpad.runs_vdp(up.switch_vxlan), f"no VDP on {up.switch_vxlan}")
        self._wait_bridge_timers()

    def _wait_bridge_timers(self) -> None:
        """Until lldpad-bridge has the EVB timers on the ports whose station runs. It gets them when it
        hears the station's EVB TLV; until then its keep-alive timer is 10 us x 2^0 and it de-associates
        every VSI right after answering it (lldpad.has_evb_timers)."""
        if _BRIDGE not in self._lldpads:
            return
        for up in uplinks():
            if up.host in self._lldpads:
                self._wait_lldpad(_BRIDGE, lldpad.has_evb_timers(up.switch_vxlan))

    def status(self) -> dict[str, Any]:
        out = super().status()
        if out.get("hosts"):
            running = self.running_switch()
            out["switch"] = asdict(running) if running is not None else None
            out["nic_port"] = self.nic_port
        return out

    def play_switch(self, spec: SwitchSpec) -> None:
        if self.is_up() and self.running_switch() != spec:
            self.restart_switch(spec)

    def running_switch(self) -> SwitchSpec | None:
        """The [switch] the emulator on the destination's port plays, from its log's start record."""
        log = self.switch_log(DST)
        start = next((json.loads(line) for line in (log.read_text().splitlines() if log.exists() else ())
                      if '"start"' in line), None)
        if start is None:
            return None
        return spec_from_log_start(start)

    def switch_records(self) -> list[dict[str, Any]]:
        """Both ports' logs of the running emulators, each record tagged with its port's host, in time
        order (both emulators stamp with this machine's monotonic clock)."""
        records = []
        for host in HOSTS:
            log = self.switch_log(host)
            if log.exists():
                records += [{**json.loads(line), "port": host}
                            for line in log.read_text().splitlines() if line.strip()]
        return sorted(records, key=lambda r: r["mono_s"])

    def port_observer(self) -> PortObserver | None:
        # lldpad-bridge keeps no log of its answers that observe_port could read
        return self.observe_port if self.switch_kind == "emulator" else None

    def observe_port(self, after_s: float, wait_s: float) -> PortObservation:
        """What the switch namespace saw of the destination's port since `after_s` (wall clock): Finish's
        associate and the switch's successful answer (the emulator's log), and the guest's first frame
        (the probe). Waits up to `wait_s` for the answer and the frame: libvirt 9.0 returns from an
        802.1Qbg migration before a slow switch answers Finish's associate."""
        deadline = time.monotonic() + wait_s
        while True:
            records = [r for r in self.switch_records() if r["port"] == DST and r["t"] > after_s
                       and r.get("mode") == "associate"]
            request = next((r for r in records if r["event"] == "request"), None)
            answer = next((r for r in records if r["event"] == "response" and r["status"] == _ANSWERED
                           and request is not None and r["req"] == request["req"]), None)
            dst_port = next(up.switch_vxlan for up in uplinks() if up.host == DST)
            frame = next((f for f in read_frames(self.probe_log) if f["iface"] == dst_port
                          and f["t"] > after_s), None)
            if (answer is not None and frame is not None) or time.monotonic() > deadline:
                return PortObservation(
                    associate_request_s=request["t"] if request else math.nan,
                    forwarding_s=answer["t"] if answer else math.nan,
                    first_frame_s=frame["t"] if frame else math.nan,
                    source="the VDP emulator's log (associate answered) and a probe on its port "
                           "(the guest's first frame)")
            time.sleep(0.05)

    # ------------------------------------------------------------------------------------ the guest
    def guest_xml(self, name: str, **kw: Any) -> str:
        return super().guest_xml(name, **kw).replace("</devices>", f"  {self.nic_xml()}\n  </devices>")

    def nic_xml(self) -> str:
        """The guest's NIC: a macvtap on the host's VXLAN with the port profile."""
        return interface_xml(self.instance_id)

    # ---------------------------------------------------------------------------------------- down
    def down(self, **kw: Any) -> dict[str, Any]:
        self.stop_switch()
        if self._probe is not None:
            stop(self._probe)
        for proc in self._lldpads.values():
            stop(proc)
        self._lldpads.clear()
        lab_cleanup(self.lab_name)
        return super().down(**kw)


@contextmanager
def preloaded(library: Path, env: dict[str, str]) -> Iterator[None]:
    """This process's environment with `library` in LD_PRELOAD and `env` set, for a child started
    inside (a libvirtd), restored after."""
    saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", *env)}
    os.environ.update({"LD_PRELOAD": str(library), **env})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
