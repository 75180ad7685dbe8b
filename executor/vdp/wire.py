"""IEEE 802.1Qbg-2012 on the wire: ECP frames, the VDP TLVs they carry, and the LLDP EVB TLV that sets
their timers. Pure encode/decode, no I/O.

Layouts as lldpad 1.1 (intel/openlldp) writes them: `qbg/ecp22.c` (ECP header and acks),
`qbg/vdp22sm.c` (`vsi22_2tlv`, `mgr22_2tlv`, `ptlv_2_vsi22`), `lldp_evb22.c` and `include/lldp_evb22.h`
(EVB TLV bit fields). Multi-byte integers are big-endian (network order) everywhere on the wire.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from enum import IntEnum

# the nearest-customer-bridge group address: ECP, and LLDP for the EVB TLV, use it (lldpad ecp22.c)
NEAREST_CUSTOMER_BRIDGE = "01:80:c2:00:00:00"
ETH_P_ECP = 0x8940  # lldpad lldp/l2_packet.h ETH_P_ECP22, the ratified standard
ETH_P_LLDP = 0x88CC
# linux/if_packet.h: a packet socket's view of a frame this host sent (sll_pkttype), which a listener
# on the same port skips; Python 3.11 does not export it
PACKET_OUTGOING = 4
ETH_HEADER_BYTES = 14
ETH_MIN_FRAME_BYTES = 60  # ETH_ZLEN: lldpad pads its ECP requests to it
ECP_VERSION = 1
ECP_SUBTYPE_VDP = 1  # lldpad qbg_ecp22.h ECP22_VDP
MANAGER_ID_TLV = 5  # VDP22_MGRID
MANAGER_ID_BYTES = 16
VSI_ID_BYTES = 16
ID_FORMAT_UUID = 5  # VDP22_ID_UUID
_TLV_LENGTH_MASK = 0x1FF


class WireError(ValueError):
    """Bytes that are not a well-formed ECP frame, VDP message or LLDP TLV."""


class EcpOp(IntEnum):
    REQUEST = 0
    ACK = 1


class VdpMode(IntEnum):
    """VDP TLV types (lldpad enum vdp22_modes); also the request a TLV carries."""

    PREASSOCIATE = 1
    PREASSOCIATE_RR = 2
    ASSOCIATE = 3
    DEASSOCIATE = 4


class VdpError(IntEnum):
    """The low nibble of a response's status (lldpad enum vdp22_cmdresp)."""

    SUCCESS = 0
    INVALID_FORMAT = 1
    NO_RESOURCES = 2
    NO_VSI_MANAGER = 3
    OTHER = 4
    INVALID_VID_MAC = 5


class Status:
    """Bits of the VSI TLV's status byte (lldpad qbg_vdp22.h)."""

    RESPONSE = 0x40  # VDP22_ACKBIT: set in every bridge reply
    KEEP = 0x20  # reply: keep the previous state despite the error; request: migrating from (S-bit)
    HARD = 0x10  # reply: hard error; request: migrating to (M-bit)
    MIGRATING_FROM = 0x20
    MIGRATING_TO = 0x10
    ERROR_MASK = 0x0F


class FilterFormat(IntEnum):
    VID = 1
    MAC_VID = 2
    GROUP_VID = 3
    GROUP_MAC_VID = 4


@dataclass(frozen=True)
class Filter:
    """One filter-info entry. `vid` is the whole 16-bit field: PS(1) | PCP(3) | VID(12)."""

    vid: int
    mac: str = ""
    group_id: int = 0


@dataclass(frozen=True)
class VsiTlv:
    mode: VdpMode
    status: int
    type_id: int
    type_id_version: int
    vsi_id: uuid.UUID
    filters: tuple[Filter, ...]
    filter_format: FilterFormat = FilterFormat.MAC_VID
    id_format: int = ID_FORMAT_UUID

    @property
    def is_response(self) -> bool:
        return bool(self.status & Status.RESPONSE)

    @property
    def error(self) -> int:
        return self.status & Status.ERROR_MASK

    def answered(self, error: int = VdpError.SUCCESS, mode: VdpMode | None = None) -> VsiTlv:
        """The bridge's reply to this request: same VSI, the response bit and the error code."""
        return VsiTlv(mode or self.mode, Status.RESPONSE | (error & Status.ERROR_MASK),
                      self.type_id, self.type_id_version, self.vsi_id, self.filters, self.filter_format,
                      self.id_format)


@dataclass(frozen=True)
class VdpMessage:
    """One ECP payload: the manager-id TLV, then VSI TLVs (lldpad sends one per frame)."""

    manager_id: bytes
    vsis: tuple[VsiTlv, ...]

    def __post_init__(self) -> None:
        if len(self.manager_id) != MANAGER_ID_BYTES:
            raise WireError(f"manager id must be {MANAGER_ID_BYTES} bytes, got {len(self.manager_id)}")


