"""The VDP switch emulator. First its protocol core on a fake clock (fast, no root): ECP acks and
duplicates, stop-and-wait with retransmission, servers, modes, keep-alives, background load. Then for real
(root): a station lldpad in one namespace, the netlink client playing libvirt, and on the other end of a
veth the emulator or lldpad itself as the bridge.

Timer values are lldpad's defaults, worked out by hand: ECP ack timer 10 us x 2^8 = 2.56 ms, 3 retries;
bridge keep-alive timeout ((1 + 2 x 3) x 2.56 ms + 10 us x 2^20) x 1.5 = 15.75552 s."""

from __future__ import annotations

import os
import select
import socket
import uuid

import numpy as np
import pytest
from pyroute2.netns import create_socket

from pausecast.executor.testbed.lab import NETNS_DIR, STATION_IF, SWITCH_MAC, VdpLab, cleanup
from pausecast.executor.vdp.bridge import Bridge, keepalive_timeout_s
from pausecast.executor.vdp.serve import switch_argv
from pausecast.executor.vdp.station import PortRequest, VsiProfile
from pausecast.executor.vdp.wire import (
    ETH_P_ECP,
    EcpFrame,
    EcpOp,
    EvbTlv,
    Filter,
    Lldpdu,
    VdpMessage,
    VdpMode,
    VsiTlv,
    WireError,
    decode_ecp,
    decode_vdp,
    encode_ecp,
    encode_vdp,
    evb_tlv_in_lldp,
    manager_id_from_byte,
)
from pausecast.models.scenario import SwitchSpec

STATION, SWITCH = "02:00:00:00:00:01", "02:00:00:00:00:02"
ACK_TIMER_S = 2.56e-3
MANAGER = manager_id_from_byte(12)


def vsi(mode: VdpMode, vsi_id: uuid.UUID, mac: str = "52:54:00:00:00:01") -> VsiTlv:
    return VsiTlv(mode, 0, 0x123457, 1, vsi_id, (Filter(0, mac),))


def request(seq: int, mode: VdpMode, vsi_id: uuid.UUID, mac: str = "52:54:00:00:00:01") -> bytes:
    payload = encode_vdp(VdpMessage(MANAGER, (vsi(mode, vsi_id, mac),)))
    return encode_ecp(EcpFrame(STATION, EcpOp.REQUEST, seq, payload))


def ack(seq: int) -> bytes:
    return encode_ecp(EcpFrame(STATION, EcpOp.ACK, seq))


def new_bridge(seed: int = 0, lldp_interval_s: float = 0.0, **spec) -> Bridge:
    bridge = Bridge(SWITCH, SwitchSpec(**spec), np.random.default_rng(seed), lldp_interval_s=lldp_interval_s)
    bridge.start(0.0)
    return bridge


def sent(bridge: Bridge) -> list[EcpFrame]:
    """The ECP frames the bridge put out since the last call (LLDP frames skipped)."""
    frames = []
    for raw in bridge.outbox:
        try:
            frames.append(decode_ecp(raw))
        except WireError:
            assert evb_tlv_in_lldp(raw) is not None
    bridge.outbox.clear()
    return frames


def run_until(bridge: Bridge, t_s: float) -> None:
    """Fires each timer at its own deadline, as the real loop does, up to t_s."""
    while (deadline := bridge.next_deadline_s()) is not None and deadline <= t_s:
        bridge.advance(deadline)


def events(bridge: Bridge, name: str) -> list[dict]:
    return [r for r in bridge.records if r["event"] == name]


def reply_of(frame: EcpFrame) -> VsiTlv:
    (tlv,) = decode_vdp(frame.payload).vsis
    return tlv


# ---------------------------------------------------------------------------------------------------
# the protocol core on a fake clock


