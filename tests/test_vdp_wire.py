"""The 802.1Qbg codec against bytes captured on a testbed (/work/shared/notes/vdp-wire.md): lldpad 1.1 as
station, driven by libvirt 9.0 (managerid 12, typeid 1193047 = 0x123457, typeidversion 1), lldpad as
bridge. Every expected value below is read off that capture or the lldpad source, not off the codec."""

import uuid

import pytest

from pausecast.executor.vdp.wire import (
    ECP_SUBTYPE_VDP,
    NEAREST_CUSTOMER_BRIDGE,
    EcpFrame,
    EcpOp,
    EvbBits,
    EvbTlv,
    Filter,
    FilterFormat,
    Lldpdu,
    Status,
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
    manager_id_from_byte,
    next_sequence,
    split_tlvs,
)

STATION_MAC = "42:ed:78:21:e6:11"
VSI_ID = uuid.UUID("09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f")
# station -> bridge, ECP request seq 1, VDP ASSOCIATE request (71 bytes, as captured)
ASSOCIATE_REQUEST = bytes.fromhex(
    "0180c2000000" "42ed7821e611" "8940"
    "1001" "0001"
    "0a10" "0c000000000000000000000000000000"
    "0621" "00" "123457" "01" "05" "09b11c538b5c4eeb8f00d84eaa0aaa4f" "02" "0001" "525400880001" "0000")
ACK_HEADER = bytes.fromhex("8940" "1401" "0001")  # ethertype, version 1 | op ack | subtype 1, seq 1
# the bridge's EVB TLV in its LLDPDU
EVB_TLV = bytes.fromhex("fe09" "0080c2" "0d" "03" "05" "6e" "74" "34")


def test_the_captured_associate_request_decodes_field_by_field():
    frame = decode_ecp(ASSOCIATE_REQUEST)
    assert (frame.dst, frame.src) == (NEAREST_CUSTOMER_BRIDGE, STATION_MAC)
    assert (frame.version, frame.op, frame.subtype, frame.sequence) == (1, EcpOp.REQUEST, ECP_SUBTYPE_VDP, 1)
    message = decode_vdp(frame.payload)
    assert message.manager_id == bytes([12]) + bytes(15) == manager_id_from_byte(12)
    (vsi,) = message.vsis
    assert vsi == VsiTlv(VdpMode.ASSOCIATE, 0x00, 0x123457, 1, VSI_ID,
                         (Filter(vid=0, mac="52:54:00:88:00:01"),), FilterFormat.MAC_VID, id_format=5)
    assert not vsi.is_response


def test_the_captured_request_re_encodes_to_the_same_71_bytes():
    frame = decode_ecp(ASSOCIATE_REQUEST)
    assert encode_vdp(decode_vdp(frame.payload)) == frame.payload
    assert encode_ecp(frame) == ASSOCIATE_REQUEST


def test_the_bridge_reply_is_the_request_with_the_response_bit():
    # the capture: "same TLVs, status byte 0x00 -> 0x40 (response, success)", sent as the bridge's own
    # ECP request; here with the bridge's MAC and its own sequence 1
    request = decode_vdp(decode_ecp(ASSOCIATE_REQUEST).payload)
    reply = VdpMessage(request.manager_id, (request.vsis[0].answered(),))
    expected_payload = bytearray(ASSOCIATE_REQUEST[18:])
    expected_payload[18 + 2] = 0x40  # after the 18-byte manager id TLV and the VSI TLV's 2-byte header
    assert encode_vdp(reply) == bytes(expected_payload)
    assert reply.vsis[0].is_response and reply.vsis[0].error == VdpError.SUCCESS


def test_a_refusal_carries_the_error_in_the_low_nibble():
    vsi = decode_vdp(decode_ecp(ASSOCIATE_REQUEST).payload).vsis[0]
    refusal = vsi.answered(VdpError.NO_RESOURCES, mode=VdpMode.DEASSOCIATE)
    assert refusal.status == 0x42 and refusal.error == 2 and refusal.is_response
    assert encode_vdp(VdpMessage(bytes(16), (refusal,)))[18:21] == bytes.fromhex("0821" "42")


