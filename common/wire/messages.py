"""LISP control messages (RFC 9301 5): classes, encoders, and the one decoder.

:func:`decode_message` takes a UDP payload and returns one of the message classes
below, :class:`~common.wire.register.MapRegister` / ``MapNotify`` / ``MapNotifyAck``,
or :class:`~common.wire.ecm.Ecm`.  It raises only :class:`~common.wire.errors.DecodeError`.
:func:`encode_message` is its inverse: ``decode_message(encode_message(m)) == m``.

Strictness: what cannot be a valid encoding is an error (overrunning lengths and
counts, a mask length beyond the family, an unknown AFI, trailing bytes); what is
well formed but odd (record count 0, reserved bits set, an action on a positive
record) decodes, and the roles judge it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from common.wire.addr import NO_ADDRESS, address_bits, decode_address, encode_address, eid_from_wire
from common.wire.errors import DecodeError, EncodeError
from common.wire.records import decode_record, decode_records, encode_record
from common.wire.register import (MapNotify, MapNotifyAck, MapRegister, decode_register_like,
                             encode_register_like)

TYPE_MAP_REQUEST = 1
TYPE_MAP_REPLY = 2
TYPE_MAP_REFERRAL = 6
TYPE_INFO = 7
TYPE_ECM = 8

TYPE_NAMES = {1: "map-request", 2: "map-reply", 3: "map-register", 4: "map-notify",
              5: "map-notify-ack", 6: "map-referral", 7: "info", 8: "ecm"}

_W0_NONCE = struct.Struct("!IQ")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A Map-Request's EID record; ``flags`` is the first byte (0x80 = N, RFC 9437)."""

    eid: object
    mask_len: int
    flags: int = 0

    @property
    def prefix(self):
        return eid_from_wire(self.eid, self.mask_len)


@dataclass(frozen=True, slots=True)
class MapRequest:
    nonce: int
    itr_rlocs: tuple
    records: tuple
    source_eid: object = NO_ADDRESS
    authoritative: bool = False      # A
    probe: bool = False              # P
    smr: bool = False                # S
    pitr: bool = False               # p
    smr_invoked: bool = False        # s
    rsvd_r: bool = False             # bit 10 (lispers.net: m)
    local_xtr: bool = False          # L
    dont_map_reply: bool = False     # D
    reserved: int = 0                # bits 12-16
    map_reply: object = None         # EidRecord when M=1
    xtr_id: bytes | None = None      # I=1 trailer (RFC 9437)
    site_id: bytes | None = None     # None with a 16-byte (lispers.net) trailer


@dataclass(frozen=True, slots=True)
class MapReply:
    nonce: int
    records: tuple
    probe: bool = False              # P
    echo_nonce: bool = False         # E
    security: bool = False           # S: LISP-SEC data follows the records
    reserved: int = 0                # bits 7-23 (lispers.net: hop count in 16-23)
    sec_data: bytes = b""


@dataclass(frozen=True, slots=True)
class MapReferral:
    nonce: int
    records: tuple                   # EidRecords; locators are the referral set
    reserved: int = 0


@dataclass(frozen=True, slots=True)
class InfoMessage:
    """NAT-traversal Info-Request (reply=False) or Info-Reply (reply=True)."""

    nonce: int
    eid: object
    mask_len: int
    reply: bool = False
    key_id: int = 0
    alg_id: int = 0
    auth_data: bytes = b""
    ttl: int = 0
    payload: object = NO_ADDRESS     # AFI 0 / name (request) or NAT-Traversal LCAF (reply)
    reserved: int = 0
    rsvd_byte: int = 0


# ---------------------------------------------------------------------------
# Map-Request

def _encode_map_request(m: MapRequest) -> bytes:
    if not 1 <= len(m.itr_rlocs) <= 32:
        raise EncodeError("a Map-Request carries 1..32 ITR-RLOCs")
    if len(m.records) > 255:
        raise EncodeError("more than 255 records")
    w0 = ((TYPE_MAP_REQUEST << 28) | (m.authoritative << 27) | ((m.map_reply is not None) << 26)
          | (m.probe << 25) | (m.smr << 24) | (m.pitr << 23) | (m.smr_invoked << 22)
          | (m.rsvd_r << 21) | ((m.xtr_id is not None) << 20) | ((m.reserved & 0x1F) << 15)
          | (m.local_xtr << 14) | (m.dont_map_reply << 13) | ((len(m.itr_rlocs) - 1) << 8)
          | len(m.records))
    parts = [_W0_NONCE.pack(w0, m.nonce), encode_address(m.source_eid)]
    parts.extend(encode_address(a) for a in m.itr_rlocs)
    for r in m.records:
        parts.append(bytes((r.flags, r.mask_len)) + encode_address(r.eid))
    if m.map_reply is not None:
        parts.append(encode_record(m.map_reply))
    if m.xtr_id is not None:
        if len(m.xtr_id) != 16 or (m.site_id is not None and len(m.site_id) != 8):
            raise EncodeError("xTR-ID is 16 bytes and Site-ID 8 bytes")
        parts.append(m.xtr_id + (m.site_id or b""))
    return b"".join(parts)


