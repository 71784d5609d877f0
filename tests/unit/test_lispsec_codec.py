"""LISP-SEC codec and crypto (RFC 9303 6): golden vectors packed by hand from the
layout in docs/lisp-sec.md, round trips, malformed input, and the primitives
checked against independent computations (RFC 5869 HKDF written out here, the
RFC 3394 test vector)."""

from __future__ import annotations

import hashlib
import hmac
import struct
from ipaddress import IPv4Address as V4, IPv6Address as V6

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from common.machines import lispsec as L
from common.wire.ecm import Ecm
from common.wire.eidtext import parse_eidspec
from common.wire.errors import DecodeError
from common.wire.ipudp import IpUdp
from common.wire.lispsec import (EcmAuth, EidAd, ReplyAuth, decode_ecm_auth, decode_reply_auth,
                                 encode_ecm_auth, encode_reply_auth)
from common.wire.messages import MapReply, MapRequest, RequestRecord, decode_message, encode_message
from common.wire.records import EidRecord, Locator

OTK_FIELD = bytes(range(0x40, 0x58))          # 24 bytes: preamble + key
INNER = MapRequest(nonce=0x1122334455667788, itr_rlocs=(V4("127.0.0.1"),),
                   records=(RequestRecord(V4("10.1.1.1"), 32),))
IP = IpUdp(V4("127.0.0.1"), V4("10.1.1.1"), 40000, 4342)


def _plain_ecm() -> bytes:
    return encode_message(Ecm(INNER, IP))


def test_ecm_with_s_bit_golden():
    ad = (struct.pack("!BBHHH", 1, 0, 2, 24, 2) + OTK_FIELD
          + struct.pack("!HHBB", 4, 2, 0, 0))          # the ITR's 4-byte EID-AD
    plain = _plain_ecm()
    want = struct.pack("!I", 0x88000000) + ad + plain[4:]
    e = Ecm(INNER, IP, auth=EcmAuth(2, 2, OTK_FIELD, EidAd(2)))
    assert encode_message(e) == want
    got = decode_message(want)
    assert got == e and got.security and got.auth.eid_ad.short
    assert got.inner == INNER


def test_ecm_from_map_server_golden():
    hm = bytes(range(16))
    ad = (struct.pack("!BBHHH", 1, 0x80, 1, 24, 1) + OTK_FIELD
          + struct.pack("!HHBBH", 6 + 8 + 16, 1, 1, 0, 2)
          + struct.pack("!BBH", 0, 24, 1) + V4("10.1.1.0").packed + hm)
    data = struct.pack("!I", 0x8A000000) + ad + _plain_ecm()[4:]     # S=1, E=1
    got = decode_message(data)
    assert got.to_etr and got.auth.v and got.auth.requested_hmac_id == 1 and got.auth.otk_wrap_id == 1
    assert got.auth.eid_ad == EidAd(1, 2, (parse_eidspec("10.1.1.0/24"),), hm)
    assert encode_message(got) == data


def test_map_reply_with_s_bit_golden():
    rec = EidRecord(V4("10.1.1.0"), 24, 1440, (Locator(V4("192.0.2.1"), 1, 100, 255, 0),),
                    authoritative=True)
    plain = encode_message(MapReply(5, (rec,)))
    eid_hmac, pkt_hmac = b"E" * 16, b"P" * 16
    sec = (struct.pack("!I", 0x01000000)
           + struct.pack("!HHBBH", 6 + 8 + 16, 2, 1, 0, 2) + struct.pack("!BBH", 0, 24, 1)
           + V4("10.1.1.0").packed + eid_hmac
           + struct.pack("!HH", 18, 2) + pkt_hmac)
    data = struct.pack("!I", struct.unpack("!I", plain[:4])[0] | 0x02000000) + plain[4:] + sec
    m = decode_message(data)
    assert m.security and m.records == (rec,) and m.sec_data == sec
    ra = decode_reply_auth(m.sec_data)
    assert ra == ReplyAuth(EidAd(2, 2, (parse_eidspec("10.1.1.0/24"),), eid_hmac), 2, pkt_hmac)
    assert encode_reply_auth(ra) == sec


