"""802.1Qbg against the reference peer: the testbed with lldpad in bridge mode as the switch instead of the
VDP emulator (VdpTestbed(switch_kind="lldpad-bridge")). The same migration as the emulator's test, its
VDP exchange read off the wire in the switch's namespace. Root only; under a minute."""

from __future__ import annotations

import dataclasses
import os
import select
import socket
import uuid
from pathlib import Path

import pytest

from pausecast.executor.migration.precheck import Nic, lldpad_client, probe_switch_latency
from pausecast.executor.testbed.hosts import DST, SRC
from pausecast.executor.testbed.qbg import MANAGER_ID, NIC_MAC, TYPE_ID, TYPE_ID_VERSION, VXLAN_IF, VdpTestbed
from pausecast.executor.testbed.qbg import uplinks as switch_ports
from pausecast.executor.testbed.run import run_on_testbed
from pausecast.executor.vdp.wire import ETH_P_ECP, EcpOp, Status, decode_ecp, decode_vdp
from pausecast.models.files import load_scenario

from .conftest import fresh_testbed

libvirt = pytest.importorskip("libvirt")
netns = pytest.importorskip("pyroute2.netns")

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root (namespaces, mounts, veth)"),
]

STATE_DIR = Path("/var/lib/pausecast-testbed-vdp-bridge-pytest")
SCENARIO = Path(__file__).resolve().parent.parent / "examples" / "testbed-small.toml"
GUEST = "pausecast-vdp-bridge"
ETH_P_ALL = 0x0003  # linux/if_ether.h: a packet socket sees outgoing frames only with this protocol
PACKET_OUTGOING = 4  # linux/if_packet.h
ANSWERED = Status.RESPONSE  # 0x40: a reply, no error


@pytest.fixture(scope="module")
def tb():
    yield from fresh_testbed(VdpTestbed(state_dir=STATE_DIR, switch_kind="lldpad-bridge"), GUEST)


@pytest.fixture(scope="module")
def scenario():
    # QEMU's 32 MiB/s cap is the emulator tests' subject, not this one's: migrate at link speed
    base = load_scenario(SCENARIO)
    return dataclasses.replace(base, migration=dataclasses.replace(base.migration, bandwidth_mib_s=0.0))


class Wire:
    """Every ECP frame on the switch namespace's ports, both directions, in the order the kernel saw them."""

    def __init__(self, tb: VdpTestbed) -> None:
        self.sock = netns.create_socket(tb.switch_ns, socket.AF_PACKET, socket.SOCK_RAW,
                                        socket.htons(ETH_P_ALL), flags=0)
        self.sock.setblocking(False)
        self.port_of = {up.switch_vxlan: up.host for up in switch_ports()}

    def vdp(self) -> list[tuple[str, str, str, int, uuid.UUID]]:
        """(port's host, "request" | "reply", VDP mode, status, VSI) of each VSI TLV, in wire order; an ECP
        resend (same sender, same sequence: its ack was late) counted once."""
        out, seen = [], set()
        while select.select([self.sock], [], [], 0)[0]:
            raw, addr = self.sock.recvfrom(65536)
            if addr[0] not in self.port_of or raw[12:14] != ETH_P_ECP.to_bytes(2, "big"):
                continue
            frame = decode_ecp(raw)
            if frame.op != EcpOp.REQUEST or (addr[0], frame.src, frame.sequence) in seen:
                continue
            seen.add((addr[0], frame.src, frame.sequence))
            out += [(self.port_of[addr[0]], "reply" if v.is_response else "request", v.mode.name.lower(),
                     v.status, v.vsi_id) for v in decode_vdp(frame.payload).vsis]
        return out

    def close(self) -> None:
        self.sock.close()


def without_keepalives(requests: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A station repeats its VSI's mode every keep-alive period (10 us x 2^20 = 10.5 s): drop a request
    that repeats the previous one on its port."""
    last: dict[str, str] = {}
    out = []
    for port, mode in requests:
        if last.get(port) != mode:
            out.append((port, mode))
        last[port] = mode
    return out


def test_migration_with_lldpad_bridge_as_switch_runs_the_emulators_exchange_on_the_wire(tb, scenario):
    tb.destroy_guest(GUEST)
    wire = Wire(tb)
    try:
        m = run_on_testbed(tb, scenario, name=GUEST, keep_guest=True)
        exchange = wire.vdp()
    finally:
        wire.close()
    assert m.record.failure == "", m.record
    assert tb.connect(DST).lookupByName(GUEST).isActive()
    assert {vsi for *_, vsi in exchange} == {uuid.UUID(tb.instance_id)}
    requests = [(port, mode) for port, kind, mode, _, _ in exchange if kind == "request"]
    # the guest's start associates on the source; then Prepare pre-associates on the destination,
    # Finish associates there and Confirm de-associates on the source: the emulator test's sequence
    assert without_keepalives(requests) == [(SRC, "associate"), (DST, "preassociate"), (DST, "associate"),
                                            (SRC, "deassociate")]
    # lldpad's bridge answers every request, keep-alives too, in order on each port, with the request's
    # mode, the response bit and no error, after the request went by
    for port in (SRC, DST):
        on_port = [(i, kind, mode, status) for i, (p, kind, mode, status, _) in enumerate(exchange)
                   if p == port]
        asked = [(i, mode) for i, kind, mode, _ in on_port if kind == "request"]
        answered = [(i, mode, status) for i, kind, mode, status in on_port if kind == "reply"]
        assert [mode for _, mode in asked] == [mode for _, mode, _ in answered], on_port
        assert all(status == ANSWERED for _, _, status in answered), on_port
        assert all(q < a for (q, _), (a, _, _) in zip(asked, answered, strict=True)), on_port
    seen = [(p, kind, mode, hex(status)) for p, kind, mode, status, _ in exchange]
    print(f"lldpad-bridge: Prepare {(m.record.prepare_end_s - m.record.prepare_start_s) * 1000:.0f} ms, "
          f"pause {m.record.pause_window_ms:.0f} ms, wire {seen}")


def test_lldpad_bridge_association_as_libvirt_polls_for_it(tb):
    """An associate of a test VSI on the source's port, made and polled as libvirt makes it (125 ms polls),
    the switch's reply timed on the wire too."""
    nic = Nic(type="direct", mac=NIC_MAC, source_dev=VXLAN_IF, virtualport="802.1Qbg",
              vsi_type=(MANAGER_ID, TYPE_ID, TYPE_ID_VERSION))
    with lldpad_client(tb.src.uri, tb.src.holder_pid) as client:
        probe = probe_switch_latency(client, nic)
    a = probe.associate
    print(f"lldpad-bridge associate: libvirt sees it after {a.observed_ms:.0f} ms ({a.polls} status reads), "
          f"the reply reached the station after {a.raw_ms:.1f} ms")
    assert a.ok and a.raw_ms is not None
    # libvirt reads the status at once and then every 125 ms: it sees the reply at the first read after
    # the reply arrived, never before
    assert a.observed_ms >= a.raw_ms
