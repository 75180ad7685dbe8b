"""An 802.1Qbg port-profile request to lldpad over netlink, made the way libvirt makes it, and timed.

libvirt (`src/util/virnetdevvportprofile.c`, `virNetDevVPortProfileOp8021Qbg` / `OpSetLink` /
`OpCommon`) sends lldpad an RTM_SETLINK addressed to the netlink port id that lldpad binds to its own pid
(libvirt reads it from /var/run/lldpad.pid):

    ifinfomsg (AF_UNSPEC, ifindex of the macvtap's lower device)
    IFLA_IFNAME          lower device
    IFLA_VFINFO_LIST     nest
      IFLA_VF_INFO       nest
        IFLA_VF_MAC      struct ifla_vf_mac  {vf = PORT_SELF_VF, mac[32]}  the guest's MAC
        IFLA_VF_VLAN     struct ifla_vf_vlan {vf = PORT_SELF_VF, vlan, qos = 0}
    IFLA_VF_PORTS        nest
      IFLA_VF_PORT       nest
        IFLA_PORT_VSI_TYPE       struct ifla_port_vsi {mgr id, type id (3 bytes, LOW byte first), version}
        IFLA_PORT_INSTANCE_UUID  16 bytes
        IFLA_PORT_REQUEST        u8: PORT_REQUEST_*

For 802.1Qbg libvirt sends no IFLA_PORT_PROFILE, no IFLA_PORT_HOST_UUID (those are 802.1Qbh's) and no
IFLA_PORT_VF (it forces vf = PORT_SELF_VF and puts IFLA_PORT_VF only for a real VF). Nests carry
NLA_F_NESTED, as libnl 3.7's nla_nest_start sets it; the header asks for an ack (nl_send_auto_complete).

Then it polls: RTM_GETLINK (ifindex, IFLA_EXT_MASK = RTEXT_FILTER_VF; virnetlink.c virNetlinkDumpLink) to
the same port; lldpad answers with an NLMSG_DONE message holding IFLA_VF_PORTS, one IFLA_VF_PORT per VSI with
IFLA_PORT_INSTANCE_UUID, IFLA_PORT_VF = PORT_SELF_VF and, once the switch answered, IFLA_PORT_RESPONSE
(lldpad qbg/vdpnl.c vdpnl_getlink). No response attribute means "in progress". libvirt reads the status at
once, then every 125 ms, 80 times (10 s), and fails on any status but success.

Checked byte for byte against libvirt 9.0's own messages to lldpad, captured with strace on the VDP
testbed (tests/test_vdp_netlink.py, tests/data/libvirt-9.0-qbg-netlink/): ours differ only in the header's
nlmsg_seq (libnl seeds each socket's from the clock, and libvirt opens one socket per message) and
nlmsg_pid, where libvirt names its netlink event socket (lldpad sends its later notices there) and we the
socket that sends.

pyroute2 0.9.7 maps IFLA_VF_PORTS and IFLA_PORT_SELF to opaque hex; `PortIfinfmsg` below gives them their
kernel layout (linux/if_link.h) and sets NLA_F_NESTED on every nest, as libnl does.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from pyroute2.netlink import NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, nla, nlmsg
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netns import create_socket

from ...models.association import STATUS_POLL_INTERVAL_MS, STATUS_POLL_TIMEOUT_S
from ...models.units import ms_to_s, s_to_ms
from .wire import ETH_P_ECP, PACKET_OUTGOING, EcpOp, VdpMode, WireError, decode_ecp, decode_vdp

LLDPAD_PID_FILE = Path("/var/run/lldpad.pid")  # libvirt virnetdevvportprofile.c LLDPAD_PID_FILE
NETLINK_ACK_TIMEOUT_S = 2.0  # libvirt virnetlink.c NETLINK_ACK_TIMEOUT_S
PORT_SELF_VF = 0xFFFFFFFF  # linux/if_link.h PORT_SELF_VF (-1) as the u32 on the wire
PORT_VDP_RESPONSE_SUCCESS = 0
RTEXT_FILTER_VF = 1 << 0
# linux/net_tstamp.h / asm-generic/socket.h; Python 3.11 does not export them
SO_TIMESTAMPNS = 35
SIOCGIFINDEX = 0x8933  # linux/sockios.h


class PortRequest(IntEnum):
    """linux/if_link.h PORT_REQUEST_*; lldpad adds 1 to get the VDP TLV type (vdp22.c vdp22_request)."""

    PREASSOCIATE = 0
    PREASSOCIATE_RR = 1
    ASSOCIATE = 2
    DISASSOCIATE = 3


# Our own message classes with explicit attribute numbers: subclassing pyroute2's ifinfmsg would share
# its compiled attribute tables, which pyroute2 caches per class on first use.
class _PortAttrs(nla):
    """The IFLA_PORT_* attributes of one port (IFLA_VF_PORT or IFLA_PORT_SELF)."""

    nla_flags = NLA_F_NESTED
    nla_map = (
        (1, "IFLA_PORT_VF", "uint32"),
        (2, "IFLA_PORT_PROFILE", "asciiz"),
        (3, "IFLA_PORT_VSI_TYPE", "port_vsi"),
        (4, "IFLA_PORT_INSTANCE_UUID", "cdata"),
        (5, "IFLA_PORT_HOST_UUID", "cdata"),
        (6, "IFLA_PORT_REQUEST", "uint8"),
        (7, "IFLA_PORT_RESPONSE", "uint16"),
    )

    class port_vsi(nla):
        # struct ifla_port_vsi: vsi_type_id[0] is the LOW byte (libvirt and lldpad vdpnl.c agree)
        fields = (("mgr_id", "B"), ("type_id", "3s"), ("type_version", "B"), ("pad", "3x"))


class _VfPorts(nla):
    nla_flags = NLA_F_NESTED
    nla_map = ((1, "IFLA_VF_PORT", "vf_port"),)
    vf_port = _PortAttrs


class _VfInfo(nla):
    nla_flags = NLA_F_NESTED
    nla_map = ((1, "IFLA_VF_MAC", "vf_mac"), (2, "IFLA_VF_VLAN", "vf_vlan"))
    # struct ifla_vf_mac {vf, mac[32]} and struct ifla_vf_vlan {vf, vlan, qos}, as pyroute2 has them
    vf_mac = ifinfmsg.vflist.vfinfo.vf_mac
    vf_vlan = ifinfmsg.vflist.vfinfo.vf_vlan


class _VfInfoList(nla):
    nla_flags = NLA_F_NESTED
    nla_map = ((1, "IFLA_VF_INFO", "vf_info"),)
    vf_info = _VfInfo


class PortIfinfmsg(nlmsg):
    """An ifinfomsg with the attributes a port-profile request and its status use (linux/if_link.h)."""

    fields = ifinfmsg.fields
    nla_map = (
        (3, "IFLA_IFNAME", "asciiz"),
        (22, "IFLA_VFINFO_LIST", "vfinfo_list"),
        (24, "IFLA_VF_PORTS", "vf_ports"),
        (25, "IFLA_PORT_SELF", "port_self"),
        (29, "IFLA_EXT_MASK", "uint32"),
    )
    vfinfo_list = _VfInfoList
    vf_ports = _VfPorts
    port_self = _PortAttrs


@dataclass(frozen=True)
class VsiProfile:
    """What <virtualport type='802.1Qbg'> carries (libvirt: managerid, typeid, typeidversion, instanceid)."""

    manager_id: int
    type_id: int
    type_id_version: int
    instance_uuid: uuid.UUID

    def __post_init__(self) -> None:
        for name, value, bits in (("manager_id", self.manager_id, 8), ("type_id", self.type_id, 24),
                                  ("type_id_version", self.type_id_version, 8)):
            if not 0 <= value < 1 << bits:
                raise ValueError(f"{name} {value} does not fit {bits} bits")


@dataclass(frozen=True)
class PortResult:
    """One request as libvirt would see it, plus what the wire showed.

    observed_ms: send -> the poll that saw the final status (or the timeout), libvirt's view.
    raw_ms: send -> the switch's VDP reply for this VSI arriving at the station's port; None when the
    wire was not watched or no reply came."""

    request: PortRequest
    ok: bool
    status: int | None
    observed_ms: float
    raw_ms: float | None
    polls: int
    error: str = ""


def read_lldpad_pid(pid_file: Path = LLDPAD_PID_FILE) -> int:
    """lldpad's netlink port id, read as libvirt reads it (virNetDevVPortProfileGetLldpadPid)."""
    text = pid_file.read_text()
    try:
        pid = int(text.split()[0]) if text.split() else 0
    except ValueError:
        pid = 0
    if pid <= 0:
        raise ValueError(f"error parsing pid of lldpad in {pid_file}: {text!r}")
    return pid