@pytest.mark.parametrize("prefixes,hmac_id,kdf", [
    (("10.1.0.0/16",), 2, 2),
    (("2001:db8:1::/48", "[1000]10.9.0.0/16"), 1, 1),
    (("[7]2001:db8::/32",), 2, 1),
])
def test_round_trips(prefixes, hmac_id, kdf):
    n = 12 if hmac_id == 1 else 16
    ad = EidAd(kdf, hmac_id, tuple(parse_eidspec(p) for p in prefixes), bytes(range(n)))
    a = EcmAuth(hmac_id, 2, OTK_FIELD, ad)
    raw = encode_ecm_auth(a) + b"tail"
    assert decode_ecm_auth(raw, 0, len(raw) - 4) == (a, len(raw) - 4)
    r = ReplyAuth(ad, hmac_id, bytes(n))
    assert decode_reply_auth(encode_reply_auth(r)) == r
    e = Ecm(INNER, IpUdp(V6("::1"), V6("fd00::1"), 40001, 4342), auth=a)
    assert decode_message(encode_message(e)) == e


@pytest.mark.parametrize("cut,field", [
    (lambda d: d[:4 + 5], "ecm.auth"),
    (lambda d: d[:4] + b"\x02" + d[5:], "ecm.auth.ad_type"),
    (lambda d: d[:8] + b"\x00\x10" + d[10:], "ecm.auth.otk_length"),
    (lambda d: d[:36] + b"\x01\x00" + d[38:], "ecm.auth.eid_ad.length"),
])
def test_malformed_ecm_auth_is_a_decode_error(cut, field):
    data = encode_message(Ecm(INNER, IP, auth=EcmAuth(2, 2, OTK_FIELD, EidAd(2))))
    with pytest.raises(DecodeError) as ei:
        decode_message(cut(data))
    assert ei.value.field == field


def test_malformed_reply_auth():
    good = encode_reply_auth(ReplyAuth(EidAd(2, 2, (parse_eidspec("10.0.0.0/8"),), bytes(16)), 2, bytes(16)))
    for bad, field in ((good[:3], "map_reply.auth"), (b"\x07" + good[1:], "map_reply.auth.ad_type"),
                       (good + b"x", "map_reply.auth.pkt_ad.length"), (good[:-20], "map_reply.auth.pkt_ad")):
        with pytest.raises(DecodeError) as ei:
            decode_reply_auth(bad)
        assert ei.value.field == field, bad


# ---------------------------------------------------------------------------
# crypto

def _hkdf(h, ikm: bytes, salt: bytes, info: bytes, n: int) -> bytes:
    """RFC 5869 written out."""
    prk = hmac.new(salt or bytes(h().digest_size), ikm, h).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes((i,)), h).digest()
        out += t
        i += 1
    return out[:n]


def test_rfc3394_vector():
    kek = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
    key = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert aes_key_wrap(kek, key) == bytes.fromhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")


def test_wrap_and_unwrap():
    otk = bytes(range(16))
    wrap_id, field = L.wrap_otk(otk, b"itr-secret")
    kek = _hkdf(hashlib.sha256, b"itr-secret", b"", b"lisp-sec key wrap", 16)
    assert wrap_id == 2 and field == aes_key_wrap(kek, otk)
    assert L.unwrap_otk(wrap_id, field, [b"other", b"itr-secret"]) == otk
    with pytest.raises(L.LispSecError) as ei:
        L.unwrap_otk(wrap_id, field, [b"other"])
    assert ei.value.reason == "otk-unwrap"
    assert L.wrap_otk(otk, None) == (1, bytes(8) + otk)
    assert L.unwrap_otk(1, bytes(8) + otk, []) == otk
    with pytest.raises(L.LispSecError):
        L.unwrap_otk(1, b"\x01" + bytes(7) + otk, [])


@pytest.mark.parametrize("kdf_id,h", [(1, hashlib.sha1), (2, hashlib.sha256)])
def test_kdf_is_hkdf_salted_with_the_nonce(kdf_id, h):
    otk = b"k" * 16
    assert L.derive_ms_otk(kdf_id, otk, 0x0102030405060708) == _hkdf(
        h, otk, bytes.fromhex("0102030405060708"), b"", 16)
    with pytest.raises(L.LispSecError):
        L.derive_ms_otk(9, otk, 1)


def test_eid_hmac_covers_the_eid_ad_with_the_field_zeroed():
    raw = L.seal_eid_ad([parse_eidspec("10.1.0.0/16")], 2, 1, b"o" * 16)
    zeroed = raw[:-12] + bytes(12)
    assert raw[-12:] == hmac.new(b"o" * 16, zeroed, hashlib.sha1).digest()[:12]


def test_pkt_hmac_covers_the_whole_reply():
    plain = encode_message(MapReply(9, ()))
    ad = L.seal_eid_ad([parse_eidspec("10.0.0.0/8")], 2, 2, b"i" * 16)
    signed = L.sign_reply(plain, ad, 2, b"m" * 16)
    assert signed[0] & 0x02 and signed[-16:] == hmac.new(
        b"m" * 16, signed[:-16] + bytes(16), hashlib.sha256).digest()[:16]
