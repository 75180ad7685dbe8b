"""802.1Qbh port-profile requests made the way libvirt makes them, and timed: RTM_SETLINK to the kernel
with IFLA_PORT_SELF { profile, instance UUID, host UUID, IFLA_PORT_REQUEST } and the MAC in
IFLA_VFINFO_LIST (virnetdevvportprofile.c virNetDevVPortProfileOpSetLink, nltarget_kernel), then
RTM_GETLINK (IFLA_EXT_MASK = RTEXT_FILTER_VF) for IFLA_PORT_SELF's IFLA_PORT_RESPONSE until it is no
longer IN_PROGRESS. The kernel hands both to the NIC's driver (enic); on the 802.1Qbh testbed the
process runs with the VIC shim preloaded, like the hosts' libvirtd, and the emulated VIC answers.

Where libvirt reads every 125 ms, this reads every `poll_ms` (2 ms by default): the fabric's own
latency, which calibration fits, to within a poll. It sends through sendmsg/recvmsg, the calls libnl
makes (and the shim answers).

    python -m pausecast.executor.vic.probe --link vx0 --repeat 30    # JSON: each request's latency

Each round associates a test port profile (its own instance and host UUIDs) and disassociates it. The
link has one port (PORT_SELF): a guest using it would lose its association, so run this only where no
guest's port profile is on the link.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time
import uuid
from dataclasses import asdict, dataclass

from pyroute2.netlink.rtnl import RTM_NEWLINK, RTM_SETLINK

from ...models.association import STATUS_POLL_TIMEOUT_S
from ...models.units import ms_to_s, s_to_ms
from ..vdp.station import (
    NETLINK_ACK_TIMEOUT_S,
    PORT_SELF_VF,
    NetlinkError,
    PortIfinfmsg,
    encode_getlink,
    raise_if_error,
    request_header,
)
from .vic import IN_PROGRESS, REQUESTS, SUCCESS

PROBE_PROFILE = "pausecast-probe"
PROBE_MAC = "52:54:00:5c:00:fe"
DEFAULT_POLL_MS = 2.0

_REQUEST_NUMBERS = {name: number for number, name in REQUESTS.items()}


@dataclass(frozen=True)
class Timed:
    """One request: its kind, the status that ended the polls (None: timed out), how long from the
    send to the read that returned it, and how many reads."""

    mode: str
    response: int | None
    latency_ms: float
    reads: int


def encode_setlink(ifindex: int, mac: str, mode: str, profile: str, instance: uuid.UUID | None,
                   host: uuid.UUID | None, sequence: int, port_id: int) -> bytes:
    """libvirt's 802.1Qbh RTM_SETLINK for PORT_SELF; a disassociate carries only the request, as
    libvirt's does."""
    msg = PortIfinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = ifindex
    port = [("IFLA_PORT_PROFILE", profile)] if profile else []
    port += [("IFLA_PORT_INSTANCE_UUID", instance.bytes)] if instance else []
    port += [("IFLA_PORT_HOST_UUID", host.bytes)] if host else []
    attrs = [("IFLA_VFINFO_LIST", {"attrs": [("IFLA_VF_INFO", {"attrs": [
        ("IFLA_VF_MAC", {"vf": PORT_SELF_VF, "mac": mac})]})]})] if mac else []
    port.append(("IFLA_PORT_REQUEST", _REQUEST_NUMBERS[mode]))
    msg["attrs"] = [*attrs, ("IFLA_PORT_SELF", {"attrs": port})]
    request_header(msg, RTM_SETLINK, sequence, port_id)
    msg.encode()
    return bytes(msg.data)


def port_self_response(data: bytes) -> int | None:
    """IFLA_PORT_SELF's IFLA_PORT_RESPONSE in the kernel's RTM_NEWLINK; None without one (libvirt: "no
    IFLA_PORT_RESPONSE found", or "IFLA_PORT_SELF is missing" before any request)."""
    if raise_if_error(data, "status query") != RTM_NEWLINK:
        raise NetlinkError(0, "status query: no RTM_NEWLINK in the reply")
    msg = PortIfinfmsg(data)
    msg.decode()
    port = msg.get_attr("IFLA_PORT_SELF")
    return port.get_attr("IFLA_PORT_RESPONSE") if port else None


class KernelPortClient:
    """Port-profile requests to the kernel over NETLINK_ROUTE, with sendmsg and recvmsg."""

    def __init__(self, poll_ms: float = DEFAULT_POLL_MS, timeout_s: float = STATUS_POLL_TIMEOUT_S) -> None:
        self.poll_s = ms_to_s(poll_ms)
        self.timeout_s = timeout_s
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.sock.settimeout(NETLINK_ACK_TIMEOUT_S)
        self.port_id = self.sock.getsockname()[0]
        self._sequence = int(time.time())

    def close(self) -> None:
        self.sock.close()

    def _command(self, data: bytes, what: str) -> bytes:
        self.sock.sendmsg([data], [], 0, (0, 0))
        while True:
            try:
                reply, _, _, _ = self.sock.recvmsg(65536)
            except TimeoutError:
                raise NetlinkError(110, f"{what}: no valid netlink response was received") from None
            if struct.unpack_from("=I", reply, 8)[0] == self._sequence:
                return reply

    def _next(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        return self._sequence

    def request(self, link: str, mode: str, *, mac: str = "", profile: str = "",
                instance: uuid.UUID | None = None, host: uuid.UUID | None = None) -> Timed:
        """Sends the request and reads the status until it is not IN_PROGRESS or the timeout."""
        ifindex = socket.if_nametoindex(link)
        start = time.monotonic()
        setlink = encode_setlink(ifindex, mac, mode, profile, instance, host, self._next(), self.port_id)
        raise_if_error(self._command(setlink, "port-profile setlink"), "port-profile setlink")
        reads = 0
        while time.monotonic() - start <= self.timeout_s:
            reads += 1
            response = port_self_response(self._command(encode_getlink(ifindex, self._next(), self.port_id),
                                                        "status query"))
            if response is not None and response != IN_PROGRESS:
                return Timed(mode, response, s_to_ms(time.monotonic() - start), reads)
            time.sleep(self.poll_s)
        return Timed(mode, None, s_to_ms(time.monotonic() - start), reads)


def probe(client: KernelPortClient, link: str, repeat: int, gap_s: float = 0.05) -> list[Timed]:
    """`repeat` rounds of a test associate and its disassociate; stops at the first that fails."""
    out = []
    for _ in range(repeat):
        associate = client.request(link, "associate", mac=PROBE_MAC, profile=PROBE_PROFILE,
                                   instance=uuid.uuid4(), host=uuid.uuid4())
        disassociate = client.request(link, "disassociate")
        out += [associate, disassociate]
        if SUCCESS not in (associate.response, disassociate.response) or \
                associate.response != disassociate.response:
            break
        time.sleep(gap_s)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pausecast.executor.vic.probe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", required=True, help="the link whose PORT_SELF port to probe")
    parser.add_argument("--repeat", type=int, default=30, help="associate + disassociate rounds")
    parser.add_argument("--poll-ms", type=float, default=DEFAULT_POLL_MS, help="time between status reads")
    args = parser.parse_args(argv)
    client = KernelPortClient(args.poll_ms)
    try:
        timed = probe(client, args.link, args.repeat)
    except (OSError, NetlinkError) as exc:
        print(f"vic probe: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps([asdict(t) for t in timed]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
