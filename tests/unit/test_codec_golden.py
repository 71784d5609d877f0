"""Golden vectors: byte layouts written out by hand from WIRE-FORMAT.md."""

from __future__ import annotations

from ipaddress import IPv4Address as V4, IPv6Address as V6

import pytest

from common.wire.addr import InstanceIdAddr, MulticastInfo, NO_ADDRESS, Rle, RleEntry, OpaqueLcaf
from common.wire.auth import seal, verify
from common.wire.datahdr import DECENT_IID, DataHeader, decode_data_header, encode_data_header
from common.wire.ecm import Ecm, decode_ecm
from common.wire.errors import DecodeError
from common.wire.ipudp import IpUdp
from common.wire.messages import MapReply, MapRequest, RequestRecord, decode_message, encode_message
from common.wire.records import EidRecord, Locator
from common.wire.register import MapNotifyAck, MapRegister

# WIRE-FORMAT.md 6.3, MAC over the whole 100 bytes (trailer included)
VECTOR_6_3 = bytes.fromhex(
    "32000101" "00000000" "00000001" "00020020"
    "e17123ea" "2d1cb0c5" "5d5630ae" "b6d8f4c3" "ec5fb148" "30e1d4c6" "6b85879a" "e145c746"
    "000005a0" "01101000" "00000001" "0a010000" "0164ff00" "00050001" "c0000201"
    "01020304" "05060708" "090a0b0c" "0d0e0f10" "11223344" "55667788")

REG_6_3 = MapRegister(
    nonce=1, key_id=0, alg_id=2, want_map_notify=True,
    records=(EidRecord(V4("10.1.0.0"), 16, 1440, (Locator(V4("192.0.2.1"), 1, 100, 255, 0, local=True,
                                                            reachable=True),), authoritative=True),),
    xtr_id=bytes(range(1, 17)), site_id=bytes.fromhex("1122334455667788"))


def test_wire_format_6_3_encodes_byte_for_byte():
    assert seal(REG_6_3, b"secret") == VECTOR_6_3


def test_wire_format_6_3_decodes():
    m = decode_message(VECTOR_6_3)
    assert m.key_id == 0 and m.alg_id == 2 and len(m.auth_data) == 32
    assert m.records[0].prefix.length == 16 and str(m.records[0].prefix.address) == "10.1.0.0"
    assert m.xtr_id == bytes(range(1, 17)) and m.site_id.hex() == "1122334455667788"
    assert m.want_map_notify and not m.proxy_reply


def test_dual_coverage_verifier():
    assert verify(VECTOR_6_3, b"secret")
    assert not verify(VECTOR_6_3, b"Secret")
    # MAC over the first 76 bytes only (RFC 9301's literal coverage), as WIRE-FORMAT 6.3 gives it
    import hashlib
    import hmac
    zeroed = VECTOR_6_3[:16] + bytes(32) + VECTOR_6_3[48:]
    short = hmac.new(b"secret", zeroed[:76], hashlib.sha256).digest()
    assert short.hex().startswith("788112dd09e227c5")
    narrow = VECTOR_6_3[:16] + short + VECTOR_6_3[48:]
    assert verify(narrow, b"secret")


@pytest.mark.parametrize("alg,full,trunc", [(1, 20, 12), (2, 32, 16)])
def test_truncated_macs_are_accepted_and_checked(alg, full, trunc):
    m = MapRegister(nonce=7, records=REG_6_3.records, alg_id=alg)
    data = seal(m, b"k")
    assert len(decode_message(data).auth_data) == full and verify(data, b"k")
    # rebuild with a truncated field: length trusted from the header
    mac = data[16:16 + trunc]
    short = data[:14] + trunc.to_bytes(2, "big") + bytes(trunc) + data[16 + full:]
    import hmac as _h, hashlib
    digest = {1: hashlib.sha1, 2: hashlib.sha256}[alg]
    mac = _h.new(b"k", short, digest).digest()[:trunc]
    short = short[:16] + mac + short[16 + trunc:]
    assert verify(short, b"k")
    assert not verify(short[:16] + bytes([mac[0] ^ 1]) + short[17:], b"k")


