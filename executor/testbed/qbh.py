"""The two-host testbed with an 802.1Qbh (VN-Link) port on the guest's NIC, through an emulated Cisco
VIC: libvirt's own 802.1Qbh code runs, and the NIC that would answer it is emulated.

The links are the 802.1Qbg testbed's (qbg.py: a VXLAN per host to a switch namespace, where a probe
watches the guest's frames), without lldpad. The guest's NIC is a macvtap on vx0 with
`<virtualport type='802.1Qbh'>`, so libvirt itself pre-associates (PREASSOCIATE_RR) on the destination
in Prepare, associates there in Finish and waits for the answer, polling every 125 ms, and
disassociates on the source in Confirm (virnetdevvportprofile.c, virNetDevVPortProfileOp8021Qbh).
Those requests go to the kernel, for a NIC driver with port profiles (enic); vx0 has none, so each
libvirtd runs with files/vic_shim.c preloaded, which answers the port-profile netlink of vx0 as enic
would and asks the VIC emulator (executor/vic/, one per host, playing the scenario's [switch]) for
each request and status; every other netlink message reaches the kernel as sent.

What is emulated is the NIC and its fabric: the queue, service time, refusals and silence of the
[switch]. What runs for real is libvirt: when it sends each request, how often it polls, how long it
waits before starting the guest, what it does on a refusal or a timeout.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...models.association import STATUS_POLL_TIMEOUT_S
from ..migration.measure import PortObservation
from ..vic.serve import vic_argv
from ..vic.vic import SUCCESS
from .hosts import DST, SRC, Testbed, TestbedError
from .package_files import FILES_DIR
from .port_probe import read_frames
from .procs import run
from .qbg import NIC_MAC, VXLAN_IF, Uplink, VdpTestbed, preloaded, uplinks

if TYPE_CHECKING:
    from ..vic.probe import Timed

# the port profile the guest's NIC asks the fabric for (any name: the emulated fabric serves them all)
PROFILE_ID = "pausecast-vic"
_SUCCESS = f"{SUCCESS:#x}"


def interface_xml(profile_id: str = PROFILE_ID, mac: str = NIC_MAC) -> str:
    return (f"<interface type='direct'><mac address='{mac}'/><source dev='{VXLAN_IF}' mode='vepa'/>"
            f"<virtualport type='802.1Qbh'><parameters profileid='{profile_id}'/></virtualport>"
            "<model type='virtio'/><rom enabled='no'/></interface>")


class QbhTestbed(VdpTestbed):
    """A Testbed whose guests carry an 802.1Qbh port on an emulated VIC. `switch` is the [switch] the
    VIC emulators play (one per host); `restart_switch(spec, hosts)` swaps it."""

    __test__ = False
    nic_port = "802.1Qbh"
    recovers_port_faults = False
    switch_folder = "vic"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, switch_kind="emulator", **kw)

    def vic_socket(self, host: str) -> Path:
        return self.vdp_dir / f"vic-{host}.sock"

    def _start_stations(self) -> None:
        """None: libvirt talks to the NIC (the shim and the VIC emulator), not to a station daemon."""

    def _start_libvirtd(self, h: Any) -> None:
        shim = self.vdp_dir / "vic_shim.so"
        shim.parent.mkdir(parents=True, exist_ok=True)
        if not shim.exists():
            run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(FILES_DIR / "vic_shim.c")])
        with preloaded(shim, self._shim_env(h.name)):
            Testbed._start_libvirtd(self, h)

    def _shim_env(self, host: str) -> dict[str, str]:
        """What tells the shim in a process on `host` which link is the VIC's and where its emulator is."""
        return {"PAUSECAST_VIC_LINK": VXLAN_IF, "PAUSECAST_VIC_SOCKET": str(self.vic_socket(host))}

    def probe_fabric(self, repeat: int, host: str = SRC) -> list[Timed]:
        """`repeat` test associates and disassociates on `host`'s link, sent as libvirt sends them and read
        every 2 ms, through the shim and that host's VIC (executor/vic/probe.py). The link has one port:
        no guest may use it meanwhile."""
        import libvirt

        from ..vic.probe import Timed  # pyroute2: the executor extra, not needed to import the testbed

        if self.connect(host).listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            raise TestbedError(f"{host} in {self.state_dir} runs a guest, whose port profile test "
                               "associations would take over (the link has one port): destroy it first")
        env = [f"{k}={v}" for k, v in {"LD_PRELOAD": str(self.vdp_dir / "vic_shim.so"),
                                        **self._shim_env(host)}.items()]
        out = self.run_in(host, ["env", *env, sys.executable, "-m", "pausecast.executor.vic.probe", "--link",
                                 VXLAN_IF, "--repeat", str(repeat)],
                          timeout=60 + repeat * 2 * STATUS_POLL_TIMEOUT_S)
        return [Timed(**t) for t in json.loads(out.stdout)]

    def _switch_argv(self, up: Uplink, spec: Any, log: Path) -> list[str]:
        return vic_argv(self.vic_socket(up.host), spec, log, self.switch_seed(up.host))

    def _is_switch_process(self, argv: list[str], up: Uplink) -> bool:
        return "pausecast.executor.vic.serve" in argv and argv[argv.index("--socket") + 1] == \
            str(self.vic_socket(up.host))

    def nic_xml(self) -> str:
        return interface_xml()

    def observe_port(self, after_s: float, wait_s: float) -> PortObservation:
        """What the VIC saw of the destination's port since `after_s` (wall clock): Finish's associate,
        the fabric's successful answer (the port forwards from then on), the first poll at which libvirt
        read that answer (libvirt starts the guest after it), and the guest's first frame (the probe).
        libvirt returns from the migration only after reading the answer, so little waiting is left."""
        deadline = time.monotonic() + wait_s
        dst_port = next(up.switch_vxlan for up in uplinks() if up.host == DST)
        while True:
            records = [r for r in self.switch_records() if r["port"] == DST and r["t"] > after_s
                       and r.get("mode") == "associate"]
            request = next((r for r in records if r["event"] == "request"), None)
            mine = [r for r in records if request is not None and r.get("req") == request["req"]]
            answer = next((r for r in mine if r["event"] == "response" and r["response"] == _SUCCESS), None)
            seen = next((r for r in mine if r["event"] == "poll" and r["response"] == _SUCCESS), None)
            frame = next((f for f in read_frames(self.probe_log) if f["iface"] == dst_port
                          and f["t"] > after_s), None)
            if (seen is not None and frame is not None) or time.monotonic() > deadline:
                return PortObservation(
                    associate_request_s=request["t"] if request else math.nan,
                    forwarding_s=answer["t"] if answer else math.nan,
                    first_frame_s=frame["t"] if frame else math.nan,
                    associate_seen_s=seen["t"] if seen else math.nan,
                    source="the VIC emulator's log (associate answered, libvirt's poll that read it) and a "
                           "probe on the switch port (the guest's first frame)")
            time.sleep(0.05)