def test_a_request_is_acked_at_once_and_its_duplicate_acked_but_not_served():
    bridge = new_bridge(service_time_ms=300)
    a = uuid.uuid4()
    bridge.receive(request(5, VdpMode.ASSOCIATE, a), 0.0)
    assert [(f.op, f.sequence, f.src) for f in sent(bridge)] == [(EcpOp.ACK, 5, SWITCH)]
    bridge.receive(request(5, VdpMode.ASSOCIATE, a), 0.001)  # the station resent: our ack was late
    assert [(f.op, f.sequence) for f in sent(bridge)] == [(EcpOp.ACK, 5)]
    run_until(bridge, 1.0)
    assert len(events(bridge, "request")) == 1 and len(events(bridge, "response")) == 1
    assert [r["duplicate"] for r in events(bridge, "ecp-request")] == [False, True]


def test_the_reply_comes_after_the_service_time_as_the_bridges_own_request():
    bridge = new_bridge(service_time_ms=300)
    a = uuid.uuid4()
    bridge.receive(request(1, VdpMode.PREASSOCIATE, a), 0.0)
    sent(bridge)
    run_until(bridge, 0.2999)
    assert sent(bridge) == []
    run_until(bridge, 0.3)
    (frame,) = sent(bridge)
    first_sequence = events(bridge, "start")[0]["first_sequence"]
    assert (frame.op, frame.src, frame.sequence) == (EcpOp.REQUEST, SWITCH, first_sequence)
    assert reply_of(frame) == vsi(VdpMode.PREASSOCIATE, a).answered()
    assert reply_of(frame).status == 0x40
    assert decode_vdp(frame.payload).manager_id == MANAGER


def test_replies_are_stop_and_wait_resent_on_the_ack_timer_and_spaced_3_ms():
    bridge = new_bridge(service_time_ms=0, capacity=2)
    a, b = uuid.uuid4(), uuid.uuid4()
    bridge.receive(request(1, VdpMode.ASSOCIATE, a), 0.0)
    bridge.receive(request(2, VdpMode.ASSOCIATE, b), 0.0)
    run_until(bridge, 0.0)
    replies = [f for f in sent(bridge) if f.op == EcpOp.REQUEST]
    assert [reply_of(f).vsi_id for f in replies] == [a]  # b waits for a's ack
    first = replies[0].sequence
    run_until(bridge, ACK_TIMER_S)
    (resent,) = sent(bridge)
    assert (resent.sequence, reply_of(resent).vsi_id) == (first, a)
    bridge.receive(ack(first), 0.004)
    assert sent(bridge) == []  # 3 ms after the last send (2.56 ms) at the earliest
    run_until(bridge, ACK_TIMER_S + 0.003)
    (second,) = sent(bridge)
    assert (second.sequence, reply_of(second).vsi_id) == (first % 0xFFFF + 1, b)


def test_an_unacked_reply_is_sent_four_times_then_dropped_for_the_next():
    bridge = new_bridge(service_time_ms=0, capacity=2)
    a, b = uuid.uuid4(), uuid.uuid4()
    bridge.receive(request(1, VdpMode.ASSOCIATE, a), 0.0)
    bridge.receive(request(2, VdpMode.ASSOCIATE, b), 0.0)
    run_until(bridge, 4 * ACK_TIMER_S - 1e-9)
    assert [r["send"] for r in events(bridge, "ecp-send")] == [1, 2, 3, 4]  # 1 send + 3 retries
    run_until(bridge, 0.012)
    (give_up,) = events(bridge, "ecp-give-up")
    assert give_up["mono_s"] == pytest.approx(4 * ACK_TIMER_S)
    # b leaves 3 ms after a's last send (7.68 ms), not at the give-up (10.24 ms)
    last = events(bridge, "ecp-send")[-1]
    assert (last["req"], last["send"], last["mono_s"]) == (2, 1, pytest.approx(3 * ACK_TIMER_S + 0.003))


def test_capacity_is_the_number_of_requests_in_service_at_once():
    for capacity, expected_waits_ms in ((1, [0.0, 300.0]), (2, [0.0, 0.0])):
        bridge = new_bridge(service_time_ms=300, capacity=capacity)
        bridge.receive(request(1, VdpMode.ASSOCIATE, uuid.uuid4()), 0.0)
        bridge.receive(request(2, VdpMode.ASSOCIATE, uuid.uuid4()), 0.0)
        run_until(bridge, 1.0)
        assert [r["wait_ms"] for r in events(bridge, "service")] == expected_waits_ms
        # one server: answers at 0.3 and 0.6 s; two: both at 0.3 s
        answered_s = [0.3, 0.6] if capacity == 1 else [0.3, 0.3]
        assert [r["mono_s"] for r in events(bridge, "response")] == answered_s