def request_header(msg: PortIfinfmsg, msg_type: int, sequence: int, port_id: int) -> None:
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = sequence
    msg["header"]["pid"] = port_id


def encode_setlink(ifname: str, ifindex: int, mac: str, vlan: int, profile: VsiProfile,
                   request: PortRequest, sequence: int, port_id: int) -> bytes:
    msg = PortIfinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = ifindex
    vsi = {"mgr_id": profile.manager_id, "type_id": profile.type_id.to_bytes(3, "little"),
           "type_version": profile.type_id_version}
    msg["attrs"] = [
        ("IFLA_IFNAME", ifname),
        ("IFLA_VFINFO_LIST", {"attrs": [("IFLA_VF_INFO", {"attrs": [
            ("IFLA_VF_MAC", {"vf": PORT_SELF_VF, "mac": mac}),
            ("IFLA_VF_VLAN", {"vf": PORT_SELF_VF, "vlan": vlan, "qos": 0}),
        ]})]}),
        ("IFLA_VF_PORTS", {"attrs": [("IFLA_VF_PORT", {"attrs": [
            ("IFLA_PORT_VSI_TYPE", vsi),
            ("IFLA_PORT_INSTANCE_UUID", profile.instance_uuid.bytes),
            ("IFLA_PORT_REQUEST", int(request)),
        ]})]}),
    ]
    request_header(msg, RTM_SETLINK, sequence, port_id)
    msg.encode()
    return bytes(msg.data)