def _decode_map_request(buf: bytes) -> MapRequest:
    end = len(buf)
    if end < 12:
        raise DecodeError("header", end, "truncated header (12 bytes needed)")
    w0, nonce = _W0_NONCE.unpack_from(buf, 0)
    irc = ((w0 >> 8) & 0x1F) + 1
    count = w0 & 0xFF
    has_trailer = bool(w0 & 0x00100000)
    src, p = decode_address(buf, 12, end, "source_eid")
    if irc * 2 > end - p:
        raise DecodeError("irc", 2, f"ITR-RLOC count {irc} overruns the message")
    rlocs = []
    for i in range(irc):
        a, p = decode_address(buf, p, end, f"itr_rloc[{i}]")
        rlocs.append(a)
    if count * 4 > end - p:
        raise DecodeError("record_count", 3, f"record count {count} overruns the message")
    recs = []
    for i in range(count):
        if p + 4 > end:
            raise DecodeError(f"request_record[{i}]", p, "truncated request record")
        flags, ml = buf[p], buf[p + 1]
        eid, q = decode_address(buf, p + 2, end, f"request_record[{i}].eid")
        if ml > address_bits(eid):
            raise DecodeError(f"request_record[{i}].mask_len", p + 1,
                              f"EID mask length {ml} beyond the address family")
        recs.append(RequestRecord(eid, ml, flags))
        p = q
    map_reply = None
    if w0 & 0x04000000:
        map_reply, p = decode_record(buf, p, end, "map_reply")
    xtr = site = None
    rest = end - p
    if has_trailer:
        if rest == 24:
            xtr, site = bytes(buf[p:p + 16]), bytes(buf[p + 16:end])
        elif rest == 16:
            xtr = bytes(buf[p:end])
        else:
            raise DecodeError("xtr_id", p, f"I=1 but {rest} bytes left (16 or 24 expected)")
    elif rest:
        raise DecodeError("records", p, f"{rest} bytes after the last record")
    return MapRequest(nonce, tuple(rlocs), tuple(recs), src, bool(w0 & 0x08000000),
                      bool(w0 & 0x02000000), bool(w0 & 0x01000000), bool(w0 & 0x00800000),
                      bool(w0 & 0x00400000), bool(w0 & 0x00200000), bool(w0 & 0x4000),
                      bool(w0 & 0x2000), (w0 >> 15) & 0x1F, map_reply, xtr, site)


# ---------------------------------------------------------------------------
# Map-Reply, Map-Referral

def _encode_map_reply(m: MapReply) -> bytes:
    if len(m.records) > 255:
        raise EncodeError("more than 255 records")
    if m.sec_data and not m.security:
        raise EncodeError("LISP-SEC data needs S=1")
    w0 = ((TYPE_MAP_REPLY << 28) | (m.probe << 27) | (m.echo_nonce << 26) | (m.security << 25)
          | ((m.reserved & 0x1FFFF) << 8) | len(m.records))
    return b"".join([_W0_NONCE.pack(w0, m.nonce)] + [encode_record(r) for r in m.records] + [m.sec_data])


def _decode_map_reply(buf: bytes) -> MapReply:
    end = len(buf)
    if end < 12:
        raise DecodeError("header", end, "truncated header (12 bytes needed)")
    w0, nonce = _W0_NONCE.unpack_from(buf, 0)
    records, p = decode_records(buf, 12, end, w0 & 0xFF)
    security = bool(w0 & 0x02000000)
    if p != end and not security:
        raise DecodeError("records", p, f"{end - p} bytes after the last record")
    return MapReply(nonce, records, bool(w0 & 0x08000000), bool(w0 & 0x04000000), security,
                    (w0 >> 8) & 0x1FFFF, bytes(buf[p:end]))


def _encode_map_referral(m: MapReferral) -> bytes:
    if len(m.records) > 255:
        raise EncodeError("more than 255 records")
    w0 = (TYPE_MAP_REFERRAL << 28) | ((m.reserved & 0xFFFFF) << 8) | len(m.records)
    for r in m.records:
        if r.rsvd_nibble != len(r.signatures):
            raise EncodeError("a referral record's SigCnt must equal its signature count")
    return b"".join([_W0_NONCE.pack(w0, m.nonce)] + [encode_record(r) for r in m.records])