def test_a_refusing_switch_answers_with_a_deassociate_that_says_no_resources():
    bridge = new_bridge(service_time_ms=10, mode="refuse")
    a = uuid.uuid4()
    bridge.receive(request(1, VdpMode.ASSOCIATE, a), 0.0)
    run_until(bridge, 0.01)
    (refusal,) = [reply_of(f) for f in sent(bridge) if f.op == EcpOp.REQUEST]
    assert (refusal.mode, refusal.status, refusal.vsi_id) == (VdpMode.DEASSOCIATE, 0x42, a)
    # the VSI was dropped: a de-associate now is for an unknown VSI, answered at once with success
    bridge.receive(ack(refusal_seq := events(bridge, "ecp-send")[0]["seq"]), 0.02)
    bridge.receive(request(2, VdpMode.DEASSOCIATE, a), 0.03)
    run_until(bridge, 0.03)
    replies = [reply_of(f) for f in sent(bridge) if f.op == EcpOp.REQUEST]
    assert [(r.mode, r.status) for r in replies] == [(VdpMode.DEASSOCIATE, 0x40)]
    assert events(bridge, "ecp-acked")[0]["seq"] == refusal_seq


def test_a_silent_switch_acks_ecp_but_never_answers():
    bridge = new_bridge(service_time_ms=0, mode="silent")
    bridge.receive(request(1, VdpMode.ASSOCIATE, uuid.uuid4()), 0.0)
    run_until(bridge, 60.0)
    assert [f.op for f in sent(bridge)] == [EcpOp.ACK]
    assert events(bridge, "ignored")[0]["why"] == "silent switch" and events(bridge, "response") == []


def test_a_keepalive_is_answered_at_once_and_a_mode_change_is_served():
    bridge = new_bridge(service_time_ms=300)
    a = uuid.uuid4()
    bridge.receive(request(1, VdpMode.ASSOCIATE, a), 0.0)
    run_until(bridge, 0.3)
    bridge.receive(ack(events(bridge, "ecp-send")[0]["seq"]), 0.31)
    bridge.receive(request(2, VdpMode.ASSOCIATE, a), 10.5)  # lldpad's station: every 10 us x 2^20 s
    assert events(bridge, "keepalive")[0]["req"] == 2
    assert events(bridge, "response")[-1]["mono_s"] == 10.5  # no service time for a keep-alive
    bridge.receive(ack(events(bridge, "ecp-send")[-1]["seq"]), 10.51)
    bridge.receive(request(3, VdpMode.DEASSOCIATE, a), 11.0)
    run_until(bridge, 11.3)
    last = events(bridge, "response")[-1]
    assert (last["req"], last["mono_s"], last["mode"], last["status"]) == (3, 11.3, "deassociate", "0x40")


def test_a_deassociate_of_an_unknown_vsi_is_acknowledged_at_once():
    bridge = new_bridge(service_time_ms=300)
    bridge.receive(request(1, VdpMode.DEASSOCIATE, uuid.uuid4()), 0.0)
    (response,) = events(bridge, "response")
    assert (response["mono_s"], response["status"]) == (0.0, "0x40") and events(bridge, "service") == []


def test_a_request_for_a_vsi_in_service_or_with_other_filters_is_dropped():
    bridge = new_bridge(service_time_ms=300)
    a = uuid.uuid4()
    bridge.receive(request(1, VdpMode.PREASSOCIATE, a), 0.0)
    bridge.receive(request(2, VdpMode.ASSOCIATE, a), 0.1)
    run_until(bridge, 0.3)
    bridge.receive(ack(events(bridge, "ecp-send")[0]["seq"]), 0.31)
    bridge.receive(request(3, VdpMode.ASSOCIATE, a, mac="52:54:00:00:00:99"), 0.4)
    run_until(bridge, 2.0)
    why = [r["why"] for r in events(bridge, "ignored")]
    assert why == ["VSI still in service", "filters differ from the VSI's"]
    assert [r["req"] for r in events(bridge, "response")] == [1]


