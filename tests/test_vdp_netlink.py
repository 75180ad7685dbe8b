"""The netlink client's bytes against libvirt's. Two references, neither from our encoder:
- libnl 3 (the library libvirt and lldpad link) called in the order libvirt's
  virNetDevVPortProfileOpSetLink / virNetlinkDumpLink and lldpad's vdpnl_getlink call it;
- libvirt 9.0's own messages to lldpad and lldpad's replies, captured with strace on the VDP testbed's
  libvirtd during a guest start, a migration and a destroy (tests/test_vdp_testbed.py captures them live;
  tests/data/libvirt-9.0-qbg-netlink/ keeps one capture, so the comparison also runs without root)."""

import ctypes
import ctypes.util
import json
import re
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from pausecast.executor.testbed.hosts import DST, SRC
from pausecast.executor.vdp.station import (
    PORT_SELF_VF,
    PORT_VDP_RESPONSE_SUCCESS,
    NetlinkError,
    PortRequest,
    VsiProfile,
    encode_getlink,
    encode_setlink,
    port_status,
    port_statuses,
    read_lldpad_pid,
)

# /usr/include/linux/if_link.h, rtnetlink.h, netlink.h
IFLA_IFNAME, IFLA_VFINFO_LIST, IFLA_VF_PORTS, IFLA_EXT_MASK = 3, 22, 24, 29
IFLA_VF_INFO, IFLA_VF_MAC, IFLA_VF_VLAN, IFLA_VF_PORT = 1, 1, 2, 1
IFLA_PORT_VF, IFLA_PORT_VSI_TYPE, IFLA_PORT_INSTANCE_UUID = 1, 3, 4
IFLA_PORT_REQUEST, IFLA_PORT_RESPONSE = 6, 7
RTM_GETLINK, RTM_SETLINK, NLMSG_ERROR, NLMSG_DONE, NLM_F_REQUEST, NLM_F_ACK = 18, 19, 2, 3, 1, 4
PROFILE = VsiProfile(manager_id=12, type_id=0x123457, type_id_version=1,
                     instance_uuid=uuid.UUID("09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"))