def _decode_map_referral(buf: bytes) -> MapReferral:
    end = len(buf)
    if end < 12:
        raise DecodeError("header", end, "truncated header (12 bytes needed)")
    w0, nonce = _W0_NONCE.unpack_from(buf, 0)
    records, p = decode_records(buf, 12, end, w0 & 0xFF, referral=True)
    if p != end:
        raise DecodeError("records", p, f"{end - p} bytes after the last record")
    return MapReferral(nonce, records, (w0 >> 8) & 0xFFFFF)


# ---------------------------------------------------------------------------
# Info-Request / Info-Reply

_INFO = struct.Struct("!IQBBH")


def _encode_info(m: InfoMessage) -> bytes:
    w0 = (TYPE_INFO << 28) | (m.reply << 27) | (m.reserved & 0x7FFFFFF)
    return b"".join([_INFO.pack(w0, m.nonce, m.key_id, m.alg_id, len(m.auth_data)), m.auth_data,
                     struct.pack("!IBB", m.ttl, m.rsvd_byte, m.mask_len), encode_address(m.eid),
                     encode_address(m.payload)])


def _decode_info(buf: bytes) -> InfoMessage:
    end = len(buf)
    if end < 16:
        raise DecodeError("header", end, "truncated header (16 bytes needed)")
    w0, nonce, key_id, alg_id, auth_len = _INFO.unpack_from(buf, 0)
    p = 16 + auth_len
    if p + 6 > end:
        raise DecodeError("auth_data_length", 14, f"authentication data length {auth_len} overruns the message")
    auth = bytes(buf[16:p])
    ttl, rsvd, ml = struct.unpack_from("!IBB", buf, p)
    eid, q = decode_address(buf, p + 6, end, "eid")
    if ml > address_bits(eid):
        raise DecodeError("mask_len", p + 5, f"EID mask length {ml} beyond the address family")
    payload, q = decode_address(buf, q, end, "payload")
    if q != end:
        raise DecodeError("payload", q, f"{end - q} trailing bytes")
    return InfoMessage(nonce, eid, ml, bool(w0 & 0x08000000), key_id, alg_id, auth, ttl, payload,
                       w0 & 0x7FFFFFF, rsvd)


# ---------------------------------------------------------------------------
# dispatch

def decode_message(data: bytes):
    """Decode one LISP control message (a UDP payload); raises only DecodeError."""
    if not data:
        raise DecodeError("type", 0, "empty message")
    mtype = data[0] >> 4
    if mtype == TYPE_MAP_REQUEST:
        return _decode_map_request(data)
    if mtype == TYPE_MAP_REPLY:
        return _decode_map_reply(data)
    if mtype in (3, 4, 5):
        return decode_register_like(data)
    if mtype == TYPE_ECM:
        from common.wire.ecm import decode_ecm
        return decode_ecm(data)
    if mtype == TYPE_MAP_REFERRAL:
        return _decode_map_referral(data)
    if mtype == TYPE_INFO:
        return _decode_info(data)
    raise DecodeError("type", 0, f"unknown message type {mtype}")


_ENCODERS = {
    MapRequest: _encode_map_request,
    MapReply: _encode_map_reply,
    MapRegister: encode_register_like,
    MapNotify: encode_register_like,
    MapNotifyAck: encode_register_like,
    MapReferral: _encode_map_referral,
    InfoMessage: _encode_info,
}


def encode_message(msg) -> bytes:
    """The wire bytes of a message object (the inverse of decode_message)."""
    enc = _ENCODERS.get(type(msg))
    if enc is None:
        from common.wire.ecm import Ecm, encode_ecm
        if isinstance(msg, Ecm):
            return encode_ecm(msg)
        raise EncodeError(f"cannot encode {type(msg).__name__}")
    try:
        return enc(msg)
    except struct.error as exc:
        raise EncodeError(str(exc)) from None


def message_type_name(msg) -> str:
    from common.wire.ecm import Ecm
    if isinstance(msg, Ecm):
        return "ecm"
    return {MapRequest: "map-request", MapReply: "map-reply", MapRegister: "map-register",
            MapNotify: "map-notify", MapNotifyAck: "map-notify-ack", MapReferral: "map-referral",
            InfoMessage: "info"}[type(msg)]


__all__ = ["MapRequest", "MapReply", "MapRegister", "MapNotify", "MapNotifyAck", "MapReferral",
           "InfoMessage", "RequestRecord", "decode_message", "encode_message", "message_type_name",
           "TYPE_NAMES"]