def test_a_vsi_without_keepalives_is_deassociated_by_the_switch():
    assert keepalive_timeout_s(EvbTlv()) == pytest.approx(15.75552)
    bridge = new_bridge(service_time_ms=0)
    a = uuid.uuid4()
    bridge.receive(request(1, VdpMode.ASSOCIATE, a), 0.0)
    run_until(bridge, 0.0)
    bridge.receive(ack(events(bridge, "ecp-send")[0]["seq"]), 0.001)
    sent(bridge)
    run_until(bridge, 15.755)
    assert sent(bridge) == []
    run_until(bridge, 15.756)
    (frame,) = sent(bridge)
    deassociate = reply_of(frame)
    # the bridge's own request: de-associate, status 0, no response bit (lldpad vdp22br_deassoc(p, 0))
    assert (deassociate.mode, deassociate.status, deassociate.vsi_id) == (VdpMode.DEASSOCIATE, 0, a)


def test_background_arrivals_are_poisson_at_the_given_rate():
    rate_per_s, horizon_s = 20.0, 200.0
    bridge = new_bridge(service_time_ms=1, background_load_per_s=rate_per_s)
    run_until(bridge, horizon_s)
    times = np.array([r["mono_s"] for r in events(bridge, "background")])
    gaps = np.diff(times)
    # N ~ 4000 exponential gaps of mean 50 ms: the sample mean's sd is 50 ms / sqrt(N) ~ 0.8 ms; 5 sd
    assert abs(gaps.mean() - 1 / rate_per_s) < 5 * (1 / rate_per_s) / np.sqrt(len(gaps))
    # an exponential's coefficient of variation is 1; its estimate's sd is about 1/sqrt(N) ~ 0.016
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.1


def test_a_request_waits_for_the_background_request_in_service():
    # the same seed replays the same background arrivals: learn them from one bridge, probe another
    scout = new_bridge(seed=3, service_time_ms=300, background_load_per_s=0.2)
    run_until(scout, 60.0)
    arrivals = [r["mono_s"] for r in events(scout, "background")]
    first, arrival = arrivals[0], arrivals[0] + 0.1
    ahead = [t for t in arrivals if first < t < arrival]
    bridge = new_bridge(seed=3, service_time_ms=300, background_load_per_s=0.2)
    run_until(bridge, arrival)
    bridge.receive(request(1, VdpMode.ASSOCIATE, uuid.uuid4()), arrival)
    run_until(bridge, 60.0)
    # the background request took a server at `first` for 300 ms; any arriving before ours queue ahead
    (service,) = events(bridge, "service")
    assert service["wait_ms"] == pytest.approx((first + 0.3 * (1 + len(ahead)) - arrival) * 1000, abs=1e-3)


def test_the_first_sequence_is_random_and_never_zero():
    firsts = {new_bridge(seed=seed).records[0]["first_sequence"] for seed in range(20)}
    assert len(firsts) >= 15 and all(1 <= s <= 0xFFFF for s in firsts)


def test_lldp_with_the_evb_tlv_goes_out_at_start_and_every_interval():
    bridge = new_bridge(lldp_interval_s=30.0)
    assert [evb_tlv_in_lldp(f) for f in bridge.outbox] == [EvbTlv()]
    bridge.outbox.clear()
    run_until(bridge, 30.0)
    assert len(bridge.outbox) == 1 and bridge.outbox[0][:6] == bytes.fromhex("0180c2000000")


