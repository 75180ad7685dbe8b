"""A switch port that answers VDP: the bridge role of IEEE 802.1Qbg-2012, on a real Ethernet port.

It plays what lldpad does with `evbmode = "bridge"` (lldpad 1.1, qbg/ecp22.c and qbg/vdp22sm.c
`vdp22_station_info` / `vdp22br_*`), with a configurable cost of answering:

- ECP: every request is acked at once with its sequence number; a repeat of the last sequence from a
  station is acked again but not processed. Replies go out as the bridge's own ECP requests, one at a
  time (stop-and-wait), resent after the ack timer (10 us x 2^rte) up to `retries` times, then dropped,
  as lldpad does. The first sequence is random, so a restarted switch is not taken for a duplicate.
- VDP, as lldpad's bridge: a request for a new VSI, or one that changes a known VSI's mode, goes to the
  servers; the same mode again is a keep-alive, answered at once; a de-associate of an unknown VSI is
  acknowledged at once; a request for a VSI still in service, or with other filters, is dropped. A VSI
  that sends no keep-alive for the bridge's keep-alive time is de-associated by the switch.
- Servers: the simulator's queue (models/switch_queue.py) on this clock: `capacity` requests in service
  at once, first come first served, each for a service time drawn from the scenario's distribution;
  Poisson background requests from other tenants take servers too. Keep-alives bypass the servers, as
  in lldpad.
- Modes: answer; refuse (pre-associate / associate answered with a de-associate carrying "no
  resources", the way lldpad's bridge refuses; de-associates still succeed); silent (acks ECP, never
  answers VDP). lldpad's bridge is never silent: its resource check answers at once (only a debug build
  can stall it, and then it sends a de-associate, or keep, after the resource wait delay). A station
  facing a silent bridge gives up after its own response timer, ((1 + 2 x retries) x 2^rte + 2^rwd) x
  10 us x 1.5 (15.8 s with lldpad's defaults), long after libvirt's 10 s.
- LLDP: an LLDPDU with the EVB TLV to the nearest customer bridge group address at start, every
  `lldp_interval_s`, and at once when a new station's LLDPDU arrives (lldpad's fast transmission for a
  new neighbour). lldpad's station needs it: its VDP takes the EVB timers, and accepts requests, only
  when it hears the bridge's TLV or at its own next LLDP transmission (up to 30 s after start). Like
  lldpad's bridge, the emulator then runs with the larger of its own and the station's timers.

Every frame-level event, request and response is logged as a JSON line with its time.
`Bridge` is the protocol without I/O (frames and a clock in, frames and log records out); serve.py
runs it on an AF_PACKET socket, as this command:

    python -m pausecast.executor.vdp.bridge --iface sw0 --service-time-ms 300 --log switch.jsonl
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import deque
from dataclasses import dataclass

import numpy as np

from ...models.scenario import SwitchSpec
from ...models.switch_queue import answers, refuses
from .served import ServedPort
from .wire import (
    ECP_SUBTYPE_VDP,
    ECP_VERSION,
    EcpFrame,
    EcpOp,
    EvbTlv,
    Lldpdu,
    VdpError,
    VdpMessage,
    VdpMode,
    VsiTlv,
    WireError,
    bridge_evb,
    decode_ecp,
    decode_vdp,
    encode_ecp,
    encode_vdp,
    evb_tlv_in_lldp,
    mac_from_bytes,
    mac_to_bytes,
    next_sequence,
)

LLDP_INTERVAL_S = 30.0  # lldpad msgTxInterval
REFUSAL = VdpError.NO_RESOURCES
# lldpad's station hands each ECP payload to VDP 2 ms later through one buffer (vdp22.c data_from_ecp,
# vdp22sm.c vdp22_from_ecp22): a second reply inside those 2 ms overwrites the first. Space them.
MIN_GAP_S = 0.003


def exponent_s(exp: int) -> float:
    """An 802.1Qbg timer exponent as seconds: 10 us x 2^exp."""
    return 10e-6 * (1 << exp)


def keepalive_timeout_s(evb: EvbTlv) -> float:
    """How long a bridge waits for a keep-alive (lldpad vdp22sm.c vdp22_timeout with rka, 41.5.5.9)."""
    return ((1 + 2 * evb.retries) * exponent_s(evb.rte) + exponent_s(evb.rka)) * 1.5


@dataclass(frozen=True)
class _Job:
    """A station's request at the servers: its number, VSI key and TLV."""

    request: int
    key: tuple
    tlv: VsiTlv


@dataclass
class _Vsi:
    """A VSI the bridge knows, keyed like lldpad's vdp22_vsi_equal."""

    manager_id: bytes
    filters: tuple
    mode: VdpMode | None = None  # None until its first request was answered
    busy: bool = False
    keepalive_timer: int | None = None


@dataclass
class _Pending:
    """A VDP message for the station, queued or in flight as an ECP request."""

    request: int | None
    payload: bytes
    sequence: int = 0
    sends: int = 0


