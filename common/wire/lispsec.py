"""LISP-SEC authentication data (RFC 9303 section 6): the codec, no cryptography.

Two places carry it (docs/lisp-sec.md has the layouts and the de-facto choices):

* an ECM with S=1 (:class:`EcmAuth`, between the 4-byte ECM header and the inner
  IP header): AD Type, V, Requested HMAC ID, OTK Length, OTK Encryption ID, the
  OTK field (64-bit preamble + 128-bit key: the RFC 3394 output of a wrapped key,
  or 8 zero bytes + the key with the null wrap), then an EID-AD;
* a Map-Reply with S=1 (:class:`ReplyAuth`, after the records, i.e.
  ``MapReply.sec_data``): AD Type, 24 reserved bits, the EID-AD, the PKT-AD.

The EID-AD (:class:`EidAd`) is: EID-AD Length (bytes after the field), KDF ID,
Record Count, Reserved, then -- when the length is more than 4 (an ITR sends just
the 4 bytes) -- EID HMAC ID, the records (Reserved, mask length, AFI-encoded
prefix) and the EID HMAC.  The PKT-AD is PKT-AD Length (bytes after the field),
PKT HMAC ID, PKT HMAC.  Decoders raise only DecodeError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from common.wire.addr import Eid, address_bits, decode_address, eid_from_wire, encode_address, eid_to_wire
from common.wire.errors import DecodeError, EncodeError

AD_TYPE_LISP_SEC = 1

HMAC_NONE = 0
HMAC_SHA1_96 = 1
HMAC_SHA256_128 = 2
HMAC_LEN = {HMAC_NONE: 0, HMAC_SHA1_96: 12, HMAC_SHA256_128: 16}

WRAP_NULL_128 = 1
WRAP_AES_128 = 2

KDF_HKDF_SHA1_128 = 1
KDF_HKDF_SHA256_128 = 2

OTK_FIELD_LEN = 24          # preamble (8) + one-time key (16)
ITR_EID_AD_LEN = 4          # KDF ID, Record Count, Reserved

_ECM_AD = struct.Struct("!BBHHH")     # AD type, V|reserved, requested HMAC ID, OTK length, OTK enc ID
_EID_AD = struct.Struct("!HHBB")      # length, KDF ID, record count, reserved
_H = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class EidAd:
    """The EID Authentication Data.  ``prefixes`` are :class:`Eid` prefixes; with
    no ``hmac_id`` and no prefixes it is the ITR's 4-byte form."""

    kdf_id: int
    hmac_id: int = HMAC_NONE
    prefixes: tuple = ()
    hmac: bytes = b""
    reserved: int = 0

    @property
    def short(self) -> bool:
        return not self.prefixes and self.hmac_id == HMAC_NONE and not self.hmac


@dataclass(frozen=True, slots=True)
class EcmAuth:
    """The ECM Authentication Data (ECM with S=1)."""

    requested_hmac_id: int
    otk_wrap_id: int
    otk: bytes                  # the 24-byte OTK field: preamble + key
    eid_ad: EidAd
    v: bool = False
    reserved: int = 0           # the 7 bits after V
    ad_type: int = AD_TYPE_LISP_SEC


@dataclass(frozen=True, slots=True)
class ReplyAuth:
    """The Map-Reply Authentication Data (Map-Reply with S=1)."""

    eid_ad: EidAd
    pkt_hmac_id: int
    pkt_hmac: bytes
    reserved: int = 0           # 24 bits
    ad_type: int = AD_TYPE_LISP_SEC


# ---------------------------------------------------------------------------
# EID-AD

def encode_eid_ad(ad: EidAd) -> bytes:
    if len(ad.prefixes) > 255:
        raise EncodeError("an EID-AD holds at most 255 records")
    body = b""
    if not ad.short:
        parts = [_H.pack(ad.hmac_id)]
        for p in ad.prefixes:
            addr, ml = eid_to_wire(p)
            parts.append(bytes((0, ml)) + encode_address(addr))
        parts.append(ad.hmac)
        body = b"".join(parts)
    length = 4 + len(body)
    if length > 0xFFFF:
        raise EncodeError("EID-AD too long")
    return _EID_AD.pack(length, ad.kdf_id, len(ad.prefixes), ad.reserved & 0xFF) + body