def test_the_ack_echoes_the_sequence():
    frame = decode_ecp(ASSOCIATE_REQUEST)
    ack = encode_ecp(frame.ack("02:00:00:00:00:02"))
    assert ack[12:18] == ACK_HEADER
    assert ack[:6] == bytes.fromhex("0180c2000000")  # lldpad acks to the group address too
    assert len(ack) == 60
    decoded = decode_ecp(ack)
    assert (decoded.op, decoded.sequence, decoded.payload) == (EcpOp.ACK, 1, bytes(60 - 18))


@pytest.mark.parametrize(("mode", "header"), [
    (VdpMode.PREASSOCIATE, "0221"), (VdpMode.PREASSOCIATE_RR, "0421"), (VdpMode.ASSOCIATE, "0621"),
    (VdpMode.DEASSOCIATE, "0821")])
def test_tlv_headers_are_type_7_bits_length_9_bits(mode, header):
    # type << 9 | 33: 1 + 3 + 1 + 1 + 16 + 1 + 2 + 6 + 2 = 33 bytes for one MAC/VID filter
    vsi = VsiTlv(mode, 0, 1, 1, VSI_ID, (Filter(0, "52:54:00:00:00:01"),))
    assert encode_vdp(VdpMessage(bytes(16), (vsi,)))[:2] == bytes.fromhex("0a10")
    assert encode_vdp(VdpMessage(bytes(16), (vsi,)))[18:20] == bytes.fromhex(header)


def test_padding_zeros_end_the_message_and_a_short_frame_is_padded_to_60():
    vsi = VsiTlv(VdpMode.PREASSOCIATE, Status.MIGRATING_TO, 7, 2, VSI_ID, (Filter(0x2005),), FilterFormat.VID)
    payload = encode_vdp(VdpMessage(bytes(16), (vsi,)))
    assert len(payload) == 18 + 2 + 23 + 2 + 2  # manager id TLV; VSI TLV with one 2-byte VID filter
    frame = encode_ecp(EcpFrame("02:00:00:00:00:01", EcpOp.REQUEST, 9, payload))
    assert len(frame) == 14 + 4 + len(payload) == 65
    short = encode_ecp(EcpFrame("02:00:00:00:00:01", EcpOp.REQUEST, 9, payload[:18]))
    assert len(short) == 60 and decode_vdp(decode_ecp(short).payload) == VdpMessage(bytes(16), ())
    assert decode_vdp(payload + bytes(20)).vsis == (vsi,)


@pytest.mark.parametrize("fmt", list(FilterFormat))
def test_every_filter_format_round_trips(fmt):
    entry = Filter(vid=0x3123, mac="52:54:00:ab:cd:ef" if "MAC" in fmt.name else "",
                   group_id=0xDEADBEEF if "GROUP" in fmt.name else 0)
    vsi = VsiTlv(VdpMode.ASSOCIATE, 0, 0xFFFFFF, 255, VSI_ID, (entry, entry), fmt)
    # fixed part 25 bytes, then 2 filters of 2 (VID), 8 (MAC/VID), 6 (group/VID), 12 (group/MAC/VID)
    size = {FilterFormat.VID: 2, FilterFormat.MAC_VID: 8, FilterFormat.GROUP_VID: 6,
            FilterFormat.GROUP_MAC_VID: 12}[fmt]
    payload = encode_vdp(VdpMessage(bytes(range(16)), (vsi,)))
    assert split_tlvs(payload)[1] == (VdpMode.ASSOCIATE, payload[20:])
    assert len(payload) - 20 == 25 + 2 * size
    assert decode_vdp(payload) == VdpMessage(bytes(range(16)), (vsi,))


@pytest.mark.parametrize(("raw", "why"), [
    (ASSOCIATE_REQUEST[:16], "too short"),
    (ASSOCIATE_REQUEST[:12] + b"\x88\xcc" + ASSOCIATE_REQUEST[14:], "is not ECP"),
])
def test_bad_frames_are_refused(raw, why):
    with pytest.raises(WireError, match=why):
        decode_ecp(raw)


# manager id TLV (2 + 16), VSI TLV header (2), fixed part (23), filter count (2), one filter (8)
PAYLOAD = ASSOCIATE_REQUEST[18:]