def test_a_new_station_gets_lldp_at_once_and_its_timers_are_adopted():
    bridge = new_bridge(lldp_interval_s=30.0, service_time_ms=0)
    bridge.outbox.clear()
    station = EvbTlv(mode=2, bridge_status=0, station_status=4, rte=14)  # asks for reflection; RTE 14
    lldpdu = Lldpdu(STATION, STATION, extra=(station.encode(),)).encode_frame()
    bridge.receive_lldp(lldpdu, 1.0)
    (answer,) = bridge.outbox
    assert evb_tlv_in_lldp(answer).bridge_status == 0x03 and evb_tlv_in_lldp(answer).rte == 14
    bridge.outbox.clear()
    bridge.receive_lldp(lldpdu, 2.0)  # a known neighbour: no extra LLDPDU
    assert bridge.outbox == []
    # the ECP ack timer is now 10 us x 2^14 = 163.84 ms
    bridge.receive(request(1, VdpMode.ASSOCIATE, uuid.uuid4()), 3.0)
    run_until(bridge, 3.0 + 0.16383)
    assert [r["send"] for r in events(bridge, "ecp-send")] == [1]
    run_until(bridge, 3.0 + 0.16384)
    assert [r["send"] for r in events(bridge, "ecp-send")] == [1, 2]


def test_switch_argv_carries_the_scenario_switch_section():
    spec = SwitchSpec(service_time_ms=250.0, service_distribution="lognormal", service_cv=0.5, capacity=3,
                      background_load_per_s=2.0, mode="refuse")
    argv = switch_argv("sw0", spec, "x.jsonl", seed=7)
    assert argv[1:3] == ["-m", "pausecast.executor.vdp.bridge"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert pairs == {"--iface": "sw0", "--log": "x.jsonl", "--seed": "7", "--service-time-ms": "250.0",
                     "--service-distribution": "lognormal", "--service-cv": "0.5", "--capacity": "3",
                     "--background-load-per-s": "2.0", "--mode": "refuse"}


def test_bad_switch_parameters_exit_2_with_one_line(capsys):
    from pausecast.executor.vdp.serve import main

    assert main(["--iface", "lo", "--log", "/dev/null", "--capacity", "0"]) == 2
    assert capsys.readouterr().err.strip() == "vdp_switch: switch.capacity = 0: allowed range [1, inf)"


# ---------------------------------------------------------------------------------------------------
# for real: station lldpad <-> emulator or lldpad-bridge, the client playing libvirt

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the VDP lab needs root (namespaces, mounts, raw sockets)")


def real(test):
    return pytest.mark.testbed(needs_root(test))


GUEST_MAC = "52:54:00:88:00:01"


def profile() -> VsiProfile:
    # the testbed note's virtualport: managerid 12, typeid 1193047, typeidversion 1, a fresh instance
    return VsiProfile(12, 1193047, 1, uuid.uuid4())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with VdpLab("pytest", workdir=tmp_path_factory.mktemp("vdp-lab")) as lab:
        yield lab


class BridgeFrames:
    """The bridge's ECP frames as the station's port receives them."""

    def __init__(self, lab: VdpLab) -> None:
        self.sock = create_socket(lab.station_ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ECP),
                                  flags=0)
        self.sock.bind((STATION_IF, ETH_P_ECP))
        self.sock.setblocking(False)

    def replies(self) -> list[tuple[int, VdpMessage]]:
        """(ECP sequence, VDP message) of every request the bridge sent so far, resends (same sequence:
        the station's ack came after the 2.56 ms ack timer) counted once."""
        out: dict[int, VdpMessage] = {}
        while select.select([self.sock], [], [], 0)[0]:
            frame = decode_ecp(self.sock.recv(2048))
            if frame.src == SWITCH_MAC and frame.op == EcpOp.REQUEST:
                out.setdefault(frame.sequence, decode_vdp(frame.payload))
        return list(out.items())

    def close(self) -> None:
        self.sock.close()


def assert_log_pairs_requests_with_responses(records: list[dict], modes: list[str]) -> None:
    """Every request has its response, in order, each sent once as an ECP request and acked, with
    the bridge's sequence numbers counting up from its first."""
    requests = [r for r in records if r["event"] == "request"]
    responses = [r for r in records if r["event"] == "response"]
    assert [r["mode"] for r in requests] == modes
    assert [r["req"] for r in responses] == [r["req"] for r in requests]
    assert all(q["mono_s"] <= p["mono_s"] for q, p in zip(requests, responses, strict=True))
    sends = [r for r in records if r["event"] == "ecp-send"]
    acked = [r for r in records if r["event"] == "ecp-acked"]
    first = records[0]["first_sequence"]
    assert [s["seq"] for s in sends] == [(first - 1 + i) % 0xFFFF + 1 for i in range(len(requests))]
    assert [a["seq"] for a in acked] == [s["seq"] for s in sends]


