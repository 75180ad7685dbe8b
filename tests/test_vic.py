"""The emulated VIC's protocol without I/O (executor/vic/vic.py), its line protocol (serve.py) and the
netlink messages of the 802.1Qbh probe (probe.py), against enic's and libvirt's behaviour."""

from __future__ import annotations

import socket
import struct
import uuid

import numpy as np
import pytest

from pausecast.executor.vic.probe import encode_setlink, port_self_response
from pausecast.executor.vic.serve import answer
from pausecast.executor.vic.vic import (
    IN_PROGRESS,
    INSUFFICIENT_RESOURCES,
    SUCCESS,
    PortRequest,
    Vic,
)
from pausecast.models.scenario import SwitchSpec

ASSOCIATE, DISASSOCIATE, PREASSOCIATE_RR = 2, 3, 1  # linux/if_link.h PORT_REQUEST_*


def vic(**spec) -> Vic:
    v = Vic(SwitchSpec(**spec), np.random.default_rng(0))
    v.start(0.0)
    return v


def response_at(v: Vic, t_s: float) -> int | None:
    status = v.status(t_s)
    return None if status is None else status.response


def test_no_port_before_a_first_request():
    # enic_get_vf_port: -ENODATA until a request is applied, so the kernel leaves IFLA_PORT_SELF out
    assert vic().status(5.0) is None


def test_in_progress_until_the_service_time_has_passed():
    v = vic(service_time_ms=300.0)
    v.request(PortRequest(ASSOCIATE, "p", "ab" * 16, "cd" * 16, "52540000aa01"), 1.0)
    assert response_at(v, 1.0) == IN_PROGRESS
    assert response_at(v, 1.299) == IN_PROGRESS
    assert response_at(v, 1.300) == SUCCESS
    assert v.status(2.0).port.profile == "p"


def test_an_immediate_fabric_has_answered_before_the_first_read():
    # libvirt reads the status right after its RTM_SETLINK: with no service time that read succeeds
    v = vic(service_time_ms=0.0)
    v.request(PortRequest(PREASSOCIATE_RR), 1.0)
    assert response_at(v, 1.0) == SUCCESS


def test_each_request_is_served_for_its_own_service_time():
    # one server of 300 ms: the disassociate arriving at 0.35 is served from 0.35 to 0.65
    v = vic(service_time_ms=300.0, capacity=1)
    v.request(PortRequest(ASSOCIATE), 0.0)
    assert response_at(v, 0.3) == SUCCESS
    v.request(PortRequest(DISASSOCIATE), 0.35)
    assert response_at(v, 0.64) == IN_PROGRESS
    assert response_at(v, 0.65) == SUCCESS


def test_a_new_request_replaces_one_still_served():
    v = vic(service_time_ms=300.0, capacity=2)
    v.request(PortRequest(PREASSOCIATE_RR), 0.0)
    v.request(PortRequest(ASSOCIATE), 0.1)
    # the pre-associate's answer at 0.3 is dropped: the port reports the associate, still in progress
    assert response_at(v, 0.35) == IN_PROGRESS
    assert v.status(0.35).port.request == ASSOCIATE
    assert response_at(v, 0.4) == SUCCESS
    replaced = [r["replaced"] for r in v.records if r["event"] == "response"]
    assert replaced == [True, False]


def test_refusing_fabric_refuses_associations_but_not_disassociations():
    v = vic(mode="refuse")
    v.request(PortRequest(ASSOCIATE), 0.0)
    assert response_at(v, 1.0) == INSUFFICIENT_RESOURCES
    v.request(PortRequest(DISASSOCIATE), 2.0)
    assert response_at(v, 3.0) == SUCCESS


def test_silent_fabric_stays_in_progress():
    v = vic(mode="silent")
    v.request(PortRequest(ASSOCIATE), 0.0)
    assert response_at(v, 60.0) == IN_PROGRESS


def test_background_load_delays_our_request():
    # other tenants' 100 requests/s of 300 ms on one server: ~490 of them are queued after 5 s, and ours
    # waits behind them rather than being answered after its own 300 ms
    v = vic(service_time_ms=300.0, capacity=1, background_load_per_s=100.0)
    for t_s in np.arange(0.0, 5.0, 0.001):  # as serve.py's loop does, each timer at its own time
        v.advance(float(t_s))
    assert v.queue.queued > 400
    v.request(PortRequest(ASSOCIATE), 5.0)
    assert response_at(v, 5.3) == IN_PROGRESS


def test_line_protocol_round_trip():
    v = vic(service_time_ms=0.0)
    assert answer(v, "get\n", 0.0) == "none\n"
    assert answer(v, f"set 2 prof {'ab' * 16} {'cd' * 16} 52540000aa01\n", 0.0) == "ok 1\n"
    assert answer(v, "get\n", 0.0) == f"port 2 {SUCCESS} prof {'ab' * 16} {'cd' * 16}\n"
    assert answer(v, "set 3 - - - -\n", 0.0) == "ok 2\n"
    assert answer(v, "get\n", 0.0) == f"port 3 {SUCCESS} - - -\n"
    assert answer(v, "bogus\n", 0.0) == "error\n"
    with pytest.raises(ValueError):
        answer(v, "set 9 - - - -\n", 0.0)


def _attrs(data: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        out[kind & 0x3FFF] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def test_probe_setlink_is_libvirts_port_self_request():
    instance, host = uuid.uuid4(), uuid.uuid4()
    data = encode_setlink(7, "52:54:00:5c:00:fe", "associate", "prof", instance, host, 42, 99)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", data)
    assert (length, kind, seq, pid) == (len(data), 19, 42, 99)  # RTM_SETLINK
    assert flags & 1 and flags & 4  # NLM_F_REQUEST | NLM_F_ACK, as libnl's nl_send_auto_complete
    family, _, index = struct.unpack_from("=BxHi", data, 16)
    assert (family, index) == (socket.AF_UNSPEC, 7)
    top = _attrs(data[32:])
    port = _attrs(top[25])  # IFLA_PORT_SELF
    assert port[2] == b"prof\x00"  # IFLA_PORT_PROFILE, NUL-terminated as libvirt sends it
    assert port[4] == instance.bytes and port[5] == host.bytes
    assert port[6] == bytes([ASSOCIATE])  # IFLA_PORT_REQUEST, u8
    vf_mac = _attrs(_attrs(top[22])[1])[1]  # IFLA_VFINFO_LIST / IFLA_VF_INFO / IFLA_VF_MAC
    assert vf_mac[:4] == b"\xff\xff\xff\xff" and vf_mac[4:10] == bytes.fromhex("5254005c00fe")
    # a disassociate carries the request alone, as libvirt's does
    bare = _attrs(encode_setlink(7, "", "disassociate", "", None, None, 43, 99)[32:])
    assert set(bare) == {25} and _attrs(bare[25]) == {6: bytes([DISASSOCIATE])}


def _newlink(port_self: bytes | None) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, 7, 0, 0)
    if port_self is not None:
        body += struct.pack("=HH", 4 + len(port_self), 25) + port_self
    return struct.pack("=IHHII", 16 + len(body), 16, 0, 1, 0) + body


def test_probe_reads_the_response_enic_reports():
    response = struct.pack("=HHH", 6, 7, IN_PROGRESS) + b"\x00\x00"  # IFLA_PORT_RESPONSE u16, padded
    assert port_self_response(_newlink(response)) == IN_PROGRESS
    assert port_self_response(_newlink(None)) is None