@dataclass(frozen=True)
class EcpFrame:
    src: str
    op: EcpOp
    sequence: int
    payload: bytes = b""
    dst: str = NEAREST_CUSTOMER_BRIDGE
    subtype: int = ECP_SUBTYPE_VDP
    version: int = ECP_VERSION

    def ack(self, src: str) -> EcpFrame:
        """The ack for this request: same sequence, no payload (lldpad ecp22_es_send_ack)."""
        return EcpFrame(src, EcpOp.ACK, self.sequence, b"", NEAREST_CUSTOMER_BRIDGE, self.subtype,
                        self.version)


def manager_id_from_byte(manager_id: int) -> bytes:
    """libvirt's one-byte managerid as lldpad puts it in the 16-byte field: first byte, rest zero."""
    return bytes([manager_id]) + bytes(MANAGER_ID_BYTES - 1)


def mac_to_bytes(mac: str) -> bytes:
    try:
        raw = bytes(int(part, 16) for part in mac.split(":"))
    except ValueError:
        raise WireError(f"bad MAC address {mac!r}") from None
    if len(raw) != 6:
        raise WireError(f"bad MAC address {mac!r}")
    return raw


def mac_from_bytes(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def next_sequence(sequence: int) -> int:
    """ECP sequence numbers wrap around and skip zero (lldpad ecp22.c inc_seqno)."""
    return sequence % 0xFFFF + 1


# ---------------------------------------------------------------------------------------------------
# TLV headers: type(7) | length(9), the length counting the value only

def tlv_header(tlv_type: int, length: int) -> bytes:
    if not 0 <= tlv_type <= 0x7F or not 0 <= length <= _TLV_LENGTH_MASK:
        raise WireError(f"TLV type {tlv_type} / length {length} do not fit 7 / 9 bits")
    return struct.pack("!H", tlv_type << 9 | length)


def split_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """(type, value) pairs up to an end TLV (type 0) or the end of data; trailing frame padding is zeros,
    which reads as an end TLV."""
    tlvs = []
    offset = 0
    while offset + 2 <= len(data):
        (head,) = struct.unpack_from("!H", data, offset)
        tlv_type, length = head >> 9, head & _TLV_LENGTH_MASK
        if tlv_type == 0:
            break
        value = data[offset + 2:offset + 2 + length]
        if len(value) != length:
            raise WireError(f"TLV type {tlv_type} claims {length} bytes, {len(value)} left")
        tlvs.append((tlv_type, value))
        offset += 2 + length
    return tlvs


# ---------------------------------------------------------------------------------------------------
# VDP

_FILTER_BYTES = {FilterFormat.VID: 2, FilterFormat.MAC_VID: 8, FilterFormat.GROUP_VID: 6,
                 FilterFormat.GROUP_MAC_VID: 12}
_VSI_FIXED = struct.Struct("!B3sBB16sBH")  # status, type id, version, id format, VSI id, format, count


def _encode_filter(entry: Filter, fmt: FilterFormat) -> bytes:
    out = b""
    if fmt in (FilterFormat.GROUP_VID, FilterFormat.GROUP_MAC_VID):
        out += struct.pack("!I", entry.group_id)
    if fmt in (FilterFormat.MAC_VID, FilterFormat.GROUP_MAC_VID):
        out += mac_to_bytes(entry.mac)
    return out + struct.pack("!H", entry.vid)


def _decode_filter(raw: bytes, fmt: FilterFormat) -> Filter:
    group_id, mac = 0, ""
    if fmt in (FilterFormat.GROUP_VID, FilterFormat.GROUP_MAC_VID):
        (group_id,), raw = struct.unpack("!I", raw[:4]), raw[4:]
    if fmt in (FilterFormat.MAC_VID, FilterFormat.GROUP_MAC_VID):
        mac, raw = mac_from_bytes(raw[:6]), raw[6:]
    (vid,) = struct.unpack("!H", raw)
    return Filter(vid, mac, group_id)


def encode_vsi(tlv: VsiTlv) -> bytes:
    if not 0 <= tlv.type_id < 1 << 24:
        raise WireError(f"type id {tlv.type_id} does not fit 24 bits")
    value = _VSI_FIXED.pack(tlv.status, tlv.type_id.to_bytes(3, "big"), tlv.type_id_version, tlv.id_format,
                            tlv.vsi_id.bytes, tlv.filter_format, len(tlv.filters))
    value += b"".join(_encode_filter(f, tlv.filter_format) for f in tlv.filters)
    return tlv_header(tlv.mode, len(value)) + value


def decode_vsi(mode: int, value: bytes) -> VsiTlv:
    if len(value) < _VSI_FIXED.size:
        raise WireError(f"VSI TLV of {len(value)} bytes is shorter than its fixed part ({_VSI_FIXED.size})")
    status, type_id, version, id_format, vsi_id, fmt, count = _VSI_FIXED.unpack_from(value)
    try:
        fmt = FilterFormat(fmt)
    except ValueError:
        raise WireError(f"unknown filter info format {fmt}") from None
    size = _FILTER_BYTES[fmt]
    if len(value) != _VSI_FIXED.size + count * size:
        # lldpad drops such a TLV too (ptlv_2_vsi22 checks the length against the count)
        raise WireError(f"VSI TLV length {len(value)} does not match {count} filters of format {fmt.name}")
    rest = value[_VSI_FIXED.size:]
    filters = tuple(_decode_filter(rest[i * size:(i + 1) * size], fmt) for i in range(count))
    return VsiTlv(VdpMode(mode), status, int.from_bytes(type_id, "big"), version, uuid.UUID(bytes=vsi_id),
                  filters, fmt, id_format)


def encode_vdp(message: VdpMessage) -> bytes:
    return (tlv_header(MANAGER_ID_TLV, MANAGER_ID_BYTES) + message.manager_id
            + b"".join(encode_vsi(v) for v in message.vsis))


def decode_vdp(payload: bytes) -> VdpMessage:
    """A VDP message as lldpad accepts it (vdp22_ecp22in): the manager id first, then VSI TLVs; other
    TLV types (organisation-specific ones) are skipped."""
    tlvs = split_tlvs(payload)
    if not tlvs or tlvs[0][0] != MANAGER_ID_TLV:
        raise WireError("a VDP message starts with the manager id TLV")
    manager_id = tlvs[0][1]
    if len(manager_id) != MANAGER_ID_BYTES:
        raise WireError(f"manager id TLV of {len(manager_id)} bytes, expected {MANAGER_ID_BYTES}")
    vsis = []
    for tlv_type, value in tlvs[1:]:
        if tlv_type == MANAGER_ID_TLV:
            raise WireError("duplicate manager id TLV")
        if tlv_type in VdpMode._value2member_map_:
            vsis.append(decode_vsi(tlv_type, value))
    return VdpMessage(manager_id, tuple(vsis))


# ---------------------------------------------------------------------------------------------------
# ECP frames

_ECP_HEADER = struct.Struct("!HH")


def _ethernet(dst: str, src: str, ethertype: int) -> bytes:
    return mac_to_bytes(dst) + mac_to_bytes(src) + struct.pack("!H", ethertype)


def pad_frame(frame: bytes) -> bytes:
    return frame + bytes(max(0, ETH_MIN_FRAME_BYTES - len(frame)))


def encode_ecp(frame: EcpFrame) -> bytes:
    """The whole Ethernet frame, padded to 60 bytes. (lldpad pads its requests but sends its acks as
    18 bytes; a receiver reads both alike.)"""
    if not 0 <= frame.sequence <= 0xFFFF:
        raise WireError(f"ECP sequence {frame.sequence} does not fit 16 bits")
    head = frame.version << 12 | frame.op << 10 | frame.subtype
    raw = _ethernet(frame.dst, frame.src, ETH_P_ECP) + _ECP_HEADER.pack(head, frame.sequence) + frame.payload
    return pad_frame(raw)


def decode_ecp(raw: bytes) -> EcpFrame:
    """An ECP frame from the wire; `payload` keeps any padding (decode_vdp stops at the zeros)."""
    if len(raw) < ETH_HEADER_BYTES + _ECP_HEADER.size:
        raise WireError(f"{len(raw)} bytes is too short for an ECP frame")
    (ethertype,) = struct.unpack_from("!H", raw, 12)
    if ethertype != ETH_P_ECP:
        raise WireError(f"ethertype {ethertype:#06x} is not ECP ({ETH_P_ECP:#06x})")
    head, sequence = _ECP_HEADER.unpack_from(raw, ETH_HEADER_BYTES)
    op = (head >> 10) & 0x3
    if op not in EcpOp._value2member_map_:
        raise WireError(f"unknown ECP operation {op}")
    return EcpFrame(mac_from_bytes(raw[6:12]), EcpOp(op), sequence, raw[ETH_HEADER_BYTES + _ECP_HEADER.size:],
                    mac_from_bytes(raw[0:6]), head & 0x3FF, head >> 12)


# ---------------------------------------------------------------------------------------------------
# LLDP with the EVB TLV (organisation-specific TLV 127, OUI 00-80-c2, subtype 0x0d)

EVB_OUI_SUBTYPE = bytes.fromhex("0080c20d")
EVB_MODE_BRIDGE = 1
EVB_MODE_STATION = 2


class EvbBits:
    BRIDGE_RRCAP = 0x02  # bridge can reflect (hairpin)
    BRIDGE_RRCTR = 0x01  # bridge reflects on this port
    STATION_RRREQ = 0x04  # station asks for reflection
    STATION_RRSTAT_YES = 0x01


@dataclass(frozen=True)
class EvbTlv:
    """The five EVB bytes. Timers are exponents: a time of 10 us x 2^exp. Defaults are lldpad's
    (lldp_evb22_cmds.c: retries 3, rte 8, rwd 20, rka 20)."""

    mode: int = EVB_MODE_BRIDGE
    bridge_status: int = EvbBits.BRIDGE_RRCAP
    station_status: int = 0
    retries: int = 3
    rte: int = 8
    rwd: int = 20
    rka: int = 20
    # "remote or local": set when the value sent is the peer's, not this side's
    rwd_remote: bool = False
    rka_remote: bool = False

    def encode(self) -> bytes:
        for name, value, limit in (("retries", self.retries, 7), ("rte", self.rte, 31), ("rwd", self.rwd, 31),
                                   ("rka", self.rka, 31)):
            if not 0 <= value <= limit:
                raise WireError(f"EVB {name} {value} outside 0..{limit}")
        value = EVB_OUI_SUBTYPE + bytes([
            self.bridge_status, self.station_status, self.retries << 5 | self.rte,
            self.mode << 6 | self.rwd_remote << 5 | self.rwd, self.rka_remote << 5 | self.rka])
        return tlv_header(127, len(value)) + value

    @classmethod
    def decode(cls, value: bytes) -> EvbTlv:
        """From the value of a type-127 TLV (OUI and subtype included)."""
        if len(value) != 9 or value[:4] != EVB_OUI_SUBTYPE:
            raise WireError("not an 802.1Qbg-2012 EVB TLV")
        bridge, station, r_rte, mode_rwd, rl_rka = value[4:]
        return cls(mode_rwd >> 6, bridge, station, r_rte >> 5, r_rte & 0x1F, mode_rwd & 0x1F, rl_rka & 0x1F,
                   bool(mode_rwd & 0x20), bool(rl_rka & 0x20))


@dataclass(frozen=True)
class Lldpdu:
    """The mandatory TLVs (chassis id and port id as MAC addresses, TTL) plus extra TLVs, then End."""

    chassis_mac: str
    port_mac: str
    ttl_s: int = 120
    extra: tuple[bytes, ...] = field(default_factory=tuple)

    def encode_frame(self, dst: str = NEAREST_CUSTOMER_BRIDGE) -> bytes:
        chassis = bytes([4]) + mac_to_bytes(self.chassis_mac)  # subtype 4: MAC address
        port = bytes([3]) + mac_to_bytes(self.port_mac)  # subtype 3: MAC address
        body = (tlv_header(1, len(chassis)) + chassis + tlv_header(2, len(port)) + port
                + tlv_header(3, 2) + struct.pack("!H", self.ttl_s) + b"".join(self.extra) + tlv_header(0, 0))
        return pad_frame(_ethernet(dst, self.port_mac, ETH_P_LLDP) + body)


def bridge_evb(policy: EvbTlv, station: EvbTlv | None) -> EvbTlv:
    """What a bridge advertises and runs with once it heard the station (lldpad lldp_evb22.c bridge_tlv and
    common_tlv): the station's status echoed, reflective relay turned on if asked for and offered, and
    each timer the larger of the two sides', marked remote when the station's value was taken."""
    if station is None:
        return policy
    relay = station.station_status & EvbBits.STATION_RRREQ and policy.bridge_status & EvbBits.BRIDGE_RRCAP
    return EvbTlv(policy.mode, policy.bridge_status | (EvbBits.BRIDGE_RRCTR if relay else 0),
                  station.station_status, max(policy.retries, station.retries), max(policy.rte, station.rte),
                  max(policy.rwd, station.rwd), max(policy.rka, station.rka),
                  rwd_remote=station.rwd >= policy.rwd, rka_remote=station.rka >= policy.rka)


def evb_tlv_in_lldp(raw: bytes) -> EvbTlv | None:
    """The EVB TLV of an LLDP frame, if it has one."""
    (ethertype,) = struct.unpack_from("!H", raw, 12)
    if ethertype != ETH_P_LLDP:
        raise WireError(f"ethertype {ethertype:#06x} is not LLDP")
    for tlv_type, value in split_tlvs(raw[ETH_HEADER_BYTES:]):
        if tlv_type == 127 and value[:4] == EVB_OUI_SUBTYPE:
            return EvbTlv.decode(value)
    return None