@pytest.fixture(scope="module")
def libnl():
    # libnl-3 is what libvirt builds its messages with; scripts/bootstrap.sh installs it (libnl-3-200)
    lib = ctypes.CDLL(ctypes.util.find_library("nl-3") or "libnl-3.so.200")
    vp = ctypes.c_void_p
    lib.nlmsg_alloc_simple.restype, lib.nlmsg_alloc_simple.argtypes = vp, [ctypes.c_int, ctypes.c_int]
    lib.nlmsg_hdr.restype, lib.nlmsg_hdr.argtypes = vp, [vp]
    lib.nla_nest_start.restype, lib.nla_nest_start.argtypes = vp, [vp, ctypes.c_int]
    lib.nla_nest_end.argtypes = [vp, vp]
    lib.nla_put.argtypes = [vp, ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
    lib.nlmsg_append.argtypes = [vp, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    lib.nlmsg_free.argtypes = [vp]
    return lib


class Msg:
    """A libnl message built call by call; `completed` applies what nl_send_auto_complete adds."""

    def __init__(self, lib, msg_type: int, flags: int, ifindex: int) -> None:
        self.lib = lib
        self.msg = lib.nlmsg_alloc_simple(msg_type, flags)
        ifinfomsg = struct.pack("=BxHiII", 0, 0, ifindex, 0, 0)  # AF_UNSPEC, the index, the rest zero
        assert lib.nlmsg_append(self.msg, ifinfomsg, len(ifinfomsg), 4) == 0

    def put(self, attr: int, value: bytes) -> None:
        assert self.lib.nla_put(self.msg, attr, len(value), value) == 0

    def nest(self, attr: int):
        return self.lib.nla_nest_start(self.msg, attr)

    def end(self, nest) -> None:
        self.lib.nla_nest_end(self.msg, nest)

    def completed(self, sequence: int, port_id: int, auto_ack: bool = True) -> bytes:
        head = self.lib.nlmsg_hdr(self.msg)
        data = bytearray(ctypes.string_at(head, ctypes.c_uint32.from_address(head).value))
        self.lib.nlmsg_free(self.msg)
        flags = struct.unpack_from("=H", data, 6)[0] | (NLM_F_ACK if auto_ack else 0)
        struct.pack_into("=HII", data, 6, flags, sequence, port_id)
        return bytes(data)


def libvirt_setlink(lib, ifname: str, ifindex: int, mac: bytes, vlan: int, op: int) -> Msg:
    """virNetDevVPortProfileOpSetLink for 802.1Qbg: vf = PORT_SELF_VF, lldpad as target, no profile id,
    no host UUID, no IFLA_PORT_VF; typeid stored low byte first (virNetDevVPortProfileOp8021Qbg)."""
    m = Msg(lib, RTM_SETLINK, NLM_F_REQUEST, ifindex)
    m.put(IFLA_IFNAME, ifname.encode() + b"\0")
    infolist = m.nest(IFLA_VFINFO_LIST)
    info = m.nest(IFLA_VF_INFO)
    m.put(IFLA_VF_MAC, struct.pack("=I32s", PORT_SELF_VF, mac))
    m.put(IFLA_VF_VLAN, struct.pack("=III", PORT_SELF_VF, vlan, 0))
    m.end(info)
    m.end(infolist)
    ports = m.nest(IFLA_VF_PORTS)
    port = m.nest(IFLA_VF_PORT)
    type_id = PROFILE.type_id
    m.put(IFLA_PORT_VSI_TYPE, bytes([PROFILE.manager_id, type_id & 0xFF, type_id >> 8 & 0xFF, type_id >> 16,
                                     PROFILE.type_id_version, 0, 0, 0]))
    m.put(IFLA_PORT_INSTANCE_UUID, PROFILE.instance_uuid.bytes)
    m.put(IFLA_PORT_REQUEST, bytes([op]))
    m.end(port)
    m.end(ports)
    return m


def test_pyroute2s_own_link_messages_in_the_same_process_change_nothing(libnl):
    # pyroute2 caches compiled attribute tables per class on first use; ifinfmsg maps IFLA_VF_PORTS to hex.
    # Using it first (as any IPRoute link query does) must not leak into our messages.
    ifinfmsg()
    ifinfmsg.vflist()
    ifinfmsg.vflist.vfinfo()
    expected = libvirt_setlink(libnl, "st0", 7, bytes.fromhex("525400880001"), 0, PortRequest.ASSOCIATE)
    mine = encode_setlink("st0", 7, "52:54:00:88:00:01", 0, PROFILE, PortRequest.ASSOCIATE, 1, 2)
    assert mine == expected.completed(1, 2)


@pytest.mark.parametrize("request_", list(PortRequest))
def test_setlink_is_byte_for_byte_what_libvirt_builds_with_libnl(libnl, request_):
    expected = libvirt_setlink(libnl, "st0", 7, bytes.fromhex("525400880001"), 0, int(request_))
    mine = encode_setlink("st0", 7, "52:54:00:88:00:01", 0, PROFILE, request_, sequence=1234, port_id=4242)
    assert mine == expected.completed(1234, 4242)


def test_setlink_layout_by_hand():
    data = encode_setlink("st0", 7, "52:54:00:88:00:01", 5, PROFILE, PortRequest.ASSOCIATE, 1, 2)
    # the VSI type attribute: len 12, type 3, mgr 12, type id 0x123457 low byte first, version 1, 3 pad
    assert bytes.fromhex("0c000300" "0c" "573412" "01" "000000") in data
    # nests carry NLA_F_NESTED (0x8000): IFLA_VF_PORTS = 24 -> 0x8018
    assert struct.pack("=H", 0x8018) in data and struct.pack("=H", 0x8016) in data
    # the VLAN struct: vf = -1, vlan 5, qos 0
    assert bytes.fromhex("10000200" "ffffffff" "05000000" "00000000") in data
    assert data.endswith(bytes.fromhex("0500" "0600" "02" "000000"))  # IFLA_PORT_REQUEST = 2, padded


def test_getlink_is_what_libvirt_builds_with_libnl(libnl):
    # virNetlinkDumpLink(NULL, ifindex, ...): no IFLA_IFNAME, IFLA_EXT_MASK = RTEXT_FILTER_VF
    m = Msg(libnl, RTM_GETLINK, NLM_F_REQUEST, 7)
    m.put(IFLA_EXT_MASK, struct.pack("=I", 1))
    assert encode_getlink(7, 99, 4242) == m.completed(99, 4242)


def lldpad_getlink_reply(lib, ifindex: int, vsis: list[tuple[uuid.UUID, int | None]]) -> bytes:
    """lldpad vdpnl_getlink: an NLMSG_DONE message, the ifinfomsg, then per VSI (vdpnl_reply2) the
    instance UUID, IFLA_PORT_VF = PORT_SELF_VF, and IFLA_PORT_RESPONSE only once answered."""
    m = Msg(lib, NLMSG_DONE, 0, ifindex)
    ports = m.nest(IFLA_VF_PORTS)
    for instance, response in vsis:
        port = m.nest(IFLA_VF_PORT)
        m.put(IFLA_PORT_INSTANCE_UUID, instance.bytes)
        m.put(IFLA_PORT_VF, struct.pack("=I", PORT_SELF_VF))
        if response is not None:
            m.put(IFLA_PORT_RESPONSE, struct.pack("=H", response))
        m.end(port)
    m.end(ports)
    return m.completed(5, 4242, auto_ack=False)


def test_status_is_read_per_vsi_from_lldpads_reply(libnl):
    pending, refused, done = uuid.uuid4(), uuid.uuid4(), PROFILE.instance_uuid
    reply = lldpad_getlink_reply(libnl, 7, [(pending, None), (refused, 2), (done, 0)])
    assert port_statuses(reply) == {pending: None, refused: 2, done: 0}
    assert port_status(reply, done) == 0
    assert port_status(reply, pending) is None
    with pytest.raises(LookupError, match="Could not find vf/instanceId"):
        port_status(reply, uuid.uuid4())
    assert port_statuses(lldpad_getlink_reply(libnl, 7, [])) == {}


def test_a_netlink_error_from_lldpad_is_raised():
    # lldpad vdpnl_error: NLMSG_ERROR, error = -ENODEV (19), then the request's header
    reply = struct.pack("=IHHII", 36, 2, 0, 5, 4242) + struct.pack("=i", -19) + bytes(16)
    with pytest.raises(NetlinkError, match="No such device"):
        port_statuses(reply)


def test_the_pid_file_is_read_as_libvirt_reads_it(tmp_path):
    pid_file = tmp_path / "lldpad.pid"
    pid_file.write_bytes(b"4242\n" + bytes(5))  # lldpad writes a 10-byte buffer: digits, newline, zeros
    assert read_lldpad_pid(pid_file) == 4242
    pid_file.write_text("0\n")
    with pytest.raises(ValueError, match="error parsing pid of lldpad"):
        read_lldpad_pid(pid_file)


# ---------------------------------------------------------------------------------------------------------
# libvirt's own traffic with lldpad, as strace saw it on the testbed

CAPTURE_DIR = Path(__file__).resolve().parent / "data" / "libvirt-9.0-qbg-netlink"
# What libvirt asks each host's lldpad for, in order, during a guest start on the source, a migration and
# a destroy on the destination (libvirt virnetdevvportprofile.c virNetDevVPortProfileAssociate maps the
# VM operation): start (OP_CREATE) -> ASSOCIATE; Prepare (OP_MIGRATE_IN_START) -> PREASSOCIATE; Finish
# (OP_MIGRATE_IN_FINISH) -> ASSOCIATE; Confirm and destroy (virNetDevVPortProfileDisassociate) ->
# DISASSOCIATE.
LIBVIRT_REQUESTS = {
    SRC: (PortRequest.ASSOCIATE, PortRequest.DISASSOCIATE),
    DST: (PortRequest.PREASSOCIATE, PortRequest.ASSOCIATE, PortRequest.DISASSOCIATE),
}
FINISH = 1  # the destination's second request

# `strace -f -ttt -yy -xx -e trace=sendmsg,sendto,recvmsg -e write=all -e read=all`: a call's line (or an
# "<unfinished ...>" line and its "<... resumed>" line, when threads interleave), then its data dumped as
# " | 00000  2c 00 ... ascii |" lines, 16 bytes in the 49 columns after the offset.
_CALL = re.compile(r"(?P<tid>\d+) +(?P<t>\d+\.\d+) (?P<call>sendmsg|sendto|recvmsg)"
                   r"\(\d+<NETLINK:\[(?P<socket>[^\]]*)\]>, (?P<args>.*)")
_RESUMED = re.compile(r"(?P<tid>\d+) +(?P<t>\d+\.\d+) <\.\.\. (?:sendmsg|sendto|recvmsg) resumed>"
                      r"(?P<args>.*)")
_UNFINISHED = " <unfinished ...>"
_PEER = re.compile(r"msg_name=\{sa_family=AF_NETLINK, nl_pid=(-?\d+)")
_HEX_COLUMNS = slice(10, 59)


@dataclass(frozen=True)
class NetlinkCall:
    """One sendmsg/recvmsg on a netlink socket. `socket` is what strace's -yy names it by (its inode: the
    testbed's sockets live in a namespace strace cannot query); `peer` is msg_name's nl_pid, where a send
    went or where a receive came from; `peek` marks libnl's MSG_PEEK read before the real one."""

    lines: tuple[str, ...]
    t_s: float
    call: str
    socket: str
    peer: int | None
    peek: bool
    data: bytes


def parse_strace(text: str) -> list[NetlinkCall]:
    calls: list[NetlinkCall] = []
    unfinished: dict[str, tuple[re.Match[str], list[str]]] = {}
    current: tuple[re.Match[str], list[str], str, float] | None = None
    data = bytearray()

    def close() -> None:
        if current is not None:
            start, lines, args, t_s = current
            peer = _PEER.search(args)
            calls.append(NetlinkCall(tuple(lines), t_s, start["call"], start["socket"],
                                     int(peer[1]) & 0xFFFFFFFF if peer else None,
                                     "MSG_PEEK" in args.rsplit("}, ", 1)[-1], bytes(data)))

    for line in text.splitlines():
        if current is not None and line.startswith((" | ", " * ")):
            current[1].append(line)
            if line.startswith(" | "):
                data.extend(bytes.fromhex(line[_HEX_COLUMNS]))
            continue
        close()
        current, data = None, bytearray()
        if m := _CALL.match(line):
            if m["args"].endswith(_UNFINISHED):
                unfinished[m["tid"]] = (m, [line])
            else:
                current = (m, [line], m["args"], float(m["t"]))
        elif (r := _RESUMED.match(line)) and r["tid"] in unfinished:
            m, lines = unfinished.pop(r["tid"])
            current = (m, [*lines, line], m["args"].removesuffix(_UNFINISHED) + r["args"], float(r["t"]))
    close()
    return calls


@dataclass(frozen=True)
class Exchange:
    """A message libvirt sent lldpad and lldpad's reply, with when strace saw each (wall clock, s)."""

    request: bytes
    reply: bytes
    sent_s: float
    replied_s: float


def lldpad_exchanges(calls: list[NetlinkCall], lldpad_pid: int) -> list[Exchange]:
    """libvirt opens a socket per message (virNetlinkCreateSocket), so a reply is the first real read on
    the socket that sent to lldpad's port."""
    exchanges = []
    for i, sent in enumerate(calls):
        if sent.call != "recvmsg" and sent.peer == lldpad_pid:
            reply = next(c for c in calls[i + 1:] if c.socket == sent.socket and c.call == "recvmsg"
                         and not c.peek)
            exchanges.append(Exchange(sent.data, reply.data, sent.t_s, reply.t_s))
    return exchanges


def request_sockets(calls: list[NetlinkCall], lldpad_pid: int) -> set[str]:
    return {c.socket for c in calls if c.call != "recvmsg" and c.peer == lldpad_pid}


def normalised(message: bytes) -> bytes:
    """The message with the two header fields that must differ zeroed: nlmsg_seq, which libnl seeds per
    socket from time(NULL) (libvirt opens one socket per message, so its sequence is the clock), and
    nlmsg_pid, where libvirt names its netlink event socket's port (virNetlinkSendRequest: lldpad sends
    later notifications there) and our client the socket that sends. Everything else, flags included,
    must match."""
    assert struct.unpack_from("=I", message)[0] == len(message)  # one message per datagram
    return message[:8] + bytes(8) + message[16:]


@dataclass(frozen=True)
class PortOp:
    """One of libvirt's port-profile requests: its RTM_SETLINK and the RTM_GETLINK polls that followed."""

    setlink: Exchange
    polls: tuple[Exchange, ...]


def port_ops(exchanges: list[Exchange]) -> list[PortOp]:
    ops: list[PortOp] = []
    for ex in exchanges:
        msg_type = struct.unpack_from("=H", ex.request, 4)[0]
        if msg_type == RTM_SETLINK:
            ops.append(PortOp(ex, ()))
        else:
            assert msg_type == RTM_GETLINK and ops, f"a message type {msg_type} before any request"
            ops[-1] = PortOp(ops[-1].setlink, (*ops[-1].polls, ex))
    return ops


@dataclass(frozen=True)
class CapturedPort:
    """What a capture's bytes must agree with: the testbed's 802.1Qbg port as libvirt was given it."""

    ifname: str
    ifindex: int
    mac: str
    vlan: int
    profile: VsiProfile


def check_against_libvirt(exchanges: list[Exchange], port: CapturedPort,
                          requests: tuple[PortRequest, ...]) -> list[PortOp]:
    """Asserts that our client builds every message libvirt sent lldpad, byte for byte after
    `normalised`, and reads lldpad's real replies as libvirt did: the setlink acked, then every poll in
    progress but the last, which succeeded (libvirt stops polling there)."""
    ops = port_ops(exchanges)
    assert len(ops) == len(requests), [op.setlink.request[-4] for op in ops]
    getlink = normalised(encode_getlink(port.ifindex, 0, 0))
    for op, request in zip(ops, requests, strict=True):
        ours = encode_setlink(port.ifname, port.ifindex, port.mac, port.vlan, port.profile, request, 0, 0)
        assert normalised(op.setlink.request) == normalised(ours), (request, op.setlink.request.hex())
        # lldpad's ack: NLMSG_ERROR whose error is 0 (netlink(7))
        assert struct.unpack_from("=H", op.setlink.reply, 4)[0] == NLMSG_ERROR
        assert struct.unpack_from("=i", op.setlink.reply, 16)[0] == 0
        assert op.polls
        for poll in op.polls:
            assert normalised(poll.request) == getlink
        statuses = [port_status(poll.reply, port.profile.instance_uuid) for poll in op.polls]
        assert statuses == [None] * (len(statuses) - 1) + [PORT_VDP_RESPONSE_SUCCESS], (request, statuses)
    return ops


def captured_port(meta: dict, host: str) -> CapturedPort:
    vsi = meta["vsi"]
    profile = VsiProfile(vsi["manager_id"], vsi["type_id"], vsi["type_id_version"],
                         uuid.UUID(vsi["instance_uuid"]))
    return CapturedPort(meta["ifname"], meta["hosts"][host]["ifindex"], meta["mac"], meta["vlan"], profile)


def check_capture(meta: dict, exchanges: dict[str, list[Exchange]]) -> None:
    """Everything a capture must show (tests/test_vdp_testbed.py runs it on a live one)."""
    for host in (SRC, DST):
        ops = check_against_libvirt(exchanges[host], captured_port(meta, host), LIBVIRT_REQUESTS[host])
        # a fresh VSI (the first request on each host) reads success only after the switch's service
        # time, so the capture holds lldpad's real "no IFLA_PORT_RESPONSE yet" replies too
        first = ops[0]
        assert first.polls[-1].replied_s - first.setlink.sent_s >= meta["switch_service_time_ms"] / 1000
        # the header's port id is libvirt's netlink event socket (virNetDevVPortProfileOpSetLink's
        # src_pid, the value 9.0 refuses when negative), one of libvirtd's route sockets
        event_ports = set(meta["hosts"][host]["libvirt_route_ports"])
        assert {struct.unpack_from("=I", ex.request, 12)[0] for ex in exchanges[host]} <= event_ports
    # libvirt 9.0's Finish on 802.1Qbg: the associate's first poll already reads success, the
    # pre-associate's answer that lldpad still reports, before the switch has answered the associate
    finish = port_ops(exchanges[DST])[FINISH]
    assert len(finish.polls) == 1
    assert finish.polls[0].replied_s < meta["finish_switch_response_s"]


def read_capture(directory: Path) -> tuple[dict, dict[str, list[Exchange]]]:
    meta = json.loads((directory / "capture.json").read_text())
    exchanges = {host: lldpad_exchanges(parse_strace((directory / f"{host}.strace").read_text()),
                                        meta["hosts"][host]["lldpad_pid"]) for host in (SRC, DST)}
    return meta, exchanges


def test_our_messages_are_what_libvirt_sent_lldpad_on_the_testbed():
    check_capture(*read_capture(CAPTURE_DIR))


def test_strace_parser_joins_interleaved_calls_and_marks_peeks():
    # two threads: one's recvmsg is cut by the other's sendmsg; the peek carries the same bytes again
    text = "\n".join([
        '7 1.000000 recvmsg(5<NETLINK:[11]>,  <unfinished ...>',
        '8 1.000100 sendmsg(6<NETLINK:[12]>, {msg_name={sa_family=AF_NETLINK, nl_pid=42, nl_groups=0}, '
        'msg_iov=[...]}, 0) = 4',
        ' * 4 bytes in buffer 0',
        ' | 00000  01 02 03 04                                       ....             |',
        '7 1.000200 <... recvmsg resumed>{msg_name={sa_family=AF_NETLINK, nl_pid=-1, nl_groups=0}, '
        'msg_iov=[...]}, MSG_PEEK|MSG_TRUNC) = 2',
        ' * 2 bytes in buffer 0',
        ' | 00000  0a 0b                                             ..               |',
        '9 1.000300 sendmsg(3<socket:[99]>, {msg_iov=[...]}, 0) = 1',
    ])
    calls = parse_strace(text)
    assert [(c.call, c.socket, c.peer, c.peek, c.data, c.t_s) for c in calls] == [
        ("sendmsg", "12", 42, False, bytes([1, 2, 3, 4]), 1.0001),
        ("recvmsg", "11", 0xFFFFFFFF, True, bytes([10, 11]), 1.0002),
    ]
    assert len(calls[1].lines) == 4  # both halves of the interleaved call and its dump