def test_unknown_algorithm_and_none_fail_verification():
    data = seal(MapRegister(nonce=1, records=REG_6_3.records, alg_id=0), b"k")
    assert not verify(data, b"k") and verify(data, b"k", allow_none=True)
    bad = data[:13] + b"\x07" + data[14:]
    assert not verify(bad, b"k")


def test_map_request_layout():
    m = MapRequest(nonce=0x0102030405060708, itr_rlocs=(V4("192.0.2.1"), V6("2001:db8::1")),
                   records=(RequestRecord(InstanceIdAddr(1000, V4("10.1.1.1")), 32),),
                   source_eid=NO_ADDRESS, smr=True)
    data = encode_message(m)
    assert data[:4] == bytes([0x11, 0x00, 0x01, 0x01])  # type 1, S, IRC 1 (two RLOCs), 1 record
    assert data[4:12] == bytes(range(1, 9))
    assert data[12:14] == b"\x00\x00"                     # source EID AFI 0
    assert data[14:20] == b"\x00\x01\xc0\x00\x02\x01"
    assert data[20:22] == b"\x00\x02"
    rec = data[38:]
    assert rec[:2] == b"\x00\x20"                          # reserved, mask 32
    assert rec[2:4] == b"\x40\x03"                         # LCAF AFI 16387
    assert rec[4:10] == bytes([0, 0, 2, 0, 0, 10])         # type 2, length 10
    assert rec[10:14] == (1000).to_bytes(4, "big")
    assert rec[14:] == b"\x00\x01\x0a\x01\x01\x01"
    assert decode_message(data) == m


def test_negative_map_reply_action_bits():
    m = MapReply(nonce=5, records=(EidRecord(V4("192.168.0.0"), 16, 15, (), action=1),))
    data = encode_message(m)
    assert data[:4] == b"\x20\x00\x00\x01"
    rec = data[12:]
    assert rec[:4] == (15).to_bytes(4, "big") and rec[4] == 0 and rec[5] == 16
    assert rec[6] >> 5 == 1 and not rec[6] & 0x10


def test_multicast_info_and_rle_layout():
    group = MulticastInfo(0, V4("0.0.0.0"), 0, V4("224.1.1.1"), 32)
    rle = Rle((RleEntry(V4("192.0.2.1"), 128),))
    rec = EidRecord(group, 0, 1, (Locator(rle, 255, 0, 1, 100),))
    data = encode_message(MapRegister(nonce=1, records=(rec,), alg_id=0, merge=True))
    lcaf = data[16 + 10:]  # after the header (no auth data) and the record's first 10 bytes
    assert lcaf[:2] == b"\x40\x03" and lcaf[4] == 9 and int.from_bytes(lcaf[6:8], "big") == 20
    assert lcaf[8:12] == bytes(4) and lcaf[14] == 0 and lcaf[15] == 32  # IID, sml 0, gml 32
    assert lcaf[16:22] == b"\x00\x01" + bytes(4) and lcaf[22:28] == b"\x00\x01\xe0\x01\x01\x01"
    loc = lcaf[28:]
    assert loc[:4] == bytes([255, 0, 1, 100]) and loc[4:6] == b"\x00\x01"
    assert loc[6:8] == b"\x40\x03" and loc[10] == 13 and int.from_bytes(loc[12:14], "big") == 10
    assert loc[14:18] == bytes([0, 0, 0, 128]) and loc[18:24] == b"\x00\x01\xc0\x00\x02\x01"
    assert decode_message(data).records[0].locators[0].address == rle


def test_unknown_lcaf_is_kept_byte_for_byte():
    raw_eid = bytes.fromhex("4003" "01" "02" "05" "00" "0004" "deadbeef")  # type 5, flags set
    data = (bytes.fromhex("20000001") + bytes(8) + (1).to_bytes(4, "big") + bytes([0, 0, 0, 0])
            + bytes(2) + raw_eid)
    m = decode_message(data)
    assert m.records[0].eid == OpaqueLcaf(5, bytes.fromhex("deadbeef"), 1, 2, 0)
    assert encode_message(m) == data