def decode_eid_ad(buf: bytes, off: int, end: int, field: str = "eid_ad") -> tuple[EidAd, int]:
    """The EID-AD at ``off`` and the offset after it."""
    if off + _EID_AD.size > end:
        raise DecodeError(f"{field}.length", off, "truncated EID-AD")
    length, kdf, count, rsvd = _EID_AD.unpack_from(buf, off)
    stop = off + 2 + length
    if length < ITR_EID_AD_LEN or stop > end:
        raise DecodeError(f"{field}.length", off, f"EID-AD length {length} does not fit")
    if length == ITR_EID_AD_LEN:
        if count:
            raise DecodeError(f"{field}.record_count", off + 4, f"{count} records in a 4-byte EID-AD")
        return EidAd(kdf, reserved=rsvd), stop
    p = off + 6
    if p + 2 > stop:
        raise DecodeError(f"{field}.hmac_id", p, "truncated EID HMAC ID")
    hmac_id = _H.unpack_from(buf, p)[0]
    p += 2
    prefixes = []
    for i in range(count):
        if p + 4 > stop:
            raise DecodeError(f"{field}.record[{i}]", p, "truncated EID-AD record")
        ml = buf[p + 1]
        addr, q = decode_address(buf, p + 2, stop, f"{field}.record[{i}].eid")
        try:
            bits = address_bits(addr)
        except Exception:
            bits = -1
        if bits < 0 or ml > bits:
            raise DecodeError(f"{field}.record[{i}].mask_len", p + 1,
                              f"EID mask length {ml} beyond the address family")
        try:
            prefixes.append(eid_from_wire(addr, ml))
        except (ValueError, EncodeError) as exc:
            raise DecodeError(f"{field}.record[{i}].eid", p + 2, str(exc)) from None
        p = q
    return EidAd(kdf, hmac_id, tuple(prefixes), bytes(buf[p:stop]), rsvd), stop


# ---------------------------------------------------------------------------
# ECM authentication data

def encode_ecm_auth(a: EcmAuth) -> bytes:
    if len(a.otk) != OTK_FIELD_LEN:
        raise EncodeError(f"the OTK field is {OTK_FIELD_LEN} bytes (preamble + key)")
    flags = (a.v << 7) | (a.reserved & 0x7F)
    return (_ECM_AD.pack(a.ad_type, flags, a.requested_hmac_id, len(a.otk), a.otk_wrap_id)
            + a.otk + encode_eid_ad(a.eid_ad))


def decode_ecm_auth(buf: bytes, off: int, end: int) -> tuple[EcmAuth, int]:
    """The ECM Authentication Data at ``off`` (just after the ECM header)."""
    if off + _ECM_AD.size > end:
        raise DecodeError("ecm.auth", off, "truncated LISP-SEC authentication data")
    ad_type, flags, req, otk_len, wrap = _ECM_AD.unpack_from(buf, off)
    if ad_type != AD_TYPE_LISP_SEC:
        raise DecodeError("ecm.auth.ad_type", off, f"unknown authentication data type {ad_type}")
    p = off + _ECM_AD.size
    if otk_len != OTK_FIELD_LEN or p + otk_len > end:
        raise DecodeError("ecm.auth.otk_length", off + 4, f"OTK length {otk_len} (24 expected)")
    otk = bytes(buf[p:p + otk_len])
    ad, q = decode_eid_ad(buf, p + otk_len, end, "ecm.auth.eid_ad")
    return EcmAuth(req, wrap, otk, ad, bool(flags & 0x80), flags & 0x7F, ad_type), q


# ---------------------------------------------------------------------------
# Map-Reply authentication data (MapReply.sec_data)

def encode_reply_auth(a: ReplyAuth) -> bytes:
    pkt = _H.pack(a.pkt_hmac_id) + a.pkt_hmac
    return (struct.pack("!I", (a.ad_type << 24) | (a.reserved & 0xFFFFFF)) + encode_eid_ad(a.eid_ad)
            + _H.pack(len(pkt)) + pkt)


def decode_reply_auth(sec_data: bytes) -> ReplyAuth:
    """``MapReply.sec_data`` decoded; offsets in errors count from its first byte."""
    end = len(sec_data)
    if end < 4:
        raise DecodeError("map_reply.auth", 0, "truncated LISP-SEC authentication data")
    w = struct.unpack_from("!I", sec_data, 0)[0]
    if w >> 24 != AD_TYPE_LISP_SEC:
        raise DecodeError("map_reply.auth.ad_type", 0, f"unknown authentication data type {w >> 24}")
    ad, p = decode_eid_ad(sec_data, 4, end, "map_reply.auth.eid_ad")
    if p + 4 > end:
        raise DecodeError("map_reply.auth.pkt_ad", p, "truncated PKT-AD")
    length, hmac_id = struct.unpack_from("!HH", sec_data, p)
    if length < 2 or p + 2 + length != end:
        raise DecodeError("map_reply.auth.pkt_ad.length", p, f"PKT-AD length {length} does not "
                                                             f"end the message")
    return ReplyAuth(ad, hmac_id, bytes(sec_data[p + 4:end]), w & 0xFFFFFF, w >> 24)


def pkt_hmac_span(total_len: int, a: ReplyAuth) -> tuple[int, int]:
    """(start, stop) of the PKT HMAC in an encoded Map-Reply of ``total_len`` bytes
    whose authentication data is ``a``: it is the last field."""
    return total_len - len(a.pkt_hmac), total_len


__all__ = ["EidAd", "EcmAuth", "ReplyAuth", "encode_eid_ad", "decode_eid_ad", "encode_ecm_auth",
           "decode_ecm_auth", "encode_reply_auth", "decode_reply_auth", "AD_TYPE_LISP_SEC",
           "HMAC_NONE", "HMAC_SHA1_96", "HMAC_SHA256_128", "HMAC_LEN", "WRAP_NULL_128", "WRAP_AES_128",
           "KDF_HKDF_SHA1_128", "KDF_HKDF_SHA256_128", "OTK_FIELD_LEN", "Eid"]