@real
def test_associate_and_disassociate_succeed_and_the_log_has_them_in_order(lab):
    log = lab.start_emulator(SwitchSpec(service_time_ms=0.0))
    vsi_profile = profile()
    with lab.client(raw_wait_s=2.0) as client:
        associated = client.request(STATION_IF, GUEST_MAC, vsi_profile, PortRequest.ASSOCIATE)
        disassociated = client.request(STATION_IF, GUEST_MAC, vsi_profile, PortRequest.DISASSOCIATE)
        assert (associated.ok, associated.status, associated.error) == (True, 0, "")
        assert (disassociated.ok, disassociated.status) == (True, 0)
        # lldpad reports the de-associate's answer once, then forgets the VSI
        assert vsi_profile.instance_uuid not in client.vsis(STATION_IF) | client.vsis(STATION_IF)
    records = lab.switch_records()
    assert_log_pairs_requests_with_responses(records, ["associate", "deassociate"])
    request = next(r for r in records if r["event"] == "request")
    assert (request["vsi"], request["type_id"], request["manager_id"][:2]) == (
        str(vsi_profile.instance_uuid), 1193047, "0c")
    assert request["filters"] == [{"mac": GUEST_MAC, "vid": 0}]
    assert log.exists()


def fresh_preassociate(lab: VdpLab, spec: SwitchSpec):
    """A Prepare-like pre-associate of a new VSI against an emulator with `spec`, then its associate."""
    lab.start_emulator(spec)
    vsi_profile = profile()
    with lab.client(raw_wait_s=2.0) as client:
        pre = client.request(STATION_IF, GUEST_MAC, vsi_profile, PortRequest.PREASSOCIATE)
        assoc = client.request(STATION_IF, GUEST_MAC, vsi_profile, PortRequest.ASSOCIATE)
        client.request(STATION_IF, GUEST_MAC, vsi_profile, PortRequest.DISASSOCIATE)
    return pre, assoc


@real
def test_added_service_time_shows_up_through_libvirts_125_ms_polls(lab):
    immediate, _ = fresh_preassociate(lab, SwitchSpec(service_time_ms=0.0))
    slow, slow_assoc = fresh_preassociate(lab, SwitchSpec(service_time_ms=300.0))
    print(f"\npre-associate observed/raw ms: immediate {immediate.observed_ms:.1f}/{immediate.raw_ms:.1f}, "
          f"300 ms switch {slow.observed_ms:.1f}/{slow.raw_ms:.1f}")
    assert immediate.ok and slow.ok
    # the wire: the switch's answer arrives 300 ms later, give or take a few ms of Python and lldpad
    assert 290.0 <= slow.raw_ms - immediate.raw_ms <= 340.0
    # libvirt's view: a status read at once, then one every 125 ms. The immediate answer (a few ms, plus
    # lldpad's 2 ms hand-over to VDP) is seen by the 2nd read at ~125 ms; the 300 ms one (~303 ms) lies
    # between the 3rd read (~250 ms) and the 4th (~375 ms): two more polls, 250 ms more
    assert (immediate.polls, slow.polls) == (2, 4)
    assert 0.0 <= slow.observed_ms - slow.raw_ms <= 125.0 + 25.0
    # libvirt 9.0's Finish: the associate that follows reads the pre-associate's status at once, while
    # the switch takes its 300 ms on the wire (lldpad does not reset a VSI's status on a mode change)
    assert slow_assoc.ok and slow_assoc.polls == 1 and slow_assoc.observed_ms < 50.0
    assert slow_assoc.raw_ms >= 300.0


@real
def test_a_refusing_switch_fails_the_request_with_its_error(lab):
    lab.start_emulator(SwitchSpec(service_time_ms=0.0, mode="refuse"))
    vsi_profile = profile()
    with lab.client() as client:
        result = client.request(STATION_IF, GUEST_MAC, vsi_profile, PortRequest.PREASSOCIATE)
        assert (result.ok, result.status) == (False, 2)  # VDP "insufficient resources"
        assert result.error.startswith("error 2 during port-profile setlink")
        assert vsi_profile.instance_uuid not in client.vsis(STATION_IF)
    responses = [r for r in lab.switch_records() if r["event"] == "response"]
    assert [(r["mode"], r["status"]) for r in responses] == [("deassociate", "0x42")]