@pytest.mark.parametrize("hexdata,field", [
    ("1000000100000000000000010000" + "0001c000", "itr_rloc[0]"),   # truncated ITR-RLOC
    ("10001f0100000000000000010000" + "0001c0000201", "irc"),          # 32 RLOCs announced
    ("200000ff" + "00" * 8, "record_count"),                           # 255 records in 0 bytes
    ("20000001" + "00" * 8 + "0000000100210000" + "00000001" + "0a000000", "record[0].mask_len"),
    ("20000001" + "00" * 8 + "0000000100080000" + "00000063" + "0a000000", "record[0].eid.afi"),
    ("30000000" + "00" * 8 + "0002ffff", "auth_data_length"),
    ("20000001" + "00" * 8 + "0000000100000000" + "00004003" + "0000020000ff", "record[0].eid.lcaf.length"),
])
def test_invalid_encodings_name_field_and_offset(hexdata, field):
    with pytest.raises(DecodeError) as ei:
        decode_message(bytes.fromhex(hexdata))
    assert ei.value.field == field, str(ei.value)
    assert 0 <= ei.value.offset <= len(hexdata) // 2


def test_odd_but_wellformed_decodes():
    # record count 0, reserved bits, an action on a record with locators
    assert decode_message(bytes.fromhex("2000ff00" + "00" * 8)).records == ()
    rec = ("00000001" "01" "20" "a000" "0000" "0001" "0a000001" "0164ff00" "0005" "0001" "c0000201")
    m = decode_message(bytes.fromhex("20000001" + "00" * 8 + rec))
    assert m.records[0].action == 5 and m.records[0].locators


def test_ecm_inner_checksum_verified():
    inner = MapRequest(nonce=9, itr_rlocs=(V4("127.0.0.1"),), records=(RequestRecord(V4("10.1.1.1"), 32),))
    e = Ecm(inner, IpUdp(V4("127.0.0.1"), V4("10.1.1.1"), 40000, 4342))
    data = bytearray(encode_message(e))
    assert data[0] >> 4 == 8 and decode_ecm(bytes(data)) == e
    assert data[4] == 0x45 and data[4 + 20 + 2:4 + 20 + 4] == b"\x10\xf6"  # inner dport 4342
    data[-1] ^= 0xFF
    with pytest.raises(DecodeError) as ei:
        decode_message(bytes(data))
    assert ei.value.field == "inner.udp.checksum"
    # a zero checksum (lispers.net sends every ECM so) means "no checksum": accepted
    # and noted, the inner message the same
    data = bytearray(encode_message(e))
    data[4 + 20 + 6:4 + 20 + 8] = b"\x00\x00"
    got = decode_message(bytes(data))
    assert got.zero_checksum and got.inner == inner and got.ip == e.ip
    assert encode_message(got) == bytes(data)  # encoded back with a zero checksum


def test_ecm_zero_inner_checksum_ipv6():
    inner = MapRequest(nonce=7, itr_rlocs=(V6("::1"),), records=(RequestRecord(V6("fd00::5"), 128),))
    e = Ecm(inner, IpUdp(V6("::1"), V6("fd00::5"), 40001, 4342), zero_checksum=True)
    data = encode_message(e)
    assert data[4] >> 4 == 6 and data[4 + 40 + 6:4 + 40 + 8] == b"\x00\x00"
    assert decode_message(data) == e
    # with a checksum computed it is not zero, and decodes as such
    data = encode_message(Ecm(inner, e.ip))
    assert data[4 + 40 + 6:4 + 40 + 8] != b"\x00\x00" and not decode_message(data).zero_checksum


def test_map_notify_ack_with_uncounted_records_lispers():
    m = MapNotifyAck(nonce=3, records=(), alg_id=0, extra=b"\x01\x02\x03")
    assert decode_message(encode_message(m)) == m


def test_data_header_decent_iid():
    h = DataHeader(iid_present=True, iid=DECENT_IID)
    raw = encode_data_header(h)
    assert raw == bytes.fromhex("08000000ffffff00")
    assert decode_data_header(raw) == h
    both = decode_data_header(bytes.fromhex("90123456" "00000000"))  # N and V: a nonce
    assert both.nonce_present and not both.version_present and both.nonce == 0x123456
