"""The netlink client's bytes against libnl itself: each reference message is built by calling libnl 3
(the library libvirt and lldpad link) in the order libvirt's virNetDevVPortProfileOpSetLink /
virNetlinkDumpLink and lldpad's vdpnl_getlink call it, so the expected bytes never come from our encoder."""

import ctypes
import ctypes.util
import struct
import uuid

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from pausecast.executor.vdp import (
    PORT_SELF_VF,
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
RTM_GETLINK, RTM_SETLINK, NLMSG_DONE, NLM_F_REQUEST, NLM_F_ACK = 18, 19, 3, 1, 4
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