@real
def test_a_silent_switch_fails_after_libvirts_10_s_and_leaves_the_vsi_pending(lab):
    lab.start_emulator(SwitchSpec(mode="silent"))
    vsi_profile = profile()
    with lab.client() as client:  # libvirt's defaults: 125 ms polls, 10 s
        result = client.request(STATION_IF, GUEST_MAC, vsi_profile, PortRequest.PREASSOCIATE)
        assert (result.ok, result.status, result.raw_ms) == (False, None, None)
        assert result.error == "port-profile setlink timed out"
        assert result.polls == 80 and result.observed_ms >= 10_000.0
        # lldpad still waits (its own response timer: 15.8 s); libvirt has given up
        assert client.vsis(STATION_IF)[vsi_profile.instance_uuid] is None
    records = lab.switch_records()
    assert [r["why"] for r in records if r["event"] == "ignored"] == ["silent switch"]
    assert [r["event"] for r in records if r["event"] in ("response", "ecp-send")] == []
    lab.restart_station()  # forget the pending VSI before the next test


@real
def test_the_station_gets_the_same_answers_from_lldpad_bridge_as_from_the_emulator(lab):
    """Interoperability: the same requests, once against the emulator and once against lldpad in bridge
    mode; the VDP replies that reach the station must match TLV for TLV (VSI id aside)."""

    def run() -> tuple[list, list]:
        watch = BridgeFrames(lab)
        vsi_profile = profile()
        try:
            with lab.client(raw_wait_s=2.0) as client:
                results = [client.request(STATION_IF, GUEST_MAC, vsi_profile, request).ok
                           for request in (PortRequest.PREASSOCIATE, PortRequest.ASSOCIATE,
                                           PortRequest.DISASSOCIATE)]
            frames = watch.replies()
            assert all(v.vsi_id == vsi_profile.instance_uuid for _, m in frames for v in m.vsis)
            replies = [(seq, m.manager_id, [(v.mode, v.status, v.type_id, v.type_id_version, v.id_format,
                                             v.filter_format, v.filters) for v in m.vsis])
                       for seq, m in frames]
        finally:
            watch.close()
        return results, replies

    lab.start_emulator(SwitchSpec(service_time_ms=0.0))
    emulator_results, emulator_replies = run()
    lab.start_lldpad_bridge()
    lldpad_results, lldpad_replies = run()
    assert emulator_results == lldpad_results == [True, True, True]
    assert [r[1:] for r in emulator_replies] == [r[1:] for r in lldpad_replies]
    assert [r[2][0][:2] for r in lldpad_replies] == [(VdpMode.PREASSOCIATE, 0x40), (VdpMode.ASSOCIATE, 0x40),
                                                     (VdpMode.DEASSOCIATE, 0x40)]
    # each side numbers its own requests consecutively (lldpad from 1, the emulator from a random start)
    for replies in (emulator_replies, lldpad_replies):
        seqs = [r[0] for r in replies]
        assert seqs == [(seqs[0] - 1 + i) % 0xFFFF + 1 for i in range(3)]
    assert lldpad_replies[0][0] == 1


@real
def test_cleanup_after_a_crash_leaves_no_namespace_process_or_workdir():
    lab = VdpLab("pytest-crash")
    lab.up()
    lab.start_emulator(SwitchSpec())
    procs = [lab.station, lab.switch]
    # a crashed run never calls down(); the next one finds its remains by namespace name
    assert sorted(cleanup("pytest-crash")) == [lab.station_ns, lab.switch_ns]
    assert all(p.wait(5) is not None for p in procs)
    assert not any(p.name.startswith("pcvdp-pytest-crash") for p in NETNS_DIR.iterdir())
    lab.station = lab.switch = None
    lab.down()
    assert not lab.workdir.exists()