def encode_getlink(ifindex: int, sequence: int, port_id: int) -> bytes:
    msg = PortIfinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = ifindex
    msg["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_VF)]
    request_header(msg, RTM_GETLINK, sequence, port_id)
    msg.encode()
    return bytes(msg.data)


class NetlinkError(OSError):
    """lldpad answered with a netlink error (e.g. ENODEV for a port it does not serve)."""


def raise_if_error(data: bytes, what: str) -> int:
    """The message type, after turning an NLMSG_ERROR with a non-zero code into NetlinkError."""
    if len(data) < 16:
        raise NetlinkError(errno.EPROTO, f"{what}: truncated netlink reply ({len(data)} bytes)")
    _, msg_type = struct.unpack_from("=IH", data)
    if msg_type == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", data, 16)
        if code:
            raise NetlinkError(-code, f"{what}: {os.strerror(-code)}")
    return msg_type


def port_statuses(data: bytes) -> dict[uuid.UUID, int | None]:
    """Every VSI in lldpad's GETLINK reply with its IFLA_PORT_RESPONSE (None: no answer yet)."""
    msg_type = raise_if_error(data, "status query")
    if msg_type not in (NLMSG_DONE, RTM_NEWLINK):  # lldpad answers NLMSG_DONE, a kernel RTM_NEWLINK
        raise NetlinkError(errno.EPROTO, f"status query: unexpected reply type {msg_type}")
    msg = PortIfinfmsg(data)
    msg.decode()
    ports = msg.get_attr("IFLA_VF_PORTS")
    return {uuid.UUID(bytes=port.get_attr("IFLA_PORT_INSTANCE_UUID")): port.get_attr("IFLA_PORT_RESPONSE")
            for port in (ports.get_attrs("IFLA_VF_PORT") if ports else ())
            if port.get_attr("IFLA_PORT_VF") == PORT_SELF_VF and port.get_attr("IFLA_PORT_INSTANCE_UUID")}


def port_status(data: bytes, instance_uuid: uuid.UUID) -> int | None:
    """The VSI's status in lldpad's GETLINK reply; None while in progress. Raises LookupError when the
    VSI is not listed, where libvirt fails with "Could not find vf/instanceId"."""
    statuses = port_statuses(data)
    if instance_uuid not in statuses:
        raise LookupError(f"Could not find vf/instanceId {PORT_SELF_VF}/{instance_uuid} in netlink response")
    return statuses[instance_uuid]


class _WireWatch:
    """Kernel-timestamped VDP frames arriving at the station's port, to time the switch's reply."""

    def __init__(self, netns: str | None, ifname: str) -> None:
        self.sock = create_socket(netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ECP), flags=0)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((ifname, ETH_P_ECP))
        self.sock.setblocking(False)

    def drain(self) -> None:
        while self.reply_time_ns(None) is not None:
            pass

    def wait_reply_ns(self, instance_uuid: uuid.UUID, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while (t_ns := self.reply_time_ns(instance_uuid)) is None:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return None
            select.select([self.sock], [], [], left_s)
        return t_ns

    def reply_time_ns(self, instance_uuid: uuid.UUID | None) -> int | None:
        """The arrival time of the first queued bridge reply for the VSI (any frame if None)."""
        cmsg_space = socket.CMSG_SPACE(16)
        while True:
            try:
                raw, ancdata, _, addr = self.sock.recvmsg(2048, cmsg_space)
            except BlockingIOError:
                return None
            stamp = next((struct.unpack("=qq", d[:16]) for lvl, kind, d in ancdata
                          if lvl == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
            t_ns = stamp[0] * 1_000_000_000 + stamp[1] if stamp else time.time_ns()
            if instance_uuid is None:
                return t_ns
            if addr[2] == PACKET_OUTGOING:
                continue
            try:
                frame = decode_ecp(raw)
                if frame.op != EcpOp.REQUEST:
                    continue
                vsis = decode_vdp(frame.payload).vsis
            except WireError:
                continue
            # a reply carries the response bit; a bridge-initiated de-associate does not
            if any(v.vsi_id == instance_uuid and (v.is_response or v.mode == VdpMode.DEASSOCIATE)
                   for v in vsis):
                return t_ns

    def close(self) -> None:
        self.sock.close()


class LldpadClient:
    """Talks to one lldpad as libvirt does. `netns` is the network namespace lldpad runs in (None: this
    one); `watch_wire` also times the switch's reply on the port (needs CAP_NET_RAW), waiting up to
    `raw_wait_s` after a success for a reply that came after the status libvirt accepted (lldpad reports
    the previous request's status until the switch answers a mode change, so an associate that follows a
    pre-associate "succeeds" at once)."""

    def __init__(self, lldpad_pid: int, netns: str | None = None,
                 poll_interval_s: float = ms_to_s(STATUS_POLL_INTERVAL_MS),
                 timeout_s: float = STATUS_POLL_TIMEOUT_S, watch_wire: bool = True,
                 raw_wait_s: float = 0.0) -> None:
        self.lldpad_pid = lldpad_pid
        self.netns = netns
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.watch_wire = watch_wire
        self.raw_wait_s = raw_wait_s
        self.sock = create_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE, flags=0)
        self.sock.bind((0, 0))
        self.sock.settimeout(NETLINK_ACK_TIMEOUT_S)
        self.port_id = self.sock.getsockname()[0]
        # libnl seeds a socket's sequence numbers with the time; any start works for lldpad
        self._sequence = int(time.time())

    def __enter__(self) -> LldpadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _command(self, data: bytes, what: str) -> bytes:
        """Sends one message to lldpad and returns its reply (libvirt virNetlinkCommand)."""
        self.sock.sendto(data, (self.lldpad_pid, 0))
        while True:
            try:
                reply = self.sock.recv(65536)
            except TimeoutError:
                raise NetlinkError(errno.ETIMEDOUT,
                                   f"{what}: no valid netlink response was received") from None
            _, msg_type, _, sequence = struct.unpack_from("=IHHI", reply)
            # lldpad also sends RTM_SETLINK notices (a VSI de-associated, by request or by the switch) to
            # the port a request's header named: this socket's
            if sequence == self._sequence and msg_type != RTM_SETLINK:
                return reply

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        return self._sequence

    def ifindex(self, ifname: str) -> int:
        """The index in lldpad's namespace: an ioctl answers for the namespace of the socket it is made on."""
        try:
            reply = fcntl.ioctl(self.sock.fileno(), SIOCGIFINDEX, struct.pack("16sI", ifname.encode(), 0))
        except OSError as exc:
            raise NetlinkError(exc.errno, f"{ifname}: {exc.strerror}") from None
        return struct.unpack("16sI", reply)[1]

    def vsis(self, ifname: str) -> dict[uuid.UUID, int | None]:
        """The VSIs lldpad holds on the port and their statuses (raises NetlinkError, e.g. ENODEV, when
        lldpad does not run VDP there)."""
        getlink = encode_getlink(self.ifindex(ifname), self._next_sequence(), self.port_id)
        return port_statuses(self._command(getlink, "status query"))

    def request(self, ifname: str, mac: str, profile: VsiProfile, request: PortRequest,
                vlan: int = 0) -> PortResult:
        """Sends the request and polls until success, an error status, or the timeout."""
        ifindex = self.ifindex(ifname)
        watch = _WireWatch(self.netns, ifname) if self.watch_wire else None
        try:
            if watch:
                watch.drain()
            return self._request(ifname, ifindex, mac, profile, request, vlan, watch)
        finally:
            if watch:
                watch.close()

    def _request(self, ifname: str, ifindex: int, mac: str, profile: VsiProfile, request: PortRequest,
                 vlan: int, watch: _WireWatch | None) -> PortResult:
        setlink = encode_setlink(ifname, ifindex, mac, vlan, profile, request, self._next_sequence(),
                                 self.port_id)
        start_ns = time.time_ns()
        start = time.monotonic()
        raw_ns: int | None = None

        def result(ok: bool, status: int | None, polls: int, error: str = "") -> PortResult:
            observed_ms = s_to_ms(time.monotonic() - start)
            reply_ns = raw_ns
            if watch and reply_ns is None:
                reply_ns = watch.wait_reply_ns(profile.instance_uuid, self.raw_wait_s if ok else 0.0)
            raw_ms = None if reply_ns is None else (reply_ns - start_ns) / 1e6
            return PortResult(request, ok, status, observed_ms, raw_ms, polls, error)

        try:
            raise_if_error(self._command(setlink, "port-profile setlink"), "port-profile setlink")
        except NetlinkError as exc:
            # libvirt: "error during virtual port configuration of ifindex N: <strerror>"
            return result(False, None, 0, f"error during virtual port configuration of ifindex {ifindex}: "
                                          f"{os.strerror(exc.errno)}")
        status: int | None = None
        polls = 0
        for _ in range(int(self.timeout_s / self.poll_interval_s)):
            polls += 1
            getlink = encode_getlink(ifindex, self._next_sequence(), self.port_id)
            reply = self._command(getlink, "status query")
            if watch and raw_ns is None:
                raw_ns = watch.wait_reply_ns(profile.instance_uuid, 0.0)
            try:
                status = port_status(reply, profile.instance_uuid)
            except (LookupError, NetlinkError) as exc:
                return result(False, None, polls, str(exc))
            if status == PORT_VDP_RESPONSE_SUCCESS:
                return result(True, status, polls)
            if status is not None:
                return result(False, status, polls, f"error {status} during port-profile setlink on "
                                                    f"interface {ifname} ({ifindex})")
            time.sleep(self.poll_interval_s)
        return result(False, status, polls, "port-profile setlink timed out")