class Bridge(ServedPort[_Job]):
    """The switch's protocol state. `receive` (a frame) and `advance` (the clock) feed it; `outbox`
    (frames to send) and `records` (log records) are drained by the caller. Times are seconds on one
    monotonic clock."""

    def __init__(self, mac: str, spec: SwitchSpec, rng: np.random.Generator, policy: EvbTlv | None = None,
                 lldp_interval_s: float = LLDP_INTERVAL_S, min_gap_s: float = MIN_GAP_S) -> None:
        mac_to_bytes(mac)
        super().__init__(spec, rng)
        self.mac = mac
        self.policy = policy or EvbTlv()
        self.evb = self.policy  # the timers in force: the policy until a station is heard
        self.lldp_interval_s = lldp_interval_s
        self.min_gap_s = min_gap_s
        self.outbox: list[bytes] = []
        self._requests = itertools.count(1)
        self._last_rx_sequence: dict[str, int] = {}
        self._tx_sequence = int(rng.integers(1, 0x10000))
        self._tx_queue: deque[_Pending] = deque()
        self._in_flight: _Pending | None = None
        self._last_tx_s = -math.inf
        self._vsis: dict[tuple, _Vsi] = {}
        self._neighbours: set[str] = set()

    # --- clock -------------------------------------------------------------------------------------

    def start(self, now_s: float) -> None:
        self._log(now_s, "start", mac=self.mac, **self.played(), evb=self.policy.encode().hex(),
                  first_sequence=next_sequence(self._tx_sequence))
        if self.lldp_interval_s > 0:
            self._send_lldp(now_s)
        self._start_background(now_s)

    # --- ECP ---------------------------------------------------------------------------------------

    def receive(self, raw: bytes, now_s: float) -> None:
        try:
            frame = decode_ecp(raw)
        except WireError as exc:
            self._log(now_s, "bad-frame", error=str(exc), bytes=raw.hex())
            return
        if frame.src == self.mac:
            return
        if frame.version != ECP_VERSION:  # lldpad drops these unacked (ecp22_rx_receiveframe)
            self._log(now_s, "bad-frame", error=f"ECP version {frame.version}", bytes=raw.hex())
            return
        if frame.op == EcpOp.ACK:
            self._on_ack(frame, now_s)
            return
        self.outbox.append(encode_ecp(frame.ack(self.mac)))
        duplicate = self._last_rx_sequence.get(frame.src) == frame.sequence
        self._log(now_s, "ecp-request", src=frame.src, seq=frame.sequence, duplicate=duplicate)
        if duplicate:
            return
        self._last_rx_sequence[frame.src] = frame.sequence
        if frame.subtype != ECP_SUBTYPE_VDP:  # acked, as lldpad does, but only VDP is served here
            self._log(now_s, "ignored", seq=frame.sequence, why=f"ECP subtype {frame.subtype}")
            return
        try:
            message = decode_vdp(frame.payload)
        except WireError as exc:
            self._log(now_s, "bad-vdp", seq=frame.sequence, error=str(exc))
            return
        for tlv in message.vsis:
            self._on_vsi_request(message.manager_id, tlv, frame, now_s)

    def _queue_reply(self, now_s: float, request: int | None, manager_id: bytes, tlv: VsiTlv) -> None:
        self._tx_queue.append(_Pending(request, encode_vdp(VdpMessage(manager_id, (tlv,)))))
        self._log(now_s, "response", req=request, mode=tlv.mode.name.lower(), status=f"{tlv.status:#04x}",
                  vsi=str(tlv.vsi_id))
        if self._in_flight is None:
            self._transmit_next(now_s)

    def _transmit_next(self, now_s: float) -> None:
        self._in_flight = self._tx_queue.popleft() if self._tx_queue else None
        if self._in_flight is None:
            return
        self._tx_sequence = next_sequence(self._tx_sequence)
        self._in_flight.sequence = self._tx_sequence
        gap_s = self._last_tx_s + self.min_gap_s - now_s
        if gap_s > 0:
            self._after(now_s, gap_s, self._send_in_flight)
        else:
            self._send_in_flight(now_s)

    def _send_in_flight(self, now_s: float) -> None:
        pending = self._in_flight
        assert pending is not None
        pending.sends += 1
        self._last_tx_s = now_s
        self.outbox.append(encode_ecp(EcpFrame(self.mac, EcpOp.REQUEST, pending.sequence, pending.payload)))
        self._log(now_s, "ecp-send", req=pending.request, seq=pending.sequence, send=pending.sends)
        self._after(now_s, exponent_s(self.evb.rte), lambda t: self._ack_timeout(pending, t))

    def _ack_timeout(self, pending: _Pending, now_s: float) -> None:
        if self._in_flight is not pending:
            return
        if pending.sends > self.evb.retries:
            self._log(now_s, "ecp-give-up", req=pending.request, seq=pending.sequence, sends=pending.sends)
            self._transmit_next(now_s)
        else:
            self._send_in_flight(now_s)

    def _on_ack(self, frame: EcpFrame, now_s: float) -> None:
        pending = self._in_flight
        if pending is None or pending.sends == 0 or pending.sequence != frame.sequence:
            self._log(now_s, "ecp-stray-ack", src=frame.src, seq=frame.sequence)
            return
        self._log(now_s, "ecp-acked", req=pending.request, seq=frame.sequence, sends=pending.sends)
        self._transmit_next(now_s)

    # --- VDP ---------------------------------------------------------------------------------------

    def _on_vsi_request(self, manager_id: bytes, tlv: VsiTlv, frame: EcpFrame, now_s: float) -> None:
        request = next(self._requests)
        self._log(now_s, "request", req=request, mode=tlv.mode.name.lower(), status=f"{tlv.status:#04x}",
                  vsi=str(tlv.vsi_id), type_id=tlv.type_id, type_id_version=tlv.type_id_version,
                  manager_id=manager_id.hex(), filters=[{"mac": f.mac, "vid": f.vid} for f in tlv.filters],
                  src=frame.src, seq=frame.sequence)
        if tlv.is_response:
            self._log(now_s, "ignored", req=request, why="a station sent a response")
            return
        if not answers(self.spec):
            self._log(now_s, "ignored", req=request, why="silent switch")
            return
        key = (manager_id, tlv.type_id, tlv.type_id_version, tlv.id_format, tlv.vsi_id, tlv.filter_format)
        vsi = self._vsis.get(key)
        if vsi is None:
            if tlv.mode == VdpMode.DEASSOCIATE:
                self._queue_reply(now_s, request, manager_id, tlv.answered())
                return
            vsi = self._vsis[key] = _Vsi(manager_id, tlv.filters)
        elif vsi.busy:
            self._log(now_s, "ignored", req=request, why="VSI still in service")
            return
        elif vsi.filters != tlv.filters:
            self._log(now_s, "ignored", req=request, why="filters differ from the VSI's")
            return
        elif vsi.mode == tlv.mode:
            self._log(now_s, "keepalive", req=request)
            self._queue_reply(now_s, request, manager_id, tlv.answered())
            self._restart_keepalive(key, vsi, now_s)
            return
        self._cancel(vsi.keepalive_timer)
        vsi.busy = True
        self._serve(self.queue.arrive(_Job(request, key, tlv), now_s), now_s)

    def _answer(self, job: _Job, now_s: float) -> None:
        vsi = self._vsis[job.key]
        vsi.busy = False
        # lldpad's bridge refuses for want of resources, which a de-associate gives back
        refused = refuses(self.spec) and job.tlv.mode != VdpMode.DEASSOCIATE
        reply = job.tlv.answered(REFUSAL, mode=VdpMode.DEASSOCIATE) if refused else job.tlv.answered()
        if reply.mode == VdpMode.DEASSOCIATE:
            del self._vsis[job.key]
        else:
            vsi.mode = job.tlv.mode
            self._restart_keepalive(job.key, vsi, now_s)
        self._queue_reply(now_s, job.request, vsi.manager_id, reply)

    def _restart_keepalive(self, key: tuple, vsi: _Vsi, now_s: float) -> None:
        self._cancel(vsi.keepalive_timer)
        vsi.keepalive_timer = self._after(now_s, keepalive_timeout_s(self.evb),
                                          lambda t: self._keepalive_timeout(key, t))

    def _keepalive_timeout(self, key: tuple, now_s: float) -> None:
        vsi = self._vsis.pop(key)
        manager_id, type_id, type_id_version, id_format, vsi_id, filter_format = key
        self._log(now_s, "keepalive-timeout", vsi=str(vsi_id))
        # the bridge's own de-associate carries no response bit (lldpad vdp22br_deassoc(p, 0))
        tlv = VsiTlv(VdpMode.DEASSOCIATE, 0, type_id, type_id_version, vsi_id, vsi.filters, filter_format,
                     id_format)
        self._queue_reply(now_s, None, manager_id, tlv)

    # --- LLDP --------------------------------------------------------------------------------------

    def receive_lldp(self, raw: bytes, now_s: float) -> None:
        try:
            station = evb_tlv_in_lldp(raw)
        except WireError as exc:
            self._log(now_s, "bad-lldp", error=str(exc))
            return
        src = mac_from_bytes(raw[6:12])
        if src == self.mac:
            return
        new = src not in self._neighbours
        self._neighbours.add(src)
        if station is not None:
            self.evb = bridge_evb(self.policy, station)
        if new:
            self._log(now_s, "lldp-neighbour", src=src, evb=station.encode().hex() if station else None,
                      timers=self.evb.encode().hex())
            if self.lldp_interval_s > 0:
                self._transmit_lldp(now_s)

    def _send_lldp(self, now_s: float) -> None:
        self._transmit_lldp(now_s)
        self._after(now_s, self.lldp_interval_s, self._send_lldp)

    def _transmit_lldp(self, now_s: float) -> None:
        self.outbox.append(Lldpdu(self.mac, self.mac, extra=(self.evb.encode(),)).encode_frame())
        self._log(now_s, "lldp-send", evb=self.evb.encode().hex())


if __name__ == "__main__":  # the command keeps the module's name; its socket loop and options are serve.py's
    from .serve import main

    sys.exit(main())