@pytest.mark.parametrize(("payload", "why"), [
    (PAYLOAD[18:], "starts with the manager id"),
    (PAYLOAD[:18] * 2, "duplicate manager id"),
    (PAYLOAD[:-2], "claims 33 bytes"),
    (PAYLOAD[:43] + bytes.fromhex("0002") + PAYLOAD[-8:], "does not match 2 filters"),
])
def test_bad_vdp_messages_are_refused(payload, why):
    with pytest.raises(WireError, match=why):
        decode_vdp(payload)


def test_sequence_numbers_wrap_past_zero():
    # lldpad ecp22.c inc_seqno: 0 is never used
    assert [next_sequence(s) for s in (1, 0xFFFE, 0xFFFF)] == [2, 0xFFFF, 1]


def test_the_captured_evb_tlv_decodes_to_lldpad_bridge_settings():
    # 03: bridge RRCAP|RRCTR; 05: station RRREQ|RRSTAT; 6e = 011 01110: 3 retries, RTE 14;
    # 74 = 01 1 10100: mode bridge, remote, RWD 20; 34 = 00 1 10100: remote, RKA 20
    tlv = EvbTlv.decode(EVB_TLV[2:])
    assert tlv == EvbTlv(mode=1, bridge_status=EvbBits.BRIDGE_RRCAP | EvbBits.BRIDGE_RRCTR,
                         station_status=EvbBits.STATION_RRREQ | EvbBits.STATION_RRSTAT_YES, retries=3, rte=14,
                         rwd=20, rka=20, rwd_remote=True, rka_remote=True)
    assert tlv.encode() == EVB_TLV


def test_an_lldpdu_carries_the_mandatory_tlvs_and_the_evb_tlv():
    frame = Lldpdu("02:00:00:00:00:02", "02:00:00:00:00:02", extra=(EvbTlv().encode(),)).encode_frame()
    assert frame[:6] == bytes.fromhex("0180c2000000") and frame[12:14] == bytes.fromhex("88cc")
    tlvs = split_tlvs(frame[14:])
    assert [t for t, _ in tlvs] == [1, 2, 3, 127]
    assert tlvs[2][1] == bytes.fromhex("0078")  # TTL 120 s
    # lldpad's defaults: bridge can reflect (RRCAP) but was not asked yet; 3 retries, RTE 8 -> 0x68;
    # bridge, local, RWD 20 -> 0x54; RKA 20 -> 0x14
    assert tlvs[3][1][4:] == bytes.fromhex("02" "00" "68" "54" "14")
    assert evb_tlv_in_lldp(frame) == EvbTlv()


def test_a_bridge_takes_the_larger_timers_and_grants_reflection_when_asked():
    # lldp_evb22.c bridge_tlv/common_tlv: max of each timer, "remote" when the station's was taken (also on
    # a tie), the station's status echoed, RRCTR only if the station asked (RRREQ) and the bridge can (RRCAP)
    station = EvbTlv(mode=2, bridge_status=0, station_status=EvbBits.STATION_RRREQ, retries=2, rte=14, rwd=20,
                     rka=18)
    assert bridge_evb(EvbTlv(), station) == EvbTlv(
        mode=1, bridge_status=EvbBits.BRIDGE_RRCAP | EvbBits.BRIDGE_RRCTR,
        station_status=EvbBits.STATION_RRREQ, retries=3, rte=14, rwd=20, rka=20, rwd_remote=True,
        rka_remote=False)
    assert bridge_evb(EvbTlv(bridge_status=0), station).bridge_status == 0
    assert bridge_evb(EvbTlv(), None) == EvbTlv()


def test_fields_that_do_not_fit_are_refused():
    with pytest.raises(WireError, match="24 bits"):
        encode_vdp(VdpMessage(bytes(16), (VsiTlv(VdpMode.ASSOCIATE, 0, 1 << 24, 1, VSI_ID, ()),)))
    with pytest.raises(WireError, match="16 bytes"):
        VdpMessage(bytes(15), ())
    with pytest.raises(WireError, match="rte 32"):
        EvbTlv(rte=32).encode()
